"""The memory bank in device memory: each memory uploaded once, stacked on the device.

Memory attention reads an object's memories as one ``(N, 64, h, w)`` tensor. Built on the host,
that tensor is rebuilt from the bfloat16 copies and uploaded whole for every tracked frame (7 MB
at 1024², ~8 ms of host work a frame while the GPU waits; docs/benchmarks.md), although only
one memory is new. :class:`DeviceMemoryBank` keeps each memory's float32 values in device memory
(uploaded the first time it is attended to) and stacks the ones a frame needs with a one-node
ONNX graph (``Concat``) on the same device. The values are the bfloat16-rounded ones the host
keeps, so results do not change.

``onnx`` and ``onnxruntime`` are imported inside the functions, so importing this is cheap.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..runtime.iobinding import DeviceIO, run_bound
from .memory import from_bfloat16
from .state import FrameResult

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import BackendInfo

__all__ = ["DEFAULT_DEVICE_BANK_BYTES", "DeviceMemoryBank", "memory_stack_model"]

#: Device memory held by a :class:`DeviceMemoryBank` by default: 256 memories at 1024²
#: (1 MiB each), several objects' full banks; the least recently used are let go first.
DEFAULT_DEVICE_BANK_BYTES = 256 << 20


def memory_stack_model(count: int) -> bytes:
    """The serialised graph ``memory_0 ... memory_{count-1}`` ``(1, C, h, w)`` -> ``memory``
    ``(count, C, h, w)`` (one ``Concat`` on the first axis)."""
    from onnx import TensorProto, helper

    from ..image.device_masks import serialise

    names = [f"memory_{i}" for i in range(count)]
    graph = helper.make_graph(
        [helper.make_node("Concat", names, ["memory"], axis=0)],
        f"sam2_memory_stack_{count}",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, "C", "h", "w"]) for n in names],
        [helper.make_tensor_value_info("memory", TensorProto.FLOAT, [count, "C", "h", "w"])],
    )
    return serialise(graph)


class DeviceMemoryBank:
    """Memory features of tracked results, held in device memory and stacked there.

    Parameters
    ----------
    make_session : callable
        ``make_session(model_bytes)`` -> an ONNX Runtime session on the device, or ``None``
        when it cannot be made (the caller then stacks on the host).
    max_bytes : int
        Device memory held at most; the least recently attended memories are let go first
        (and uploaded again if attended to later).

    Attributes
    ----------
    uploads : int
        Memories copied to the device so far.

    Notes
    -----
    One propagation at a time stacks (the propagator's tracking thread). Results may die on any
    thread: their finalizers only queue their keys, which the tracking thread reaps, so no lock
    is taken while GPU work (and its lock) may be held.
    """

    def __init__(
        self,
        make_session: Callable[[bytes], Any | None],
        *,
        max_bytes: int = DEFAULT_DEVICE_BANK_BYTES,
    ) -> None:
        self._make_session = make_session
        self.max_bytes = int(max_bytes)
        self._stackers: dict[int, Any | None] = {}
        # id(result) -> (the result, weakly; the host memory it was made from; its device
        # tensor; bytes)
        self._held: OrderedDict[int, tuple[weakref.ref, Any, Any, int]] = OrderedDict()
        self._dead: deque[int] = deque()  # keys of results that died (appended on any thread)
        self._nbytes = 0
        self.uploads = 0

    @classmethod
    def on_backend(cls, info: BackendInfo, **options: Any) -> DeviceMemoryBank | None:
        """A bank on WebGPU (``options`` as for the class), or ``None`` on any other backend."""
        if info.provider != "webgpu":
            return None
        from ..runtime.sessions import webgpu_graph_session

        def make_session(model: bytes) -> Any | None:
            return webgpu_graph_session(model, info, "memory banks are stacked")

        return cls(make_session, **options)

    @property
    def nbytes(self) -> int:
        """Device memory held now."""
        self._reap()
        return self._nbytes

    def __len__(self) -> int:
        self._reap()
        return len(self._held)

    def stack(self, memories: Sequence[FrameResult], device: DeviceIO) -> Any | None:
        """The memories' features as one device tensor ``(N, 64, h, w)``, or ``None``.

        ``None`` when the stacking graph cannot run on the device: stack on the host instead.
        """
        count = len(memories)
        if count == 0:
            return None
        stacker = None
        if count > 1:  # one memory is its own stack: no graph to make or run
            if count not in self._stackers:
                self._stackers[count] = self._make_session(memory_stack_model(count))
            stacker = self._stackers[count]
            if stacker is None:
                return None
        self._reap()
        tensors = [self._tensor(result, device) for result in memories]
        self._evict()
        if stacker is None:
            return tensors[0]
        feeds = {f"memory_{i}": tensor for i, tensor in enumerate(tensors)}
        first = tensors[0].shape()
        (stacked,) = run_bound(stacker, feeds, {"memory": device.empty([count, *first[1:]])})
        return stacked

    def clear(self) -> None:
        """Let go of every device tensor."""
        self._held.clear()
        self._dead.clear()
        self._nbytes = 0

    def _tensor(self, result: FrameResult, device: DeviceIO) -> Any:
        key = id(result)
        held = self._held.get(key)
        if held is not None and held[0]() is result and held[1] is result.maskmem:
            self._held.move_to_end(key)
            return held[2]
        values = from_bfloat16(result.maskmem)[None]
        tensor = device.upload(values)
        self.uploads += 1
        self._drop(key)
        self._held[key] = (weakref.ref(result), result.maskmem, tensor, values.nbytes)
        self._nbytes += values.nbytes
        # A result dropped with its track lets its device memory go (at the next reap). The bank
        # is referenced weakly: a dropped propagator's bank and sessions go at once.
        weakref.finalize(result, _queue_dead, weakref.ref(self), key)
        return tensor

    def _drop(self, key: int) -> None:
        held = self._held.pop(key, None)
        if held is not None:
            self._nbytes -= held[3]

    def _reap(self) -> None:
        while self._dead:
            key = self._dead.popleft()
            held = self._held.get(key)
            if held is not None and held[0]() is None:  # not a newer result with the same id
                self._drop(key)

    def _evict(self) -> None:
        # Least recently attended first. Dropping one of this frame's own tensors (a bank
        # larger than max_bytes) only forgets it: the frame still holds it until it is stacked.
        while self._nbytes > self.max_bytes and len(self._held) > 1:
            self._drop(next(iter(self._held)))


def _queue_dead(bank_ref: weakref.ref[DeviceMemoryBank], key: int) -> None:
    bank = bank_ref()
    if bank is not None:
        bank._dead.append(key)  # thread-safe; the tracking thread drops it
