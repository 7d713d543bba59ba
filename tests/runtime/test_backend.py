"""Tests of runtime/backend.py: the choice of provider (WebGPU EP -> CPU) and BackendInfo."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from napari_sam2_webgpu.runtime import adapters, backend, discovery, providers
from napari_sam2_webgpu.runtime.adapters import AdapterInfo
from napari_sam2_webgpu.runtime.backend import (
    BACKENDS,
    ENV_BACKEND,
    PROVIDERS,
    BackendInfo,
    clear_backend_cache,
    resolve_backend,
)
from napari_sam2_webgpu.runtime.discovery import webgpu_ep_device
from napari_sam2_webgpu.runtime.errors import WebGPUUnavailableError

from .conftest import GPU, LOGGER, NATIVE, warnings_logged

ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.usefixtures("fresh_backend")


def test_auto_falls_back_to_cpu_with_reason_and_one_warning(no_webgpu, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    info = resolve_backend("auto")
    again = resolve_backend()
    assert info.provider == "cpu"
    assert info.requested == "auto"
    assert info.adapter is None
    assert "lists no device" in info.fallback_reason
    assert again is info  # cached
    warnings = warnings_logged(caplog)
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert "CPU" in msg and "lists no device" in msg and "doctor" in msg and ENV_BACKEND in msg


def test_cache_clear_repeats_discovery_and_warning(no_webgpu, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    first = resolve_backend("auto")
    clear_backend_cache()
    second = resolve_backend("auto")
    assert first == second and first is not second
    assert len(warnings_logged(caplog)) == 2


def test_explicit_webgpu_raises_with_reason(no_webgpu, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for _ in range(2):  # the cached failure raises again
        with pytest.raises(WebGPUUnavailableError, match="lists no device"):
            resolve_backend("webgpu")
    assert not warnings_logged(caplog)


def test_auto_and_webgpu_agree_with_the_ep(caplog):
    """Real environment: WebGPU exactly when the EP lists a device, else the EP's reason."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    try:
        device = webgpu_ep_device()
    except WebGPUUnavailableError as exc:
        if discovery.builtin_webgpu_available() and not discovery.plugin_package_installed():
            pytest.skip("the all-in-one onnxruntime-webgpu wheel decides without an EP device")
        reason = str(exc)
        assert reason
        info = resolve_backend("auto")
        assert info.provider == "cpu"
        assert info.fallback_reason == reason
        assert len(warnings_logged(caplog)) == 1
        with pytest.raises(WebGPUUnavailableError) as raised:
            resolve_backend("webgpu")
        assert str(raised.value) == reason
    else:
        assert device.ep_name == discovery.WEBGPU_EP_NAME
        info = resolve_backend("auto")
        if info.provider == "cpu":  # a device is listed, but Dawn could not run on it
            assert "test model" in info.fallback_reason
            return
        for request in ("auto", "webgpu"):
            info = resolve_backend(request)
            assert info.provider == "webgpu"
            assert info.fallback_reason is None
            assert info.webgpu_source == discovery.PLUGIN_PACKAGE
            assert info.describe().startswith("WebGPU (")
        assert not warnings_logged(caplog)


def test_cpu_backend(monkeypatch, caplog):
    def must_not_probe():
        raise AssertionError("cpu must not look for WebGPU")

    monkeypatch.setattr(discovery, "webgpu_ep_device", must_not_probe)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    info = resolve_backend("cpu")
    assert info == BackendInfo("cpu", "cpu", ort.__version__, info.ep_version, None, None)
    assert info.describe() == f"CPU, onnxruntime {ort.__version__}"
    assert resolve_backend(" CPU ") is info  # case and blanks do not matter
    assert not warnings_logged(caplog)


@pytest.mark.parametrize("bad", ["gpu", "cuda", "", "auto,cpu", None, 3])
def test_invalid_backend(bad):
    with pytest.raises(ValueError) as raised:
        resolve_backend(bad)
    for name in BACKENDS:
        assert name in str(raised.value)


def test_backend_names_are_auto_and_the_providers():
    assert BACKENDS == ("auto", "webgpu", "cpu")
    assert PROVIDERS == BACKENDS[1:]


