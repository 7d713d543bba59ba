"""Tests of runtime/sessions.py and runtime/providers.py: sessions, fallback, model errors."""

from __future__ import annotations

import logging

import pytest

from napari_sam2_webgpu.runtime import providers
from napari_sam2_webgpu.runtime.backend import BackendInfo
from napari_sam2_webgpu.runtime.discovery import BUILTIN_PACKAGE, PLUGIN_PACKAGE, WEBGPU_EP_NAME
from napari_sam2_webgpu.runtime.errors import WebGPUUnavailableError
from napari_sam2_webgpu.runtime.sessions import create_session

from .conftest import GPU, LOGGER, check_numbers, warnings_logged

ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.usefixtures("fresh_backend")


def test_create_session_cpu_numbers(tiny_model):
    path, w = tiny_model
    session, info = create_session(path, "cpu", graph_optimization="disable", intra_op_threads=1)
    assert info.provider == "cpu"
    assert session.get_providers() == ["CPUExecutionProvider"]
    check_numbers(session, w)
    session, _ = create_session(str(path), info)  # a resolved BackendInfo works too
    check_numbers(session, w)


def test_create_session_auto_real_environment(tiny_model):
    """CPU here, WebGPU on a GPU machine: numbers right either way, info matches the session."""
    path, w = tiny_model
    session, info = create_session(path)
    check_numbers(session, w)
    if info.provider == "webgpu":
        assert WEBGPU_EP_NAME in session.get_providers()
    else:
        assert session.get_providers() == ["CPUExecutionProvider"]
        assert info.fallback_reason


def test_create_session_auto_without_webgpu(tiny_model, no_webgpu):
    path, w = tiny_model
    session, info = create_session(path, "auto")
    assert info.provider == "cpu" and "lists no device" in info.fallback_reason
    check_numbers(session, w)


def test_failed_webgpu_session_falls_back_in_auto(tiny_model, fake_webgpu, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)

    def lost(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : device lost")

    monkeypatch.setattr(providers, "create_webgpu_session", lost)
    path, w = tiny_model
    session, info = create_session(path, "auto")
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert (info.provider, info.requested, info.adapter) == ("cpu", "auto", None)
    assert "tiny.onnx" in info.fallback_reason and "device lost" in info.fallback_reason
    assert "[ONNXRuntimeError]" not in info.fallback_reason
    assert info.describe().startswith("CPU (WebGPU unavailable: the WebGPU session for tiny.onnx")
    check_numbers(session, w)
    assert any("device lost" in r.getMessage() for r in warnings_logged(caplog))

    with pytest.raises(WebGPUUnavailableError, match="device lost"):
        create_session(path, "webgpu")


@pytest.mark.filterwarnings("ignore:Specified provider 'WebGpuExecutionProvider':UserWarning")
def test_webgpu_session_that_drops_the_provider_is_a_failure(tiny_model, monkeypatch):
    """If ORT quietly leaves WebGPU out of a session, auto says so and uses the CPU."""
    path, w = tiny_model
    info = BackendInfo("auto", "webgpu", ort.__version__, None, GPU, None, BUILTIN_PACKAGE)
    if WEBGPU_EP_NAME in ort.get_available_providers():
        pytest.skip("this onnxruntime takes WebGPU by name (built in, or the plugin has a device)")
    session, info = create_session(path, info)
    assert info.provider == "cpu"
    assert "WebGpuExecutionProvider" in info.fallback_reason
    check_numbers(session, w)


def test_missing_file(tmp_path):
    missing = tmp_path / "nope" / "model.onnx"
    with pytest.raises(FileNotFoundError, match="model.onnx"):
        create_session(missing, "cpu")
    with pytest.raises(FileNotFoundError):
        create_session(tmp_path, "cpu")  # a directory is not a model file


@pytest.mark.parametrize("content", [b"this is not an onnx model\x00\xff" * 20, b"", b"\x08\x07"])
def test_garbage_file(tmp_path, content):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="garbage.onnx is not a valid ONNX model"):
        create_session(path, "cpu")


def test_garbage_file_on_webgpu_is_not_a_fallback(tmp_path, caplog):
    """A broken model is the model's fault: ValueError, not a WebGPU fallback warning."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x01\x02garbage" * 10)
    info = BackendInfo("auto", "webgpu", ort.__version__, None, GPU, None, PLUGIN_PACKAGE)
    with pytest.raises(ValueError, match="not a valid ONNX model"):
        create_session(path, info)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"graph_optimization": "max"}, "graph_optimization"),
        ({"intra_op_threads": -1}, "intra_op_threads"),
        ({"intra_op_threads": 1.5}, "intra_op_threads"),
    ],
)
def test_create_session_bad_arguments(tiny_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_session(tiny_model[0], "cpu", **kwargs)


@pytest.mark.parametrize("arena", [True, False])
def test_cpu_memory_arena_is_a_choice(tiny_model, arena):
    path, w = tiny_model
    session, _ = create_session(path, "cpu", cpu_memory_arena=arena)
    assert session.get_session_options().enable_cpu_mem_arena is arena
    check_numbers(session, w)
