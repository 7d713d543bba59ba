"""The encoder's input tensor made on the GPU: intensities, resize and normalisation in one graph.

On the host, turning a 1024² RGB image into the encoder's ``(1, 3, 1024, 1024)`` float tensor
(intensity window, antialiased resize, ImageNet normalisation, channels first) takes longer
than the encoder itself on a fast GPU (docs/benchmarks.md). The same arithmetic is a small
ONNX graph on the encoder's WebGPU device, written straight into the encoder's input buffer:
the image goes up once as float32, nothing comes back.

The resize is the same as the host's (:func:`.preprocess.resize_weights`: torchvision's
antialiased bilinear), as two dense matrix products: rows ``(1024, H)`` and columns
``(W, 1024)``, uploaded once per image size and kept. Images above
:data:`MAX_DEVICE_PIXELS` stay on the host path, which works in row blocks.

``onnx`` and ``onnxruntime`` are imported inside the functions, so importing this is cheap.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from ..runtime.iobinding import run_bound
from .device_masks import serialise
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, MODEL_SIZE, resize_weights

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import BackendInfo
    from ..runtime.iobinding import DeviceIO

__all__ = ["MAX_DEVICE_PIXELS", "DevicePreprocessor", "preprocess_model"]

#: Largest image (pixels) prepared on the device: its float32 copy and the resize matrices
#: (4 bytes x 1024 x side each) stay within a few hundred MB of GPU memory.
MAX_DEVICE_PIXELS = 4096 * 4096

#: Resize matrices kept on the device (one per image height and width seen recently).
_KEPT_SIZES = 8


def preprocess_model() -> bytes:
    """The serialised graph: ``image (H, W, C)``, ``low ()``, ``span ()``, ``rows (1024, H)``,
    ``cols (W, 1024)`` in; ``tensor (1, 3, 1024, 1024)`` out.

    ``clip((image - low) / span, 0, 1)``, channels first, ``rows @ x @ cols`` per channel,
    minus the ImageNet mean over its standard deviation (a grey channel broadcasts to three).
    """
    from onnx import TensorProto, helper, numpy_helper

    constants = [
        numpy_helper.from_array(np.float32(0.0), "zero"),
        numpy_helper.from_array(np.float32(1.0), "one"),
        numpy_helper.from_array(IMAGENET_MEAN.reshape(3, 1, 1), "mean"),
        numpy_helper.from_array(IMAGENET_STD.reshape(3, 1, 1), "std"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "batch_axis"),
    ]
    nodes = [
        helper.make_node("Sub", ["image", "low"], ["shifted"]),
        helper.make_node("Div", ["shifted", "span"], ["scaled"]),
        helper.make_node("Clip", ["scaled", "zero", "one"], ["window"]),
        helper.make_node("Transpose", ["window"], ["planes"], perm=[2, 0, 1]),
        helper.make_node("MatMul", ["rows", "planes"], ["row_resized"]),
        helper.make_node("MatMul", ["row_resized", "cols"], ["resized"]),
        helper.make_node("Sub", ["resized", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["normalised"]),
        helper.make_node("Unsqueeze", ["normalised", "batch_axis"], ["tensor"]),
    ]
    size = MODEL_SIZE
    graph = helper.make_graph(
        nodes,
        "sam2_preprocess",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["H", "W", "C"]),
            helper.make_tensor_value_info("low", TensorProto.FLOAT, []),
            helper.make_tensor_value_info("span", TensorProto.FLOAT, []),
            helper.make_tensor_value_info("rows", TensorProto.FLOAT, [size, "H"]),
            helper.make_tensor_value_info("cols", TensorProto.FLOAT, ["W", size]),
        ],
        [helper.make_tensor_value_info("tensor", TensorProto.FLOAT, [1, 3, size, size])],
        initializer=constants,
    )
    return serialise(graph)


class DevicePreprocessor:
    """Prepare encoder inputs with one ONNX Runtime session, into device buffers.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
        On :func:`preprocess_model` (see :meth:`on_backend`).
    device : DeviceIO
        The device memory of the session and of the encoder's input.
    max_pixels : int
        Larger images are left to the host (:meth:`accepts`).

    Notes
    -----
    Thread-safe.
    """

    def __init__(
        self, session: Any, device: DeviceIO, *, max_pixels: int = MAX_DEVICE_PIXELS
    ) -> None:
        self.session = session
        self.device = device
        self.max_pixels = max_pixels
        self._weights: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def on_backend(cls, info: BackendInfo, device: DeviceIO) -> DevicePreprocessor | None:
        """A preprocessor on WebGPU, or ``None`` when no WebGPU session can be made (logged)."""
        from ..runtime.sessions import webgpu_graph_session

        session = webgpu_graph_session(preprocess_model(), info, "images are prepared")
        return None if session is None else cls(session, device)

    def accepts(self, image: np.ndarray, low: float, high: float) -> bool:
        """Whether :meth:`prepare` takes this image: not too large, a real intensity window."""
        return image.shape[0] * image.shape[1] <= self.max_pixels and high > low

    def _resize_matrix(self, axis: str, length: int) -> Any:
        """The device copy of one axis's resize matrix (rows: ``(1024, H)``, cols: transposed)."""
        key = (axis, length)
        with self._lock:
            if key in self._weights:
                self._weights.move_to_end(key)
                return self._weights[key]
        weights = resize_weights(length, MODEL_SIZE)
        weights = weights if axis == "rows" else np.ascontiguousarray(weights.T)
        value = self.device.upload(weights)
        with self._lock:
            self._weights[key] = value
            while len(self._weights) > _KEPT_SIZES:
                self._weights.popitem(last=False)
        return value

    def prepare(self, image: np.ndarray, low: float, high: float, target: Any) -> None:
        """Write the encoder input of ``image`` into the device tensor ``target``.

        Parameters
        ----------
        image : numpy.ndarray
            ``(H, W)`` or ``(H, W, C)`` with C = 1 or 3, validated (alpha already dropped).
        low, high : float
            The intensity window (:func:`.preprocess.intensity_range`), ``high > low``.
        target : onnxruntime.OrtValue
            ``(1, 3, 1024, 1024)`` float32 on the device.
        """
        planes = image[..., None] if image.ndim == 2 else image
        host = np.ascontiguousarray(planes, dtype=np.float32)
        if image.dtype.kind == "f":
            # As the host path: NaN and -inf count as background, +inf as white.
            host = np.nan_to_num(host, copy=host is planes, nan=-np.inf)
        feeds = {
            "image": host,
            "low": np.array(low, dtype=np.float32),
            "span": np.array(high - low, dtype=np.float32),
            "rows": self._resize_matrix("rows", host.shape[0]),
            "cols": self._resize_matrix("cols", host.shape[1]),
        }
        run_bound(self.session, feeds, {"tensor": target})
