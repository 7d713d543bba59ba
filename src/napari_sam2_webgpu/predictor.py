"""``Sam2Predictor``: SAM2 image segmentation on ONNX Runtime, shaped like ``SAM2ImagePredictor``.

>>> predictor = Sam2Predictor.from_pretrained("tiny")          # doctest: +SKIP
>>> predictor.set_image(image)                                 # doctest: +SKIP
>>> masks, scores, logits = predictor.predict(                 # doctest: +SKIP
...     point_coords=[[120, 80]], point_labels=[1])

Coordinates are SAM's: ``(x, y)`` in pixels of the image given to :meth:`set_image`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import postprocess
from .preprocess import MODEL_SIZE, ImageError, prepare_image
from .runtime.iobinding import BoundEncoder, DeviceIO, is_device_value, run_bound, static_shape

if TYPE_CHECKING:  # pragma: no cover
    from .runtime import BackendInfo

logger = logging.getLogger("napari_sam2_webgpu")

ENCODER_INPUT = "image"
ENCODER_OUTPUTS = ("high_res_feats_0", "high_res_feats_1", "image_embed")
DECODER_INPUTS = (
    "image_embed",
    "high_res_feats_0",
    "high_res_feats_1",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
)
LOW_RES = MODEL_SIZE // 4  # decoder logits and mask_input are 256 x 256


class PromptError(ValueError):
    """A prompt (points, labels, box or mask input) is malformed; the message says how."""


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
    def nbytes(self) -> int:
        """Memory held by the embedding (host or GPU), in bytes."""
        return sum(
            v.tensor_size_in_bytes() if is_device_value(v) else v.nbytes for v in self._values()
        )

    def _values(self) -> tuple[Any, Any, Any]:
        return (self.image_embed, self.high_res_feats_0, self.high_res_feats_1)

    def numpy(self) -> ImageEmbedding:
        """A copy whose tensors are numpy arrays on the host."""
        if not self.on_device:
            return self
        host = [self.device.download(v) for v in self._values()]
        return ImageEmbedding(*host, self.image_hw)


def _input_names(session: Any) -> list[str]:
    return [i.name for i in session.get_inputs()]


def _output_names(session: Any) -> list[str]:
    return [o.name for o in session.get_outputs()]


def _check_encoder(session: Any, path: str | os.PathLike | None) -> None:
    inputs, outputs = _input_names(session), _output_names(session)
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


def _check_decoder(session: Any, path: str | os.PathLike | None) -> None:
    inputs, outputs = _input_names(session), _output_names(session)
    where = f" ({path})" if path else ""
    if inputs == [ENCODER_INPUT]:
        raise ValueError(
            f"The decoder file{where} is a SAM2 image encoder (its only input is 'image'). "
            "Pass it as encoder=, and the prompt decoder as decoder=."
        )
    missing = [name for name in DECODER_INPUTS if name not in inputs]
    if missing or not {"masks", "iou_predictions"} <= set(outputs):
        raise ValueError(
            f"The decoder file{where} is not a SAM2 decoder in samexporter's interface: "
            f"missing inputs {missing}; outputs {outputs} (need 'masks', 'iou_predictions')."
        )


def _device_io(info: BackendInfo) -> DeviceIO | None:
    """Device memory of the WebGPU plugin EP, when this ONNX Runtime can bind to it."""
    if info.provider != "webgpu":
        return None
    from .runtime import PLUGIN_PACKAGE, webgpu_ep_device

    if info.webgpu_source != PLUGIN_PACKAGE:
        return None
    try:
        return DeviceIO.for_ep_device(webgpu_ep_device())
    except Exception as exc:  # never let an optimisation stop the model from loading
        logger.info("device-resident embeddings unavailable: %s", exc)
        return None


def _model_metadata(session: Any) -> dict[str, str]:
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except Exception:  # metadata is optional (samexporter models have none)
        return {}


class Sam2Predictor:
    """Segment an image with SAM2 from point, box and mask prompts, on WebGPU or the CPU.

    Create one with :meth:`from_pretrained` (a registry model, downloaded and cached) or
    :meth:`from_files` (any encoder/decoder ONNX pair in samexporter's interface). Then call
    :meth:`set_image` once per image and :meth:`predict` once per prompt, as with the official
    ``SAM2ImagePredictor``.

    Parameters
    ----------
    encoder_session, decoder_session : onnxruntime.InferenceSession
        Sessions of the image encoder and the prompt decoder.
    backend_info : BackendInfo
        What the sessions run on (see :func:`napari_sam2_webgpu.runtime.resolve_backend`).
    name : str
        Model name for display.
    encoder_path, decoder_path : path, optional
        Where the models came from, for display and error messages.

    Attributes
    ----------
    backend_info : BackendInfo
        Provider, adapter and versions in use.
    name : str
        Model name.
    last_encode_seconds, last_decode_seconds : float or None
        Wall time of the most recent encode and decode.
    """

    def __init__(
        self,
        encoder_session: Any,
        decoder_session: Any,
        backend_info: BackendInfo,
        *,
        name: str = "custom",
        encoder_path: str | os.PathLike | None = None,
        decoder_path: str | os.PathLike | None = None,
        bound_encoder: BoundEncoder | None = None,
    ) -> None:
        _check_encoder(encoder_session, encoder_path)
        _check_decoder(decoder_session, decoder_path)
        self._encoder = encoder_session
        self._decoder = decoder_session
        self._decoder_outputs = _output_names(decoder_session)
        meta = _model_metadata(decoder_session)
        self._stability_delta = float(meta.get("stability_delta", 0.05))
        self._stability_thresh = float(meta.get("stability_thresh", 0.98))
        self.backend_info = backend_info
        self.name = name
        self.encoder_path = Path(encoder_path) if encoder_path else None
        self.decoder_path = Path(decoder_path) if decoder_path else None
        self._embedding: ImageEmbedding | None = None
        # On WebGPU: encoder outputs stay in GPU memory and the decoder reads them there.
        self._bound_encoder = bound_encoder
        #: Where clicks are decoded: the session provider, or "cpu" after _use_host_decoder.
        self.decoder_provider = backend_info.provider
        self.last_encode_seconds: float | None = None
        self.last_decode_seconds: float | None = None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_files(
        cls,
        encoder: str | os.PathLike,
        decoder: str | os.PathLike,
        backend: str = "auto",
        *,
        name: str | None = None,
        device_resident: bool = True,
        graph_capture: bool = True,
        warmup: bool = True,
        decoder_on: str = "gpu",
    ) -> Sam2Predictor:
        """Load an encoder/decoder ONNX pair from disk.

        Parameters
        ----------
        encoder, decoder : path
            The image encoder and prompt decoder files (this plugin's export or samexporter's).
        backend : {"auto", "webgpu", "cpu"}
            ``"auto"`` uses WebGPU when a device is available and falls back to the CPU with a
            logged reason; ``"webgpu"`` raises if WebGPU is unavailable; ``"cpu"`` forces CPU.
        name : str, optional
            Display name; defaults to the encoder's file stem.
        device_resident : bool
            On WebGPU, keep embeddings in GPU memory between encode and decode (IO binding).
        graph_capture : bool
            On WebGPU, record the encoder once and replay it (needs ``device_resident``): 3.8-5x
            faster on an H100 (docs/benchmarks.md). It is checked at load with a second image
            and dropped, with a logged reason, if the execution provider refuses it or a replay
            returns stale outputs (encoders whose outputs end in a view op, such as
            samexporter's: see :func:`_check_replay_not_stale`).
        warmup : bool
            On WebGPU, run the models once at load so shader compilation and graph capture do
            not slow the first image and the first click.
        decoder_on : {"gpu", "auto", "cpu"}
            With WebGPU, where the decoder runs. ``"auto"`` times both at load and keeps the
            faster for clicks; a CPU decoder needs each new embedding copied to the host once.
            The default keeps it on the GPU: on an H100 host with 16 cores the CPU decoder was
            faster alone (17-20 vs 20-25 ms) but not per click end to end, and the copy added
            to every new image (docs/benchmarks.md). Without WebGPU everything is on the CPU.

        Returns
        -------
        Sam2Predictor

        Raises
        ------
        FileNotFoundError
            A file does not exist.
        ValueError
            A file is not a valid ONNX model, or the files are swapped or not SAM2 models.
        """
        from .runtime import create_session, resolve_backend

        for label, path in (("encoder", encoder), ("decoder", decoder)):
            if not Path(path).is_file():
                raise FileNotFoundError(f"The {label} file does not exist: {path}")
        info = resolve_backend(backend) if isinstance(backend, str) else backend
        device = _device_io(info) if device_resident else None
        capture = {"enableGraphCapture": "1"} if device is not None and graph_capture else None
        encoder_session, info = create_session(encoder, info, provider_options=capture)
        # The decoder follows the encoder's provider so a fallback is decided once.
        decoder_session, info = create_session(decoder, info)
        from .models import stem_of

        stem = stem_of(encoder)
        predictor = cls(
            encoder_session,
            decoder_session,
            info,
            name=name or stem,
            encoder_path=encoder,
            decoder_path=decoder,
        )
        if decoder_on not in ("auto", "gpu", "cpu"):
            raise ValueError(f"decoder_on must be 'auto', 'gpu' or 'cpu', got {decoder_on!r}")
        if info.provider != "webgpu":
            return predictor
        if device is not None:
            predictor._bind_encoder(device, graph_capture=capture is not None, path=encoder)
        if warmup:
            predictor.warm_up()
        if decoder_on != "gpu":
            cpu_decoder, _ = create_session(decoder, "cpu")
            if decoder_on == "cpu" or predictor._cpu_decoder_is_faster(cpu_decoder):
                predictor._use_host_decoder(cpu_decoder)
        return predictor

    def _use_host_decoder(self, session: Any) -> None:
        """Decode on ``session`` (CPU), with embeddings copied to the host once per image."""
        _check_decoder(session, self.decoder_path)
        self._decoder = session
        self._decoder_outputs = _output_names(session)
        self.decoder_provider = "cpu"
        if self._embedding is not None:
            self._embedding = self._embedding.numpy()

    def _cpu_decoder_is_faster(self, cpu_session: Any, repeats: int = 5) -> bool:
        """Time one click on the current decoder and on ``cpu_session``; True if the CPU wins."""
        previous = self._embedding
        self._embedding = self.compute_embedding(np.zeros((64, 64), dtype=np.uint8))
        try:
            feeds, _ = self._decoder_feeds(point_coords=[[32.0, 32.0]], point_labels=[1])
            host = dict(feeds)
            host.update(
                zip(
                    ("image_embed", "high_res_feats_0", "high_res_feats_1"),
                    self._embedding.numpy()._values(),
                    strict=True,
                )
            )
            gpu_ms = self._time_decoder(lambda: self._run_decoder(feeds), repeats)
            cpu_ms = self._time_decoder(lambda: cpu_session.run(None, host), repeats)
        finally:
            self._embedding = previous
            self.last_encode_seconds = None
        # A clear margin: the CPU path also pays one embedding download per image.
        faster = cpu_ms < 0.85 * gpu_ms
        logger.info(
            "decoder: %.1f ms on WebGPU, %.1f ms on the CPU; clicks decode on the %s",
            gpu_ms,
            cpu_ms,
            "CPU" if faster else "GPU",
        )
        return faster

    @staticmethod
    def _time_decoder(run: Callable[[], Any], repeats: int) -> float:
        """Median wall time of ``run`` in ms, after one untimed call."""
        run()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1e3)
        return float(np.median(times))

    def _bind_encoder(self, device: DeviceIO, *, graph_capture: bool, path: Any) -> None:
        """Switch to device-resident embeddings; check graph capture works, else drop it."""
        from .runtime import create_session

        shapes = {o.name: static_shape(o.shape) for o in self._encoder.get_outputs()}
        if any(shape is None for shape in shapes.values()):
            logger.info("encoder outputs have symbolic shapes: embeddings stay on the host")
            return
        probe = np.zeros((1, 3, MODEL_SIZE, MODEL_SIZE), dtype=np.float32)
        try:
            bound = BoundEncoder(self._encoder, device, shapes, graph_capture=graph_capture)
            first = bound.run(probe)
            if graph_capture:
                _check_replay_not_stale(bound, first)
        except Exception as exc:
            if not graph_capture:
                logger.warning("Embeddings stay on the host (IO binding failed: %s)", exc)
                return
            # Stale replays are expected from encoders exported elsewhere: not worth a warning.
            log = logger.info if isinstance(exc, StaleReplayError) else logger.warning
            log("Encoder graph capture dropped (%s); running without it", exc)
            self._encoder, _ = create_session(path, self.backend_info)
            self._bind_encoder(device, graph_capture=False, path=path)
            return
        self._bound_encoder = bound

    def warm_up(self) -> None:
        """Run encoder and decoder once on a blank image, then forget it."""
        previous = self._embedding
        self.set_image(np.zeros((MODEL_SIZE, MODEL_SIZE), dtype=np.uint8))
        self.predict(point_coords=[[MODEL_SIZE / 2, MODEL_SIZE / 2]], point_labels=[1])
        self._embedding = previous
        self.last_encode_seconds = self.last_decode_seconds = None

    @classmethod
    def from_pretrained(
        cls,
        size: str = "tiny",
        backend: str = "auto",
        *,
        progress: Callable[[int, int, str], None] | None = None,
        cache: str | os.PathLike | None = None,
        **options: Any,
    ) -> Sam2Predictor:
        """Load the model of a size, downloading and caching the registry pair on first use.

        Which files: :func:`napari_sam2_webgpu.models.resolve_model`, the policy the widget and
        the CLI use too. A model installed with ``napari-sam2-webgpu export --size SIZE
        --checkpoint ... --install`` wins; otherwise the published pair of that size.

        Parameters
        ----------
        size : {"tiny", "small", "base_plus", "large"} or str
            SAM2.1 model size, or the size of an installed export.
        backend : {"auto", "webgpu", "cpu"}
            See :meth:`from_files`.
        progress : callable, optional
            ``progress(bytes_done, bytes_total, filename)`` during downloads.
        cache : path, optional
            Cache folder; defaults to :func:`napari_sam2_webgpu.models.cache_dir`.
        **options
            ``device_resident``, ``graph_capture``, ``warmup``: see :meth:`from_files`.

        Returns
        -------
        Sam2Predictor
        """
        from .models import resolve_model

        paths = resolve_model(size, progress=progress, cache=Path(cache) if cache else None)
        return cls.from_files(
            paths.encoder, paths.decoder, backend, name=f"sam2.1 {size}", **options
        )

    # -- state ----------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """``"webgpu"`` or ``"cpu"``: the execution provider actually in use."""
        return self.backend_info.provider

    @property
    def device(self) -> str:
        """Human-readable device: the GPU adapter's name, or ``"CPU"``."""
        adapter = getattr(self.backend_info, "adapter", None)
        if self.backend == "webgpu" and adapter is not None:
            return f"{adapter.name} ({adapter.backend})"
        return "CPU"

    @property
    def is_image_set(self) -> bool:
        """Whether :meth:`set_image` (or :meth:`set_embedding`) has been called."""
        return self._embedding is not None

    @property
    def image_hw(self) -> tuple[int, int] | None:
        """``(height, width)`` of the current image, or ``None``."""
        return None if self._embedding is None else self._embedding.image_hw

    @property
    def embedding(self) -> ImageEmbedding | None:
        """The current image's embedding (to cache and restore with :meth:`set_embedding`)."""
        return self._embedding

    def __repr__(self) -> str:
        return (
            f"Sam2Predictor(name={self.name!r}, backend={self.backend!r}, device={self.device!r})"
        )

    # -- encoding -------------------------------------------------------------------------------
    def compute_embedding(
        self,
        image: np.ndarray,
        *,
        contrast_limits: Sequence[float] | None = None,
        rgb: bool | None = None,
    ) -> ImageEmbedding:
        """Encode an image without changing the predictor's current image.

        Parameters
        ----------
        image : numpy.ndarray
            ``(H, W)`` grayscale or ``(H, W, C)`` with C in 1, 3, 4; any integer or float dtype.
        contrast_limits : (float, float), optional
            Intensities mapped to black and white; see
            :func:`napari_sam2_webgpu.preprocess.prepare_image` for the default.
        rgb : bool, optional
            Whether a 3D array is channels-last colour (napari's ``layer.rgb``).

        Returns
        -------
        ImageEmbedding

        Raises
        ------
        napari_sam2_webgpu.preprocess.ImageError
            The image cannot be segmented (wrong shape or dtype, too small, all NaN...).
        """
        array = np.asarray(image)
        if array.dtype.kind in "OSUV":  # None, a file path, a list of mixed objects...
            hint = " (read the file first)" if isinstance(image, str | os.PathLike) else ""
            raise ImageError(
                f"Expected an image as a numpy array of numbers, got {type(image).__name__}{hint}."
            )
        image = array
        tensor = prepare_image(image, contrast_limits=contrast_limits, rgb=rgb)
        hw = (int(image.shape[0]), int(image.shape[1]))
        start = time.perf_counter()
        if self._bound_encoder is not None:
            out = self._bound_encoder.run(tensor)
            feats = [out[name] for name in ENCODER_OUTPUTS]
            emb = ImageEmbedding(feats[2], feats[0], feats[1], hw, self._bound_encoder.device)
            # A CPU decoder needs the embedding on the host: one download per image.
            emb = emb.numpy() if self.decoder_provider == "cpu" else emb
            self.last_encode_seconds = time.perf_counter() - start
            return emb
        outputs = self._encoder.run(list(ENCODER_OUTPUTS), {ENCODER_INPUT: tensor})
        self.last_encode_seconds = time.perf_counter() - start
        feats0, feats1, embed = (np.ascontiguousarray(o, dtype=np.float32) for o in outputs)
        return ImageEmbedding(embed, feats0, feats1, hw)

    def set_image(
        self,
        image: np.ndarray,
        *,
        contrast_limits: Sequence[float] | None = None,
        rgb: bool | None = None,
    ) -> None:
        """Encode an image and make it the one :meth:`predict` segments.

        Parameters are those of :meth:`compute_embedding`. On error the previous image stays set.
        """
        self._embedding = self.compute_embedding(image, contrast_limits=contrast_limits, rgb=rgb)

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        """Make a previously computed embedding current (no encoding)."""
        if not isinstance(embedding, ImageEmbedding):
            raise TypeError(f"Expected an ImageEmbedding, got {type(embedding).__name__}.")
        self._embedding = embedding

    def reset_image(self) -> None:
        """Forget the current image."""
        self._embedding = None

    # -- decoding -------------------------------------------------------------------------------
    def predict(
        self,
        point_coords: np.ndarray | Sequence | None = None,
        point_labels: np.ndarray | Sequence | None = None,
        box: np.ndarray | Sequence | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for prompts on the current image.

        Parameters
        ----------
        point_coords : array-like, optional
            ``(N, 2)`` points as (x, y) pixels, or ``(B, N, 2)`` for B prompt sets at once.
        point_labels : array-like, optional
            ``(N,)`` (or ``(B, N)``): 1 foreground, 0 background.
        box : array-like, optional
            ``(4,)`` box ``x0, y0, x1, y1`` in pixels, or ``(B, 4)``.
        mask_input : numpy.ndarray, optional
            Low-resolution logits ``(1, 256, 256)`` from a previous :meth:`predict` (or
            ``(B, 1, 256, 256)``), to refine.
        multimask_output : bool
            Three candidate masks (best for a single ambiguous click) or one.
        return_logits : bool
            Return float logits at image size instead of boolean masks.

        Returns
        -------
        masks : numpy.ndarray
            ``(K, H, W)`` boolean (``(B, K, H, W)`` for batched prompts); K is 3 or 1.
        scores : numpy.ndarray
            ``(K,)`` predicted IoU of each mask.
        low_res_logits : numpy.ndarray
            ``(K, 256, 256)`` logits, clamped to [-32, 32], usable as ``mask_input``.

        Raises
        ------
        RuntimeError
            No image has been set.
        PromptError
            Malformed prompts: mismatched points and labels, labels other than 0/1, points
            outside the image, an empty or inverted box, a mask of the wrong shape.
        """
        start = time.perf_counter()
        logits, scores, batched = self._decode(
            point_coords, point_labels, box, mask_input, multimask_output
        )
        hw = self._embedding.image_hw
        masks = (
            postprocess.upsample_logits(logits, hw)
            if return_logits
            else postprocess.logits_to_masks(logits, hw)
        )
        self.last_decode_seconds = time.perf_counter() - start
        low_res = np.clip(logits, -postprocess.LOGIT_CLAMP, postprocess.LOGIT_CLAMP)
        if not batched:
            return masks[0], scores[0], low_res[0]
        return masks, scores, low_res

    def predict_best(
        self,
        point_coords: np.ndarray | Sequence | None = None,
        point_labels: np.ndarray | Sequence | None = None,
        box: np.ndarray | Sequence | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """Like :meth:`predict` for one prompt set, returning only the best-scoring mask.

        Only that mask is upsampled to the image size, which is what interactive use needs
        (a third of :meth:`predict`'s postprocessing with ``multimask_output=True``).

        Parameters
        ----------
        point_coords, point_labels, box, mask_input, multimask_output
            As for :meth:`predict`, unbatched.

        Returns
        -------
        mask : numpy.ndarray
            ``(H, W)`` boolean.
        score : float
            Its predicted IoU.
        low_res_logits : numpy.ndarray
            ``(1, 256, 256)`` logits, usable as ``mask_input``.
        """
        start = time.perf_counter()
        logits, scores, batched = self._decode(
            point_coords, point_labels, box, mask_input, multimask_output
        )
        if batched:
            raise PromptError("predict_best() takes one prompt set; use predict() for batches.")
        logits, scores = postprocess.best_of(logits, scores)
        mask = postprocess.logits_to_masks(logits[0], self._embedding.image_hw)[0]
        self.last_decode_seconds = time.perf_counter() - start
        low_res = np.clip(logits[0], -postprocess.LOGIT_CLAMP, postprocess.LOGIT_CLAMP)
        return mask, float(scores[0, 0]), low_res

    def _decode(
        self, point_coords: Any, point_labels: Any, box: Any, mask_input: Any, multimask: bool
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Low-resolution logits ``(B, K, 256, 256)`` and scores ``(B, K)`` for the prompts."""
        feeds, batched = self._decoder_feeds(point_coords, point_labels, box, mask_input)
        out = dict(zip(self._decoder_outputs, self._run_decoder(feeds), strict=True))
        logits, scores = self._select(out, multimask)
        return logits, scores, batched

    def _run_decoder(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        return run_bound(self._decoder, feeds)

    def _decoder_feeds(
        self,
        point_coords: Any = None,
        point_labels: Any = None,
        box: Any = None,
        mask_input: Any = None,
    ) -> tuple[dict[str, np.ndarray], bool]:
        """Validated decoder inputs for the current image, and whether prompts were batched."""
        if self._embedding is None:
            raise RuntimeError("An image must be set with set_image(...) before predict().")
        emb = self._embedding
        coords, labels, batched = self._prepare_prompts(point_coords, point_labels, box, emb)
        mask, has_mask = self._prepare_mask_input(mask_input, coords.shape[0])
        feeds = {
            "image_embed": emb.image_embed,
            "high_res_feats_0": emb.high_res_feats_0,
            "high_res_feats_1": emb.high_res_feats_1,
            "point_coords": coords,
            "point_labels": labels,
            "mask_input": mask,
            "has_mask_input": has_mask,
        }
        return feeds, batched

    def _select(self, out: dict[str, np.ndarray], multimask: bool) -> tuple[np.ndarray, np.ndarray]:
        multi, multi_iou = out["masks"], out["iou_predictions"]
        if multimask:
            return multi, multi_iou
        if "single_mask" in out:
            return postprocess.select_single_mask(
                out["single_mask"],
                out["single_iou"],
                multi,
                multi_iou,
                delta=self._stability_delta,
                thresh=self._stability_thresh,
            )
        # samexporter decoders only expose the multimask token: take the best-scoring mask.
        return postprocess.best_of(multi, multi_iou)

    @staticmethod
    def _prepare_prompts(
        point_coords: Any, point_labels: Any, box: Any, emb: ImageEmbedding
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Validate prompts and merge them into the decoder's (B, N, 2) / (B, N) inputs."""
        coords, labels, batched = check_prompts(point_coords, point_labels, box, emb.image_hw)
        return postprocess.to_model_coords(coords, emb.image_hw), labels, batched

    @staticmethod
    def _prepare_mask_input(mask_input: Any, n_sets: int) -> tuple[np.ndarray, np.ndarray]:
        if mask_input is None:
            return (
                np.zeros((n_sets, 1, LOW_RES, LOW_RES), dtype=np.float32),
                np.zeros(n_sets, dtype=np.float32),
            )
        mask = np.asarray(mask_input, dtype=np.float32)
        while mask.ndim < 4:
            mask = mask[None]
        if mask.shape[1:] != (1, LOW_RES, LOW_RES) or mask.shape[0] not in (1, n_sets):
            raise PromptError(
                f"mask_input must be low-resolution logits of shape (1, {LOW_RES}, {LOW_RES}) "
                f"(the third output of predict), got {np.shape(mask_input)}."
            )
        if not np.all(np.isfinite(mask)):
            raise PromptError("mask_input contains NaN or infinite values.")
        mask = np.ascontiguousarray(np.broadcast_to(mask, (n_sets, 1, LOW_RES, LOW_RES)))
        return mask, np.ones(n_sets, dtype=np.float32)


class StaleReplayError(RuntimeError):
    """A graph-captured encoder replayed the first image's outputs for another image."""


def _check_replay_not_stale(bound: BoundEncoder, first: dict[str, Any]) -> None:
    """Raise if a replayed (graph-captured) encoder returns the first image's outputs again.

    An output that ONNX Runtime copies into its bound buffer from the host (one whose last node
    is a view, such as a Reshape, in samexporter's encoders) is not part of the captured GPU
    work: replays leave it unchanged. This plugin's export writes every output from a compute
    node; other encoders are checked here, with a second, different image.
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


def check_prompts(
    point_coords: Any, point_labels: Any, box: Any, image_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate prompts against an image's size and merge them as SAM2 does.

    Needs no model, so callers (the CLI, the propagator) can check prompts before loading one.

    Parameters
    ----------
    point_coords : array-like or None
        ``(N, 2)`` or ``(B, N, 2)`` points as ``(x, y)`` pixels.
    point_labels : array-like or None
        ``(N,)`` or ``(B, N)``: 1 object, 0 background.
    box : array-like or None
        ``(4,)`` or ``(B, 4)`` as ``x0, y0, x1, y1`` pixels.
    image_hw : (int, int)
        Height and width of the image the prompts are for.

    Returns
    -------
    coords : numpy.ndarray
        ``(B, N, 2)`` pixel coordinates, box corners before points.
    labels : numpy.ndarray
        ``(B, N)`` float32 labels (2 and 3 for box corners).
    batched : bool
        Whether the prompts had a batch dimension.

    Raises
    ------
    PromptError
        No prompt, a malformed one, or one outside the image.
    """
    if point_coords is None and point_labels is not None:
        raise PromptError("point_labels were given without point_coords.")
    points = None if point_coords is None else _check_points(point_coords, point_labels, image_hw)
    boxes = None if box is None else _check_box(box, image_hw)
    if points is None and boxes is None:
        raise PromptError("Prompts need at least one point or a box.")
    if boxes is None:
        return points
    if points is None:
        return boxes
    if points[0].shape[0] != boxes[0].shape[0]:
        raise PromptError(
            f"{boxes[0].shape[0]} box(es) but {points[0].shape[0]} point set(s): "
            "batch sizes must match."
        )
    # SAM2 puts box corners before the points.
    coords = np.concatenate([boxes[0], points[0]], axis=1)
    labels = np.concatenate([boxes[1], points[1]], axis=1)
    return coords, labels, points[2] or boxes[2]


def _check_points(
    point_coords: Any, point_labels: Any, image_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Points as ``(B, N, 2)`` pixel coordinates and ``(B, N)`` float labels, validated."""
    if point_labels is None:
        raise PromptError(
            "point_labels must be given with point_coords (1 = object, 0 = background)."
        )
    coords = np.asarray(point_coords, dtype=np.float64)
    labels = np.asarray(point_labels)
    batched = coords.ndim == 3
    if coords.ndim == 2:
        coords, labels = coords[None], labels[None]
    if coords.ndim != 3 or coords.shape[-1] != 2:
        raise PromptError(
            "point_coords must have shape (N, 2) or (B, N, 2) as (x, y); "
            f"got {np.shape(point_coords)}."
        )
    if labels.shape != coords.shape[:-1]:
        raise PromptError(
            f"{coords.shape[-2]} point(s) but point_labels has shape "
            f"{np.shape(point_labels)}: give one label per point."
        )
    if coords.shape[1] == 0:
        raise PromptError("point_coords is empty.")
    if not np.all(np.isfinite(coords)):
        raise PromptError("point_coords contains NaN or infinite values.")
    if not np.all(np.isin(labels, (0, 1))):
        raise PromptError(
            f"point_labels must be 1 (object) or 0 (background); got {np.unique(labels).tolist()}."
        )
    height, width = image_hw
    # Pixel i covers [i - 0.5, i + 0.5]: anything within the image's extent is accepted.
    outside = (
        (coords[..., 0] < -0.5)
        | (coords[..., 0] > width - 0.5)
        | (coords[..., 1] < -0.5)
        | (coords[..., 1] > height - 0.5)
    )
    if np.any(outside):
        x, y = coords[outside][0]
        raise PromptError(
            f"Point (x={x:g}, y={y:g}) is outside the image (width {width}, height {height}; "
            f"x in [0, {width - 1}], y in [0, {height - 1}])."
        )
    return coords, labels.astype(np.float32), batched


def _check_box(box: Any, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, bool]:
    """Boxes as ``(B, 2, 2)`` corner coordinates with SAM2's corner labels 2 and 3."""
    boxes = np.asarray(box, dtype=np.float64)
    batched = boxes.ndim == 2
    if boxes.ndim == 1:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise PromptError(
            f"box must be (4,) or (B, 4) as x0, y0, x1, y1; got shape {np.shape(box)}."
        )
    if not np.all(np.isfinite(boxes)):
        raise PromptError("box contains NaN or infinite values.")
    height, width = image_hw
    # Boxes drawn right-to-left or bottom-to-top are still boxes.
    x0, x1 = np.minimum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 0], boxes[:, 2])
    y0, y1 = np.minimum(boxes[:, 1], boxes[:, 3]), np.maximum(boxes[:, 1], boxes[:, 3])
    if np.any((x1 < -0.5) | (y1 < -0.5) | (x0 > width - 0.5) | (y0 > height - 0.5)):
        raise PromptError(f"The box lies entirely outside the image ({width} x {height}).")
    x0, x1 = np.clip(x0, -0.5, width - 0.5), np.clip(x1, -0.5, width - 0.5)
    y0, y1 = np.clip(y0, -0.5, height - 0.5), np.clip(y1, -0.5, height - 0.5)
    if np.any((x1 - x0 <= 0) | (y1 - y0 <= 0)):
        raise PromptError("The box has zero width or height.")
    corners = np.stack([np.stack([x0, y0], -1), np.stack([x1, y1], -1)], axis=1)
    labels = np.tile(np.array([[2.0, 3.0]], dtype=np.float32), (len(boxes), 1))
    return corners, labels, batched
