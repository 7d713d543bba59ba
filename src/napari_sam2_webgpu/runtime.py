"""ONNX Runtime sessions and the choice of execution provider: WebGPU first, the CPU as fallback.

This is the one place that decides where inference runs. WebGPU comes from ONNX Runtime's plugin
execution provider (the ``onnxruntime-ep-webgpu`` package, registered at run time on a stock
``onnxruntime``) or, when that package is absent, from the all-in-one ``onnxruntime-webgpu`` wheel.
The GPU itself is described with ``wgpu`` (wgpu-native), because the EP chooses its GPU on its own
and says little about it.

Importing this module is cheap: ``onnxruntime`` and ``wgpu`` are imported inside the functions.

Examples
--------
>>> from napari_sam2_webgpu.runtime import create_session
>>> session, info = create_session("sam2_hiera_tiny.encoder.onnx")  # doctest: +SKIP
>>> info.describe()  # doctest: +SKIP
'WebGPU (NVIDIA H100 80GB HBM3, Vulkan), onnxruntime 1.32.0'
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import errno
import importlib.metadata
import importlib.util
import logging
import os
import platform
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime

__all__ = [
    "BACKENDS",
    "ENV_BACKEND",
    "AdapterInfo",
    "BackendInfo",
    "WebGPUUnavailableError",
    "clear_backend_cache",
    "create_session",
    "doctor_report",
    "list_adapters",
    "resolve_backend",
    "webgpu_ep_device",
]

BACKENDS: tuple[str, ...] = ("auto", "webgpu", "cpu")
ENV_BACKEND = "NAPARI_SAM2_WEBGPU_BACKEND"

#: Provider name used by both the plugin EP and the all-in-one wheel.
WEBGPU_EP_NAME = "WebGpuExecutionProvider"
#: Distribution names of the two ways to get WebGPU (values of ``BackendInfo.webgpu_source``).
PLUGIN_PACKAGE = "onnxruntime-ep-webgpu"
BUILTIN_PACKAGE = "onnxruntime-webgpu"
#: Name under which this module registers the plugin EP library with ONNX Runtime.
_REGISTRATION_NAME = "webgpu"

logger = logging.getLogger("napari_sam2_webgpu")

_GRAPH_OPTIMIZATION = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "layout": "ORT_ENABLE_LAYOUT",
    "all": "ORT_ENABLE_ALL",
}

# PCI vendor ids, for adapters whose driver leaves the vendor string empty.
_VENDOR_IDS = {
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

# The graphics API Dawn (inside the WebGPU EP) uses on each platform.
_NATIVE_BACKEND = {"linux": "Vulkan", "win32": "D3D12", "darwin": "Metal"}

_ADAPTER_TYPE_RANK = {"discretegpu": 0, "integratedgpu": 1, "virtualgpu": 2}

# y = x * x on float32[4] (opset 17), serialised with onnx.helper: a test model that needs no
# onnx package at run time. An EP device can be listed (ORT reads it from the PCI bus) while Dawn
# still cannot open it, so "auto" only trusts WebGPU once this ran.
_PROBE_MODEL = bytes.fromhex(
    "080812003a390a0e0a01780a017812017922034d756c120570726f62655a0f0a0178120a0a08080112040a0208"
    "04620f0a0179120a0a08080112040a02080442040a001011"
)

_lock = threading.RLock()
_cache: dict[str, BackendInfo | WebGPUUnavailableError] = {}
_warned_fallback = False
# Registration is process-global in ONNX Runtime; remember its outcome (None = not tried yet).
_registration: tuple[bool, str | None] | None = None


class WebGPUUnavailableError(RuntimeError):
    """WebGPU was requested explicitly but cannot be used; the message says precisely why."""


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


@dataclass(frozen=True)
class BackendInfo:
    """Where sessions run, and why.

    Attributes
    ----------
    requested : str
        What was asked for (``"auto"``, ``"webgpu"`` or ``"cpu"``), after applying
        :data:`ENV_BACKEND` to ``"auto"``.
    provider : str
        ``"webgpu"`` or ``"cpu"``: what sessions actually use.
    ort_version : str
        ``onnxruntime`` version.
    ep_version : str or None
        ``onnxruntime-ep-webgpu`` version, None when that package is not installed.
    adapter : AdapterInfo or None
        The GPU (described by ``wgpu``) when ``provider == "webgpu"`` and it could be identified.
    fallback_reason : str or None
        Why WebGPU is not used, when ``"auto"`` fell back to the CPU; None otherwise.
    webgpu_source : str or None
        The package providing WebGPU (:data:`PLUGIN_PACKAGE` or :data:`BUILTIN_PACKAGE`) when
        ``provider == "webgpu"``.
    """

    requested: str
    provider: str
    ort_version: str
    ep_version: str | None
    adapter: AdapterInfo | None
    fallback_reason: str | None
    webgpu_source: str | None = None

    def describe(self) -> str:
        """One line for status bars and logs.

        Returns
        -------
        str
            E.g. ``"WebGPU (NVIDIA H100, Vulkan), onnxruntime 1.32.0"`` or
            ``"CPU (WebGPU unavailable: no Vulkan loader ...), onnxruntime 1.32.0"``.
        """
        ort = f"onnxruntime {self.ort_version}"
        if self.provider == "webgpu":
            if self.adapter is not None:
                detail = ", ".join(p for p in (self.adapter.name, self.adapter.backend) if p)
            else:
                detail = "GPU chosen by the WebGPU execution provider"
            return f"WebGPU ({detail}), {ort}"
        if self.fallback_reason:
            return f"CPU (WebGPU unavailable: {_one_line(self.fallback_reason)}), {ort}"
        return f"CPU, {ort}"


# --------------------------------------------------------------------------------------------
# small helpers


# ONNX Runtime prefixes messages with "file.cc:123 <C++ signature> "; only the text after the
# innermost one means something to a user.
_SOURCE_LOCATION = re.compile(r"\S+\.(?:cc|cpp|cxx|h|hpp|mm):\d+\s+")
_CPP_SIGNATURE = re.compile(r"^[\w:~<>*&, ]+\([^()]*\)(?:::<lambda\(\)>)?(?:\s*const)?\s+")


def _one_line(text: object, limit: int = 400) -> str:
    """Collapse a message to one line, without ONNX Runtime's tags and C++ source locations."""
    s = " ".join(str(text).split())
    s = re.sub(r"\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*", "", s)
    parts = _SOURCE_LOCATION.split(s)
    if len(parts) > 1:
        tail = _CPP_SIGNATURE.sub("", parts[-1]).strip()
        s = tail or s
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _plugin_package_installed() -> bool:
    return importlib.util.find_spec("onnxruntime_ep_webgpu") is not None


