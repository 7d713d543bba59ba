"""Tests of runtime/adapters.py: wgpu adapters, matching the EP's device, XDG_RUNTIME_DIR."""

from __future__ import annotations

import os
import sys
import types

from napari_sam2_webgpu.runtime import adapters
from napari_sam2_webgpu.runtime.adapters import AdapterInfo, list_adapters

from .conftest import NATIVE


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
    a = adapters._adapter_from_wgpu(_FakeAdapter(info, {"shader-f16", "timestamp-query"}))
    assert a == AdapterInfo(
        "NVIDIA H100 80GB HBM3", "NVIDIA", "Vulkan", "DiscreteGPU", True, 0x10DE, 0x2330
    )
    assert not a.is_software
    assert a.summary() == "NVIDIA H100 80GB HBM3 (Vulkan, DiscreteGPU, shader-f16: yes)"
    soft = adapters._adapter_from_wgpu(
        _FakeAdapter({"device": "llvmpipe", "adapter_type": "CPU", "backend_type": "OpenGL"})
    )
    assert soft.is_software and not soft.shader_f16 and soft.vendor == ""


def test_list_adapters_real():
    found = list_adapters()
    assert isinstance(found, list)
    assert all(isinstance(a, AdapterInfo) and a.name and a.backend for a in found)


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
    found = [
        AdapterInfo("llvmpipe", "Mesa", NATIVE, "CPU", False, 0x10005, 0),
        AdapterInfo("Intel UHD", "Intel", NATIVE, "IntegratedGPU", True, 0x8086, 0x9A49),
        AdapterInfo("H100 (GL)", "NVIDIA", other, "DiscreteGPU", False, 0x10DE, 0x2330),
        AdapterInfo("H100", "NVIDIA", NATIVE, "DiscreteGPU", True, 0x10DE, 0x2330),
        AdapterInfo("RTX 4090", "NVIDIA", NATIVE, "DiscreteGPU", True, 0x10DE, 0x2684),
    ]
    monkeypatch.setattr(adapters, "list_adapters", lambda: found)

    def ep_device(vendor_id, device_id):
        return types.SimpleNamespace(
            device=types.SimpleNamespace(vendor_id=vendor_id, device_id=device_id)
        )

    assert adapters.adapter_for_ep_device(ep_device(0x10DE, 0x2330)).name == "H100"
    assert adapters.adapter_for_ep_device(ep_device(0x8086, 0x9A49)).name == "Intel UHD"
    # Unknown ids: like a high-performance request, the native API's discrete GPU first.
    assert adapters.adapter_for_ep_device(None).adapter_type == "DiscreteGPU"
    monkeypatch.setattr(adapters, "list_adapters", lambda: found[:1])
    assert adapters.adapter_for_ep_device(ep_device(0x10DE, 0x2330)) is None  # software only


def test_private_runtime_dir_only_when_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(adapters, "_private_runtime_dir", None)
    monkeypatch.setattr(adapters.sys, "platform", "linux")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert adapters.ensure_runtime_dir() is None
    assert adapters.private_runtime_dir() is None
    assert os.environ["XDG_RUNTIME_DIR"] == str(tmp_path)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
    folder = adapters.ensure_runtime_dir()
    assert folder is not None and os.path.isdir(folder)
    assert os.environ["XDG_RUNTIME_DIR"] == folder
    assert os.stat(folder).st_mode & 0o777 == 0o700
    assert adapters.ensure_runtime_dir() == folder  # once per process
    assert adapters.private_runtime_dir() == folder


def test_vulkan_loader_and_runtime_dir_are_linux_only(monkeypatch):
    monkeypatch.setattr(adapters.sys, "platform", "darwin")
    assert adapters.vulkan_loader() == (True, "not needed on this platform")
    assert adapters.ensure_runtime_dir() is None
