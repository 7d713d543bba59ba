"""Graph-captured sessions of a model with free dimensions: one static-shape session per shape.

The WebGPU execution provider can record a model's whole command sequence once and replay it
(``enableGraphCapture``), which removes the per-kernel CPU overhead that dominates small models
such as SAM2's prompt decoder (hundreds of small dispatches). Capture needs every node on the
GPU, and the decoder's dynamic prompt dimensions keep shape computations on the CPU; with the
free dimensions fixed (``SessionOptions.add_free_dimension_override_by_name``) every node lands
on the GPU and the graph can be captured. A prompt shape (prompt sets x points) is therefore
one session, created the first time that shape is decoded and kept (a few of them, least
recently used first out).

A captured graph reads and writes fixed buffers, bound once:

- inputs whose shape never changes (the image embedding) are device buffers shared by every
  shape's session; a new embedding is copied into them on the device, once, not on every call;
- the other inputs (prompts) and every output are buffers of their session; a call uploads the
  prompts in one copy and downloads the outputs in one copy.

Each new shape is checked against the plain session before it is used: once with the prompts
of the call that created it, once with other prompts, so a replay that returns stale outputs
(a node whose output ONNX Runtime copies outside the captured graph) is caught. A shape that
fails is never retried; it, and every shape after two failures, runs on the plain session.

``onnxruntime`` is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .errors import one_line
from .gpu_lock import gpu_lock
from .iobinding import DeviceIO, is_device_value

__all__ = ["CAPTURE_OPTIONS", "CaptureMismatchError", "CapturedSessions", "free_dimensions"]

logger = logging.getLogger("napari_sam2_webgpu")

#: WebGPU execution provider options that turn graph capture on.
CAPTURE_OPTIONS = {"enableGraphCapture": "1"}

#: Largest relative difference (to the output's largest magnitude) a captured replay may have
#: from the plain session. Measured on the H200: 2e-6 for the tiny decoder (fp32 reassociation).
CAPTURE_TOLERANCE = 1e-4

#: Shapes that failed before capture is given up for every shape.
MAX_FAILURES = 2

#: Tensor types a captured session's buffers can hold, as numpy types.
TENSOR_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64}

SessionFactory = Callable[[dict[str, int]], Any]


class CaptureMismatchError(RuntimeError):
    """A captured session's outputs differ from the plain session's on the same inputs."""


def free_dimensions(session: Any) -> dict[str, list[tuple[int, str]]]:
    """Each input's symbolic dimensions: ``{input: [(axis, dimension name), ...]}``.

    Parameters
    ----------
    session : onnxruntime.InferenceSession

    Returns
    -------
    dict
        Only inputs with at least one symbolic (named) dimension.
    """
    found: dict[str, list[tuple[int, str]]] = {}
    for arg in session.get_inputs():
        named = [(axis, dim) for axis, dim in enumerate(arg.shape) if isinstance(dim, str)]
        if named:
            found[arg.name] = named
    return found


def _relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    diff = float(np.abs(got - expected).max()) if expected.size else 0.0
    return diff / (scale + 1e-12)


def _perturbed(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Other values for the float inputs (same shapes), so a stale replay shows."""
    return {
        name: (value + 1).astype(value.dtype) if value.dtype == np.float32 else value
        for name, value in feeds.items()
    }


