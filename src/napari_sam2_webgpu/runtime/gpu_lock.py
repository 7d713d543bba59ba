"""One thread at a time on the GPU: a process-wide lock around every call into a device.

ONNX Runtime's WebGPU execution provider shares one WebGPU context (its command encoder and
pending work) among all sessions on a device and does not guard it: two sessions whose ``Run``
calls overlap on different threads can crash the whole process (onnxruntime issues #32561 on
Linux/Vulkan, #27592 and #31627 on macOS; constructing sessions concurrently is fine). This
plugin does run sessions on several threads: the widget encodes in a worker while a click
decodes on the GUI thread, propagation tracks in a worker while the preview decodes, segment
everything and precomputing embeddings run beside clicks. So every session run, device copy
and device allocation on a GPU execution provider holds :func:`gpu_lock` for its duration (one
run: milliseconds on a GPU); work on the CPU execution provider, which is thread-safe, does
not.

Set ``NAPARI_SAM2_WEBGPU_GPU_LOCK=0`` to let runs overlap (for an ONNX Runtime whose WebGPU EP
supports concurrent runs); ``benchmarks/concurrency_probe.py`` checks whether that is safe on
a machine.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["ENV_GPU_LOCK", "gpu_lock", "gpu_lock_enabled", "on_gpu"]

#: Environment variable: ``0`` turns the lock off.
ENV_GPU_LOCK = "NAPARI_SAM2_WEBGPU_GPU_LOCK"

# Re-entrant: a locked run may copy or allocate on the device, which takes the lock too.
_lock = threading.RLock()


def gpu_lock_enabled() -> bool:
    """Whether GPU work is serialized (unless ``NAPARI_SAM2_WEBGPU_GPU_LOCK=0``)."""
    return os.environ.get(ENV_GPU_LOCK, "1").strip() != "0"


def on_gpu(session: Any) -> bool:
    """Whether an ``InferenceSession`` runs on an execution provider other than the CPU's."""
    try:
        providers = session.get_providers()
    except AttributeError:  # not a session (a test double): nothing to guard
        return False
    # A WebGPU session lists its EP and the CPU's (which runs the nodes it leaves), in an
    # order that depends on how it was created.
    return any(name != "CPUExecutionProvider" for name in providers)


@contextlib.contextmanager
def gpu_lock(session: Any = None) -> Iterator[None]:
    """Hold the process-wide GPU lock for the block.

    Parameters
    ----------
    session : onnxruntime.InferenceSession, optional
        Lock only if this session runs on a GPU execution provider; without one, always lock
        (device memory operations).
    """
    if not gpu_lock_enabled() or (session is not None and not on_gpu(session)):
        yield
        return
    with _lock:
        yield
