"""Tests of _napari/segmented_image.py: the image layer, its displayed slice and its embedding.

A stand-in predictor (no model): SegmentedImage only hands embeddings around.
"""

from __future__ import annotations

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_sam2_webgpu._napari.embeddings import EmbeddingTracker
from napari_sam2_webgpu._napari.errors import AnnotatorError
from napari_sam2_webgpu._napari.segmented_image import SegmentedImage
from napari_sam2_webgpu.image import EmbeddingCache


class _Predictor:
    name, encoder_path, embedding = "fake", "enc.onnx", None

    def set_embedding(self, embedding):
        self.embedding = embedding


@pytest.fixture
def scene():
    """A viewer with a (3, 20, 30) image, a SegmentedImage on it, and its data-change calls."""
    viewer = ViewerModel()
    image = viewer.add_image(np.zeros((3, 20, 30), np.uint8), translate=(0, 5, 5))
    holder = {"predictor": _Predictor()}
    changes = []
    segmented = SegmentedImage(
        viewer,
        EmbeddingTracker(EmbeddingCache()),
        predictor=lambda: holder["predictor"],
        on_data_changed=lambda: changes.append(1),
    )
    segmented.set_layer(image)
    yield viewer, image, segmented, holder, changes
    segmented.disconnect()


def encode(segmented, predictor):
    """Encode the displayed slice with a stand-in embedding; whether it became current."""
    request, _ = segmented.encode_request()
    embedding = object()
    return segmented.accept(request, embedding, predictor), embedding


def test_the_layer_is_an_image_layer(scene):
    viewer, image, segmented, _, _ = scene
    labels = viewer.add_labels(np.zeros((3, 20, 30), np.uint8))
    with pytest.raises(AnnotatorError, match="not an image layer"):
        segmented.set_layer(labels)
    assert segmented.layer is image and segmented.require() is image
    assert segmented.set_layer(None) is image
    with pytest.raises(AnnotatorError, match="Open an image"):
        segmented.require()
    assert segmented.displayed_or_none() is None


def test_slices_and_coordinates(scene):
    viewer, image, segmented, _, _ = scene
    assert segmented.current_slice().indices == ((0, 1),)  # napari starts in the middle
    changed, sl = segmented.slice_changed()
    assert changed and sl.indices == ((0, 1),)
    assert segmented.slice_changed() == (False, sl)  # the same slice: no change
    viewer.dims.set_current_step(0, 2)
    changed, sl = segmented.slice_changed()
    assert changed and sl.indices == ((0, 2),)
    np.testing.assert_allclose(segmented.world_to_data([2, 15, 6]), [2, 10, 1])
    np.testing.assert_allclose(segmented.world_to_data([15, 6]), [2, 10, 1])  # displayed only
    viewer.dims.ndisplay = 3
    assert segmented.displayed_or_none() is None
    changed, sl = segmented.slice_changed()
    assert changed and sl is None


def test_accept_sync_ready_and_exact(scene):
    viewer, image, segmented, holder, _ = scene
    assert not segmented.is_ready and not segmented.sync()
    assert segmented.model_key == "fake|enc.onnx"
    adopted, embedding = encode(segmented, holder["predictor"])
    assert adopted and segmented.is_ready and segmented.is_exact()
    assert holder["predictor"].embedding is embedding
    viewer.dims.set_current_step(0, 0)
    assert not segmented.is_ready and not segmented.sync()  # slice 0 is not encoded
    viewer.dims.set_current_step(0, 1)
    assert segmented.sync() and segmented.is_ready  # from the cache
    image.contrast_limits = (0, 100)
    assert segmented.is_ready and not segmented.is_exact()
    holder["predictor"] = None
    assert not segmented.is_ready and not segmented.sync() and segmented.model_key is None


def test_accept_keeps_unwanted_embeddings_in_the_cache_only(scene):
    viewer, image, segmented, holder, _ = scene
    request, _ = segmented.encode_request()
    other = _Predictor()
    other.encoder_path = "other.onnx"
    assert not segmented.accept(request, object(), other)  # another model meanwhile
    assert not segmented.accept(request, object(), holder["predictor"], apply=False)
    viewer.dims.set_current_step(0, 2)
    assert not segmented.accept(request, object(), holder["predictor"])  # another slice now
    assert len(segmented.tracker.cache) == 2 and not segmented.is_ready
    viewer.layers.remove(image)
    assert not segmented.accept(request, object(), holder["predictor"])  # the layer is gone
    assert len(segmented.tracker.cache) == 2


def test_data_changes_and_removal_drop_the_embeddings(scene):
    viewer, image, segmented, holder, changes = scene
    encode(segmented, holder["predictor"])
    image.data = np.ones((3, 20, 30), np.uint8)
    assert changes == [1] and not segmented.is_ready and not len(segmented.tracker.cache)
    encode(segmented, holder["predictor"])
    assert segmented.slice_changed()[0]
    segmented.forget_layer()
    assert segmented.layer is None and not len(segmented.tracker.cache)
    image.data = np.zeros((3, 20, 30), np.uint8)
    assert changes == [1]  # no longer listening
    segmented.set_layer(image)
    assert segmented.slice_changed()[0]  # the slice seen before the removal is forgotten
