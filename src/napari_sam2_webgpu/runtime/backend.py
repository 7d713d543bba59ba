"""Which execution provider sessions use: the backend names, the choice, and why it was made.

``"auto"`` uses WebGPU when the WebGPU execution provider lists a device *and* runs a tiny test
model on it, because ONNX Runtime can list a GPU (from the PCI bus) that Dawn then cannot open.
Otherwise ``"auto"`` falls back to the CPU and logs one warning per process with the reason;
``"webgpu"`` raises :class:`.errors.WebGPUUnavailableError` with it; ``"cpu"`` never looks for
a GPU. Discovery is slow, so each request is resolved once per process.

``onnxruntime`` is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from . import adapters, discovery, providers
from .adapters import AdapterInfo
from .discovery import BUILTIN_PACKAGE, PLUGIN_PACKAGE
from .errors import WebGPUUnavailableError, one_line
from .gpu_lock import gpu_lock

__all__ = [
    "BACKENDS",
    "ENV_BACKEND",
    "PROVIDERS",
    "BackendInfo",
    "clear_backend_cache",
    "effective_request",
    "resolve_backend",
    "resolve_request",
]

#: Where sessions can run (the values of ``BackendInfo.provider``).
PROVIDERS: tuple[str, ...] = ("webgpu", "cpu")
#: What can be asked for: the providers, or ``"auto"`` (WebGPU when it works, else the CPU).
BACKENDS: tuple[str, ...] = ("auto", *PROVIDERS)
#: Environment variable that replaces an ``"auto"`` request (e.g. ``=cpu``).
ENV_BACKEND = "NAPARI_SAM2_WEBGPU_BACKEND"

logger = logging.getLogger("napari_sam2_webgpu")

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
        The package providing WebGPU (:data:`.discovery.PLUGIN_PACKAGE` or
        :data:`.discovery.BUILTIN_PACKAGE`) when ``provider == "webgpu"``.
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
            return f"CPU (WebGPU unavailable: {one_line(self.fallback_reason)}), {ort}"
        return f"CPU, {ort}"


# --------------------------------------------------------------------------------------------
# requests


def _normalize_backend(backend: object) -> str:
    if not isinstance(backend, str) or backend.strip().lower() not in BACKENDS:
        raise ValueError(f"invalid backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    return backend.strip().lower()


def effective_request(backend: object) -> str:
    """The request that counts: ``backend`` normalised, ``"auto"`` replaced by :data:`ENV_BACKEND`.

    Parameters
    ----------
    backend : str
        One of :data:`BACKENDS`, in any case, with blanks around it or not.

    Returns
    -------
    str
        One of :data:`BACKENDS`.

    Raises
    ------
    ValueError
        ``backend``, or :data:`ENV_BACKEND` when it applies, is not one of :data:`BACKENDS`.
    """
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
# is WebGPU really usable?


def _check_webgpu_runs(source: str) -> None:
    """Run the test model on WebGPU; raise WebGPUUnavailableError when that fails."""
    import numpy as np

    x = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    try:
        session = providers.create_webgpu_session(_PROBE_MODEL, source, {}, "disable", None)
        with gpu_lock(session):
            (y,) = session.run(None, {"x": x})
    except Exception as exc:
        raise WebGPUUnavailableError(
            "the WebGPU execution provider lists a device but could not run a test model: "
            f"{type(exc).__name__}: {one_line(exc)}"
        ) from exc
    if not np.allclose(y, x * x):
        raise WebGPUUnavailableError(
            f"the WebGPU execution provider gave wrong results on a test model ({y} != {x * x})"
        )


def _probe_webgpu() -> tuple[str, Any]:
    """Find a working way to run on WebGPU: (source package, OrtEpDevice or None if built in)."""
    try:
        source, ep_device = PLUGIN_PACKAGE, discovery.webgpu_ep_device()
    except WebGPUUnavailableError:
        # The all-in-one wheel only counts when the plugin is absent, so that the plugin's
        # precise diagnosis is not masked.
        if discovery.plugin_package_installed() or not discovery.builtin_webgpu_available():
            raise
        ok, detail = adapters.vulkan_loader()
        if not ok:
            raise WebGPUUnavailableError(adapters.no_vulkan_reason(detail)) from None
        source, ep_device = BUILTIN_PACKAGE, None
    _check_webgpu_runs(source)
    return source, ep_device


# --------------------------------------------------------------------------------------------
# resolution


def resolve_request(request: str) -> BackendInfo:
    """Resolve an effective request, cached per process, without warning about a fallback.

    :func:`resolve_backend` is the public entry; this is what it and the doctor share.

    Parameters
    ----------
    request : str
        A result of :func:`effective_request`.

    Returns
    -------
    BackendInfo

    Raises
    ------
    WebGPUUnavailableError
        ``request`` is ``"webgpu"`` and WebGPU is not usable (raised again on later calls).
    """
    with _lock:
        hit = _cache.get(request)
        if isinstance(hit, WebGPUUnavailableError):
            raise WebGPUUnavailableError(str(hit))
        if hit is not None:
            return hit
        import onnxruntime as ort

        ep_version = discovery.dist_version(PLUGIN_PACKAGE)
        cpu = BackendInfo(request, "cpu", ort.__version__, ep_version, None, None)
        if request == "cpu":
            info = cpu
        else:
            try:
                source, ep_device = _probe_webgpu()
            except WebGPUUnavailableError as exc:
                if request == "webgpu":
                    _cache[request] = exc
                    raise
                info = dataclasses.replace(cpu, fallback_reason=str(exc))
            else:
                adapter = adapters.adapter_for_ep_device(ep_device)
                info = dataclasses.replace(
                    cpu, provider="webgpu", adapter=adapter, webgpu_source=source
                )
        _cache[request] = info
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
    info = resolve_request(effective_request(backend))
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
