"""Tests of _napari/viewer_events.py: reactions to slice changes and removed layers.

The annotator is a stand-in made of the real layer collaborators (image, prompts, preview,
target) that records what the reactions ask of it; no model, no Qt.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_sam2_webgpu._napari import viewer_events
from napari_sam2_webgpu._napari.embeddings import EmbeddingTracker
from napari_sam2_webgpu._napari.errors import AnnotatorError
from napari_sam2_webgpu._napari.preview import Preview
from napari_sam2_webgpu._napari.prompt_layers import PromptLayers
from napari_sam2_webgpu._napari.segmented_image import SegmentedImage
from napari_sam2_webgpu._napari.target import LabelsTarget
from napari_sam2_webgpu._napari.viewer_events import ViewerReactions
from napari_sam2_webgpu.image import EmbeddingCache


class _Annotator:
    """What ViewerReactions uses of an Annotator; ``calls`` records the requests."""

    def __init__(self, viewer, image):
        self.viewer = viewer
        self.calls, self.problems = [], []
        self.is_ready = False
        self.image = SegmentedImage(
            viewer,
            EmbeddingTracker(EmbeddingCache()),
            predictor=lambda: None,
            on_data_changed=lambda: None,
        )
        self.image.set_layer(image)
        self.prompts = PromptLayers(
            viewer,
            image=lambda: self.image.layer,
            current_slice=self.image.current_slice,
            on_change=lambda: None,
            report_problem=self.report_problem,
        )
        self.preview = Preview(viewer)
        self.target = LabelsTarget(viewer, on_object_id=lambda value: None, on_created=lambda: None)
        self.decoder = SimpleNamespace(invalidate=lambda: self.calls.append("invalidate"))
        self.large = SimpleNamespace(
            refresh_grid=lambda: self.calls.append("grid"), grid=SimpleNamespace(layer=None)
        )
        self.events = SimpleNamespace(
            status=lambda: self.calls.append("status"), layers=lambda: self.calls.append("layers")
        )

    def sync_embedding(self):
        self.calls.append("sync")

    def request_decode(self):
        self.calls.append("decode")

    def report_problem(self, message, show=None):
        self.problems.append(message)


@pytest.fixture
def scene(monkeypatch):
    """Viewer, image, stand-in annotator, its reactions, deferred calls and messages shown."""
    viewer = ViewerModel()
    image = viewer.add_image(np.zeros((3, 20, 30), np.uint8), name="cells")
    annotator = _Annotator(viewer, image)
    deferred, shown = [], []
    for level in ("info", "warning"):
        monkeypatch.setattr(
            viewer_events, f"show_{level}", lambda msg, level=level: shown.append((level, msg))
        )
    reactions = ViewerReactions(
        annotator,
        defer=deferred.append,
        clear_preview=lambda: annotator.calls.append("clear preview"),
    )
    yield SimpleNamespace(
        viewer=viewer,
        image=image,
        annotator=annotator,
        reactions=reactions,
        deferred=deferred,
        shown=shown,
    )
    reactions.close()


def run_deferred(scene):
    while scene.deferred:
        scene.deferred.pop(0)()


def test_a_slice_change_syncs_and_decodes_only_when_ready(scene):
    a = scene.annotator
    scene.viewer.dims.set_current_step(0, 2)
    assert a.calls == ["sync", "invalidate", "clear preview", "grid", "status"]
    a.calls.clear()
    scene.viewer.dims.set_current_step(0, 2)  # the same slice: nothing
    scene.reactions.on_dims_changed()
    assert a.calls == []
    a.is_ready = True
    scene.viewer.dims.set_current_step(0, 0)
    assert a.calls[-1] == "decode"


def test_problems_in_a_reaction_are_reported_not_raised(scene):
    a = scene.annotator

    def failing_sync():
        raise AnnotatorError("cannot sync")

    a.sync_embedding = failing_sync
    scene.viewer.dims.set_current_step(0, 0)
    assert a.problems == ["cannot sync"]


def test_removing_the_image_drops_its_helpers_later(scene):
    a = scene.annotator
    a.prompts.ensure(scene.image)
    scene.viewer.layers.remove(scene.image)
    assert a.image.layer is None and a.calls[-2:] == ["invalidate", "layers"]
    assert a.prompts.points is not None  # not removed inside napari's removal loop
    run_deferred(scene)
    assert a.prompts.points is None and a.prompts.box is None
    assert a.calls[-2:] == ["layers", "status"]
    assert scene.shown == []  # the viewer has no layer left: it is closing, say nothing


def test_removing_the_image_is_told_when_the_viewer_stays(scene):
    scene.viewer.add_points(name="other")
    scene.viewer.layers.remove(scene.image)
    run_deferred(scene)
    assert scene.shown[-1][0] == "warning" and "'cells' was removed" in scene.shown[-1][1]


def test_a_new_image_before_the_deferred_call_keeps_its_helpers(scene):
    a = scene.annotator
    scene.viewer.layers.remove(scene.image)
    other = scene.viewer.add_image(np.zeros((3, 20, 30), np.uint8))
    a.image.set_layer(other)
    a.prompts.ensure(other)
    run_deferred(scene)
    assert a.prompts.points is not None and scene.shown == []


def test_removing_other_layers_in_use(scene):
    a, viewer = scene.annotator, scene.viewer
    labels = a.target.ensure(scene.image)
    a.target.object_id = 5
    viewer.add_points(name="keeps the viewer open")
    viewer.layers.remove(labels)
    assert a.target.layer is None and a.target.object_id == 1 and a.calls == ["layers"]
    run_deferred(scene)
    assert scene.shown[-1][0] == "info" and "Labels layer" in scene.shown[-1][1]
    a.calls.clear()
    a.prompts.ensure(scene.image)
    viewer.layers.remove(a.prompts.points)
    assert a.calls == ["decode", "layers"]
    a.calls.clear()
    sl = a.image.current_slice()
    a.preview.show(scene.image, sl, np.ones(sl.shape, bool), lambda: 1)
    viewer.layers.remove(a.preview.layer)
    assert a.preview.layer is None and a.calls == ["layers"]
    a.calls.clear()
    viewer.layers.remove("keeps the viewer open")  # not in use: nothing
    assert a.calls == []


def test_closed_reactions_do_nothing(scene):
    a = scene.annotator
    a.prompts.ensure(scene.image)
    scene.viewer.layers.remove(scene.image)
    scene.reactions.close()
    run_deferred(scene)  # a deferred call arriving after closing
    assert scene.shown == [] and a.prompts.points is not None
    a.calls.clear()
    scene.viewer.dims.set_current_step(0, 0)
    assert a.calls == []
    scene.reactions.tell("not shown")
    assert scene.shown == []
