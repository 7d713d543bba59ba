"""Keep image embeddings in device memory between the encoder and every decode (IO binding).

Copying the encoder's outputs (about 16 MB) from the GPU after encoding and back to it on every
click costs more than the computation itself on WebGPU (measured in docs/benchmarks.md). With
ONNX Runtime's IO binding the encoder writes into device buffers that the decoder reads
directly; only the prompts go up and the low-resolution masks come down.

The encoder can also run as a captured graph (the WebGPU EP's ``enableGraphCapture``): the whole
command sequence is recorded once and replayed, removing the per-kernel CPU overhead that
dominates small models. A captured graph writes into fixed buffers, so each result is copied
(on the device) into fresh buffers owned by its ``ImageEmbedding``.

``onnxruntime`` is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .gpu_lock import gpu_lock

__all__ = ["BoundEncoder", "DeviceIO", "is_device_value", "run_bound", "static_shape"]

logger = logging.getLogger("napari_sam2_webgpu")


def static_shape(shape: Sequence[Any]) -> tuple[int, ...] | None:
    """The shape as ints, or ``None`` when a dimension is symbolic."""
    return tuple(shape) if all(isinstance(d, int) and d > 0 for d in shape) else None


class DeviceIO:
    """Allocate, fill and read tensors in one execution provider's device memory.

    Parameters
    ----------
    memory_info : onnxruntime.OrtMemoryInfo
        The device memory of the execution provider (``ep_device.memory_info(DEFAULT)``).
    """

    def __init__(self, memory_info: Any) -> None:
        import onnxruntime as ort

        self._ort = ort
        self.memory_info = memory_info

    @classmethod
    def for_ep_device(cls, ep_device: Any) -> DeviceIO | None:
        """A :class:`DeviceIO` for an ``OrtEpDevice``, or ``None`` if this ORT cannot do it."""
        import onnxruntime as ort

        if not hasattr(ort, "copy_tensors") or not hasattr(ep_device, "memory_info"):
            return None
        try:
            return cls(ep_device.memory_info(ort.OrtDeviceMemoryType.DEFAULT))
        except Exception as exc:  # older ORT or an EP without its own memory
            logger.info("device-resident tensors unavailable: %s", exc)
            return None

    def empty(self, shape: Sequence[int], dtype: Any = np.float32) -> Any:
        """A new tensor on the device (float32 unless ``dtype`` says otherwise)."""
        with gpu_lock():
            return self._ort.OrtValue.ortvalue_from_shape_and_type(
                list(shape), dtype, memory_info=self.memory_info
            )

    def copy(self, sources: Sequence[Any], targets: Sequence[Any]) -> None:
        """Copy tensors (host or device) into other tensors (host or device)."""
        if all(v.device_name().lower() == "cpu" for v in (*sources, *targets)):
            # ORT registers no host-to-host data transfer; the CPU EP's "device" is the host.
            for source, target in zip(sources, targets, strict=True):
                target.update_inplace(source.numpy())
            return
        with gpu_lock():
            self._ort.copy_tensors(list(sources), list(targets), None)

    def wrap(self, array: np.ndarray) -> Any:
        """A host ``OrtValue`` viewing ``array`` (C-contiguous), to :meth:`copy` from or into."""
        return self._ort.OrtValue.ortvalue_from_numpy(array)

    def upload(self, array: np.ndarray, target: Any | None = None) -> Any:
        """Copy a host array into ``target`` (or a new device tensor) and return it."""
        array = np.ascontiguousarray(array, dtype=np.float32)
        target = self.empty(array.shape) if target is None else target
        self.copy([self.wrap(array)], [target])
        return target

    def download(self, value: Any) -> np.ndarray:
        """Copy a device tensor to a new host array."""
        host = np.empty(value.shape(), dtype=np.float32)
        self.copy([value], [self.wrap(host)])
        return host

    def clone(self, value: Any) -> Any:
        """A device-side copy of a device tensor."""
        out = self.empty(value.shape())
        self.copy([value], [out])
        return out


def is_device_value(value: Any) -> bool:
    """Whether ``value`` is an ``OrtValue`` (device-resident) rather than a numpy array."""
    return not isinstance(value, np.ndarray) and hasattr(value, "tensor_size_in_bytes")


class BoundEncoder:
    """Run an encoder session so that its outputs stay in device memory.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
        The encoder on the device's execution provider (created with ``enableGraphCapture=1``
        when ``graph_capture`` is true).
    device : DeviceIO
        Where the outputs live.
    output_shapes : dict
        Static shape of each output.
    input_name : str
        The encoder's image input.
    input_shape : tuple of int
        Its static shape (the fixed input buffer of a captured graph).
    graph_capture : bool
        Replay a captured graph (input and outputs in fixed device buffers).
    """

    def __init__(
        self,
        session: Any,
        device: DeviceIO,
        output_shapes: dict[str, tuple[int, ...]],
        *,
        input_name: str = "image",
        input_shape: tuple[int, ...] = (1, 3, 1024, 1024),
        graph_capture: bool = False,
    ) -> None:
        self.session = session
        self.device = device
        self.output_shapes = output_shapes
        self.input_name = input_name
        self.input_shape = tuple(input_shape)
        self.graph_capture = graph_capture
        self._lock = threading.Lock()
        self._binding = self._input = self._outputs = None
        if graph_capture:
            self._binding = session.io_binding()
            # Bound once, for good: a captured graph replays exactly these buffers, and ORT
            # refuses to rebind an IOBinding that a captured graph references.
            self._input = device.empty(input_shape)
            self._outputs = {name: device.empty(shape) for name, shape in output_shapes.items()}
            self._binding.bind_ortvalue_input(input_name, self._input)
            for name, value in self._outputs.items():
                self._binding.bind_ortvalue_output(name, value)

    def run(self, tensor: np.ndarray) -> dict[str, Any]:
        """Encode ``tensor``; return fresh device tensors, one per output."""
        if self.graph_capture:
            return self.run_prepared(lambda target: self.device.upload(tensor, target))
        return self._run_once(
            lambda binding: binding.bind_cpu_input(self.input_name, np.ascontiguousarray(tensor))
        )

    def run_prepared(self, fill: Callable[[Any], None]) -> dict[str, Any]:
        """Encode the input that ``fill(target)`` writes into the device tensor ``target``.

        For inputs made on the device (:mod:`napari_sam2_webgpu.image.device_preprocess`):
        with graph capture, ``target`` is the captured graph's own input buffer.
        """
        if self.graph_capture:
            # Same buffers every time (that is what lets the captured graph be replayed), so
            # one encode at a time.
            with self._lock, gpu_lock():
                fill(self._input)
                self.session.run_with_iobinding(self._binding)
                self._binding.synchronize_outputs()
                return {name: self.device.clone(v) for name, v in self._outputs.items()}
        with gpu_lock():
            target = self.device.empty(self.input_shape)
            fill(target)
            return self._run_once(
                lambda binding: binding.bind_ortvalue_input(self.input_name, target)
            )

    def _run_once(self, bind_input: Callable[[Any], None]) -> dict[str, Any]:
        # A fresh binding per run: encodes from two threads must not rebind each other's.
        with gpu_lock():
            binding = self.session.io_binding()
            bind_input(binding)
            outputs = {name: self.device.empty(shape) for name, shape in self.output_shapes.items()}
            for name, value in outputs.items():
                binding.bind_ortvalue_output(name, value)
            self.session.run_with_iobinding(binding)
            binding.synchronize_outputs()
            return outputs


def run_bound(
    session: Any, feeds: dict[str, Any], device_outputs: dict[str, Any] | None = None
) -> list[Any]:
    """Run a session whose inputs may be device-resident ``OrtValue``s or numpy arrays.

    Device inputs are read where they are (IO binding); numpy inputs are copied in. Without
    device values either way, this is a plain ``session.run``.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
    feeds : dict of str to numpy.ndarray or onnxruntime.OrtValue
        Every input of the session.
    device_outputs : dict of str to onnxruntime.OrtValue, optional
        Outputs to write into these device tensors instead of host arrays.

    Returns
    -------
    list
        One value per session output, in order: the tensor from ``device_outputs`` for the
        outputs named there, a numpy array for every other.
    """
    with gpu_lock(session):
        return _run_bound(session, feeds, device_outputs or {})


def _run_bound(session: Any, feeds: dict[str, Any], device_outputs: dict[str, Any]) -> list[Any]:
    if not device_outputs and not any(is_device_value(v) for v in feeds.values()):
        return session.run(None, feeds)
    binding = session.io_binding()
    for name, value in feeds.items():
        if is_device_value(value):
            binding.bind_ortvalue_input(name, value)
        else:
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
    names = [output.name for output in session.get_outputs()]
    for name in names:
        if name in device_outputs:
            binding.bind_ortvalue_output(name, device_outputs[name])
        else:
            binding.bind_output(name, "cpu")
    session.run_with_iobinding(binding)
    binding.synchronize_outputs()
    values = binding.get_outputs()
    return [
        device_outputs[name] if name in device_outputs else value.numpy()
        for name, value in zip(names, values, strict=True)
    ]
