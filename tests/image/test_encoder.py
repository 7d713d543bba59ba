"""``ImageEncoder`` and ``ImageEmbedding``: encoding, device-resident embeddings, graph capture.

Device memory is the CPU EP's own (``cpu_device_io``), standing in for the GPU's: the binding,
the graph-capture check and its fallback run everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu.image import encoder as encoder_module
from napari_sam2_webgpu.image.encoder import (
    ENCODER_OUTPUTS,
    ImageEmbedding,
    ImageEncoder,
    StaleReplayError,
    check_encoder,
)
from napari_sam2_webgpu.image.preprocess import ImageError, prepare_image
from napari_sam2_webgpu.runtime.iobinding import BoundEncoder

from ..conftest import blob_image


@pytest.fixture
def fresh_encoder(micro_model_files):
    """An ImageEncoder on a session of its own (binding changes it)."""
    from napari_sam2_webgpu.runtime import create_session

    _, files = micro_model_files
    session, info = create_session(files.encoder, "cpu")
    return ImageEncoder(session, info, path=files.encoder)


def test_encode_gives_host_embeddings_of_the_image_size(micro_predictor):
    encoder = micro_predictor.encoder
    image = blob_image(90, 120, seed=2)
    emb = encoder.encode(image)
    assert isinstance(emb, ImageEmbedding) and not emb.on_device
    assert emb.image_hw == (90, 120)
    assert emb.image_embed.shape == (1, 256, 64, 64)
    assert emb.high_res_feats_0.shape == (1, 32, 256, 256)
    assert emb.high_res_feats_1.shape == (1, 64, 128, 128)
    assert emb.nbytes == sum(t.nbytes for t in emb.tensors)
    assert emb.numpy() is emb
    assert encoder.last_seconds is not None and encoder.last_seconds > 0
    assert encoder.device is None and not encoder.graph_capture
    # encode_tensor is the same model run on an already prepared tensor.
    again = encoder.encode_tensor(prepare_image(image), (90, 120))
    np.testing.assert_array_equal(again.image_embed, emb.image_embed)


def test_encode_rejects_what_is_not_an_image(micro_predictor):
    with pytest.raises(ImageError, match=r"got str \(read the file first\)"):
        micro_predictor.encoder.encode("cells.tif")
    with pytest.raises(ImageError, match="stack"):
        micro_predictor.encoder.encode(np.zeros((4, 32, 32), np.uint8))


def test_check_encoder_names_a_swapped_file(micro_predictor):
    check_encoder(micro_predictor.encoder.session)
    with pytest.raises(ValueError, match="is a SAM2 decoder"):
        check_encoder(micro_predictor.decoder.session, "x.onnx")
    with pytest.raises(ValueError, match="is a SAM2 decoder"):
        ImageEncoder(micro_predictor.decoder.session, micro_predictor.backend_info)


def test_warm_up_encodes_a_blank_image_and_forgets_the_time(fresh_encoder):
    emb = fresh_encoder.warm_up()
    assert emb.image_hw == (1024, 1024)
    assert fresh_encoder.last_seconds is None


def test_bind_device_keeps_embeddings_on_the_device(fresh_encoder, cpu_device_io):
    image = blob_image(120, 160, seed=4)
    plain = fresh_encoder.encode(image)
    assert fresh_encoder.bind_device(cpu_device_io, graph_capture=False)
    assert fresh_encoder.device is cpu_device_io and not fresh_encoder.graph_capture
    on_device = fresh_encoder.encode(image)
    assert on_device.on_device and on_device.nbytes == plain.nbytes
    host = on_device.numpy()
    for name in ("image_embed", "high_res_feats_0", "high_res_feats_1"):
        np.testing.assert_allclose(getattr(host, name), getattr(plain, name), atol=1e-5)


def test_graph_capture_is_kept_when_replays_are_fresh(micro_model_files, cpu_device_io):
    """The load-time check passes for this plugin's export (outputs differ per image)."""
    from napari_sam2_webgpu.image.predictor import Sam2Predictor

    _, files = micro_model_files
    predictor = Sam2Predictor.from_files(files.encoder, files.decoder, backend="cpu")
    plain = predictor.compute_embedding(blob_image(120, 160, seed=4))
    assert predictor.encoder.bind_device(cpu_device_io, graph_capture=True)
    assert predictor.encoder.bound is not None and predictor.encoder.graph_capture
    got = predictor.compute_embedding(blob_image(120, 160, seed=4)).numpy()
    np.testing.assert_allclose(got.image_embed, plain.image_embed, rtol=1e-5, atol=1e-5)


def test_stale_graph_replays_fall_back_to_normal_runs(
    micro_model_files, cpu_device_io, monkeypatch, caplog
):
    """An encoder whose replays return the first image's outputs loses graph capture."""
    from napari_sam2_webgpu.image.predictor import Sam2Predictor

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
    session = predictor.encoder.session
    with caplog.at_level("INFO", logger="napari_sam2_webgpu"):
        assert predictor.encoder.bind_device(cpu_device_io, graph_capture=True)
    assert "stale" in caplog.text
    assert predictor.encoder.bound is not None and not predictor.encoder.graph_capture
    assert predictor.encoder.session is not session  # recreated without capture
    a = predictor.compute_embedding(blob_image(120, 160, seed=1)).numpy()
    b = predictor.compute_embedding(blob_image(120, 160, seed=2)).numpy()
    assert not np.array_equal(a.image_embed, b.image_embed)


def test_check_replay_not_stale_raises_on_repeated_outputs(fresh_encoder, cpu_device_io):
    from napari_sam2_webgpu.runtime.iobinding import static_shape

    session = fresh_encoder.session
    shapes = {o.name: static_shape(o.shape) for o in session.get_outputs()}
    bound = BoundEncoder(session, cpu_device_io, shapes)
    first = bound.run(np.zeros((1, 3, 1024, 1024), np.float32))
    encoder_module.check_replay_not_stale(bound, first)  # a real run: fresh outputs

    class Frozen:
        device = cpu_device_io

        def run(self, tensor):
            return {name: cpu_device_io.clone(first[name]) for name in ENCODER_OUTPUTS}

    with pytest.raises(StaleReplayError, match="stale"):
        encoder_module.check_replay_not_stale(Frozen(), first)
