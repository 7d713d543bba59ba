"""The image and labels combos following the viewer: stand-in combos, no Qt."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from napari.components import LayerList
from napari.layers import Image, Labels

from napari_sam2_webgpu._annotator import AnnotatorError
from napari_sam2_webgpu._qt.layer_choices import NEW_LABELS, NO_IMAGE, LayerChoices

from .fakes import FakeCombo


def _choices(layers: list, **kw):
    viewer = SimpleNamespace(layers=LayerList(layers))
    annotator = SimpleNamespace(image_layer=None, labels_layer=None, preview_layer=None)
    calls: dict = {"warn": [], "removed": [], "deferred": []}

    def choose_labels(layer) -> None:
        if layer is not None and layer.name == "bad":
            raise AnnotatorError("not usable")
        annotator.labels_layer = layer

    image_combo, labels_combo = FakeCombo(), FakeCombo()
    choices = LayerChoices(
        viewer,
        annotator,
        image_combo,
        labels_combo,
        alive=kw.get("alive", lambda: True),
        defer=calls["deferred"].append,
        choose_image=lambda layer: setattr(annotator, "image_layer", layer),
        choose_labels=choose_labels,
        warn=calls["warn"].append,
        on_removed=calls["removed"].append,
    )
    return choices, viewer, annotator, image_combo, labels_combo, calls


def test_layer_choices_fill_the_combos_and_choose_the_top_image():
    a, b = Image(np.zeros((4, 4)), name="a"), Image(np.zeros((4, 4)), name="b")
    labels = Labels(np.zeros((4, 4), int), name="labels")
    preview = Labels(np.zeros((4, 4), int), name="preview")
    choices, viewer, annotator, image_combo, labels_combo, _ = _choices([a, labels, b, preview])
    annotator.preview_layer = preview
    choices.refresh()
    assert annotator.image_layer is b
    assert image_combo.texts() == ["a", "b"]
    assert labels_combo.texts() == [NEW_LABELS, "labels"]  # never the preview
    b.name = "renamed"  # followed through the layer's name event
    assert image_combo.texts() == ["a", "renamed"]


def test_layer_choices_without_images_or_when_closed():
    choices, _, annotator, image_combo, _, _ = _choices([])
    choices.refresh()
    assert image_combo.texts() == [NO_IMAGE] and annotator.image_layer is None
    closed, _, _, closed_combo, _, _ = _choices([], alive=lambda: False)
    closed.refresh()
    assert closed_combo.items == []


def test_layer_choices_initial_image_prefers_the_active_layer():
    a, b = Image(np.zeros((4, 4)), name="a"), Image(np.zeros((4, 4)), name="b")
    choices, viewer, *_ = _choices([a, b])
    viewer.layers.selection.active = a
    assert choices.initial_image() is a
    viewer.layers.selection.active = None
    assert choices.initial_image() is b
    assert _choices([])[0].initial_image() is None


def test_layer_choices_apply_the_user_choice_and_warn_on_a_bad_labels_layer():
    a = Image(np.zeros((4, 4)), name="a")
    good, bad = (
        Labels(np.zeros((4, 4), int), name="good"),
        Labels(np.zeros((2, 2), int), name="bad"),
    )
    choices, viewer, annotator, image_combo, labels_combo, calls = _choices([a, good, bad])
    choices.refresh()
    choices.on_labels_combo(labels_combo.texts().index("good"))
    assert annotator.labels_layer is good
    choices.on_labels_combo(labels_combo.texts().index("bad"))
    assert calls["warn"] == ["not usable"] and annotator.labels_layer is good
    annotator.image_layer = None
    choices.on_image_combo(0)
    assert annotator.image_layer is a


def test_layer_choices_follow_the_viewer_until_disconnected():
    a = Image(np.zeros((4, 4)), name="a")
    choices, viewer, annotator, image_combo, _, calls = _choices([a])
    choices.connect()
    assert len(image_combo.activated.slots) == 1
    b = Image(np.zeros((4, 4)), name="b")
    viewer.layers.append(b)
    assert image_combo.texts() == ["a", "b"]
    viewer.layers.selection.active = b
    assert annotator.image_layer is b
    viewer.layers.remove(a)
    assert calls["removed"] == [a] and len(calls["deferred"]) == 1
    choices.disconnect()
    viewer.layers.append(Image(np.zeros((4, 4)), name="c"))
    assert image_combo.texts() == ["a", "b"]  # no longer followed
