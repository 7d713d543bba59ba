"""``create_session``: an ONNX Runtime session on the resolved backend, with the CPU as fallback.

A model whose WebGPU session fails under ``"auto"`` (unsupported operator, device lost, ...)
still gets a session, on the CPU, and the returned :class:`.backend.BackendInfo` says why. A
broken model file is the model's fault, never a reason to fall back: it raises.

``onnxruntime`` is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import providers
from .backend import BackendInfo, resolve_backend
from .errors import WebGPUUnavailableError, one_line
from .providers import GRAPH_OPTIMIZATION_LEVELS

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime

__all__ = ["create_session", "webgpu_graph_session"]

logger = logging.getLogger("napari_sam2_webgpu")


def _checked_arguments(
    model_path: str | os.PathLike[str],
    graph_optimization: str,
    intra_op_threads: int | None,
    provider_options: dict[str, str] | None,
) -> tuple[Path, str, dict[str, str]]:
    """Validate :func:`create_session`'s arguments: (path, optimisation level, options)."""
    path = Path(os.fspath(model_path))
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "ONNX model file not found", str(path))
    opt = str(graph_optimization).strip().lower()
    if opt not in GRAPH_OPTIMIZATION_LEVELS:
        raise ValueError(
            f"invalid graph_optimization {graph_optimization!r}: expected one of "
            f"{', '.join(GRAPH_OPTIMIZATION_LEVELS)}"
        )
    if intra_op_threads is not None and (
        isinstance(intra_op_threads, bool)
        or not isinstance(intra_op_threads, int)
        or intra_op_threads < 0
    ):
        raise ValueError(f"intra_op_threads must be a non-negative int, got {intra_op_threads!r}")
    options = {str(k): str(v) for k, v in (provider_options or {}).items()}
    return path, opt, options


def _webgpu_failed(exc: Exception, path: Path, info: BackendInfo) -> BackendInfo:
    """Handle a failed WebGPU session: raise, or return the CPU fallback's ``BackendInfo``."""
    translated = providers.model_error(exc, path)
    if translated is not None:
        raise translated from exc
    error = f"{type(exc).__name__}: {one_line(exc)}"
    if info.requested == "webgpu":
        raise WebGPUUnavailableError(
            f"could not create a WebGPU session for {path.name}: {error}"
        ) from exc
    reason = f"the WebGPU session for {path.name} could not be created: {error}"
    logger.warning("%s; running this model on the CPU instead.", reason)
    return dataclasses.replace(
        info, provider="cpu", adapter=None, fallback_reason=reason, webgpu_source=None
    )


def create_session(
    model_path: str | os.PathLike[str],
    backend: str | BackendInfo = "auto",
    *,
    provider_options: dict[str, str] | None = None,
    graph_optimization: str = "all",
    intra_op_threads: int | None = None,
    cpu_memory_arena: bool = True,
    fixed_dimensions: dict[str, int] | None = None,
) -> tuple[onnxruntime.InferenceSession, BackendInfo]:
    """Create an ONNX Runtime session on the resolved execution provider.

    Parameters
    ----------
    model_path : str or os.PathLike
        The ``.onnx`` file (external data, if any, next to it).
    backend : {"auto", "webgpu", "cpu"} or BackendInfo
        A request for :func:`.backend.resolve_backend`, or an already resolved backend.
    provider_options : dict of str to str, optional
        Options for the WebGPU execution provider; ignored on the CPU.
    graph_optimization : {"all", "extended", "layout", "basic", "disable"}
        ONNX Runtime graph optimisation level.
    intra_op_threads : int, optional
        Threads for one operator (ONNX Runtime's default, all physical cores, when None).
    cpu_memory_arena : bool
        Keep host memory in ONNX Runtime's arena (fast reuse, held at its peak for the
        session's lifetime). Turn it off for models whose intermediate sizes change from run to
        run (memory attention's grows with the memory bank): they would hold the largest run's
        buffers for good.
    fixed_dimensions : dict of str to int, optional
        Sizes for the model's named free dimensions, e.g. ``{"num_points": 2}``: a static-shape
        session (what WebGPU graph capture needs; see :mod:`.capture`).

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
    path, opt, options = _checked_arguments(
        model_path, graph_optimization, intra_op_threads, provider_options
    )
    info = backend if isinstance(backend, BackendInfo) else resolve_backend(backend)
    if info.provider == "webgpu":
        try:
            session = providers.create_webgpu_session(
                path,
                info.webgpu_source,
                options,
                opt,
                intra_op_threads,
                cpu_memory_arena,
                fixed_dimensions,
            )
            return session, info
        except Exception as exc:
            info = _webgpu_failed(exc, path, info)
    session = providers.create_cpu_session(
        path, opt, intra_op_threads, cpu_memory_arena, fixed_dimensions
    )
    return session, info


def webgpu_graph_session(model: bytes, info: BackendInfo, purpose: str) -> Any | None:
    """A WebGPU session of a small graph built in memory, or ``None`` (then logged).

    For the optional work done beside the models on the GPU (preparing inputs, upsampling
    masks): ``None`` when ``info`` is not WebGPU or the session cannot be made, and the
    caller keeps that work on the host.

    Parameters
    ----------
    model : bytes
        The serialised ONNX model.
    info : BackendInfo
        The resolved backend of the models it works beside.
    purpose : str
        What it does, for the log: "<purpose> on the host (...)".
    """
    if info.provider != "webgpu":
        return None
    try:
        return providers.create_webgpu_session(model, info.webgpu_source, {}, "all", None)
    except Exception as exc:  # an optimisation: the host path always works
        logger.info("%s on the host (no WebGPU session: %s)", purpose, one_line(exc))
        return None