def _ort_version() -> str:
    import onnxruntime as ort

    return ort.__version__


def _normalize_backend(backend: object) -> str:
    if not isinstance(backend, str) or backend.strip().lower() not in BACKENDS:
        raise ValueError(f"invalid backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    return backend.strip().lower()


def _effective_request(backend: object) -> str:
    req = _normalize_backend(backend)
    if req == "auto":
        env = os.environ.get(ENV_BACKEND, "").strip()
        if env:
            try:
                req = _normalize_backend(env)
            except ValueError:
                raise ValueError(
                    f"invalid {ENV_BACKEND}={env!r}: expected one of {', '.join(BACKENDS)}"
                ) from None
    return req


# --------------------------------------------------------------------------------------------
# Vulkan loader and wgpu adapters


def _vulkan_loader() -> tuple[bool, str]:
    """Whether the Vulkan loader can be loaded (Linux only; True elsewhere), and a detail."""
    if not sys.platform.startswith("linux"):
        return True, "not needed on this platform"
    try:
        # CDLL is authoritative (honours LD_LIBRARY_PATH); find_library only reads ldconfig's cache.
        ctypes.CDLL("libvulkan.so.1")
    except OSError as exc:
        msg = _one_line(exc)
        if "cannot open shared object file" in msg:
            found = ctypes.util.find_library("vulkan")
            # ldconfig may know an unversioned/other soname that Dawn would not look for.
            return False, "libvulkan.so.1 not found" + (f" (only {found})" if found else "")
        return False, f"libvulkan.so.1 failed to load ({msg})"
    return True, f"libvulkan.so.1 ({ctypes.util.find_library('vulkan') or 'loaded'})"


def _no_vulkan_reason(detail: str) -> str:
    return (
        f"no Vulkan loader: {detail}; the WebGPU execution provider needs it on Linux "
        "(install libvulkan1, or vulkan-loader on Fedora, and your GPU's Vulkan driver)"
    )


#: Set when this process gave itself a private XDG_RUNTIME_DIR (see _ensure_runtime_dir).
_private_runtime_dir: str | None = None


def _ensure_runtime_dir() -> str | None:
    """Give the process a private ``XDG_RUNTIME_DIR`` when it has no valid one (Linux only).

    Vulkan drivers (through libwayland) print "XDG_RUNTIME_DIR is invalid or not set" on every
    instance they create, which on a headless machine or a bare ``ssh`` session is once per
    probe; a private, empty 0700 folder is what the variable is meant to name and silences them.
    Returns the folder set, or None when the environment already had a valid one.
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


def _adapter_from_wgpu(adapter: Any) -> AdapterInfo:
    info = dict(adapter.info)
    vendor_id = int(info.get("vendor_id") or 0)
    name = str(info.get("device") or info.get("description") or "unknown adapter")
    vendor = str(info.get("vendor") or _VENDOR_IDS.get(vendor_id, ""))
    return AdapterInfo(
        name=name,
        vendor=vendor,
        backend=str(info.get("backend_type") or "unknown"),
        adapter_type=str(info.get("adapter_type") or "Unknown"),
        shader_f16="shader-f16" in set(adapter.features),
        vendor_id=vendor_id,
        device_id=int(info.get("device_id") or 0),
    )


def _enumerate_adapters() -> tuple[list[AdapterInfo], str | None]:
    """Adapters from wgpu, and the error that prevented listing them (None when fine)."""
    _ensure_runtime_dir()
    try:
        import wgpu

        raw = wgpu.gpu.enumerate_adapters_sync()
        adapters = [_adapter_from_wgpu(a) for a in raw]
    except Exception as exc:  # wgpu raises various types when no backend/driver exists at all
        return [], f"{type(exc).__name__}: {_one_line(exc)}"
    if not adapters:
        # Some wgpu versions list nothing but can still hand out the default adapter.
        try:
            import wgpu

            adapter = wgpu.gpu.request_adapter_sync(power_preference="high-performance")
            if adapter is not None:
                adapters = [_adapter_from_wgpu(adapter)]
        except Exception as exc:
            return [], f"{type(exc).__name__}: {_one_line(exc)}"
    return adapters, None


def list_adapters() -> list[AdapterInfo]:
    """List the GPU adapters ``wgpu`` can see, on every graphics backend.

    Returns
    -------
    list of AdapterInfo
        Empty (never raises) when ``wgpu`` is missing or no graphics backend works.
    """
    adapters, error = _enumerate_adapters()
    if error:
        logger.debug("wgpu lists no adapters: %s", error)
    return adapters


def _rank(adapter: AdapterInfo) -> tuple[int, int]:
    native = _NATIVE_BACKEND.get(sys.platform, "")
    return (
        0 if adapter.backend.lower() == native.lower() else 1,
        _ADAPTER_TYPE_RANK.get(adapter.adapter_type.lower(), 3),
    )


def _adapter_for_ep_device(ep_device: Any) -> AdapterInfo | None:
    """Best wgpu description of the GPU the WebGPU EP uses (None when none fits)."""
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
    # Same order as a high-performance request: the platform's native API, then discrete GPUs.
    return min(adapters, key=_rank)


# --------------------------------------------------------------------------------------------
# WebGPU execution provider discovery


def _register_plugin_ep() -> tuple[bool, str | None]:
    """Register the plugin EP library once per process; (ok, error message)."""
    global _registration
    with _lock:
        if _registration is not None:
            return _registration
        import onnxruntime as ort
        import onnxruntime_ep_webgpu as plugin

        try:
            _ensure_runtime_dir()
            ort.register_execution_provider_library(_REGISTRATION_NAME, plugin.get_library_path())
            _registration = (True, None)
        except Exception as exc:
            # Someone else in this process (another plugin, a script) may have registered it.
            if "already registered" in str(exc):
                _registration = (True, None)
            else:
                _registration = (False, f"{type(exc).__name__}: {_one_line(exc)}")
        return _registration


def _diagnose_no_device() -> str:
    """Explain why the EP registered but lists no WebGPU device."""
    ok, detail = _vulkan_loader()
    if not ok:
        return _no_vulkan_reason(detail)
    adapters, error = _enumerate_adapters()
    native = _NATIVE_BACKEND.get(sys.platform, "the native graphics API")
    hardware = [a for a in adapters if not a.is_software]
    on_native = [a for a in hardware if a.backend.lower() == native.lower()]
    base = "the WebGPU execution provider lists no device"
    if on_native:
        a = min(on_native, key=_rank)
        return (
            f"{base} although wgpu sees {a.name} ({a.backend}, {a.adapter_type}): the GPU "
            "driver may be too old or not supported by Dawn; update the GPU driver"
        )
    if hardware:
        a = min(hardware, key=_rank)
        return (
            f"{base}: wgpu sees {a.name} only through {a.backend}, but the WebGPU execution "
            f"provider needs {native}; install your GPU's {native} driver"
        )
    if adapters:
        names = ", ".join(f"{a.name} ({a.backend})" for a in adapters)
        return (
            f"{base}: only a software renderer is available ({names}), which the WebGPU "
            f"execution provider (Dawn) does not use; a GPU with a {native} driver is needed"
        )
    why = f" (wgpu: {error})" if error else ""
    return f"{base} and no GPU adapter was found{why}; a GPU with a {native} driver is needed"


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
    ep_name = plugin.get_ep_name()

    def devices() -> list[Any]:
        return [d for d in ort.get_ep_devices() if d.ep_name == ep_name]

    # Already registered by someone else (maybe under another name): nothing to do.
    found = devices()
    if not found:
        ok, error = _register_plugin_ep()
        if not ok:
            reason = f"the WebGPU execution provider library failed to load/register: {error}"
            vulkan_ok, detail = _vulkan_loader()
            if not vulkan_ok:
                reason += f"; also, {_no_vulkan_reason(detail)}"
            raise WebGPUUnavailableError(reason)
        found = devices()
    if not found:
        raise WebGPUUnavailableError(_diagnose_no_device())
    # ORT lists GPUs from the PCI bus, so a device shows up even where Dawn cannot reach it.
    vulkan_ok, detail = _vulkan_loader()
    if not vulkan_ok:
        raise WebGPUUnavailableError(_no_vulkan_reason(detail))
    return found[0]


def _builtin_webgpu_available() -> bool:
    """Whether this onnxruntime build has WebGPU built in (the ``onnxruntime-webgpu`` wheel)."""
    import onnxruntime as ort

    # A registered plugin EP with a device is listed among the available providers too.
    plugin_registered = _registration is not None and _registration[0]
    return WEBGPU_EP_NAME in ort.get_available_providers() and not plugin_registered


def _check_webgpu_runs(source: str) -> None:
    """Run the test model on WebGPU; raise WebGPUUnavailableError when that fails."""
    import numpy as np

    x = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    try:
        session = _create_webgpu_session(_PROBE_MODEL, source, {}, "disable", None)
        (y,) = session.run(None, {"x": x})
    except Exception as exc:
        raise WebGPUUnavailableError(
            "the WebGPU execution provider lists a device but could not run a test model: "
            f"{type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    if not np.allclose(y, x * x):
        raise WebGPUUnavailableError(
            f"the WebGPU execution provider gave wrong results on a test model ({y} != {x * x})"
        )


def _probe_webgpu() -> tuple[str, Any]:
    """Find a working way to run on WebGPU: (source package, OrtEpDevice or None if built in)."""
    try:
        source, ep_device = PLUGIN_PACKAGE, webgpu_ep_device()
    except WebGPUUnavailableError:
        # The all-in-one wheel only counts when the plugin is absent, so that the plugin's
        # precise diagnosis is not masked.
        if _plugin_package_installed() or not _builtin_webgpu_available():
            raise
        ok, detail = _vulkan_loader()
        if not ok:
            raise WebGPUUnavailableError(_no_vulkan_reason(detail)) from None
        source, ep_device = BUILTIN_PACKAGE, None
    _check_webgpu_runs(source)
    return source, ep_device


# --------------------------------------------------------------------------------------------
# backend resolution


def _resolve(req: str) -> BackendInfo:
    """Resolve an effective request (no env, already normalised), cached; never warns."""
    with _lock:
        hit = _cache.get(req)
        if isinstance(hit, WebGPUUnavailableError):
            raise WebGPUUnavailableError(str(hit))
        if hit is not None:
            return hit
        ort_version = _ort_version()
        ep_version = _dist_version(PLUGIN_PACKAGE)
        cpu = BackendInfo(req, "cpu", ort_version, ep_version, None, None)
        if req == "cpu":
            info = cpu
        else:
            try:
                source, ep_device = _probe_webgpu()
            except WebGPUUnavailableError as exc:
                if req == "webgpu":
                    _cache[req] = exc
                    raise
                info = dataclasses.replace(cpu, fallback_reason=str(exc))
            else:
                info = BackendInfo(
                    req,
                    "webgpu",
                    ort_version,
                    ep_version,
                    _adapter_for_ep_device(ep_device),
                    None,
                    webgpu_source=source,
                )
        _cache[req] = info
        return info


def _warn_fallback_once(info: BackendInfo) -> None:
    global _warned_fallback
    with _lock:
        if _warned_fallback:
            return
        _warned_fallback = True
    logger.warning(
        "WebGPU is not available, napari-sam2-webgpu runs on the CPU (much slower): %s. "
        "Run `napari-sam2-webgpu doctor` for details; set %s=cpu to choose the CPU explicitly.",
        info.fallback_reason,
        ENV_BACKEND,
    )


def resolve_backend(backend: str = "auto") -> BackendInfo:
    """Decide which execution provider sessions use.

    Parameters
    ----------
    backend : {"auto", "webgpu", "cpu"}
        ``"auto"`` (default; overridable with the :data:`ENV_BACKEND` environment variable) uses
        WebGPU when possible and otherwise the CPU, logging one warning per process with the
        reason. ``"webgpu"`` insists on WebGPU; ``"cpu"`` always uses the CPU. Case-insensitive.

    Returns
    -------
    BackendInfo
        Cached per process and request, because discovery is slow.

    Raises
    ------
    ValueError
        ``backend`` (or :data:`ENV_BACKEND`) is not one of :data:`BACKENDS`.
    WebGPUUnavailableError
        ``"webgpu"`` was requested but is not possible; the message says why.
    """
    info = _resolve(_effective_request(backend))
    if info.fallback_reason:
        _warn_fallback_once(info)
    return info


def clear_backend_cache() -> None:
    """Forget resolved backends and the fallback warning, so the next resolution starts fresh.

    Meant for tests. Registration of the plugin EP library with ONNX Runtime is process-global
    and is kept.
    """
    global _warned_fallback
    with _lock:
        _cache.clear()
        _warned_fallback = False


# --------------------------------------------------------------------------------------------
# sessions


def _session_options(graph_optimization: str, intra_op_threads: int | None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, _GRAPH_OPTIMIZATION[graph_optimization]
    )
    if intra_op_threads is not None:
        so.intra_op_num_threads = intra_op_threads
    # Errors only: placement warnings (e.g. shape ops kept on the CPU) are expected and noisy.
    so.log_severity_level = 3
    return so


def _model_error(exc: Exception, path: Path) -> Exception | None:
    """Translate ONNX Runtime's model-loading errors; None for anything else."""
    name = type(exc).__name__
    msg = str(exc)
    if name == "NoSuchFile":
        return FileNotFoundError(errno.ENOENT, "ONNX model file not found", str(path))
    # Load-time failures (bad protobuf, no graph, type errors, unknown ops) all carry this text;
    # provider problems happen later, during partitioning and kernel creation.
    if name in ("InvalidProtobuf", "InvalidGraph") or "Load model from" in msg:
        return ValueError(f"{path} is not a valid ONNX model: {_one_line(msg)}")
    return None


def _create_cpu_session(path: Path, graph_optimization: str, threads: int | None) -> Any:
    import onnxruntime as ort

    so = _session_options(graph_optimization, threads)
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        translated = _model_error(exc, path)
        if translated is not None:
            raise translated from exc
        raise


def _create_webgpu_session(
    model: Path | bytes,
    source: str | None,
    provider_options: dict[str, str],
    graph_optimization: str,
    threads: int | None,
) -> Any:
    """Create a session on WebGPU (nodes WebGPU lacks still run on the CPU); raise on failure."""
    import onnxruntime as ort

    so = _session_options(graph_optimization, threads)
    data = model if isinstance(model, bytes) else str(model)
    # Without enable_fallback=0, ORT prints the EP error, quietly retries on the CPU and the
    # reason is lost; older versions ignore the keyword, and get_providers() below still holds.
    if source == BUILTIN_PACKAGE:
        providers: list[Any] = [(WEBGPU_EP_NAME, provider_options), "CPUExecutionProvider"]
        session = ort.InferenceSession(
            data, sess_options=so, providers=providers, enable_fallback=0
        )
    else:
        so.add_provider_for_devices([webgpu_ep_device()], provider_options)
        session = ort.InferenceSession(data, sess_options=so, enable_fallback=0)
    if WEBGPU_EP_NAME not in session.get_providers():
        # ORT can drop a provider that fails to initialise; that is not a WebGPU session.
        raise RuntimeError(
            f"onnxruntime created the session without {WEBGPU_EP_NAME} "
            f"(providers: {', '.join(session.get_providers())})"
        )
    return session


def create_session(
    model_path: str | os.PathLike[str],
    backend: str | BackendInfo = "auto",
    *,
    provider_options: dict[str, str] | None = None,
    graph_optimization: str = "all",
    intra_op_threads: int | None = None,
) -> tuple[onnxruntime.InferenceSession, BackendInfo]:
    """Create an ONNX Runtime session on the resolved execution provider.

    Parameters
    ----------
    model_path : str or os.PathLike
        The ``.onnx`` file (external data, if any, next to it).
    backend : {"auto", "webgpu", "cpu"} or BackendInfo
        A request for :func:`resolve_backend`, or an already resolved backend.
    provider_options : dict of str to str, optional
        Options for the WebGPU execution provider; ignored on the CPU.
    graph_optimization : {"all", "extended", "layout", "basic", "disable"}
        ONNX Runtime graph optimisation level.
    intra_op_threads : int, optional
        Threads for one operator (ONNX Runtime's default, all physical cores, when None).

    Returns
    -------
    session : onnxruntime.InferenceSession
    info : BackendInfo
        What the session really uses. When ``"auto"`` resolved to WebGPU but the WebGPU session
        could not be created (unsupported operator, device lost, ...), the session runs on the
        CPU and ``info.fallback_reason`` says why (also logged as a warning).

    Raises
    ------
    FileNotFoundError
        ``model_path`` does not exist.
    ValueError
        The file is not a valid ONNX model, or an argument is invalid.
    WebGPUUnavailableError
        ``"webgpu"`` was requested and is not possible, or its session failed (ONNX Runtime's error
        in the message).
    """
    path = Path(os.fspath(model_path))
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "ONNX model file not found", str(path))
    opt = str(graph_optimization).strip().lower()
    if opt not in _GRAPH_OPTIMIZATION:
        raise ValueError(
            f"invalid graph_optimization {graph_optimization!r}: expected one of "
            f"{', '.join(_GRAPH_OPTIMIZATION)}"
        )
    if intra_op_threads is not None and (
        isinstance(intra_op_threads, bool)
        or not isinstance(intra_op_threads, int)
        or intra_op_threads < 0
    ):
        raise ValueError(f"intra_op_threads must be a non-negative int, got {intra_op_threads!r}")
    options = {str(k): str(v) for k, v in (provider_options or {}).items()}

    info = backend if isinstance(backend, BackendInfo) else resolve_backend(backend)
    if info.provider == "webgpu":
        try:
            session = _create_webgpu_session(
                path, info.webgpu_source, options, opt, intra_op_threads
            )
            return session, info
        except Exception as exc:
            translated = _model_error(exc, path)
            if translated is not None:
                raise translated from exc
            error = f"{type(exc).__name__}: {_one_line(exc)}"
            if info.requested == "webgpu":
                raise WebGPUUnavailableError(
                    f"could not create a WebGPU session for {path.name}: {error}"
                ) from exc
            reason = f"the WebGPU session for {path.name} could not be created: {error}"
            logger.warning("%s; running this model on the CPU instead.", reason)
            info = dataclasses.replace(
                info, provider="cpu", adapter=None, fallback_reason=reason, webgpu_source=None
            )
    return _create_cpu_session(path, opt, intra_op_threads), info


