"""An image layer's embeddings in a store on disk (_napari/stores.py, Annotator.use_store)."""

from __future__ import annotations

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_sam2_webgpu._napari.annotator import Annotator
from napari_sam2_webgpu._napari.errors import AnnotatorError
from napari_sam2_webgpu._napari.stores import STORE_SUFFIX, default_store_path, frame_of
from napari_sam2_webgpu.store import StoreMismatchError

from ..conftest import blob_image

pytest.importorskip("zarr")


def stack(frames: int = 3) -> np.ndarray:
    return np.stack([blob_image(64, 80, seed=z)[..., 0] for z in range(frames)])


def annotator_on(viewer, image, predictor):
    annotator = Annotator(viewer)
    annotator.set_image_layer(image)
    annotator.set_predictor(predictor)
    return annotator


def encode(annotator):
    request = annotator.encode_request()
    embedding = request.compute(annotator.predictor)
    annotator.finish_encode(request, embedding, annotator.predictor)
    return request, embedding


def test_reopened_image_reads_the_store_instead_of_encoding(micro_predictor, tmp_path, monkeypatch):
    path = tmp_path / "stack.sam2.zarr"
    viewer = ViewerModel()
    image = viewer.add_image(stack(), name="stack")
    first = annotator_on(viewer, image, micro_predictor)
    with pytest.raises(AnnotatorError, match="Load a model"):
        _no_model(viewer, image, path)
    store = first.use_store(path)
    assert first.store is store and store.identity.frames == (3,)
    viewer.dims.set_point(0, 2)
    request, computed = encode(first)
    assert request.frame == 2 and store.done_frames() == [2]
    first.close()

    # "Reopen": another viewer and annotator on the same data, the same store.
    viewer = ViewerModel()
    image = viewer.add_image(stack(), name="stack")
    second = annotator_on(viewer, image, micro_predictor)
    second.use_store(path)
    viewer.dims.set_point(0, 2)
    calls = []
    monkeypatch.setattr(
        micro_predictor, "compute_embedding", lambda *a, **k: calls.append(1) / 0
    )  # any encode would fail the test
    _, read = encode(second)
    assert calls == []
    for got, expected in zip(read.numpy().tensors, computed.numpy().tensors, strict=True):
        np.testing.assert_array_equal(got, expected)
    assert second.is_ready
    second.close()


def _no_model(viewer, image, path):
    annotator = Annotator(viewer)
    annotator.set_image_layer(image)
    annotator.use_store(path)


def test_other_contrast_or_view_encodes_without_the_store(micro_predictor, tmp_path):
    viewer = ViewerModel()
    image = viewer.add_image(stack(10), name="stack", contrast_limits=(0, 255))
    annotator = annotator_on(viewer, image, micro_predictor)
    store = annotator.use_store(tmp_path / "s.zarr")
    image.contrast_limits = (10, 200)
    request, _ = encode(annotator)
    assert request.store is None and store.done_frames() == []
    image.contrast_limits = (0, 255)
    viewer.dims.order = (1, 0, 2)  # rows of the stack displayed: not the store's frames
    request = annotator.encode_request()
    assert request.store is store and request.frame is None
    # Reopening with other contrast limits: the store says what differs.
    image.contrast_limits = (10, 200)
    with pytest.raises(StoreMismatchError, match="contrast limits"):
        annotator.use_store(tmp_path / "s.zarr")
    annotator.close_store()
    assert annotator.store is None
    annotator.close()


def test_frame_of_and_default_path(micro_predictor, tmp_path):
    viewer = ViewerModel()
    data = np.zeros((2, 3, 40, 50), np.uint8)
    image = viewer.add_image(data, name="t z/stack")
    annotator = annotator_on(viewer, image, micro_predictor)
    store = annotator.use_store(tmp_path / "s.zarr")
    assert store.identity.frames == (2, 3) and store.identity.image_hw == (40, 50)
    viewer.dims.set_point(0, 1)
    viewer.dims.set_point(1, 2)
    assert frame_of(store, annotator.current_slice()) == 5
    annotator.close()
    path = default_store_path(image, cache=tmp_path / "cache")
    assert path.parent == tmp_path / "cache" / "embeddings" and path.name.endswith(STORE_SUFFIX)
    assert path.name.startswith("t_z_stack-")
    source = tmp_path / "cells.tif"
    source.write_bytes(b"")
    image._source = type(image.source)(path=str(source))
    assert default_store_path(image) == tmp_path / ("cells.tif" + STORE_SUFFIX)
