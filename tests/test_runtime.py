"""Tests of runtime.py: provider choice (WebGPU EP -> CPU), sessions, adapters, doctor.

They pass on a machine without a usable GPU (CI: the WebGPU EP lists no device) and on one where
WebGPU works: fallback situations are forced with monkeypatch, and the tests against the real
environment check that the outcome agrees with what the EP itself reports.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

try:
    import napari_sam2_webgpu  # noqa: F401
except ImportError:  # running from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_sam2_webgpu import runtime  # noqa: E402
from napari_sam2_webgpu.runtime import (  # noqa: E402
    BACKENDS,
    ENV_BACKEND,
    AdapterInfo,
    BackendInfo,
    WebGPUUnavailableError,
    clear_backend_cache,
    create_session,
    doctor_report,
    list_adapters,
    resolve_backend,
    webgpu_ep_device,
)

ort = pytest.importorskip("onnxruntime")

LOGGER = "napari_sam2_webgpu"
NATIVE = runtime._NATIVE_BACKEND.get(sys.platform, "Vulkan")


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.delenv(ENV_BACKEND, raising=False)
    clear_backend_cache()
    yield
    clear_backend_cache()


@pytest.fixture
def no_webgpu(monkeypatch):
    """Force "the WebGPU EP has no device", whatever the machine has."""

    def fail():
        raise WebGPUUnavailableError("test: the WebGPU execution provider lists no device")

    monkeypatch.setattr(runtime, "webgpu_ep_device", fail)
    monkeypatch.setattr(runtime, "_builtin_webgpu_available", lambda: False)


GPU = AdapterInfo("Test GPU 9000", "NVIDIA", NATIVE, "DiscreteGPU", True, 0x10DE, 0x2330)


@pytest.fixture
def fake_webgpu(monkeypatch):
    """Force "the WebGPU EP has a device" (sessions on it must be faked too)."""
    monkeypatch.setattr(runtime, "_probe_webgpu", lambda: (runtime.PLUGIN_PACKAGE, object()))
    monkeypatch.setattr(runtime, "_adapter_for_ep_device", lambda dev: GPU)


def _warnings(caplog):
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


@pytest.fixture
def tiny_model(tmp_path):
    """Y = X @ W + B with a constant W: small, but MatMul + Add like the real decoders."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "tiny",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime this project supports
    onnx.checker.check_model(model)
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    return path, w


