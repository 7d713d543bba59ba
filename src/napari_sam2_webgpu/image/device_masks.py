"""Low-resolution logits to image-size masks on the GPU: upsample and threshold in one graph.

On the host, upsampling three 256 x 256 candidates to a 1024² image and thresholding them is
most of a click's time once the decoder is graph-captured (docs/benchmarks.md). The same work
is a two-node ONNX graph (``Resize``, bilinear like PyTorch's ``interpolate(align_corners=
False)``, then ``Greater``) that runs on the decoder's WebGPU device: the logits go up (256 KB a
mask), the boolean masks come down (one byte a pixel), and no float image ever exists on the
host.

Masks whose float intermediate would exceed :data:`MAX_DEVICE_ELEMENTS` (very large images)
stay on the host's row-block path (:func:`.postprocess.logits_to_masks`), which never holds a
full-size float array.

``onnx`` and ``onnxruntime`` are imported inside the functions, so importing this is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..runtime.iobinding import run_bound
from .postprocess import MASK_THRESHOLD

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import BackendInfo

__all__ = ["MAX_DEVICE_ELEMENTS", "DeviceMaskUpsampler", "mask_upsample_model"]

#: Most output elements (masks x pixels) upsampled on the device at once: its float32
#: intermediate is 4 bytes each (256 MB here); beyond it the host's row blocks take over.
MAX_DEVICE_ELEMENTS = 1 << 26


def mask_upsample_model() -> bytes:
    """The serialised graph: ``logits (B, K, h, w)``, ``sizes (4,)`` int64, ``threshold ()``
    in; ``masks (B, K, H, W)`` bool out (``Resize`` to ``sizes``, then ``> threshold``).

    ``Resize`` uses ``linear`` with ``pytorch_half_pixel`` coordinates and no antialiasing:
    PyTorch's bilinear ``interpolate(align_corners=False)``, which SAM2 applies to its masks.
    """
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node(
            "Resize",
            ["logits", "", "", "sizes"],
            ["upsampled"],
            mode="linear",
            coordinate_transformation_mode="pytorch_half_pixel",
        ),
        helper.make_node("Greater", ["upsampled", "threshold"], ["masks"]),
    ]
    graph = helper.make_graph(
        nodes,
        "sam2_mask_upsample",
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", "K", "h", "w"]),
            helper.make_tensor_value_info("sizes", TensorProto.INT64, [4]),
            helper.make_tensor_value_info("threshold", TensorProto.FLOAT, []),
        ],
        [helper.make_tensor_value_info("masks", TensorProto.BOOL, ["B", "K", "H", "W"])],
    )
    return serialise(graph)


def serialise(graph: Any) -> bytes:
    """An ONNX ``GraphProto`` as a model file's bytes (opset 17, IR 8: every supported
    onnxruntime reads them)."""
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


class DeviceMaskUpsampler:
    """Upsample and threshold decoder logits with one ONNX Runtime session.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
        On :func:`mask_upsample_model` (see :meth:`on_backend`).
    max_elements : int
        Larger requests return ``None`` (the caller upsamples on the host).

    Notes
    -----
    Thread-safe: ONNX Runtime sessions may run from several threads.
    """

    def __init__(self, session: Any, *, max_elements: int = MAX_DEVICE_ELEMENTS) -> None:
        self.session = session
        self.max_elements = max_elements

    @classmethod
    def on_backend(cls, info: BackendInfo) -> DeviceMaskUpsampler | None:
        """An upsampler on WebGPU, or ``None`` when no WebGPU session can be made (logged)."""
        from ..runtime.sessions import webgpu_graph_session

        session = webgpu_graph_session(mask_upsample_model(), info, "masks are upsampled")
        return None if session is None else cls(session)

    def __call__(
        self, logits: np.ndarray, image_hw: tuple[int, int], threshold: float = MASK_THRESHOLD
    ) -> np.ndarray | None:
        """Boolean masks ``(..., H, W)`` of ``(..., h, w)`` logits, or ``None`` if too large.

        Parameters
        ----------
        logits : numpy.ndarray
            Decoder logits with at least two leading axes or fewer (any ``(..., h, w)``).
        image_hw : (int, int)
            Output height and width.
        threshold : float
            Logit threshold (SAM2's is 0).
        """
        logits = np.asarray(logits, dtype=np.float32)
        lead = logits.shape[:-2]
        count = int(np.prod(lead)) if lead else 1
        height, width = (int(v) for v in image_hw)
        if count * height * width > self.max_elements or count == 0:
            return None
        four = np.ascontiguousarray(logits.reshape((count, 1) + logits.shape[-2:]))
        feeds = {
            "logits": four,
            "sizes": np.array([count, 1, height, width], dtype=np.int64),
            "threshold": np.array(threshold, dtype=np.float32),
        }
        (masks,) = run_bound(self.session, feeds)
        return masks.reshape(lead + (height, width))
