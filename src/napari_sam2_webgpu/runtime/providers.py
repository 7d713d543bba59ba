"""One ONNX Runtime session on one execution provider, WebGPU or the CPU, without fallbacks.

These are the building blocks of :func:`.sessions.create_session` (which chooses and falls back)
and of the WebGPU test run in :mod:`.backend`. Sessions log errors only, and ONNX Runtime's
model-loading errors become ``FileNotFoundError`` / ``ValueError`` naming the file.

``onnxruntime`` is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from . import discovery
from .discovery import BUILTIN_PACKAGE, WEBGPU_EP_NAME
from .errors import one_line

__all__ = [
    "GRAPH_OPTIMIZATION_LEVELS",
    "create_cpu_session",
    "create_webgpu_session",
    "model_error",
    "session_options",
]

#: ``graph_optimization`` names and the ONNX Runtime level each stands for.
GRAPH_OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "layout": "ORT_ENABLE_LAYOUT",
    "all": "ORT_ENABLE_ALL",
}


def session_options(
    graph_optimization: str,
    intra_op_threads: int | None,
    memory_arena: bool = True,
    fixed_dimensions: dict[str, int] | None = None,
) -> Any:
    """``SessionOptions`` with the given optimisation level and threads, logging errors only.

    Parameters
    ----------
    graph_optimization : str
        A key of :data:`GRAPH_OPTIMIZATION_LEVELS`.
    intra_op_threads : int or None
        Threads for one operator; ONNX Runtime's default when None.
    memory_arena : bool
        Whether host memory comes from ONNX Runtime's arena, which keeps its largest size for the
        session's lifetime. Off, large buffers go back to the system after each run.
    fixed_dimensions : dict of str to int, optional
        Sizes for the model's named free dimensions (a static-shape session, which the WebGPU
        EP can graph-capture).

    Returns
    -------
    onnxruntime.SessionOptions
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION_LEVELS[graph_optimization]
    )
    if intra_op_threads is not None:
        so.intra_op_num_threads = intra_op_threads
    so.enable_cpu_mem_arena = memory_arena
    # Errors only: placement warnings (e.g. shape ops kept on the CPU) are expected and noisy.
    so.log_severity_level = 3
    for name, size in (fixed_dimensions or {}).items():
        so.add_free_dimension_override_by_name(name, int(size))
    return so


def model_error(exc: Exception, path: Path) -> Exception | None:
    """Translate ONNX Runtime's model-loading errors into Python's.

    Parameters
    ----------
    exc : Exception
        What ONNX Runtime raised while creating a session.
    path : pathlib.Path
        The model file, named in the message.

    Returns
    -------
    FileNotFoundError, ValueError or None
        ``FileNotFoundError`` for a missing file, ``ValueError`` for a file that is not a valid
        model, None for anything else (such as a provider failure).
    """
    name = type(exc).__name__
    msg = str(exc)
    if name == "NoSuchFile":
        return FileNotFoundError(errno.ENOENT, "ONNX model file not found", str(path))
    # Load-time failures (bad protobuf, no graph, type errors, unknown ops) all carry this text;
    # provider problems happen later, during partitioning and kernel creation.
    if name in ("InvalidProtobuf", "InvalidGraph") or "Load model from" in msg:
        return ValueError(f"{path} is not a valid ONNX model: {one_line(msg)}")
    return None


def create_cpu_session(
    path: Path,
    graph_optimization: str,
    threads: int | None,
    memory_arena: bool = True,
    fixed_dimensions: dict[str, int] | None = None,
) -> Any:
    """A session on the CPU execution provider (arguments as for :func:`session_options`).

    Raises
    ------
    FileNotFoundError, ValueError
        See :func:`model_error`.
    """
    import onnxruntime as ort

    so = session_options(graph_optimization, threads, memory_arena, fixed_dimensions)
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        translated = model_error(exc, path)
        if translated is not None:
            raise translated from exc
        raise


def create_webgpu_session(
    model: Path | bytes,
    source: str | None,
    provider_options: dict[str, str],
    graph_optimization: str,
    threads: int | None,
    memory_arena: bool = True,
    fixed_dimensions: dict[str, int] | None = None,
) -> Any:
    """A session on WebGPU (nodes WebGPU lacks still run on the CPU).

    Parameters
    ----------
    model : pathlib.Path or bytes
        The model file, or a serialised model.
    source : str or None
        :data:`.discovery.BUILTIN_PACKAGE` to take WebGPU by name from the all-in-one wheel;
        otherwise the plugin EP's device is used.
    provider_options : dict of str to str
        Options for the WebGPU execution provider.
    graph_optimization, threads, memory_arena, fixed_dimensions
        As for :func:`session_options` (the arena is that of host memory).

    Returns
    -------
    onnxruntime.InferenceSession

    Raises
    ------
    Exception
        ONNX Runtime's error, unchanged; ``RuntimeError`` when ONNX Runtime created the session
        without the WebGPU provider.
    """
    import onnxruntime as ort

    so = session_options(graph_optimization, threads, memory_arena, fixed_dimensions)
    data = model if isinstance(model, bytes) else str(model)
    # Without enable_fallback=0, ORT prints the EP error, quietly retries on the CPU and the
    # reason is lost; older versions ignore the keyword, and get_providers() below still holds.
    if source == BUILTIN_PACKAGE:
        providers: list[Any] = [(WEBGPU_EP_NAME, provider_options), "CPUExecutionProvider"]
        session = ort.InferenceSession(
            data, sess_options=so, providers=providers, enable_fallback=0
        )
    else:
        so.add_provider_for_devices([discovery.webgpu_ep_device()], provider_options)
        session = ort.InferenceSession(data, sess_options=so, enable_fallback=0)
    if WEBGPU_EP_NAME not in session.get_providers():
        # ORT can drop a provider that fails to initialise; that is not a WebGPU session.
        raise RuntimeError(
            f"onnxruntime created the session without {WEBGPU_EP_NAME} "
            f"(providers: {', '.join(session.get_providers())})"
        )
    return session
