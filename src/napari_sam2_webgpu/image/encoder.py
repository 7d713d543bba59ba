"""The image encoder: an image in, an :class:`ImageEmbedding` (everything a decode needs) out.

:class:`ImageEncoder` owns the encoder session. On WebGPU it can keep embeddings in GPU memory
(:meth:`ImageEncoder.bind_device`, through :mod:`napari_sam2_webgpu.runtime.iobinding`) and
replay the encoder as a captured graph. A captured graph is checked once, with a second image,
because some encoders (those whose outputs end in a view op, such as samexporter's) replay the
first image's outputs forever: :func:`check_replay_not_stale`.

``onnxruntime`` is never imported here; the sessions come from
:func:`napari_sam2_webgpu.runtime.create_session`.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..models.interface import ENCODER_INPUT, ENCODER_OUTPUTS
from ..runtime.capture import CAPTURE_OPTIONS
from ..runtime.gpu_lock import gpu_lock
from ..runtime.iobinding import BoundEncoder, DeviceIO, is_device_value, static_shape
from .preprocess import MODEL_SIZE, ImageError, image_window, prepare_image

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import BackendInfo
    from .device_preprocess import DevicePreprocessor

__all__ = [
    "CAPTURE_OPTIONS",
    "ENCODER_INPUT",
    "ENCODER_OUTPUTS",
    "ImageEmbedding",
    "ImageEncoder",
    "StaleReplayError",
    "check_encoder",
    "check_replay_not_stale",
    "embedding_device",
]

logger = logging.getLogger("napari_sam2_webgpu")


@dataclass(frozen=True)
class ImageEmbedding:
    """The encoder's output for one image: everything a decode needs.

    On WebGPU the three tensors stay in GPU memory (``onnxruntime.OrtValue``); elsewhere they
    are numpy arrays. :meth:`numpy` gives a host copy either way.

    Attributes
    ----------
    image_embed : numpy.ndarray or onnxruntime.OrtValue
        ``(1, 256, 64, 64)`` float32.
    high_res_feats_0 : numpy.ndarray or onnxruntime.OrtValue
        ``(1, 32, 256, 256)`` float32.
    high_res_feats_1 : numpy.ndarray or onnxruntime.OrtValue
        ``(1, 64, 128, 128)`` float32.
    image_hw : tuple of int
        Height and width of the image that was encoded.
    device : DeviceIO or None
        The device memory holding the tensors, when they are on a device.
    """

    image_embed: Any
    high_res_feats_0: Any
    high_res_feats_1: Any
    image_hw: tuple[int, int]
    device: DeviceIO | None = field(default=None, repr=False, compare=False)

    @property
    def on_device(self) -> bool:
        """Whether the tensors live in GPU memory."""
        return is_device_value(self.image_embed)

    @property
    def tensors(self) -> tuple[Any, Any, Any]:
        """``(image_embed, high_res_feats_0, high_res_feats_1)``."""
        return (self.image_embed, self.high_res_feats_0, self.high_res_feats_1)

    @property
    def nbytes(self) -> int:
        """Memory held by the embedding (host or GPU), in bytes."""
        return sum(
            v.tensor_size_in_bytes() if is_device_value(v) else v.nbytes for v in self.tensors
        )

    def numpy(self) -> ImageEmbedding:
        """A copy whose tensors are numpy arrays on the host (``self`` when they already are)."""
        if not self.on_device:
            return self
        host = [self.device.download(v) for v in self.tensors]
        return ImageEmbedding(*host, self.image_hw)


def check_encoder(session: Any, path: str | os.PathLike | None = None) -> None:
    """Raise ``ValueError`` unless ``session`` is a SAM2 image encoder (say so if swapped)."""
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    where = f" ({path})" if path else ""
    if "point_coords" in inputs:
        raise ValueError(
            f"The encoder file{where} is a SAM2 decoder (it takes point prompts: {inputs}). "
            "Pass it as decoder=, and the image encoder as encoder=."
        )
    if inputs != [ENCODER_INPUT] or not set(ENCODER_OUTPUTS) <= set(outputs):
        raise ValueError(
            f"The encoder file{where} is not a SAM2 image encoder: expected input 'image' and "
            f"outputs {list(ENCODER_OUTPUTS)}, found inputs {inputs} and outputs {outputs}."
        )


def embedding_device(info: BackendInfo) -> DeviceIO | None:
    """Device memory of the WebGPU plugin EP for embeddings, when this ONNX Runtime can bind it.

    ``None`` on the CPU, with the all-in-one WebGPU wheel, or when binding is not possible.
    """
    if info.provider != "webgpu":
        return None
    from ..runtime import PLUGIN_PACKAGE, webgpu_ep_device

    if info.webgpu_source != PLUGIN_PACKAGE:
        return None
    try:
        return DeviceIO.for_ep_device(webgpu_ep_device())
    except Exception as exc:  # never let an optimisation stop the model from loading
        logger.info("device-resident embeddings unavailable: %s", exc)
        return None


class StaleReplayError(RuntimeError):
    """A graph-captured encoder replayed the first image's outputs for another image."""


