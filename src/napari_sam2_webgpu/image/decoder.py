"""The prompt decoder: an embedding and prompts in, low-resolution mask logits out.

:class:`PromptDecoder` owns the decoder session: it builds its inputs (validated pixel prompts,
or prompts already in the model's frame for the video tracker), runs it through
:func:`napari_sam2_webgpu.runtime.iobinding.run_bound` (so embeddings in GPU memory are read
where they are), and picks masks: all candidates, the stability-chosen single mask, or the one
SAM2's video tracking uses together with its object pointer.

Decoders in samexporter's interface (``masks`` and ``iou_predictions`` only) work for images;
this plugin's export adds ``single_mask``/``single_iou`` (SAM2's stability choice),
``obj_ptrs`` and ``object_score_logits`` (needed for video).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..models.interface import DECODER_INPUTS, ENCODER_INPUT
from ..runtime.capture import CapturedSessions
from ..runtime.iobinding import run_bound
from . import postprocess
from .device_masks import DeviceMaskUpsampler
from .encoder import ImageEmbedding
from .prompts import check_mask_input, check_prompts, empty_mask_input

__all__ = [
    "DECODER_INPUTS",
    "PromptDecoder",
    "TrackedMask",
    "check_decoder",
    "cpu_decoder_is_faster",
    "time_decoder",
]

logger = logging.getLogger("napari_sam2_webgpu")


def check_decoder(session: Any, path: str | os.PathLike | None = None) -> None:
    """Raise ``ValueError`` unless ``session`` is a SAM2 prompt decoder (say so if swapped)."""
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
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


def _model_metadata(session: Any) -> dict[str, str]:
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except Exception:  # metadata is optional (samexporter models have none)
        return {}


@dataclass(frozen=True)
class TrackedMask:
    """The one mask SAM2's video tracking keeps for an object on a frame.

    Attributes
    ----------
    low_res : numpy.ndarray
        ``(1, 1, 256, 256)`` float32 logits.
    obj_ptr : numpy.ndarray
        ``(256,)`` float32 object pointer.
    object_score : float
        Object-presence logit (> 0: the object is on the frame).
    iou : float
        The decoder's predicted IoU of this mask (NaN when it has none).
    """

    low_res: np.ndarray
    obj_ptr: np.ndarray
    object_score: float
    iou: float = float("nan")


class PromptDecoder:
    """Decode prompts on an :class:`~.encoder.ImageEmbedding` with one SAM2 decoder session.

    Stateless between calls (each takes its embedding), so one decoder serves any number of
    images and threads.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
        The prompt decoder.
    provider : {"webgpu", "cpu"}
        Where the session runs; a ``"cpu"`` decoder reads embeddings from host memory.
    path : path, optional
        The model file, for messages.

    Attributes
    ----------
    session : onnxruntime.InferenceSession
    provider : str
    path : pathlib.Path or None
    outputs : list of str
        The session's output names, in order.
    captured : CapturedSessions or None
        Graph-captured static-shape sessions that :meth:`run` uses first (WebGPU; see
        :meth:`enable_capture`).
    upsampler : DeviceMaskUpsampler or None
        Upsamples and thresholds masks on the device for :meth:`to_masks` (WebGPU).
    stability_delta, stability_thresh : float
        SAM2's settings for choosing the single mask (from the model's metadata).

    Raises
    ------
    ValueError
        ``session`` is not a SAM2 prompt decoder.
    """

    def __init__(
        self, session: Any, *, provider: str = "cpu", path: str | os.PathLike | None = None
    ) -> None:
        check_decoder(session, path)
        self.session = session
        self.provider = provider
        self.path = Path(path) if path else None
        self.outputs = [o.name for o in session.get_outputs()]
        self.captured: CapturedSessions | None = None
        self.upsampler: DeviceMaskUpsampler | None = None
        meta = _model_metadata(session)
        self.stability_delta = float(meta.get("stability_delta", 0.05))
        self.stability_thresh = float(meta.get("stability_thresh", 0.98))

    @property
    def has_object_pointers(self) -> bool:
        """Whether the decoder outputs object pointers (``obj_ptrs``), which video needs."""
        return "obj_ptrs" in self.outputs

    def enable_capture(self, captured: CapturedSessions | None) -> None:
        """Run through graph-captured sessions, one per prompt shape (``None``: stop).

        A shape is captured the first time it is decoded and checked against the plain session
        then; shapes that cannot be captured keep running on the plain session.
        """
        self.captured = captured

    @property
    def captures(self) -> bool:
        """Whether prompt shapes are graph-captured (then a repeated shape is much faster)."""
        return self.captured is not None and self.captured.enabled

    def to_masks(self, logits: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """Boolean masks ``(..., H, W)`` of ``(..., 256, 256)`` logits at SAM2's threshold.

        On the device with :attr:`upsampler` (sizes it takes), else on the host
        (:func:`.postprocess.logits_to_masks`).
        """
        if self.upsampler is not None:
            masks = self.upsampler(logits, image_hw)
            if masks is not None:
                return masks
        return postprocess.logits_to_masks(logits, image_hw)

    def place(self, embedding: ImageEmbedding) -> ImageEmbedding:
        """``embedding`` where this decoder reads it best: a host copy for a CPU decoder."""
        return embedding.numpy() if self.provider == "cpu" else embedding

    # -- inputs ---------------------------------------------------------------------------------
    def feeds(
        self,
        embedding: ImageEmbedding,
        point_coords: Any = None,
        point_labels: Any = None,
        box: Any = None,
        mask_input: Any = None,
    ) -> tuple[dict[str, Any], bool]:
        """Validated decoder inputs for pixel prompts on ``embedding``'s image.

        Parameters are those of :meth:`~.predictor.Sam2Predictor.predict`.

        Returns
        -------
        feeds : dict
            One value per decoder input.
        batched : bool
            Whether the prompts had a batch dimension.

        Raises
        ------
        PromptError
            Malformed prompts (see :func:`~.prompts.check_prompts`,
            :func:`~.prompts.check_mask_input`).
        """
        coords, labels, batched = check_prompts(point_coords, point_labels, box, embedding.image_hw)
        coords = postprocess.to_model_coords(coords, embedding.image_hw)
        mask, has_mask = check_mask_input(mask_input, coords.shape[0])
        return self._feeds(embedding, coords, labels, mask, has_mask), batched

    def model_feeds(
        self,
        embedding: ImageEmbedding,
        coords: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Decoder inputs for prompts already in the model's frame, unchecked.

        Parameters
        ----------
        embedding : ImageEmbedding
            Its ``image_embed`` may be replaced (video conditions it on memory first).
        coords : numpy.ndarray
            ``(B, N, 2)`` in the 1024 x 1024 model frame.
        labels : numpy.ndarray
            ``(B, N)``: 1, 0, 2 and 3 (box corners), or -1 for SAM2's padding point.
        mask_input : numpy.ndarray, optional
            ``(B, 1, 256, 256)`` logits.
        """
        n_sets = coords.shape[0]
        if mask_input is None:
            mask, has_mask = empty_mask_input(n_sets)
        else:
            mask = np.ascontiguousarray(mask_input, dtype=np.float32)
            has_mask = np.ones(n_sets, dtype=np.float32)
        return self._feeds(embedding, coords, labels, mask, has_mask)

    @staticmethod
    def _feeds(
        emb: ImageEmbedding, coords: Any, labels: Any, mask: np.ndarray, has_mask: np.ndarray
    ) -> dict[str, Any]:
        return {
            "image_embed": emb.image_embed,
            "high_res_feats_0": emb.high_res_feats_0,
            "high_res_feats_1": emb.high_res_feats_1,
            "point_coords": np.asarray(coords, dtype=np.float32),
            "point_labels": np.asarray(labels, dtype=np.float32),
            "mask_input": mask,
            "has_mask_input": has_mask,
        }

    # -- running and choosing -------------------------------------------------------------------
    def run(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        """Run the decoder: ``{output name: array}``.

        Through the captured session of the prompts' shape when there is one (or one can be
        made), else through the plain session.
        """
        if self.captured is not None:
            outputs = self.captured.run(feeds)
            if outputs is not None:
                return outputs
        return dict(zip(self.outputs, run_bound(self.session, feeds), strict=True))

    def select(
        self, outputs: dict[str, np.ndarray], multimask: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits ``(B, K, 256, 256)`` and scores ``(B, K)``: all K=3 candidates, or one.

        The single mask is SAM2's stability choice when the decoder exports it (this plugin's
        export), else the best-scoring candidate (samexporter's decoders).
        """
        multi, multi_iou = outputs["masks"], outputs["iou_predictions"]
        if multimask:
            return multi, multi_iou
        if "single_mask" in outputs:
            return postprocess.select_single_mask(
                outputs["single_mask"],
                outputs["single_iou"],
                multi,
                multi_iou,
                delta=self.stability_delta,
                thresh=self.stability_thresh,
            )
        return postprocess.best_of(multi, multi_iou)

    def select_tracked(
        self, outputs: dict[str, np.ndarray], multimask: bool, *, multimask_pointer: bool = True
    ) -> TrackedMask:
        """The mask and object pointer SAM2's ``track_step`` keeps for one object.

        Parameters
        ----------
        outputs : dict
            Of :meth:`run` on one prompt set, with ``obj_ptrs`` and ``object_score_logits``.
        multimask : bool
            Take the best of the three candidates (else the single mask).
        multimask_pointer : bool
            With ``multimask``, take the pointer of the chosen candidate's token (SAM2's
            ``use_multimask_token_for_obj_ptr``), else the single-mask token's.
        """
        if multimask:
            best = int(np.argmax(outputs["iou_predictions"][0]))
            low_res = outputs["masks"][:, best : best + 1]
            iou = outputs["iou_predictions"][0, best]
            token = 1 + best if multimask_pointer else 0
        else:
            low_res, scores = self.select(outputs, multimask=False)
            iou = scores.reshape(-1)[0]
            token = 0
        return TrackedMask(
            low_res=np.ascontiguousarray(low_res, dtype=np.float32),
            obj_ptr=np.array(outputs["obj_ptrs"][0, token], dtype=np.float32),
            object_score=float(outputs["object_score_logits"][0, 0]),
            iou=float(iou),
        )

    def decode(
        self,
        embedding: ImageEmbedding,
        point_coords: Any = None,
        point_labels: Any = None,
        box: Any = None,
        mask_input: Any = None,
        multimask_output: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Low-resolution logits ``(B, K, 256, 256)``, scores ``(B, K)`` and whether batched."""
        feeds, batched = self.feeds(embedding, point_coords, point_labels, box, mask_input)
        logits, scores = self.select(self.run(feeds), multimask_output)
        return logits, scores, batched


def time_decoder(run: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``run`` in ms, after one untimed call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def cpu_decoder_is_faster(
    current: PromptDecoder, cpu: PromptDecoder, probe: ImageEmbedding, repeats: int = 5
) -> bool:
    """Time one click on ``current`` and on ``cpu``; true if the CPU clearly wins.

    ``probe`` is any embedding from the encoder (as it leaves the encoder: on the device when
    it is bound); the CPU decoder reads a host copy, as it would for every image.
    """
    prompt = {"point_coords": [[32.0, 32.0]], "point_labels": [1]}
    feeds, _ = current.feeds(probe, **prompt)
    host, _ = cpu.feeds(probe.numpy(), **prompt)
    current_ms = time_decoder(lambda: current.run(feeds), repeats)
    cpu_ms = time_decoder(lambda: cpu.run(host), repeats)
    # A clear margin: the CPU path also pays one embedding download per image.
    faster = cpu_ms < 0.85 * current_ms
    logger.info(
        "decoder: %.1f ms on %s, %.1f ms on the CPU; clicks decode on the %s",
        current_ms,
        "WebGPU" if current.provider == "webgpu" else current.provider,
        cpu_ms,
        "CPU" if faster else "GPU",
    )
    return faster