class _Captured:
    """One static-shape session with its bound buffers."""

    def __init__(
        self,
        session: Any,
        device: DeviceIO,
        shared: Mapping[str, Any],
        dynamic: Mapping[str, tuple[tuple[int, ...], Any]],
        outputs: Mapping[str, tuple[tuple[int, ...], Any]],
    ) -> None:
        self.session = session
        self.device = device
        self.inputs = {name: device.empty(*spec) for name, spec in dynamic.items()}
        self.outputs = {name: device.empty(*spec) for name, spec in outputs.items()}
        self.dtypes = {name: spec[1] for name, spec in outputs.items()}
        self.binding = session.io_binding()
        # Bound once, for good: the captured graph replays exactly these buffers.
        for name, value in {**shared, **self.inputs}.items():
            self.binding.bind_ortvalue_input(name, value)
        for name, value in self.outputs.items():
            self.binding.bind_ortvalue_output(name, value)

    def run(self, dynamic: Mapping[str, Any]) -> dict[str, np.ndarray]:
        with gpu_lock():
            return self._run(dynamic)

    def _run(self, dynamic: Mapping[str, Any]) -> dict[str, np.ndarray]:
        sources = [
            value if is_device_value(value) else self.device.wrap(value)
            for value in dynamic.values()
        ]
        # One copy call for every prompt input (each call waits for the device).
        self.device.copy(sources, [self.inputs[name] for name in dynamic])
        self.session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()
        results = {
            name: np.empty(value.shape(), dtype=self.dtypes[name])
            for name, value in self.outputs.items()
        }
        self.device.copy(
            list(self.outputs.values()),
            [self.device.wrap(array) for array in results.values()],
        )
        return results