def _check_numbers(session, w):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    b = rng.standard_normal((2, 4)).astype(np.float32)
    (y,) = session.run(None, {"x": x, "b": b})
    np.testing.assert_allclose(y, x @ w + b, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# resolve_backend


def test_auto_falls_back_to_cpu_with_reason_and_one_warning(no_webgpu, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    info = resolve_backend("auto")
    again = resolve_backend()
    assert info.provider == "cpu"
    assert info.requested == "auto"
    assert info.adapter is None
    assert "lists no device" in info.fallback_reason
    assert again is info  # cached
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert "CPU" in msg and "lists no device" in msg and "doctor" in msg and ENV_BACKEND in msg


def test_cache_clear_repeats_discovery_and_warning(no_webgpu, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    first = resolve_backend("auto")
    clear_backend_cache()
    second = resolve_backend("auto")
    assert first == second and first is not second
    assert len(_warnings(caplog)) == 2


def test_explicit_webgpu_raises_with_reason(no_webgpu, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for _ in range(2):  # the cached failure raises again
        with pytest.raises(WebGPUUnavailableError, match="lists no device"):
            resolve_backend("webgpu")
    assert not _warnings(caplog)


def test_auto_and_webgpu_agree_with_the_ep(caplog):
    """Real environment: WebGPU exactly when the EP lists a device, else the EP's reason."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    try:
        device = webgpu_ep_device()
    except WebGPUUnavailableError as exc:
        if runtime._builtin_webgpu_available() and not runtime._plugin_package_installed():
            pytest.skip("the all-in-one onnxruntime-webgpu wheel decides without an EP device")
        reason = str(exc)
        assert reason
        info = resolve_backend("auto")
        assert info.provider == "cpu"
        assert info.fallback_reason == reason
        assert len(_warnings(caplog)) == 1
        with pytest.raises(WebGPUUnavailableError) as raised:
            resolve_backend("webgpu")
        assert str(raised.value) == reason
    else:
        assert device.ep_name == runtime.WEBGPU_EP_NAME
        info = resolve_backend("auto")
        if info.provider == "cpu":  # a device is listed, but Dawn could not run on it
            assert "test model" in info.fallback_reason
            return
        for request in ("auto", "webgpu"):
            info = resolve_backend(request)
            assert info.provider == "webgpu"
            assert info.fallback_reason is None
            assert info.webgpu_source == runtime.PLUGIN_PACKAGE
            assert info.describe().startswith("WebGPU (")
        assert not _warnings(caplog)


def test_this_machine_without_vulkan_loader_says_so():
    ok, _ = runtime._vulkan_loader()
    if ok:
        pytest.skip("a Vulkan loader is present here")
    with pytest.raises(WebGPUUnavailableError, match="no Vulkan loader.*libvulkan1"):
        webgpu_ep_device()


def test_cpu_backend(monkeypatch, caplog):
    def must_not_probe():
        raise AssertionError("cpu must not look for WebGPU")

    monkeypatch.setattr(runtime, "webgpu_ep_device", must_not_probe)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    info = resolve_backend("cpu")
    assert info == BackendInfo("cpu", "cpu", ort.__version__, info.ep_version, None, None)
    assert info.describe() == f"CPU, onnxruntime {ort.__version__}"
    assert resolve_backend(" CPU ") is info  # case and blanks do not matter
    assert not _warnings(caplog)


@pytest.mark.parametrize("bad", ["gpu", "cuda", "", "auto,cpu", None, 3])
def test_invalid_backend(bad):
    with pytest.raises(ValueError) as raised:
        resolve_backend(bad)
    for name in BACKENDS:
        assert name in str(raised.value)


def test_env_overrides_auto_only(monkeypatch, no_webgpu, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    monkeypatch.setenv(ENV_BACKEND, "CPU")
    info = resolve_backend("auto")
    assert (info.requested, info.provider, info.fallback_reason) == ("cpu", "cpu", None)
    assert not _warnings(caplog)
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
    assert not _warnings(caplog)


def test_builtin_wheel_is_the_second_way(monkeypatch, no_webgpu):
    monkeypatch.setattr(runtime, "_plugin_package_installed", lambda: False)
    monkeypatch.setattr(runtime, "_builtin_webgpu_available", lambda: True)
    monkeypatch.setattr(runtime, "_vulkan_loader", lambda: (True, "libvulkan.so.1"))
    monkeypatch.setattr(runtime, "list_adapters", lambda: [GPU])
    checked = []
    monkeypatch.setattr(runtime, "_check_webgpu_runs", checked.append)
    info = resolve_backend("webgpu")
    assert checked == [runtime.BUILTIN_PACKAGE]
    assert (info.provider, info.webgpu_source, info.adapter) == (
        "webgpu",
        runtime.BUILTIN_PACKAGE,
        GPU,
    )
    clear_backend_cache()
    monkeypatch.setattr(runtime, "_vulkan_loader", lambda: (False, "libvulkan.so.1 not found"))
    info = resolve_backend("auto")
    assert info.provider == "cpu" and "no Vulkan loader" in info.fallback_reason
    clear_backend_cache()
    # With the plugin installed, its diagnosis is kept rather than guessing with the wheel.
    monkeypatch.setattr(runtime, "_plugin_package_installed", lambda: True)
    assert "lists no device" in resolve_backend("auto").fallback_reason


def test_listed_device_that_cannot_run_is_not_trusted(monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    monkeypatch.setattr(runtime, "webgpu_ep_device", object)

    def lost(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : No suitable adapter found")

    monkeypatch.setattr(runtime, "_create_webgpu_session", lost)
    info = resolve_backend("auto")
    assert info.provider == "cpu"
    assert "could not run a test model" in info.fallback_reason
    assert "No suitable adapter found" in info.fallback_reason
    assert len(_warnings(caplog)) == 1
    with pytest.raises(WebGPUUnavailableError, match="No suitable adapter"):
        resolve_backend("webgpu")

    class WrongSession:
        def run(self, outputs, feeds):
            return [np.zeros(4, np.float32)]

    clear_backend_cache()
    monkeypatch.setattr(runtime, "_create_webgpu_session", lambda *a: WrongSession())
    assert "wrong results" in resolve_backend("auto").fallback_reason


def test_probe_model_is_valid():
    session = ort.InferenceSession(runtime._PROBE_MODEL, providers=["CPUExecutionProvider"])
    x = np.array([1, 2, 3, 4], np.float32)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], x * x)


# --------------------------------------------------------------------------------------------
# webgpu_ep_device reasons


def test_listed_device_needs_vulkan_loader(monkeypatch):
    """ORT lists GPUs from the PCI bus even where Dawn cannot open them (seen on the H100)."""
    pytest.importorskip("onnxruntime_ep_webgpu")
    device = types.SimpleNamespace(ep_name=runtime.WEBGPU_EP_NAME)
    monkeypatch.setattr(ort, "get_ep_devices", lambda: [device])
    monkeypatch.setattr(runtime, "_vulkan_loader", lambda: (False, "libvulkan.so.1 not found"))
    with pytest.raises(WebGPUUnavailableError, match="no Vulkan loader"):
        webgpu_ep_device()
    monkeypatch.setattr(runtime, "_vulkan_loader", lambda: (True, "libvulkan.so.1"))
    assert webgpu_ep_device() is device


def test_ep_package_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime_ep_webgpu", None)  # import now fails
    with pytest.raises(WebGPUUnavailableError, match="onnxruntime-ep-webgpu is not installed"):
        webgpu_ep_device()


def test_ep_registration_failure_includes_ort_error(monkeypatch):
    pytest.importorskip("onnxruntime_ep_webgpu")
    monkeypatch.setattr(ort, "get_ep_devices", lambda: [])
    monkeypatch.setattr(runtime, "_register_plugin_ep", lambda: (False, "Fail: dlopen boom"))
    with pytest.raises(WebGPUUnavailableError, match="failed to load/register: Fail: dlopen boom"):
        webgpu_ep_device()


def test_registration_is_guarded(monkeypatch):
    pytest.importorskip("onnxruntime_ep_webgpu")
    assert runtime._register_plugin_ep() == (True, None)
    assert runtime._register_plugin_ep() == (True, None)
    # Registered already (by us or anyone): ORT raises "already registered", which is fine.
    monkeypatch.setattr(runtime, "_registration", None)
    assert runtime._register_plugin_ep() == (True, None)


def _no_device_reason(monkeypatch, loader, adapters, error=None):
    pytest.importorskip("onnxruntime_ep_webgpu")
    monkeypatch.setattr(ort, "get_ep_devices", lambda: [])
    monkeypatch.setattr(runtime, "_register_plugin_ep", lambda: (True, None))
    monkeypatch.setattr(runtime, "_vulkan_loader", lambda: loader)
    monkeypatch.setattr(runtime, "_enumerate_adapters", lambda: (adapters, error))
    with pytest.raises(WebGPUUnavailableError) as raised:
        webgpu_ep_device()
    return str(raised.value)


def test_no_device_reasons(monkeypatch):
    lavapipe = AdapterInfo("llvmpipe (LLVM 15.0.6, 256 bits)", "Mesa", "Vulkan", "CPU", False)
    gl_gpu = AdapterInfo("Some GPU", "AMD", "OpenGL", "DiscreteGPU", False)
    missing = (False, "libvulkan.so.1 not found")
    present = (True, "libvulkan.so.1")

    reason = _no_device_reason(monkeypatch, missing, [GPU])
    assert (
        reason.startswith("no Vulkan loader: libvulkan.so.1 not found") and "libvulkan1" in reason
    )
    reason = _no_device_reason(monkeypatch, present, [GPU])
    assert "lists no device although wgpu sees Test GPU 9000" in reason and "driver" in reason
    reason = _no_device_reason(monkeypatch, present, [gl_gpu])
    assert "Some GPU only through OpenGL" in reason and NATIVE in reason
    reason = _no_device_reason(monkeypatch, present, [lavapipe])
    assert "software renderer" in reason and "llvmpipe" in reason
    reason = _no_device_reason(monkeypatch, present, [], "RuntimeError: no backend")
    assert "no GPU adapter was found" in reason and "no backend" in reason


# --------------------------------------------------------------------------------------------
# create_session


def test_create_session_cpu_numbers(tiny_model):
    path, w = tiny_model
    session, info = create_session(path, "cpu", graph_optimization="disable", intra_op_threads=1)
    assert info.provider == "cpu"
    assert session.get_providers() == ["CPUExecutionProvider"]
    _check_numbers(session, w)
    session, _ = create_session(str(path), info)  # a resolved BackendInfo works too
    _check_numbers(session, w)


def test_create_session_auto_real_environment(tiny_model):
    """CPU here, WebGPU on a GPU machine: numbers right either way, info matches the session."""
    path, w = tiny_model
    session, info = create_session(path)
    _check_numbers(session, w)
    if info.provider == "webgpu":
        assert runtime.WEBGPU_EP_NAME in session.get_providers()
    else:
        assert session.get_providers() == ["CPUExecutionProvider"]
        assert info.fallback_reason


def test_create_session_auto_without_webgpu(tiny_model, no_webgpu):
    path, w = tiny_model
    session, info = create_session(path, "auto")
    assert info.provider == "cpu" and "lists no device" in info.fallback_reason
    _check_numbers(session, w)


def test_failed_webgpu_session_falls_back_in_auto(tiny_model, fake_webgpu, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)

    def lost(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : device lost")

    monkeypatch.setattr(runtime, "_create_webgpu_session", lost)
    path, w = tiny_model
    session, info = create_session(path, "auto")
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert (info.provider, info.requested, info.adapter) == ("cpu", "auto", None)
    assert "tiny.onnx" in info.fallback_reason and "device lost" in info.fallback_reason
    assert "[ONNXRuntimeError]" not in info.fallback_reason
    assert info.describe().startswith("CPU (WebGPU unavailable: the WebGPU session for tiny.onnx")
    _check_numbers(session, w)
    assert any("device lost" in r.getMessage() for r in _warnings(caplog))

    with pytest.raises(WebGPUUnavailableError, match="device lost"):
        create_session(path, "webgpu")


@pytest.mark.filterwarnings("ignore:Specified provider 'WebGpuExecutionProvider':UserWarning")
def test_webgpu_session_that_drops_the_provider_is_a_failure(tiny_model, monkeypatch):
    """If ORT quietly leaves WebGPU out of a session, auto says so and uses the CPU."""
    path, w = tiny_model
    info = BackendInfo("auto", "webgpu", ort.__version__, None, GPU, None, runtime.BUILTIN_PACKAGE)
    if runtime.WEBGPU_EP_NAME in ort.get_available_providers():
        pytest.skip("this onnxruntime takes WebGPU by name (built in, or the plugin has a device)")
    session, info = create_session(path, info)
    assert info.provider == "cpu"
    assert "WebGpuExecutionProvider" in info.fallback_reason
    _check_numbers(session, w)


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
    info = BackendInfo("auto", "webgpu", ort.__version__, None, GPU, None, runtime.PLUGIN_PACKAGE)
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


# --------------------------------------------------------------------------------------------
# BackendInfo.describe


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


def test_one_line_strips_ort_noise():
    seen_on_h100 = (
        "[ONNXRuntimeError] : 1 : FAIL : /onnxruntime_src/onnxruntime/core/session/plugin_ep/"
        "ep_plugin_provider_interfaces.cc:70 virtual std::unique_ptr<onnxruntime::"
        "IExecutionProvider> onnxruntime::PluginExecutionProviderFactory::CreateProvider(const "
        "OrtSessionOptions&, const OrtLogger&) Error creating execution provider: "
        "[ONNXRuntimeError] : 11 : EP_FAIL : /onnxruntime_src/onnxruntime/core/providers/webgpu/"
        "webgpu_context.cc:136 onnxruntime::webgpu::WebGpuContext::Initialize(const onnxruntime::"
        "webgpu::WebGpuContextConfig&)::<lambda()> adapter_result.status == "
        "wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No "
        "supported adapters\n\n"
    )
    assert runtime._one_line(seen_on_h100) == (
        "adapter_result.status == wgpu::RequestAdapterStatus::Success was false. "
        "Failed to get a WebGPU adapter: No supported adapters"
    )
    assert runtime._one_line("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load  model\nfailed") == (
        "INVALID_PROTOBUF : Load model failed"
    )
    assert runtime._one_line("x" * 500).endswith("...")


# --------------------------------------------------------------------------------------------
# adapters


class _FakeAdapter:
    def __init__(self, info, features=()):
        self.info = info
        self.features = set(features)


def test_adapter_from_wgpu_info():
    info = {
        "vendor": "",
        "device": "NVIDIA H100 80GB HBM3",
        "description": "NVIDIA 550.54",
        "vendor_id": 0x10DE,
        "device_id": 0x2330,
        "adapter_type": "DiscreteGPU",
        "backend_type": "Vulkan",
    }
    a = runtime._adapter_from_wgpu(_FakeAdapter(info, {"shader-f16", "timestamp-query"}))
    assert a == AdapterInfo(
        "NVIDIA H100 80GB HBM3", "NVIDIA", "Vulkan", "DiscreteGPU", True, 0x10DE, 0x2330
    )
    assert not a.is_software
    assert a.summary() == "NVIDIA H100 80GB HBM3 (Vulkan, DiscreteGPU, shader-f16: yes)"
    soft = runtime._adapter_from_wgpu(
        _FakeAdapter({"device": "llvmpipe", "adapter_type": "CPU", "backend_type": "OpenGL"})
    )
    assert soft.is_software and not soft.shader_f16 and soft.vendor == ""


def test_list_adapters_real():
    adapters = list_adapters()
    assert isinstance(adapters, list)
    assert all(isinstance(a, AdapterInfo) and a.name and a.backend for a in adapters)


def test_list_adapters_when_wgpu_raises(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("no graphics backend")

    fake = types.SimpleNamespace(
        gpu=types.SimpleNamespace(enumerate_adapters_sync=boom, request_adapter_sync=boom)
    )
    monkeypatch.setitem(sys.modules, "wgpu", fake)
    assert list_adapters() == []


def test_list_adapters_when_wgpu_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "wgpu", None)
    assert list_adapters() == []


def test_list_adapters_falls_back_to_request_adapter(monkeypatch):
    adapter = _FakeAdapter({"device": "Only GPU", "adapter_type": "IntegratedGPU"}, {"shader-f16"})
    fake = types.SimpleNamespace(
        gpu=types.SimpleNamespace(
            enumerate_adapters_sync=lambda: [], request_adapter_sync=lambda **kw: adapter
        )
    )
    monkeypatch.setitem(sys.modules, "wgpu", fake)
    assert [a.name for a in list_adapters()] == ["Only GPU"]


def test_adapter_for_ep_device_matches_pci_ids(monkeypatch):
    other = "OpenGL" if NATIVE != "OpenGL" else "Vulkan"
    adapters = [
        AdapterInfo("llvmpipe", "Mesa", NATIVE, "CPU", False, 0x10005, 0),
        AdapterInfo("Intel UHD", "Intel", NATIVE, "IntegratedGPU", True, 0x8086, 0x9A49),
        AdapterInfo("H100 (GL)", "NVIDIA", other, "DiscreteGPU", False, 0x10DE, 0x2330),
        AdapterInfo("H100", "NVIDIA", NATIVE, "DiscreteGPU", True, 0x10DE, 0x2330),
        AdapterInfo("RTX 4090", "NVIDIA", NATIVE, "DiscreteGPU", True, 0x10DE, 0x2684),
    ]
    monkeypatch.setattr(runtime, "list_adapters", lambda: adapters)

    def ep_device(vendor_id, device_id):
        return types.SimpleNamespace(
            device=types.SimpleNamespace(vendor_id=vendor_id, device_id=device_id)
        )

    assert runtime._adapter_for_ep_device(ep_device(0x10DE, 0x2330)).name == "H100"
    assert runtime._adapter_for_ep_device(ep_device(0x8086, 0x9A49)).name == "Intel UHD"
    # Unknown ids: like a high-performance request, the native API's discrete GPU first.
    assert runtime._adapter_for_ep_device(None).adapter_type == "DiscreteGPU"
    monkeypatch.setattr(runtime, "list_adapters", lambda: adapters[:1])
    assert runtime._adapter_for_ep_device(ep_device(0x10DE, 0x2330)) is None  # software only


# --------------------------------------------------------------------------------------------
# doctor


SECTIONS = (
    "napari-sam2-webgpu doctor",
    "Python:",
    "onnxruntime:",
    "onnxruntime-ep-webgpu (WebGPU execution provider):",
    "Vulkan loader:",
    "wgpu (GPU adapters):",
    "Backend:",
    '"auto" would use:',
    "why:",
)


def test_doctor_report_sections(caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    report = doctor_report()
    for key in SECTIONS:
        assert key in report
    assert ort.__version__ in report
    assert not _warnings(caplog)  # the report explains; it does not also warn


def test_doctor_report_without_wgpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "wgpu", None)
    report = doctor_report()
    for key in SECTIONS:
        assert key in report
    assert (
        "adapters: none (ImportError" in report or "adapters: none (ModuleNotFoundError" in report
    )


def test_doctor_report_never_raises(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("everything is broken")

    for name in ("_register_plugin_ep", "_vulkan_loader", "_enumerate_adapters", "_resolve"):
        monkeypatch.setattr(runtime, name, boom)
    monkeypatch.setattr(ort, "get_available_providers", boom)
    report = doctor_report()
    assert report.count("error: RuntimeError: everything is broken") >= 4
    assert "Backend:" in report


def test_doctor_report_invalid_env(monkeypatch):
    monkeypatch.setenv(ENV_BACKEND, "tpu")
    assert f"error: invalid {ENV_BACKEND}='tpu'" in doctor_report()


# --------------------------------------------------------------------------------------------
# laziness


def test_import_does_not_load_onnxruntime_or_wgpu():
    src = str(Path(runtime.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    code = (
        "import sys, napari_sam2_webgpu.runtime\n"
        "heavy = [m for m in ('onnxruntime', 'wgpu', 'onnxruntime_ep_webgpu')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_RUNTIME_DIR is Linux's")
def test_doctor_without_runtime_dir_prints_no_driver_noise(tmp_path):
    # Mesa/libwayland print "XDG_RUNTIME_DIR is invalid or not set" for every Vulkan instance.
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    result = subprocess.run(
        [sys.executable, "-m", "napari_sam2_webgpu.cli", "doctor"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "XDG_RUNTIME_DIR is invalid" not in result.stdout + result.stderr
    assert result.stdout.count("XDG_RUNTIME_DIR") <= 1  # explained once, when a GPU probe ran


def test_private_runtime_dir_only_when_missing(monkeypatch, tmp_path):
    from napari_sam2_webgpu import runtime

    monkeypatch.setattr(runtime, "_private_runtime_dir", None)
    monkeypatch.setattr(runtime.sys, "platform", "linux")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert runtime._ensure_runtime_dir() is None
    assert os.environ["XDG_RUNTIME_DIR"] == str(tmp_path)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
    folder = runtime._ensure_runtime_dir()
    assert folder is not None and os.path.isdir(folder)
    assert os.environ["XDG_RUNTIME_DIR"] == folder
    assert os.stat(folder).st_mode & 0o777 == 0o700
    assert runtime._ensure_runtime_dir() == folder  # once per process
