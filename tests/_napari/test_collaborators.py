"""Unit tests of the Annotator's collaborators: PromptLayers, Preview and EmbeddingTracker."""

from __future__ import annotations

import numpy as np
from napari.components import ViewerModel

from napari_sam2_webgpu._napari.embeddings import EmbeddingTracker
from napari_sam2_webgpu._napari.errors import AnnotatorError
from napari_sam2_webgpu._napari.preview import Preview
from napari_sam2_webgpu._napari.prompt_layers import PromptLayers
from napari_sam2_webgpu._napari.slices import displayed_slice
from napari_sam2_webgpu.image import EmbeddingCache


def _viewer_and_image():
    viewer = ViewerModel()
    image = viewer.add_image(np.zeros((3, 20, 30), np.uint8), scale=(2.0, 1.0, 1.0))
    return viewer, image


def _prompt_layers(viewer, image, changes, problems):
    return PromptLayers(
        viewer,
        image=lambda: image,
        current_slice=lambda: displayed_slice(image, viewer.dims),
        on_change=lambda: changes.append(1),
        report_problem=lambda message, show=None: problems.append(message),
    )


def test_prompt_layers_create_mute_add_and_forget():
    viewer, image = _viewer_and_image()
    changes, problems = [], []
    prompts = _prompt_layers(viewer, image, changes, problems)
    assert prompts.ensure(image) and not prompts.ensure(image)
    assert viewer.layers.selection.active is prompts.points
    sl = displayed_slice(image, viewer.dims)
    prompts.add_point(image, np.array([sl.indices[0][1], 5.0, 6.0]), positive=False)
    assert changes == [1] and prompts.points.features["positive"].tolist() == [False]
    points, labels, box = prompts.slice_prompts(sl)
    np.testing.assert_allclose(points, [[6.0, 5.0]])
    assert labels.tolist() == [0] and box is None
    prompts.add_point(image, np.array([sl.indices[0][1], 50.0, 6.0]), positive=True)
    assert len(prompts.points.data) == 1 and problems  # outside the image: dropped, told
    with prompts.muted():
        prompts.points.add(np.array([[sl.indices[0][1], 1.0, 1.0]]))
    assert len(changes) == 2  # the muted add did not count
    prompts.add_box(image, sl, np.array([0, 2.0, 3.0]), np.array([0, 10.0, 12.0]))
    prompts.add_box(image, sl, np.array([0, 1.0, 1.0]), np.array([0, 4.0, 5.0]))
    assert len(prompts.box.data) == 1  # one box per slice
    prompts.clear()
    assert len(prompts.points.data) == 0 and len(prompts.box.data) == 0
    box_layer = prompts.box
    viewer.layers.remove(box_layer)
    assert prompts.forget(box_layer) and prompts.box is None and not prompts.forget(box_layer)
    prompts.disconnect()


def test_prompt_layers_polarity_and_reset():
    viewer, image = _viewer_and_image()
    prompts = _prompt_layers(viewer, image, [], [])
    prompts.ensure(image)
    prompts.positive = False

    class Press:
        button, modifiers = 1, ()

    prompts._on_press(prompts.points, Press())
    assert prompts.points.feature_defaults["positive"][0] == np.False_
    other = viewer.add_image(np.zeros((20, 30), np.uint8))
    prompts.reset(other)  # another dimensionality: the layers go
    assert prompts.points is None and prompts.box is None and len(viewer.layers) == 2


def test_prompt_layers_report_slice_errors():
    viewer, image = _viewer_and_image()
    problems = []

    def no_slice():
        raise AnnotatorError("no slice")

    prompts = PromptLayers(
        viewer,
        image=lambda: image,
        current_slice=no_slice,
        on_change=lambda: None,
        report_problem=lambda message, show=None: problems.append(message),
    )
    prompts.ensure(image)
    prompts.points.add(np.array([[0, 1.0, 1.0]]))
    assert problems == ["no slice"] and len(prompts.points.data) == 0


def test_preview_show_clear_forget():
    viewer, image = _viewer_and_image()
    preview = Preview(viewer)
    assert preview.mask is None
    sl = displayed_slice(image, viewer.dims)
    mask = np.zeros(sl.shape, bool)
    mask[2:5, 3:9] = True
    assert preview.show(image, sl, mask, lambda: 1)
    assert viewer.layers.index(preview.layer) == 1
    np.testing.assert_array_equal(preview.mask, mask)
    assert not preview.show(image, sl, mask, lambda: 1)  # same layer reused
    preview.clear()
    assert preview.mask is None and not preview.layer.data.any()
    layer = preview.layer
    viewer.layers.remove(layer)
    assert not preview.forget(image) and preview.forget(layer) and preview.layer is None
    preview.show(image, sl, mask, lambda: 0)
    preview.remove()
    assert preview.layer is None and len(viewer.layers) == 1


class _Predictor:
    name, encoder_path, embedding = "fake", "enc.onnx", None

    def set_embedding(self, embedding):
        self.embedding = embedding


def test_embedding_tracker_store_adopt_sync():
    viewer, image = _viewer_and_image()
    tracker = EmbeddingTracker(EmbeddingCache())
    predictor = _Predictor()
    sl = displayed_slice(image, viewer.dims)
    request, warning = tracker.encode_request(image, sl)
    assert warning is None and request.layer is image
    assert not tracker.sync(image, sl, predictor)  # nothing cached yet
    embedding = object()
    tracker.store(request, embedding, predictor)
    tracker.adopt(request, sl, embedding, predictor)
    assert predictor.embedding is embedding and tracker.holds(sl) and tracker.exact(image)
    tracker.forget()
    assert not tracker.holds(sl)
    predictor.embedding = None
    assert tracker.sync(image, sl, predictor) and predictor.embedding is embedding
    image.contrast_limits = (0, 100)
    assert not tracker.exact(image)
    assert tracker.sync(image, sl, predictor)  # other contrast: the same slice's embedding
    tracker.drop_layer(image)
    assert not tracker.sync(image, sl, predictor)