def test_env_overrides_auto_only(monkeypatch, no_webgpu, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    monkeypatch.setenv(ENV_BACKEND, "CPU")
    info = resolve_backend("auto")
    assert (info.requested, info.provider, info.fallback_reason) == ("cpu", "cpu", None)
    assert not warnings_logged(caplog)
    with pytest.raises(WebGPUUnavailableError):
        resolve_backend("webgpu")  # an explicit request wins over the environment
    monkeypatch.setenv(ENV_BACKEND, "webgpu")
    with pytest.raises(WebGPUUnavailableError):
        resolve_backend("auto")
    monkeypatch.setenv(ENV_BACKEND, "vulkan")
    with pytest.raises(ValueError, match=ENV_BACKEND):
        resolve_backend()
    assert resolve_backend("cpu").provider == "cpu"


def test_auto_uses_webgpu_when_the_ep_has_a_device(fake_webgpu, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    info = resolve_backend("auto")
    assert info.provider == "webgpu"
    assert info.adapter == GPU
    assert info.describe() == f"WebGPU (Test GPU 9000, {NATIVE}), onnxruntime {ort.__version__}"
    assert not warnings_logged(caplog)


def test_builtin_wheel_is_the_second_way(monkeypatch, no_webgpu):
    monkeypatch.setattr(discovery, "plugin_package_installed", lambda: False)
    monkeypatch.setattr(discovery, "builtin_webgpu_available", lambda: True)
    monkeypatch.setattr(adapters, "vulkan_loader", lambda: (True, "libvulkan.so.1"))
    monkeypatch.setattr(adapters, "list_adapters", lambda: [GPU])
    checked = []
    monkeypatch.setattr(backend, "_check_webgpu_runs", checked.append)
    info = resolve_backend("webgpu")
    assert checked == [discovery.BUILTIN_PACKAGE]
    assert (info.provider, info.webgpu_source, info.adapter) == (
        "webgpu",
        discovery.BUILTIN_PACKAGE,
        GPU,
    )
    clear_backend_cache()
    monkeypatch.setattr(adapters, "vulkan_loader", lambda: (False, "libvulkan.so.1 not found"))
    info = resolve_backend("auto")
    assert info.provider == "cpu" and "no Vulkan loader" in info.fallback_reason
    clear_backend_cache()
    # With the plugin installed, its diagnosis is kept rather than guessing with the wheel.
    monkeypatch.setattr(discovery, "plugin_package_installed", lambda: True)
    assert "lists no device" in resolve_backend("auto").fallback_reason


def test_listed_device_that_cannot_run_is_not_trusted(monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    monkeypatch.setattr(discovery, "webgpu_ep_device", object)

    def lost(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : No suitable adapter found")

    monkeypatch.setattr(providers, "create_webgpu_session", lost)
    info = resolve_backend("auto")
    assert info.provider == "cpu"
    assert "could not run a test model" in info.fallback_reason
    assert "No suitable adapter found" in info.fallback_reason
    assert len(warnings_logged(caplog)) == 1
    with pytest.raises(WebGPUUnavailableError, match="No suitable adapter"):
        resolve_backend("webgpu")

    class WrongSession:
        def run(self, outputs, feeds):
            return [np.zeros(4, np.float32)]

    clear_backend_cache()
    monkeypatch.setattr(providers, "create_webgpu_session", lambda *a: WrongSession())
    assert "wrong results" in resolve_backend("auto").fallback_reason


def test_probe_model_is_valid():
    session = ort.InferenceSession(backend._PROBE_MODEL, providers=["CPUExecutionProvider"])
    x = np.array([1, 2, 3, 4], np.float32)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], x * x)


def test_describe():
    v = "1.32.0"
    h100 = AdapterInfo("NVIDIA H100", "NVIDIA", "Vulkan", "DiscreteGPU", True)
    assert (
        BackendInfo("auto", "webgpu", v, "0.4.0", h100, None).describe()
        == "WebGPU (NVIDIA H100, Vulkan), onnxruntime 1.32.0"
    )
    assert (
        BackendInfo("webgpu", "webgpu", v, "0.4.0", None, None).describe()
        == "WebGPU (GPU chosen by the WebGPU execution provider), onnxruntime 1.32.0"
    )
    reason = "no Vulkan loader:\n  libvulkan.so.1 not found (install libvulkan1)"
    assert (
        BackendInfo("auto", "cpu", v, None, None, reason).describe()
        == "CPU (WebGPU unavailable: no Vulkan loader: libvulkan.so.1 not found "
        "(install libvulkan1)), onnxruntime 1.32.0"
    )
    assert BackendInfo("cpu", "cpu", v, None, None, None).describe() == "CPU, onnxruntime 1.32.0"
