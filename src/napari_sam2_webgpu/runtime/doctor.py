"""The report behind ``napari-sam2-webgpu doctor``: everything that decides where inference runs.

The report explains rather than warns, and never raises: a check that fails becomes a line of
the report, so it stays useful on exactly the machines where something is broken.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable

from . import adapters, backend, discovery
from .backend import ENV_BACKEND
from .discovery import BUILTIN_PACKAGE, PLUGIN_PACKAGE
from .errors import WebGPUUnavailableError, one_line

__all__ = ["doctor_report"]


def _section(lines: list[str], title: str, body: Callable[[], list[str]]) -> None:
    """Append ``title`` and the lines ``body()`` returns; an error becomes a line, not a crash."""
    lines.append(title)
    try:
        lines.extend(f"  {line}" for line in body())
    except Exception as exc:
        lines.append(f"  error: {type(exc).__name__}: {one_line(exc)}")


def _python() -> list[str]:
    return [
        f"Python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.platform()} ({platform.machine()})"
    ]


def _onnxruntime() -> list[str]:
    try:
        import onnxruntime as ort
    except Exception as exc:
        return [f"not importable: {type(exc).__name__}: {one_line(exc)}"]
    providers = ort.get_available_providers()
    out = [f"version: {ort.__version__}", f"available providers: {', '.join(providers)}"]
    if discovery.builtin_webgpu_available():
        out.append(f"built-in WebGPU provider: yes (the {BUILTIN_PACKAGE} wheel)")
    return out


def _ep_devices(ep_name: str) -> list[str]:
    """One line per device the registered plugin EP lists."""
    import onnxruntime as ort

    devices = [d for d in ort.get_ep_devices() if d.ep_name == ep_name]
    if not devices:
        return ["EP devices: none listed"]
    out = []
    for d in devices:
        hw = d.device
        vendor = hw.vendor or adapters.PCI_VENDORS.get(int(hw.vendor_id), "unknown vendor")
        meta = ", ".join(f"{k}={v}" for k, v in dict(hw.metadata).items())
        out.append(
            f"EP device: {hw.type.name} {vendor} (vendor 0x{int(hw.vendor_id):04x}, "
            f"device 0x{int(hw.device_id):04x}{', ' + meta if meta else ''})"
        )
    return out


def _plugin() -> list[str]:
    version = discovery.dist_version(PLUGIN_PACKAGE)
    if version is None and not discovery.plugin_package_installed():
        return ["not installed"]
    out = [f"version: {version or 'unknown'}"]
    try:
        import onnxruntime_ep_webgpu as plugin

        out.append(f"library: {plugin.get_library_path()}")
    except Exception as exc:
        return [*out, f"library: not found: {type(exc).__name__}: {one_line(exc)}"]
    try:
        ok, error = discovery.register_plugin_ep()
    except Exception as exc:
        ok, error = False, f"{type(exc).__name__}: {one_line(exc)}"
    out.append("registration: ok" if ok else f"registration: FAILED: {error}")
    if ok:
        out.extend(_ep_devices(plugin.get_ep_name()))
    return out


def _vulkan() -> list[str]:
    ok, detail = adapters.vulkan_loader()
    out = [f"{'found' if ok else 'NOT FOUND'}: {detail}"]
    folder = adapters.private_runtime_dir()
    if folder is not None:
        out.append(
            "XDG_RUNTIME_DIR was not set to a folder; a private one was used for the GPU probe "
            f"({folder}), which Vulkan drivers expect"
        )
    return out


def _wgpu() -> list[str]:
    version = discovery.dist_version("wgpu")
    found, error = adapters.enumerate_adapters()
    out = [f"version: {version or 'not installed'}"]
    if error:
        out.append(f"adapters: none ({error})")
    elif not found:
        out.append("adapters: none")
    out.extend(f"adapter: {a.summary()}" for a in found)
    return out


def _choice() -> list[str]:
    env = os.environ.get(ENV_BACKEND, "").strip()
    out = [f"{ENV_BACKEND}={env}" if env else f"{ENV_BACKEND} not set"]
    try:
        req = backend.effective_request("auto")
    except ValueError as exc:
        return [*out, f"error: {exc}"]
    try:
        info = backend.resolve_request(req)
    except WebGPUUnavailableError as exc:
        return [*out, f"request {req!r} would FAIL: {exc}"]
    if info.provider == "webgpu":
        out.append(f'"auto" would use: {info.describe()}')
        out.append(
            f"why: the WebGPU execution provider ({info.webgpu_source}) lists a device and ran "
            "a test model on it"
        )
    elif info.fallback_reason:
        out.append(f'"auto" would use: CPU (fallback), onnxruntime {info.ort_version}')
        out.append(f"why: {info.fallback_reason}")
    else:
        out.append(f'"auto" would use: {info.describe()}')
        out.append(f"why: {ENV_BACKEND} asks for the CPU")
    return out


def doctor_report() -> str:
    """A multi-line report of everything that decides where inference runs.

    Covers Python and platform, ONNX Runtime (version, providers), ``onnxruntime-ep-webgpu``
    (version, registration, devices it lists), the Vulkan loader, ``wgpu`` adapters, and the
    backend ``"auto"`` would choose and why. Never raises: problems become lines of the report.

    Returns
    -------
    str
    """
    lines = ["napari-sam2-webgpu doctor"]
    try:
        from .. import __version__

        lines[0] += f" (version {__version__})"
    except Exception:  # the report must not depend on the package importing cleanly
        pass
    sections = [
        ("Python:", _python),
        ("onnxruntime:", _onnxruntime),
        (f"{PLUGIN_PACKAGE} (WebGPU execution provider):", _plugin),
        ("Vulkan loader:", _vulkan),
        ("wgpu (GPU adapters):", _wgpu),
        ("Backend:", _choice),
    ]
    for title, body in sections:
        _section(lines, title, body)
    return "\n".join(lines)