def check_replay_not_stale(bound: BoundEncoder, first: dict[str, Any]) -> None:
    """Raise :class:`StaleReplayError` if a replayed encoder returns ``first``'s outputs again.

    An output that ONNX Runtime copies into its bound buffer from the host (one whose last node
    is a view, such as a Reshape, in samexporter's encoders) is not part of the captured GPU
    work: replays leave it unchanged. This plugin's export writes every output from a compute
    node; other encoders are checked here, with a second, different image.

    Parameters
    ----------
    bound : BoundEncoder
        The encoder, replaying a captured graph.
    first : dict
        Its outputs for a first image (not a ramp).
    """
    ramp = np.linspace(-2.0, 2.0, MODEL_SIZE, dtype=np.float32)
    image = np.broadcast_to(ramp, (1, 3, MODEL_SIZE, MODEL_SIZE)).copy()
    second = bound.run(image)
    device = bound.device
    for name, value in second.items():
        if np.array_equal(device.download(value), device.download(first[name])):
            raise StaleReplayError(
                f"replays return stale '{name}' (it is copied outside the captured graph)"
            )


def _as_image_array(image: Any) -> np.ndarray:
    """``image`` as an array of numbers, or an :class:`ImageError` naming what it is."""
    array = np.asarray(image)
    if array.dtype.kind in "OSUV":  # None, a file path, a list of mixed objects...
        hint = " (read the file first)" if isinstance(image, str | os.PathLike) else ""
        raise ImageError(
            f"Expected an image as a numpy array of numbers, got {type(image).__name__}{hint}."
        )
    return array


