"""Device-resident embeddings through IO binding, exercised with the CPU EP's own memory.

The WebGPU EP uses the same code with GPU memory; on machines without WebGPU the CPU EP device
stands in, so the plumbing (binding, copies, ImageEmbedding on device) is tested everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu.predictor import ImageEmbedding
from napari_sam2_webgpu.runtime.iobinding import (
    BoundEncoder,
    DeviceIO,
    is_device_value,
    static_shape,
)

from ..conftest import blob_image


@pytest.fixture(scope="module")
def cpu_device_io():
    ort = pytest.importorskip("onnxruntime")
    cpu = next(d for d in ort.get_ep_devices() if d.ep_name == "CPUExecutionProvider")
    device = DeviceIO.for_ep_device(cpu)
    if device is None:
        pytest.skip("this onnxruntime cannot bind tensors to an EP device's memory")
    return device


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
    shapes = {o.name: static_shape(o.shape) for o in predictor._encoder.get_outputs()}
    bound = BoundEncoder(predictor._encoder, cpu_device_io, shapes)
    predictor._bound_encoder = bound
    predictor.decoder_provider = "webgpu"  # as on a GPU: clicks read device embeddings
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
        predictor._bound_encoder = None
        predictor.decoder_provider = "cpu"
        predictor.reset_image()


@pytest.mark.parametrize("cpu_wins", [True, False])
def test_decoder_moves_to_the_cpu_only_when_faster(micro_model_files, cpu_device_io, cpu_wins):
    """The load-time choice of where clicks decode, with the CPU EP's memory as the 'GPU'."""
    from napari_sam2_webgpu.predictor import Sam2Predictor

    _, files = micro_model_files
    predictor = Sam2Predictor.from_files(files.encoder, files.decoder, backend="cpu")
    shapes = {o.name: static_shape(o.shape) for o in predictor._encoder.get_outputs()}
    predictor._bound_encoder = BoundEncoder(predictor._encoder, cpu_device_io, shapes)
    predictor.decoder_provider = "webgpu"  # as on a GPU: clicks read device embeddings
    image = blob_image(200, 260, seed=9)
    prompt = dict(point_coords=[[120.0, 90.0]], point_labels=[1])
    predictor.set_image(image)
    ref = predictor.predict(**prompt)
    assert predictor.embedding.on_device

    timings = iter([10.0, 5.0] if cpu_wins else [10.0, 9.0])  # device first, then CPU
    predictor._time_decoder = lambda run, repeats: (run(), next(timings))[1]
    other = Sam2Predictor.from_files(files.encoder, files.decoder, backend="cpu")._decoder
    if predictor._cpu_decoder_is_faster(other):
        predictor._use_host_decoder(other)
    assert predictor.decoder_provider == ("cpu" if cpu_wins else "webgpu")
    assert predictor.embedding.on_device is not cpu_wins
    got = predictor.predict(**prompt)
    np.testing.assert_array_equal(got[0], ref[0])
    predictor.set_image(image)
    assert predictor.embedding.on_device is not cpu_wins  # new embeddings follow the decoder
    np.testing.assert_array_equal(predictor.predict(**prompt)[0], ref[0])


def test_graph_capture_is_kept_when_replays_are_fresh(micro_model_files, cpu_device_io):
    """The load-time check passes for this plugin's export (outputs differ per image)."""
    from napari_sam2_webgpu.predictor import Sam2Predictor

    _, files = micro_model_files
    predictor = Sam2Predictor.from_files(files.encoder, files.decoder, backend="cpu")
    plain = predictor.compute_embedding(blob_image(120, 160, seed=4))
    predictor._bind_encoder(cpu_device_io, graph_capture=True, path=files.encoder)
    assert predictor._bound_encoder is not None and predictor._bound_encoder.graph_capture
    got = predictor.compute_embedding(blob_image(120, 160, seed=4)).numpy()
    np.testing.assert_allclose(got.image_embed, plain.image_embed, rtol=1e-5, atol=1e-5)


def test_stale_graph_replays_fall_back_to_normal_runs(
    micro_model_files, cpu_device_io, monkeypatch, caplog
):
    """An encoder whose replays return the first image's outputs loses graph capture."""
    from napari_sam2_webgpu.predictor import Sam2Predictor

    _, files = micro_model_files
    predictor = Sam2Predictor.from_files(files.encoder, files.decoder, backend="cpu")
    real_run = BoundEncoder.run

    def stale_run(self, tensor):
        if not self.graph_capture:
            return real_run(self, tensor)
        if not hasattr(self, "_frozen"):
            self._frozen = real_run(self, tensor)
        return {k: self.device.clone(v) for k, v in self._frozen.items()}

    monkeypatch.setattr(BoundEncoder, "run", stale_run)
    with caplog.at_level("INFO", logger="napari_sam2_webgpu"):
        predictor._bind_encoder(cpu_device_io, graph_capture=True, path=files.encoder)
    assert "stale" in caplog.text
    assert predictor._bound_encoder is not None and not predictor._bound_encoder.graph_capture
    a = predictor.compute_embedding(blob_image(120, 160, seed=1)).numpy()
    b = predictor.compute_embedding(blob_image(120, 160, seed=2)).numpy()
    assert not np.array_equal(a.image_embed, b.image_embed)