class CapturedSessions:
    """Replay a model as graph-captured static-shape sessions, one per input shape.

    Parameters
    ----------
    plain : onnxruntime.InferenceSession
        The model with its free dimensions (the reference, and where shapes that cannot be
        captured run).
    device : DeviceIO
        The device memory the captured sessions read and write.
    create : callable
        ``create({dimension name: size})`` returns a new session of the same model with those
        free dimensions fixed and graph capture on (:data:`CAPTURE_OPTIONS`).
    max_sessions : int
        Shapes kept at once; the least recently used is released first. Each holds its own
        intermediate buffers on the device.

    Notes
    -----
    Thread-safe: calls run one at a time (the buffers are shared).
    """

    def __init__(
        self,
        plain: Any,
        device: DeviceIO,
        create: SessionFactory,
        *,
        max_sessions: int = 6,
    ) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
        self.plain = plain
        self.device = device
        self.create = create
        self.max_sessions = max_sessions
        self.output_names = [o.name for o in plain.get_outputs()]
        self.free = free_dimensions(plain)
        args = (*plain.get_inputs(), *plain.get_outputs())
        self.dtypes = {arg.name: TENSOR_TYPES.get(arg.type) for arg in args}
        # A model with tensor types the buffers cannot hold is not captured.
        self.unsupported = sorted(name for name, dtype in self.dtypes.items() if dtype is None)
        static = [arg for arg in plain.get_inputs() if arg.name not in self.free]
        self._shared = {
            arg.name: device.empty(tuple(arg.shape), self.dtypes[arg.name] or np.float32)
            for arg in static
        }
        # The values last copied into the shared buffers (held, so `is` cannot match a new
        # object at a reused address).
        self._shared_from: dict[str, Any] = {}
        self._sessions: OrderedDict[tuple[int, ...], _Captured] = OrderedDict()
        self._failed: set[tuple[int, ...]] = set()
        self._lock = threading.Lock()

    # -- state --------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """Whether new shapes are still captured (false after :data:`MAX_FAILURES`)."""
        return not self.unsupported and len(self._failed) < MAX_FAILURES

    @property
    def shapes(self) -> list[dict[str, int]]:
        """The captured shapes held now, oldest first, as ``{dimension name: size}``."""
        names = self._dimension_names()
        return [dict(zip(names, key, strict=True)) for key in self._sessions]

    def release(self) -> None:
        """Release every captured session (their device buffers); shapes are captured again
        when next used."""
        with self._lock:
            self._sessions.clear()
            self._shared_from.clear()

    # -- running ------------------------------------------------------------------------------
    def _dimension_names(self) -> list[str]:
        return sorted({dim for dims in self.free.values() for _, dim in dims})

    def shape_key(self, feeds: Mapping[str, Any]) -> dict[str, int] | None:
        """The free dimensions' sizes in ``feeds``, or ``None`` if they disagree."""
        sizes: dict[str, int] = {}
        for name, dims in self.free.items():
            value = feeds[name]
            shape = value.shape() if is_device_value(value) else np.shape(value)
            for axis, dim in dims:
                if sizes.setdefault(dim, int(shape[axis])) != int(shape[axis]):
                    return None
        return sizes

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
        """Run on ``feeds`` through the captured session of their shape.

        Parameters
        ----------
        feeds : dict
            Every input, as numpy arrays or device tensors. Fixed-shape inputs are copied on
            the device into the shared buffers when they are new (a device tensor is taken to
            be immutable: the same object is not copied twice in a row).

        Returns
        -------
        dict or None
            ``{output name: array}``; ``None`` when this shape is not captured (it failed, or
            capture is given up): run the plain session instead.
        """
        sizes = self.shape_key(feeds)
        if sizes is None:
            return None
        key = tuple(sizes[name] for name in self._dimension_names())
        dynamic = {
            name: feeds[name]
            if is_device_value(feeds[name])
            else np.ascontiguousarray(feeds[name], dtype=self.dtypes[name])
            for name in self.free
        }
        with self._lock:
            captured = self._sessions.get(key)
            if captured is None and (key in self._failed or not self.enabled):
                return None
            self._fill_shared(feeds)
            if captured is None:
                return self._capture(key, sizes, feeds, dynamic)
            self._sessions.move_to_end(key)
            return captured.run(dynamic)

    def _fill_shared(self, feeds: Mapping[str, Any]) -> None:
        for name, target in self._shared.items():
            value = feeds[name]
            if self._shared_from.get(name) is value and is_device_value(value):
                continue  # a device tensor is never written after it is made: same contents
            if is_device_value(value):
                self.device.copy([value], [target])
            else:
                host = np.ascontiguousarray(value, dtype=self.dtypes[name])
                self.device.copy([self.device.wrap(host)], [target])
            self._shared_from[name] = value

    def _capture(
        self,
        key: tuple[int, ...],
        sizes: dict[str, int],
        feeds: Mapping[str, Any],
        dynamic: dict[str, Any],
    ) -> dict[str, np.ndarray] | None:
        from .iobinding import run_bound

        def plain(values: Mapping[str, Any]) -> dict[str, np.ndarray]:
            return dict(zip(self.output_names, run_bound(self.plain, dict(values)), strict=True))

        def spec(value: Any) -> tuple[tuple[int, ...], Any]:
            if is_device_value(value):
                return tuple(value.shape()), np.float32
            return value.shape, value.dtype

        try:
            expected = plain(feeds)
            session = self.create(sizes)
            captured = _Captured(
                session,
                self.device,
                self._shared,
                {name: spec(value) for name, value in dynamic.items()},
                {name: (value.shape, value.dtype) for name, value in expected.items()},
            )
            # The first runs record the graph; the check covers them and a replay on other
            # inputs (a stale output would repeat the first call's values).
            for _ in range(2):
                self._check(captured.run(dynamic), expected, sizes)
            host = {
                name: np.asarray(self.device.download(value)) if is_device_value(value) else value
                for name, value in dynamic.items()
            }
            other = _perturbed(host)
            self._check(captured.run(other), plain({**feeds, **other}), sizes)
            result = captured.run(dynamic)
        except Exception as exc:
            self._failed.add(key)
            logger.info(
                "graph capture of %s failed (%s: %s); this shape runs without it%s",
                sizes,
                type(exc).__name__,
                one_line(exc),
                "" if self.enabled else ", and so does every new shape",
            )
            return None
        self._sessions[key] = captured
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        logger.info("graph captured for %s", sizes)
        return result

    def _check(
        self,
        got: Mapping[str, np.ndarray],
        expected: Mapping[str, np.ndarray],
        sizes: Mapping[str, int],
    ) -> None:
        for name in self.output_names:
            error = _relative_error(got[name], np.asarray(expected[name]))
            if not error <= CAPTURE_TOLERANCE:
                raise CaptureMismatchError(
                    f"captured output '{name}' for {dict(sizes)} differs from the plain "
                    f"session's by {error:.1e} (relative)"
                )
