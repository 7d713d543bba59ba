"""Loading an encoder/decoder pair: sessions, the predictor class, the WebGPU set-up.

The sessions run on the CPU with the ``micro`` model; the WebGPU set-up is checked on a
stand-in predictor (what it calls, in which order), the WebGPU path itself in tests/webgpu.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from napari_sam2_webgpu.image.decoder import PromptDecoder
from napari_sam2_webgpu.image.loading import (
    DECODER_PLACES,
    PairSessions,
    check_decoder_place,
    load_pair,
    open_pair,
    prepare_on_webgpu,
)
from napari_sam2_webgpu.image.predictor import Sam2Predictor


def _files(micro_model_files):
    _, files = micro_model_files
    return files.encoder, files.decoder


def test_open_pair_on_the_cpu_keeps_embeddings_in_host_memory(micro_model_files):
    encoder, decoder = _files(micro_model_files)
    sessions = open_pair(encoder, decoder, "cpu", device_resident=True, graph_capture=True)
    assert sessions.backend_info.provider == "cpu"
    assert sessions.device is None and sessions.graph_capture is False
    assert "image" in {i.name for i in sessions.encoder.get_inputs()}
    assert "point_coords" in {i.name for i in sessions.decoder.get_inputs()}


def test_open_pair_checks_both_files_before_any_session(micro_model_files, tmp_path):
    encoder, _ = _files(micro_model_files)
    with pytest.raises(FileNotFoundError, match="The decoder file does not exist"):
        open_pair(encoder, tmp_path / "nope.onnx", "cpu", device_resident=True, graph_capture=True)


def test_check_decoder_place():
    for place in DECODER_PLACES:
        check_decoder_place(place)
    with pytest.raises(ValueError, match="decoder_on must be 'auto', 'gpu' or 'cpu', got 'tpu'"):
        check_decoder_place("tpu")


def test_load_pair_makes_the_class_it_is_given(micro_model_files):
    class Mine(Sam2Predictor):
        pass

    encoder, decoder = _files(micro_model_files)
    options = dict(device_resident=True, graph_capture=True, warmup=True, decoder_on="gpu")
    predictor = load_pair(Mine, encoder, decoder, "cpu", name=None, **options)
    assert type(predictor) is Mine and predictor.name == "micro"  # the stem, less ".encoder"
    assert predictor.encoder_path == encoder and predictor.decoder_path == decoder
    assert Mine.from_files(encoder, decoder, "cpu", name="mine").name == "mine"
    with pytest.raises(ValueError, match="decoder_on"):  # checked on the CPU too
        load_pair(Mine, encoder, decoder, "cpu", name=None, **{**options, "decoder_on": "x"})


class _Predictor:
    """What prepare_on_webgpu uses of a predictor, recording the calls."""

    def __init__(self) -> None:
        self.calls: list = []
        self.decoder = SimpleNamespace(
            provider="webgpu",
            enable_capture=lambda captured: self.calls.append(("capture", captured)),
        )
        self.encoder = SimpleNamespace(
            bound=None,
            bind_device=lambda device, graph_capture: self.calls.append(
                ("bind", device, graph_capture)
            ),
            encode=lambda image: self.calls.append(("probe", image.shape)),
        )

    def warm_up(self) -> None:
        self.calls.append(("warm up",))

    def use_decoder(self, decoder) -> None:
        assert isinstance(decoder, PromptDecoder)
        self.calls.append(("use", decoder.provider))


def _sessions(device) -> PairSessions:
    return PairSessions(None, None, SimpleNamespace(provider="webgpu"), device, True)


def test_prepare_on_webgpu_binds_warms_up_and_keeps_the_gpu_decoder(monkeypatch):
    from napari_sam2_webgpu.image import loading

    monkeypatch.setattr(loading, "capture_decoder", lambda plain, path, s: ("captured", path))
    predictor = _Predictor()
    prepare_on_webgpu(predictor, _sessions("gpu memory"), "unused", warmup=True, decoder_on="gpu")
    assert predictor.calls == [
        ("bind", "gpu memory", True),
        ("capture", ("captured", "unused")),  # the decoder too, before the warm-up
        ("warm up",),
    ]
    # No WebGPU session can be made here: masks are upsampled on the host.
    assert predictor.decoder.upsampler is None
    host = _Predictor()
    prepare_on_webgpu(host, _sessions(None), "unused", warmup=False, decoder_on="gpu")
    assert host.calls == []  # embeddings in host memory, no warm-up asked for


def test_prepare_on_webgpu_moves_clicks_to_a_cpu_decoder_when_asked(micro_model_files):
    _, decoder = _files(micro_model_files)
    predictor = _Predictor()
    prepare_on_webgpu(predictor, _sessions(None), decoder, warmup=False, decoder_on="cpu")
    assert predictor.calls == [("probe", (64, 64)), ("use", "cpu")]