class ImageEncoder:
    """Encode images into :class:`ImageEmbedding` objects with one SAM2 encoder session.

    Thread-safe: each :meth:`encode` uses its own buffers, except a captured graph's, which
    :class:`~napari_sam2_webgpu.runtime.iobinding.BoundEncoder` runs one at a time.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
        The image encoder.
    backend_info : BackendInfo
        What the session runs on (to recreate it without graph capture).
    path : path, optional
        The model file, for messages and to recreate the session.
    bound : BoundEncoder, optional
        Runs the session with its outputs in device memory (see :meth:`bind_device`).

    Attributes
    ----------
    session : onnxruntime.InferenceSession
    backend_info : BackendInfo
    path : pathlib.Path or None
    bound : BoundEncoder or None
        Set when embeddings stay in device memory.
    preprocessor : DevicePreprocessor or None
        Makes the input tensor on the device, straight into the bound encoder's input (WebGPU;
        images it does not take are prepared on the host).
    last_seconds : float or None
        Wall time of the most recent model run (host preprocessing excluded; made on the
        device, the input's preparation is included).

    Raises
    ------
    ValueError
        ``session`` is not a SAM2 image encoder.
    """

    def __init__(
        self,
        session: Any,
        backend_info: BackendInfo,
        *,
        path: str | os.PathLike | None = None,
        bound: BoundEncoder | None = None,
    ) -> None:
        check_encoder(session, path)
        self.session = session
        self.backend_info = backend_info
        self.path = Path(path) if path else None
        self.bound = bound
        self.preprocessor: DevicePreprocessor | None = None
        self.last_seconds: float | None = None

    @property
    def device(self) -> DeviceIO | None:
        """The device memory embeddings are written to, or ``None`` (host arrays)."""
        return None if self.bound is None else self.bound.device

    @property
    def graph_capture(self) -> bool:
        """Whether the encoder replays a captured graph."""
        return self.bound is not None and self.bound.graph_capture

    def bind_device(self, device: DeviceIO, *, graph_capture: bool) -> bool:
        """Keep embeddings in ``device``'s memory; check that graph capture works, else drop it.

        With ``graph_capture`` the session must have been created with :data:`CAPTURE_OPTIONS`.
        When its replays fail or are stale, the session is recreated without them (from
        :attr:`path`) and bound again, with the reason logged.

        Returns
        -------
        bool
            Whether embeddings are now device-resident (not when an output shape is symbolic
            or binding fails: those are logged and embeddings stay on the host).
        """
        shapes = {o.name: static_shape(o.shape) for o in self.session.get_outputs()}
        if any(shape is None for shape in shapes.values()):
            logger.info("encoder outputs have symbolic shapes: embeddings stay on the host")
            return False
        probe = np.zeros((1, 3, MODEL_SIZE, MODEL_SIZE), dtype=np.float32)
        try:
            bound = BoundEncoder(self.session, device, shapes, graph_capture=graph_capture)
            first = bound.run(probe)
            if graph_capture:
                check_replay_not_stale(bound, first)
        except Exception as exc:
            if not graph_capture:
                logger.warning("Embeddings stay on the host (IO binding failed: %s)", exc)
                return False
            # Stale replays are expected from encoders exported elsewhere: not worth a warning.
            log = logger.info if isinstance(exc, StaleReplayError) else logger.warning
            log("Encoder graph capture dropped (%s); running without it", exc)
            from ..runtime import create_session

            self.session, _ = create_session(self.path, self.backend_info, cpu_memory_arena=False)
            return self.bind_device(device, graph_capture=False)
        self.bound = bound
        return True

    def encode(
        self,
        image: np.ndarray,
        *,
        contrast_limits: Sequence[float] | None = None,
        rgb: bool | None = None,
    ) -> ImageEmbedding:
        """Encode an image.

        Parameters
        ----------
        image : numpy.ndarray
            ``(H, W)`` grayscale or ``(H, W, C)`` with C in 1, 3, 4; any integer or float dtype.
        contrast_limits : (float, float), optional
            Intensities mapped to black and white; see
            :func:`napari_sam2_webgpu.image.preprocess.prepare_image` for the default.
        rgb : bool, optional
            Whether a 3D array is channels-last colour (napari's ``layer.rgb``).

        Returns
        -------
        ImageEmbedding
            On the device when :attr:`bound` is set, else numpy arrays.

        Raises
        ------
        napari_sam2_webgpu.image.preprocess.ImageError
            The image cannot be segmented (wrong shape or dtype, too small, all NaN...).
        """
        array = _as_image_array(image)
        image_hw = (int(array.shape[0]), int(array.shape[1])) if array.ndim >= 2 else (0, 0)
        preprocessor, bound = self.preprocessor, self.bound
        if preprocessor is not None and bound is not None:
            planes, low, high = image_window(array, contrast_limits=contrast_limits, rgb=rgb)
            if preprocessor.accepts(planes, low, high):
                start = time.perf_counter()
                out = bound.run_prepared(functools.partial(preprocessor.prepare, planes, low, high))
                feats0, feats1, embed = (out[name] for name in ENCODER_OUTPUTS)
                self.last_seconds = time.perf_counter() - start
                return ImageEmbedding(embed, feats0, feats1, image_hw, bound.device)
        tensor = prepare_image(array, contrast_limits=contrast_limits, rgb=rgb)
        return self.encode_tensor(tensor, image_hw)

    def encode_tensor(self, tensor: np.ndarray, image_hw: tuple[int, int]) -> ImageEmbedding:
        """Encode an already prepared ``(1, 3, 1024, 1024)`` tensor of an image of ``image_hw``."""
        start = time.perf_counter()
        if self.bound is not None:
            out = self.bound.run(tensor)
            feats0, feats1, embed = (out[name] for name in ENCODER_OUTPUTS)
            emb = ImageEmbedding(embed, feats0, feats1, image_hw, self.bound.device)
        else:
            with gpu_lock(self.session):
                outputs = self.session.run(list(ENCODER_OUTPUTS), {ENCODER_INPUT: tensor})
            feats0, feats1, embed = (np.ascontiguousarray(o, dtype=np.float32) for o in outputs)
            emb = ImageEmbedding(embed, feats0, feats1, image_hw)
        self.last_seconds = time.perf_counter() - start
        return emb

    def to_device(self, embedding: ImageEmbedding) -> ImageEmbedding:
        """``embedding`` in the device memory this encoder writes to (as is without one)."""
        if self.bound is None or embedding.on_device:
            return embedding
        device = self.bound.device
        tensors = [device.upload(t) for t in embedding.tensors]
        return ImageEmbedding(*tensors, embedding.image_hw, device)

    def warm_up(self) -> ImageEmbedding:
        """Encode a blank image once (shader compilation, graph capture) and return it."""
        embedding = self.encode(np.zeros((MODEL_SIZE, MODEL_SIZE), dtype=np.uint8))
        self.last_seconds = None
        return embedding
