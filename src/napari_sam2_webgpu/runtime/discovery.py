"""Finding ONNX Runtime's WebGPU execution provider, and explaining its absence precisely.

WebGPU comes from ONNX Runtime's plugin execution provider (the ``onnxruntime-ep-webgpu``
package, registered at run time on a stock ``onnxruntime``) or, when that package is absent,
from the all-in-one ``onnxruntime-webgpu`` wheel. When the plugin lists no device, the reason is
worked out from the Vulkan loader and the adapters ``wgpu`` sees (:mod:`.adapters`).

``onnxruntime`` is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import threading
from typing import Any

from . import adapters
from .errors import WebGPUUnavailableError, one_line

__all__ = [
    "BUILTIN_PACKAGE",
    "PLUGIN_PACKAGE",
    "WEBGPU_EP_NAME",
    "builtin_webgpu_available",
    "dist_version",
    "plugin_package_installed",
    "register_plugin_ep",
    "webgpu_ep_device",
]

#: Provider name used by both the plugin EP and the all-in-one wheel.
WEBGPU_EP_NAME = "WebGpuExecutionProvider"
#: Distribution names of the two ways to get WebGPU (values of ``BackendInfo.webgpu_source``).
PLUGIN_PACKAGE = "onnxruntime-ep-webgpu"
BUILTIN_PACKAGE = "onnxruntime-webgpu"
#: Name under which this module registers the plugin EP library with ONNX Runtime.
_REGISTRATION_NAME = "webgpu"

_lock = threading.Lock()
# Registration is process-global in ONNX Runtime; remember its outcome (None = not tried yet).
_registration: tuple[bool, str | None] | None = None


def dist_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def plugin_package_installed() -> bool:
    """Whether the plugin EP package (:data:`PLUGIN_PACKAGE`) can be imported."""
    return importlib.util.find_spec("onnxruntime_ep_webgpu") is not None


def register_plugin_ep() -> tuple[bool, str | None]:
    """Register the plugin EP library with ONNX Runtime, once per process.

    Registration is process-global in ONNX Runtime, so its outcome is remembered; a library
    someone else in this process already registered counts as success.

    Returns
    -------
    ok : bool
    error : str or None
        ONNX Runtime's error, on one line, when registration failed.
    """
    global _registration
    with _lock:
        if _registration is not None:
            return _registration
        import onnxruntime as ort
        import onnxruntime_ep_webgpu as plugin

        try:
            adapters.ensure_runtime_dir()
            ort.register_execution_provider_library(_REGISTRATION_NAME, plugin.get_library_path())
            _registration = (True, None)
        except Exception as exc:
            # Someone else in this process (another plugin, a script) may have registered it.
            if "already registered" in str(exc):
                _registration = (True, None)
            else:
                _registration = (False, f"{type(exc).__name__}: {one_line(exc)}")
        return _registration


def builtin_webgpu_available() -> bool:
    """Whether this onnxruntime build has WebGPU built in (the ``onnxruntime-webgpu`` wheel)."""
    import onnxruntime as ort

    # A registered plugin EP with a device is listed among the available providers too.
    plugin_registered = _registration is not None and _registration[0]
    return WEBGPU_EP_NAME in ort.get_available_providers() and not plugin_registered


def _diagnose_no_device() -> str:
    """Explain why the EP registered but lists no WebGPU device."""
    ok, detail = adapters.vulkan_loader()
    if not ok:
        return adapters.no_vulkan_reason(detail)
    found, error = adapters.enumerate_adapters()
    native = adapters.NATIVE_GRAPHICS_API.get(sys.platform, "the native graphics API")
    hardware = [a for a in found if not a.is_software]
    on_native = [a for a in hardware if a.backend.lower() == native.lower()]
    base = "the WebGPU execution provider lists no device"
    if on_native:
        a = adapters.preferred_adapter(on_native)
        return (
            f"{base} although wgpu sees {a.name} ({a.backend}, {a.adapter_type}): the GPU "
            "driver may be too old or not supported by Dawn; update the GPU driver"
        )
    if hardware:
        a = adapters.preferred_adapter(hardware)
        return (
            f"{base}: wgpu sees {a.name} only through {a.backend}, but the WebGPU execution "
            f"provider needs {native}; install your GPU's {native} driver"
        )
    if found:
        names = ", ".join(f"{a.name} ({a.backend})" for a in found)
        return (
            f"{base}: only a software renderer is available ({names}), which the WebGPU "
            f"execution provider (Dawn) does not use; a GPU with a {native} driver is needed"
        )
    why = f" (wgpu: {error})" if error else ""
    return f"{base} and no GPU adapter was found{why}; a GPU with a {native} driver is needed"


def _import_plugin() -> tuple[Any, Any]:
    """``onnxruntime`` and the plugin EP package, or the reason they cannot be used."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise WebGPUUnavailableError(f"onnxruntime cannot be imported: {exc}") from exc
    if not hasattr(ort, "register_execution_provider_library"):
        raise WebGPUUnavailableError(
            f"onnxruntime {ort.__version__} is too old for plugin execution providers "
            "(need >= 1.23): pip install -U onnxruntime"
        )
    try:
        import onnxruntime_ep_webgpu as plugin
    except ImportError as exc:
        raise WebGPUUnavailableError(
            f"the WebGPU execution provider package {PLUGIN_PACKAGE} is not installed "
            f"(pip install {PLUGIN_PACKAGE}; wheels exist for Linux x86_64/aarch64, Windows "
            "and macOS arm64)"
        ) from exc
    return ort, plugin


def webgpu_ep_device() -> Any:
    """Find the WebGPU device of the plugin execution provider ``onnxruntime-ep-webgpu``.

    Registers the plugin EP library with ONNX Runtime (once per process) and returns the first
    device it lists.

    Returns
    -------
    onnxruntime.OrtEpDevice
        To pass to ``SessionOptions.add_provider_for_devices``.

    Raises
    ------
    WebGPUUnavailableError
        With the precise reason: ONNX Runtime too old for plugin EPs, EP package missing, EP
        library failed to load/register (with ONNX Runtime's error), no Vulkan loader, or the EP
        lists no device.
    """
    ort, plugin = _import_plugin()
    ep_name = plugin.get_ep_name()

    def devices() -> list[Any]:
        return [d for d in ort.get_ep_devices() if d.ep_name == ep_name]

    # Already registered by someone else (maybe under another name): nothing to do.
    found = devices()
    if not found:
        ok, error = register_plugin_ep()
        if not ok:
            reason = f"the WebGPU execution provider library failed to load/register: {error}"
            vulkan_ok, detail = adapters.vulkan_loader()
            if not vulkan_ok:
                reason += f"; also, {adapters.no_vulkan_reason(detail)}"
            raise WebGPUUnavailableError(reason)
        found = devices()
    if not found:
        raise WebGPUUnavailableError(_diagnose_no_device())
    # ORT lists GPUs from the PCI bus, so a device shows up even where Dawn cannot reach it.
    vulkan_ok, detail = adapters.vulkan_loader()
    if not vulkan_ok:
        raise WebGPUUnavailableError(adapters.no_vulkan_reason(detail))
    return found[0]