# --------------------------------------------------------------------------------------------
# doctor


def _section(lines: list[str], title: str, body: Any) -> None:
    """Append ``title`` and the lines ``body()`` returns; an error becomes a line, not a crash."""
    lines.append(title)
    try:
        lines.extend(f"  {line}" for line in body())
    except Exception as exc:
        lines.append(f"  error: {type(exc).__name__}: {_one_line(exc)}")


def _doctor_python() -> list[str]:
    return [
        f"Python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.platform()} ({platform.machine()})"
    ]


def _doctor_ort() -> list[str]:
    try:
        import onnxruntime as ort
    except Exception as exc:
        return [f"not importable: {type(exc).__name__}: {_one_line(exc)}"]
    providers = ort.get_available_providers()
    out = [f"version: {ort.__version__}", f"available providers: {', '.join(providers)}"]
    if _builtin_webgpu_available():
        out.append(f"built-in WebGPU provider: yes (the {BUILTIN_PACKAGE} wheel)")
    return out


def _doctor_plugin() -> list[str]:
    version = _dist_version(PLUGIN_PACKAGE)
    if version is None and not _plugin_package_installed():
        return ["not installed"]
    out = [f"version: {version or 'unknown'}"]
    try:
        import onnxruntime_ep_webgpu as plugin

        out.append(f"library: {plugin.get_library_path()}")
    except Exception as exc:
        return [*out, f"library: not found: {type(exc).__name__}: {_one_line(exc)}"]
    try:
        ok, error = _register_plugin_ep()
    except Exception as exc:
        ok, error = False, f"{type(exc).__name__}: {_one_line(exc)}"
    out.append("registration: ok" if ok else f"registration: FAILED: {error}")
    if ok:
        import onnxruntime as ort

        devices = [d for d in ort.get_ep_devices() if d.ep_name == plugin.get_ep_name()]
        if not devices:
            out.append("EP devices: none listed")
        for d in devices:
            hw = d.device
            vendor = hw.vendor or _VENDOR_IDS.get(int(hw.vendor_id), "unknown vendor")
            meta = ", ".join(f"{k}={v}" for k, v in dict(hw.metadata).items())
            out.append(
                f"EP device: {hw.type.name} {vendor} (vendor 0x{int(hw.vendor_id):04x}, "
                f"device 0x{int(hw.device_id):04x}{', ' + meta if meta else ''})"
            )
    return out


