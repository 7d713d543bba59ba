"""The machine's GPUs as ``wgpu`` sees them, and what the WebGPU execution provider needs of it.

The WebGPU execution provider (Dawn) picks its GPU on its own and says little about it, so the
GPU is described with ``wgpu`` (wgpu-native). On Linux Dawn also needs the Vulkan loader, and
Vulkan drivers expect a valid ``XDG_RUNTIME_DIR``; both are checked here.

``wgpu`` is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import one_line

__all__ = [
    "NATIVE_GRAPHICS_API",
    "PCI_VENDORS",
    "AdapterInfo",
    "adapter_for_ep_device",
    "ensure_runtime_dir",
    "enumerate_adapters",
    "list_adapters",
    "no_vulkan_reason",
    "preferred_adapter",
    "private_runtime_dir",
    "vulkan_loader",
]

logger = logging.getLogger("napari_sam2_webgpu")

#: PCI vendor ids, for adapters and EP devices whose driver leaves the vendor string empty.
PCI_VENDORS: dict[int, str] = {
    0x1002: "AMD",
    0x1022: "AMD",
    0x1010: "Imagination",
    0x106B: "Apple",
    0x10DE: "NVIDIA",
    0x13B5: "ARM",
    0x1414: "Microsoft",
    0x5143: "Qualcomm",
    0x8086: "Intel",
    0x10005: "Mesa",
}

#: The graphics API Dawn (inside the WebGPU EP) uses, per ``sys.platform``.
NATIVE_GRAPHICS_API: dict[str, str] = {"linux": "Vulkan", "win32": "D3D12", "darwin": "Metal"}

_ADAPTER_TYPE_RANK = {"discretegpu": 0, "integratedgpu": 1, "virtualgpu": 2}

_lock = threading.Lock()
#: Set when this process gave itself a private XDG_RUNTIME_DIR (see ensure_runtime_dir).
_private_runtime_dir: str | None = None


@dataclass(frozen=True)
class AdapterInfo:
    """A GPU adapter as ``wgpu`` sees it.

    Attributes
    ----------
    name : str
        Device name, e.g. ``"NVIDIA H100 80GB HBM3"``.
    vendor : str
        Vendor name (from the driver, else from the PCI vendor id), may be empty.
    backend : str
        Graphics API, e.g. ``"Vulkan"``, ``"D3D12"``, ``"Metal"``, ``"OpenGL"``.
    adapter_type : str
        ``"DiscreteGPU"``, ``"IntegratedGPU"``, ``"CPU"`` (software renderer) or ``"Unknown"``.
    shader_f16 : bool
        Whether the adapter supports 16-bit floats in shaders (WebGPU ``shader-f16``).
    vendor_id, device_id : int
        PCI ids (0 when unknown); used to match the device the WebGPU EP lists.
    """

    name: str
    vendor: str
    backend: str
    adapter_type: str
    shader_f16: bool
    vendor_id: int = 0
    device_id: int = 0

    @property
    def is_software(self) -> bool:
        """Whether this is a CPU rasterizer (llvmpipe, lavapipe, WARP), which Dawn does not use."""
        return self.adapter_type.lower() == "cpu"

    def summary(self) -> str:
        """One line: name, backend, type and shader-f16 support."""
        f16 = "yes" if self.shader_f16 else "no"
        return f"{self.name} ({self.backend}, {self.adapter_type}, shader-f16: {f16})"


# --------------------------------------------------------------------------------------------
# what Vulkan drivers need on Linux


def vulkan_loader() -> tuple[bool, str]:
    """Whether the Vulkan loader can be loaded, which the WebGPU EP needs on Linux.

    Returns
    -------
    ok : bool
        True when ``libvulkan.so.1`` loads, and always on other platforms.
    detail : str
        The library found, or why it could not be loaded.
    """
    if not sys.platform.startswith("linux"):
        return True, "not needed on this platform"
    try:
        # CDLL is authoritative (honours LD_LIBRARY_PATH); find_library only reads ldconfig's cache.
        ctypes.CDLL("libvulkan.so.1")
    except OSError as exc:
        msg = one_line(exc)
        if "cannot open shared object file" in msg:
            found = ctypes.util.find_library("vulkan")
            # ldconfig may know an unversioned/other soname that Dawn would not look for.
            return False, "libvulkan.so.1 not found" + (f" (only {found})" if found else "")
        return False, f"libvulkan.so.1 failed to load ({msg})"
    return True, f"libvulkan.so.1 ({ctypes.util.find_library('vulkan') or 'loaded'})"


def no_vulkan_reason(detail: str) -> str:
    """The fallback reason for a missing Vulkan loader, with what to install.

    Parameters
    ----------
    detail : str
        What :func:`vulkan_loader` said.

    Returns
    -------
    str
    """
    return (
        f"no Vulkan loader: {detail}; the WebGPU execution provider needs it on Linux "
        "(install libvulkan1, or vulkan-loader on Fedora, and your GPU's Vulkan driver)"
    )


def ensure_runtime_dir() -> str | None:
    """Give the process a private ``XDG_RUNTIME_DIR`` when it has no valid one (Linux only).

    Vulkan drivers (through libwayland) print "XDG_RUNTIME_DIR is invalid or not set" on every
    instance they create, which on a headless machine or a bare ``ssh`` session is once per
    probe; a private, empty 0700 folder is what the variable is meant to name and silences them.
    The folder is removed when the process exits.

    Returns
    -------
    str or None
        The folder set (the same one on later calls), or None when the environment already had a
        valid one or this is not Linux.
    """
    global _private_runtime_dir
    if not sys.platform.startswith("linux"):
        return None
    with _lock:
        current = os.environ.get("XDG_RUNTIME_DIR", "")
        if current and os.path.isabs(current) and os.path.isdir(current):
            return _private_runtime_dir if current == _private_runtime_dir else None
        import tempfile

        try:
            folder = tempfile.mkdtemp(prefix="napari-sam2-webgpu-runtime-")  # mode 0700
        except OSError as exc:
            logger.debug("no private XDG_RUNTIME_DIR: %s", exc)
            return None
        import atexit
        import shutil

        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ["XDG_RUNTIME_DIR"] = folder
        _private_runtime_dir = folder
        logger.debug("XDG_RUNTIME_DIR %r is not a folder; using %s", current, folder)
        return folder


def private_runtime_dir() -> str | None:
    """The folder :func:`ensure_runtime_dir` set, or None when it set none (for the doctor)."""
    return _private_runtime_dir


# --------------------------------------------------------------------------------------------
# wgpu adapters


def _adapter_from_wgpu(adapter: Any) -> AdapterInfo:
    info = dict(adapter.info)
    vendor_id = int(info.get("vendor_id") or 0)
    name = str(info.get("device") or info.get("description") or "unknown adapter")
    vendor = str(info.get("vendor") or PCI_VENDORS.get(vendor_id, ""))
    return AdapterInfo(
        name=name,
        vendor=vendor,
        backend=str(info.get("backend_type") or "unknown"),
        adapter_type=str(info.get("adapter_type") or "Unknown"),
        shader_f16="shader-f16" in set(adapter.features),
        vendor_id=vendor_id,
        device_id=int(info.get("device_id") or 0),
    )


def enumerate_adapters() -> tuple[list[AdapterInfo], str | None]:
    """List the adapters ``wgpu`` sees, and say why when it cannot.

    Returns
    -------
    adapters : list of AdapterInfo
        Empty when ``wgpu`` is missing or no graphics backend works.
    error : str or None
        What prevented listing them (None when listing worked, even if it found none).
    """
    ensure_runtime_dir()
    try:
        import wgpu

        raw = wgpu.gpu.enumerate_adapters_sync()
        adapters = [_adapter_from_wgpu(a) for a in raw]
    except Exception as exc:  # wgpu raises various types when no backend/driver exists at all
        return [], f"{type(exc).__name__}: {one_line(exc)}"
    if not adapters:
        # Some wgpu versions list nothing but can still hand out the default adapter.
        try:
            import wgpu

            adapter = wgpu.gpu.request_adapter_sync(power_preference="high-performance")
            if adapter is not None:
                adapters = [_adapter_from_wgpu(adapter)]
        except Exception as exc:
            return [], f"{type(exc).__name__}: {one_line(exc)}"
    return adapters, None


def list_adapters() -> list[AdapterInfo]:
    """List the GPU adapters ``wgpu`` can see, on every graphics backend.

    Returns
    -------
    list of AdapterInfo
        Empty (never raises) when ``wgpu`` is missing or no graphics backend works.
    """
    adapters, error = enumerate_adapters()
    if error:
        logger.debug("wgpu lists no adapters: %s", error)
    return adapters


def _rank(adapter: AdapterInfo) -> tuple[int, int]:
    native = NATIVE_GRAPHICS_API.get(sys.platform, "")
    return (
        0 if adapter.backend.lower() == native.lower() else 1,
        _ADAPTER_TYPE_RANK.get(adapter.adapter_type.lower(), 3),
    )


def preferred_adapter(adapters: Sequence[AdapterInfo]) -> AdapterInfo:
    """The adapter a high-performance request would get: native graphics API, then discrete.

    Parameters
    ----------
    adapters : sequence of AdapterInfo
        Not empty.

    Returns
    -------
    AdapterInfo
    """
    return min(adapters, key=_rank)


def adapter_for_ep_device(ep_device: Any) -> AdapterInfo | None:
    """Describe the GPU the WebGPU execution provider uses, as well as ``wgpu`` can.

    Parameters
    ----------
    ep_device : onnxruntime.OrtEpDevice or None
        The EP's device; its PCI ids pick the matching adapter when they are known.

    Returns
    -------
    AdapterInfo or None
        None when ``wgpu`` sees no hardware adapter.
    """
    adapters = [a for a in list_adapters() if not a.is_software]
    if not adapters:
        return None
    vendor_id = int(getattr(getattr(ep_device, "device", None), "vendor_id", 0) or 0)
    device_id = int(getattr(getattr(ep_device, "device", None), "device_id", 0) or 0)
    if vendor_id:
        same = [
            a
            for a in adapters
            if a.vendor_id == vendor_id and (not device_id or a.device_id == device_id)
        ]
        adapters = same or adapters
    return preferred_adapter(adapters)
