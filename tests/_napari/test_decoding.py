"""Tests of _napari/decoding.py's PreviewDecoder: what a decode takes, what its result does.

The annotator and the predictor are stand-ins (no model, no Qt); the preview is a real
:class:`Preview` on a ``ViewerModel``. The scheduler itself is exercised through the annotator
in test_annotator.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_sam2_webgpu._napari import decoding
from napari_sam2_webgpu._napari.decoding import PreviewDecoder
from napari_sam2_webgpu._napari.preview import Preview
from napari_sam2_webgpu._napari.slices import displayed_slice


class _Predictor:
    embedding = "the slice's embedding"

    def __init__(self):
        self.calls = []
        self.fail: Exception | None = None

    def predict_best(self, **kwargs):
        self.calls.append(kwargs)
        if self.fail is not None:
            raise self.fail
        mask = np.zeros((20, 30), bool)
        mask[2:6, 3:9] = True
        return mask, 0.75, None


EMITTED = ("status", "layers", "decoded")


class _Annotator:
    """What PreviewDecoder uses of an Annotator."""

    def __init__(self, viewer, image):
        self.viewer = viewer
        self.image_layer, self.labels_layer = image, None
        self.preview = Preview(viewer)
        self.predictor = _Predictor()
        self.is_ready, self.auto_encode, self.multimask = True, None, True
        self.refinement = None
        self.prompts = (np.array([[5.0, 4.0]]), np.array([1]), None)
        self.problems, self.emitted = [], []
        self.events = SimpleNamespace(
            **{name: (lambda name=name: self.emitted.append(name)) for name in EMITTED}
        )

    def current_slice(self):
        return displayed_slice(self.image_layer, self.viewer.dims)

    def slice_prompts(self, sl):
        return self.prompts

    def report_problem(self, message, show=None):
        self.problems.append((message, show))


class StepClock:
    """Advances one second at every reading."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.0
        return self.now


@pytest.fixture
def scene(monkeypatch):
    viewer = ViewerModel()
    image = viewer.add_image(np.zeros((3, 20, 30), np.uint8))
    annotator = _Annotator(viewer, image)
    infos = []
    monkeypatch.setattr(decoding, "show_info", infos.append)
    return annotator, PreviewDecoder(annotator, None, StepClock()), infos


def test_a_decode_shows_its_mask_with_timings(scene):
    a, decoder, _ = scene
    decoder.request()
    (call,) = a.predictor.calls
    np.testing.assert_array_equal(call["point_coords"], [[5.0, 4.0]])
    assert call["multimask_output"] and call["embedding"] == "the slice's embedding"
    assert a.preview.mask[2:6, 3:9].all() and a.preview.mask.sum() == 24
    assert decoder.last_score == 0.75
    assert decoder.last_decode_seconds == 1.0  # two clock readings around the decode
    assert decoder.last_latency_seconds == 3.0  # from the request to the preview
    assert a.emitted == ["layers", "status", "decoded"]  # the preview layer was created
    a.emitted.clear()
    a.multimask = False
    decoder.request()
    assert not a.predictor.calls[-1]["multimask_output"] and a.emitted == ["status", "decoded"]
    decoder.clear_preview()
    assert a.preview.mask is None and decoder.last_score is None


def test_nothing_to_decode_clears_the_preview(scene):
    a, decoder, _ = scene
    decoder.request()
    a.prompts = (None, None, None)
    decoder.request()
    assert a.preview.mask is None and len(a.predictor.calls) == 1
    a.prompts = (None, None, np.array([1, 1, 8, 8]))  # a box alone decodes
    decoder.request()
    assert len(a.predictor.calls) == 2
    a.image_layer = None
    assert decoder.prepare(decoder.scheduler.generation) is None
    assert a.preview.mask is None


def test_prompts_without_an_embedding_ask_for_one(scene):
    a, decoder, infos = scene
    a.is_ready = False
    decoder.request()
    assert "not encoded" in infos[-1] and not a.predictor.calls
    encodes = []
    a.auto_encode = lambda: encodes.append(1)
    decoder.request()
    assert encodes == [1]
    a.auto_encode, a.predictor = None, None
    decoder.request()
    assert "No SAM2 model" in a.problems[-1][0]


def test_failures_are_reported(scene):
    a, decoder, _ = scene
    decoder.request()
    a.predictor.fail = ValueError("bad prompt")
    decoder.request()
    assert a.problems[-1] == ("bad prompt", None) and a.preview.mask is None
    a.predictor.fail = None
    request = decoder.prepare(decoder.scheduler.generation)
    a.image_layer = None  # removed between the decode and its result
    decoder.deliver(decoding.decode(request, decoder.scheduler.clock))
    assert "could not show the mask" in a.problems[-1][0]
    assert a.problems[-1][1] is decoding.show_error


def test_the_preview_goes_above_the_image_and_the_target(scene):
    a, decoder, _ = scene
    a.labels_layer = a.viewer.add_labels(np.zeros((3, 20, 30), np.uint8))
    a.viewer.add_points(name="prompts")
    assert decoder.insert_index() == 2
    decoder.request()
    names = [layer.name for layer in a.viewer.layers]
    assert names.index(a.preview.layer.name) == 2 and names[-1] == "prompts"
