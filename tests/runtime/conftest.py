"""Fixtures and helpers shared by the tests of the runtime package.

The tests pass on a machine without a usable GPU (CI: the WebGPU EP lists no device) and on one
where WebGPU works: fallback situations are forced with monkeypatch, and the tests against the
real environment check that the outcome agrees with what the EP itself reports. Monkeypatches
target the module where a function lives; the package calls functions through their module.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    import napari_sam2_webgpu  # noqa: F401
except ImportError:  # running from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from napari_sam2_webgpu.runtime import (  # noqa: E402  # noqa: E402
    ENV_BACKEND,
    AdapterInfo,
    WebGPUUnavailableError,
    adapters,
    backend,
    clear_backend_cache,
    discovery,
)

LOGGER = "napari_sam2_webgpu"
NATIVE = adapters.NATIVE_GRAPHICS_API.get(sys.platform, "Vulkan")
GPU = AdapterInfo("Test GPU 9000", "NVIDIA", NATIVE, "DiscreteGPU", True, 0x10DE, 0x2330)


@pytest.fixture
def fresh_backend(monkeypatch):
    """No ENV_BACKEND, and no backend resolved or fallback warned about before or after."""
    monkeypatch.delenv(ENV_BACKEND, raising=False)
    clear_backend_cache()
    yield
    clear_backend_cache()


@pytest.fixture
def no_webgpu(monkeypatch):
    """Force "the WebGPU EP has no device", whatever the machine has."""

    def fail():
        raise WebGPUUnavailableError("test: the WebGPU execution provider lists no device")

    monkeypatch.setattr(discovery, "webgpu_ep_device", fail)
    monkeypatch.setattr(discovery, "builtin_webgpu_available", lambda: False)


@pytest.fixture
def fake_webgpu(monkeypatch):
    """Force "the WebGPU EP has a device" (sessions on it must be faked too)."""
    monkeypatch.setattr(backend, "_probe_webgpu", lambda: (discovery.PLUGIN_PACKAGE, object()))
    monkeypatch.setattr(adapters, "adapter_for_ep_device", lambda dev: GPU)


def warnings_logged(caplog):
    """The package's warnings among the captured log records."""
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


def check_numbers(session, w):
    """The tiny model's session computes X @ W + B."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    b = rng.standard_normal((2, 4)).astype(np.float32)
    (y,) = session.run(None, {"x": x, "b": b})
    np.testing.assert_allclose(y, x @ w + b, rtol=1e-5, atol=1e-5)
