"""The widget's Qt-free collaborators: lifecycle, argument checks, status facts, layer choices.

No QApplication (and no display) is needed: the combos are stand-ins.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from napari.components import LayerList
from napari.layers import Image, Labels

from napari_sam2_webgpu._annotator import AnnotatorError
from napari_sam2_webgpu._qt.arguments import (
    check_axis,
    check_direction,
    check_position,
    free_axes,
    model_choice,
)
from napari_sam2_webgpu._qt.commits import Commits
from napari_sam2_webgpu._qt.encoding import ModelSession
from napari_sam2_webgpu._qt.layer_choices import NEW_LABELS, NO_IMAGE, LayerChoices
from napari_sam2_webgpu._qt.lifecycle import Lifecycle
from napari_sam2_webgpu._qt.loading import ModelChoice
from napari_sam2_webgpu._qt.status import gather_facts


# ---------------------------------------------------------------- Lifecycle
def _lifecycle(calls: list, probe=lambda: None) -> Lifecycle:
    return Lifecycle(probe, lambda: calls.append("stop"), lambda: calls.append("release"))


def test_lifecycle_closes_once_stopping_before_releasing():
    calls: list = []
    life = _lifecycle(calls)
    assert life.alive() and not life.closed
    life.close()
    life.close()
    assert calls == ["stop", "release"]
    assert life.closed and not life.alive()


def test_lifecycle_stop_runs_while_still_alive():
    seen: list = []
    life = Lifecycle(lambda: None, lambda: seen.append(life.alive()), lambda: None)
    life.close()
    assert seen == [True]


def test_lifecycle_tears_down_when_the_qt_object_is_gone():
    calls: list = []

    def probe() -> None:
        raise RuntimeError("wrapped C/C++ object has been deleted")

    life = _lifecycle(calls, probe)
    assert not life.alive()
    assert calls == ["stop", "release"]


def test_lifecycle_closes_when_taken_out_of_its_dock_only():
    calls: list = []
    life = _lifecycle(calls)
    life.parent_changed(False)  # never docked: nothing happens
    assert not life.closed
    life.parent_changed(True)
    life.parent_changed(True)
    assert not life.closed
    life.parent_changed(False)
    assert life.closed and calls == ["stop", "release"]


# ---------------------------------------------------------------- arguments
def test_check_position_takes_2_or_ndim_numbers():
    assert check_position((1, 2), 3).tolist() == [1.0, 2.0]
    assert check_position([1, 2, 3], 3).dtype == float
    with pytest.raises(ValueError, match="4 coordinates"):
        check_position((1, 2, 3, 4), 3)


def test_check_direction():
    assert check_direction("both") == "both"
    with pytest.raises(ValueError, match="direction must be one of"):
        check_direction("sideways")


def test_check_axis():
    assert check_axis(np.int64(0), [0]) == 0
    assert check_axis(5, None) == 5  # not known: any integer
    with pytest.raises(ValueError, match="must be an integer"):
        check_axis(1.5, [0])
    with pytest.raises(ValueError, match="'cells' that is not displayed"):
        check_axis(1, [0], "cells")
    with pytest.raises(ValueError, match="2D image"):
        check_axis(0, [], "cells")


def test_model_choice():
    assert model_choice("tiny", None, None) == ModelChoice("tiny", None, None, "auto")
    assert model_choice(None, "e.onnx", "d.onnx", "cpu") == ModelChoice(
        None, "e.onnx", "d.onnx", "cpu"
    )
    for args, match in [
        (("tiny", None, None, "cuda"), "backend must be one of"),
        ((None, "e.onnx", None), "Give both"),
        (("tiny", "e.onnx", "d.onnx"), "either size or"),
        (("huge", None, None), "size must be one of"),
    ]:
        with pytest.raises(ValueError, match=match):
            model_choice(*args)


# ---------------------------------------------------------------- status facts
def test_gather_facts_reads_the_collaborators():
    annotator = SimpleNamespace(
        image_layer=object(),
        is_ready=True,
        last_decode_seconds=0.01,
        last_latency_seconds=0.02,
        last_score=0.9,
    )
    predictor = SimpleNamespace(name="sam2.1 tiny", device="CPU")
    session = SimpleNamespace(predictor=predictor, last_encode_seconds=1.5)
    jobs = SimpleNamespace(progress_text=None)
    run = SimpleNamespace(describe=lambda: "propagated 3 slices")
    propagation = SimpleNamespace(run=None, last_run=run, unavailable_summary=None)
    cache = type("Cache", (), {"__len__": lambda self: 2, "nbytes": 10})()
    facts = gather_facts(annotator, session, jobs, propagation, cache)
    assert facts.model == "sam2.1 tiny on CPU"
    assert facts.job is None and facts.has_image and facts.ready
    assert facts.propagation == "propagated 3 slices"
    assert (facts.cache_slices, facts.cache_bytes) == (2, 10)
    session.predictor = None
    assert gather_facts(annotator, session, jobs, propagation, cache).model is None


# ---------------------------------------------------------------- layer choices
class FakeSignal:
    def __init__(self) -> None:
        self.slots: list = []

    def connect(self, slot) -> None:
        self.slots.append(slot)


class FakeCombo:
    """The part of QComboBox that fill_layer_combo and LayerChoices use."""

    def __init__(self) -> None:
        self.items: list = []
        self.current = -1
        self.activated = FakeSignal()

    def blockSignals(self, on: bool) -> None:  # noqa: N802 - Qt's name
        pass

    def clear(self) -> None:
        self.items = []

    def addItem(self, text: str, data=None) -> None:  # noqa: N802
        self.items.append((text, data))

    def count(self) -> int:
        return len(self.items)

    def itemData(self, index: int):  # noqa: N802
        return self.items[index][1]

    def setCurrentIndex(self, index: int) -> None:  # noqa: N802
        self.current = index

    def texts(self) -> list[str]:
        return [text for text, _ in self.items]


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


def test_free_axes():
    class Annotator:
        image_layer = SimpleNamespace(name="stack")

        def __init__(self, indices):
            self.indices = indices

        def current_slice(self):
            if self.indices is None:
                raise AnnotatorError("no image")
            return SimpleNamespace(indices=self.indices)

    assert free_axes(Annotator([(0, 3), (1, 0)])) == ([0, 1], "stack")
    assert free_axes(Annotator(None)) == (None, "")


# ---------------------------------------------------------------- encode and wait
@pytest.mark.parametrize("alive", [True, False])
def test_encode_and_wait_never_returns_a_silent_none(alive):
    jobs = SimpleNamespace(current=object(), queued=False, busy=False)
    warnings: list = []
    errors = SimpleNamespace(count=0, warn=warnings.append)
    session = ModelSession(
        SimpleNamespace(is_ready=False),
        None,
        None,
        jobs,
        errors,
        selected_choice=lambda: None,
        show_device=lambda info: None,
        on_change=lambda: None,
    )
    waited: list = []
    assert session.encode_and_wait(lambda cond: waited.append(cond()), lambda: alive) is None
    assert jobs.queued and waited == [True]  # queued after the running job, then waited for
    assert len(warnings) == (1 if alive else 0)


# ---------------------------------------------------------------- commits
class _Errors:
    def __init__(self) -> None:
        self.cleared = 0

    def guard(self, fn, *args):
        return fn(*args)

    def clear(self) -> None:
        self.cleared += 1


def _commits(propagated=False, last_undo_step=False, painted=5, undone=True):
    annotator = SimpleNamespace(object_id=3, commit=lambda: painted, undo=lambda: undone)
    finished: list = []

    def finish_object() -> None:
        finished.append(annotator.object_id)
        annotator.object_id = 4

    propagation = SimpleNamespace(
        is_propagated=lambda: propagated,
        finish_object=finish_object,
        is_last_undo_step=lambda: last_undo_step,
    )
    waited: list = []
    errors = _Errors()
    commits = Commits(annotator, propagation, errors, lambda: waited.append(True))
    return commits, annotator, errors, waited, finished


def test_commit_waits_for_the_decode_and_paints():
    commits, _, errors, waited, finished = _commits()
    assert commits.commit() == 5
    assert waited == [True] and errors.cleared == 1 and finished == []
    commits, _, errors, _, _ = _commits(painted=None)
    assert commits.commit() == 0 and errors.cleared == 0


def test_commit_after_a_propagation_only_moves_on():
    commits, annotator, errors, _, finished = _commits(propagated=True)
    assert commits.commit() == 0
    assert finished == [3] and annotator.object_id == 4 and errors.cleared == 1


def test_undo_of_a_propagation_keeps_its_object():
    def undo() -> bool:
        annotator.object_id = 9  # napari's undo moved the id on
        return True

    commits, annotator, errors, _, _ = _commits(last_undo_step=True)
    annotator.undo = undo
    assert commits.undo() is True
    assert annotator.object_id == 3 and errors.cleared == 1
    commits, _, errors, _, _ = _commits(undone=False)
    assert commits.undo() is False and errors.cleared == 0