def _doctor_vulkan() -> list[str]:
    ok, detail = _vulkan_loader()
    out = [f"{'found' if ok else 'NOT FOUND'}: {detail}"]
    if _private_runtime_dir is not None:
        out.append(
            "XDG_RUNTIME_DIR was not set to a folder; a private one was used for the GPU probe "
            f"({_private_runtime_dir}), which Vulkan drivers expect"
        )
    return out


def _doctor_wgpu() -> list[str]:
    version = _dist_version("wgpu")
    adapters, error = _enumerate_adapters()
    out = [f"version: {version or 'not installed'}"]
    if error:
        out.append(f"adapters: none ({error})")
    elif not adapters:
        out.append("adapters: none")
    out.extend(f"adapter: {a.summary()}" for a in adapters)
    return out


def _doctor_choice() -> list[str]:
    env = os.environ.get(ENV_BACKEND, "").strip()
    out = [f"{ENV_BACKEND}={env}" if env else f"{ENV_BACKEND} not set"]
    try:
        req = _effective_request("auto")
    except ValueError as exc:
        return [*out, f"error: {exc}"]
    try:
        info = _resolve(req)
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
        from . import __version__

        lines[0] += f" (version {__version__})"
    except Exception:  # the report must not depend on the package importing cleanly
        pass
    sections = [
        ("Python:", _doctor_python),
        ("onnxruntime:", _doctor_ort),
        (f"{PLUGIN_PACKAGE} (WebGPU execution provider):", _doctor_plugin),
        ("Vulkan loader:", _doctor_vulkan),
        ("wgpu (GPU adapters):", _doctor_wgpu),
        ("Backend:", _doctor_choice),
    ]
    for title, body in sections:
        _section(lines, title, body)
    return "\n".join(lines)
