"""Tests of runtime/discovery.py: finding the WebGPU EP, and the reasons when it is missing."""

from __future__ import annotations

import sys
import types

import pytest

from napari_sam2_webgpu.runtime import adapters, discovery
from napari_sam2_webgpu.runtime.adapters import AdapterInfo
from napari_sam2_webgpu.runtime.discovery import webgpu_ep_device
from napari_sam2_webgpu.runtime.errors import WebGPUUnavailableError

from .conftest import GPU, NATIVE

ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.usefixtures("fresh_backend")


def test_this_machine_without_vulkan_loader_says_so():
    ok, _ = adapters.vulkan_loader()
    if ok:
        pytest.skip("a Vulkan loader is present here")
    with pytest.raises(WebGPUUnavailableError, match="no Vulkan loader.*libvulkan1"):
        webgpu_ep_device()


def test_listed_device_needs_vulkan_loader(monkeypatch):
    """ORT lists GPUs from the PCI bus even where Dawn cannot open them."""
    pytest.importorskip("onnxruntime_ep_webgpu")
    device = types.SimpleNamespace(ep_name=discovery.WEBGPU_EP_NAME)
    monkeypatch.setattr(ort, "get_ep_devices", lambda: [device])
    monkeypatch.setattr(adapters, "vulkan_loader", lambda: (False, "libvulkan.so.1 not found"))
    with pytest.raises(WebGPUUnavailableError, match="no Vulkan loader"):
        webgpu_ep_device()
    monkeypatch.setattr(adapters, "vulkan_loader", lambda: (True, "libvulkan.so.1"))
    assert webgpu_ep_device() is device


def test_ep_package_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime_ep_webgpu", None)  # import now fails
    with pytest.raises(WebGPUUnavailableError, match="onnxruntime-ep-webgpu is not installed"):
        webgpu_ep_device()


def test_ep_registration_failure_includes_ort_error(monkeypatch):
    pytest.importorskip("onnxruntime_ep_webgpu")
    monkeypatch.setattr(ort, "get_ep_devices", lambda: [])
    monkeypatch.setattr(discovery, "register_plugin_ep", lambda: (False, "Fail: dlopen boom"))
    with pytest.raises(WebGPUUnavailableError, match="failed to load/register: Fail: dlopen boom"):
        webgpu_ep_device()


def test_registration_is_guarded(monkeypatch):
    pytest.importorskip("onnxruntime_ep_webgpu")
    assert discovery.register_plugin_ep() == (True, None)
    assert discovery.register_plugin_ep() == (True, None)
    # Registered already (by us or anyone): ORT raises "already registered", which is fine.
    monkeypatch.setattr(discovery, "_registration", None)
    assert discovery.register_plugin_ep() == (True, None)


def _no_device_reason(monkeypatch, loader, found, error=None):
    pytest.importorskip("onnxruntime_ep_webgpu")
    monkeypatch.setattr(ort, "get_ep_devices", lambda: [])
    monkeypatch.setattr(discovery, "register_plugin_ep", lambda: (True, None))
    monkeypatch.setattr(adapters, "vulkan_loader", lambda: loader)
    monkeypatch.setattr(adapters, "enumerate_adapters", lambda: (found, error))
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
