"""Device-resident embeddings through IO binding, exercised with the CPU EP's own memory.

The WebGPU EP uses the same code with GPU memory; on machines without WebGPU the CPU EP device
stands in, so the plumbing (binding, copies, ImageEmbedding on device) is tested everywhere.
"""

from __future__ import annotations

import numpy as np

from napari_sam2_webgpu.image.encoder import ImageEmbedding
from napari_sam2_webgpu.runtime.iobinding import (
    BoundEncoder,
    is_device_value,
    static_shape,
)

from ..conftest import blob_image


def test_upload_download_roundtrip(cpu_device_io):
    data = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    value = cpu_device_io.upload(data)
    assert is_device_value(value)
    assert not is_device_value(data)
    np.testing.assert_array_equal(cpu_device_io.download(value), data)
    clone = cpu_device_io.clone(value)
    np.testing.assert_array_equal(cpu_device_io.download(clone), data)


def test_static_shape():
    assert static_shape([1, 256, 64, 64]) == (1, 256, 64, 64)
    assert static_shape(["num_labels", 3]) is None


def test_bound_encoder_and_decoder_match_plain_runs(micro_predictor, cpu_device_io):
    predictor = micro_predictor
    image = blob_image(300, 420, seed=3)
    plain = predictor.compute_embedding(image)
    session = predictor.encoder.session
    shapes = {o.name: static_shape(o.shape) for o in session.get_outputs()}
    predictor.encoder.bound = BoundEncoder(session, cpu_device_io, shapes)
    predictor.decoder.provider = "webgpu"  # as on a GPU: clicks read device embeddings
    try:
        on_device = predictor.compute_embedding(image)
        assert on_device.on_device and not plain.on_device
        assert on_device.nbytes == plain.nbytes
        host = on_device.numpy()
        assert isinstance(host, ImageEmbedding) and not host.on_device
        np.testing.assert_allclose(host.image_embed, plain.image_embed, rtol=1e-5, atol=1e-5)
        prompt = dict(point_coords=[[150.0, 100.0], [50.0, 250.0]], point_labels=[1, 0])
        predictor.set_embedding(plain)
        ref = predictor.predict(**prompt)
        predictor.set_embedding(on_device)
        got = predictor.predict(**prompt)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_allclose(got[1], ref[1], atol=1e-5)
    finally:
        predictor.encoder.bound = None
        predictor.decoder.provider = "cpu"
        predictor.reset_image()
