"""SAM2's ``track_step`` on ONNX sessions: one object, one frame.

:class:`FrameTracker` conditions a frame's features on the object's memory (memory attention),
decodes its mask with the image model's :class:`~napari_sam2_webgpu.image.decoder.PromptDecoder`
and encodes the result into memory (memory encoder). It keeps the wall time of each step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..image.decoder import PromptDecoder
from ..image.encoder import ImageEmbedding
from ..runtime.iobinding import run_bound
from .device_bank import DeviceMemoryBank
from .memory import (
    FILL_HOLE_AREA,
    NO_OBJECT_SCORE,
    VideoConfig,
    fill_holes,
    select_memory,
    to_bfloat16,
)
from .state import FrameResult, ObjectTrack, StackState

__all__ = ["FrameTracker"]

Points = tuple[np.ndarray, np.ndarray]


class FrameTracker:
    """Track one object on one frame with the decoder, memory attention and memory encoder.

    Parameters
    ----------
    decoder : PromptDecoder
        The image model's decoder (with object pointers).
    memory_attention, memory_encoder : onnxruntime.InferenceSession
        The exported video components of the same model.
    config : VideoConfig
        The tracking settings.
    fill_hole_area : int
        Fill mask holes up to this many low-resolution pixels (0: off).
    device_bank : DeviceMemoryBank, optional
        Keep memories in device memory and stack them there, for frames whose embedding is
        on the device (default: on the host).

    Attributes
    ----------
    device_bank : DeviceMemoryBank or None
        As the parameter (``None``: the bank is stacked and uploaded by the host every frame).
    stage_seconds : dict of str to float
        Wall time per step since :meth:`reset_timings`: ``encode`` (frame embeddings, including
        cache look-ups), ``memory_attention``, ``decoder``, ``memory_encoder``.
    """

    def __init__(
        self,
        decoder: PromptDecoder,
        memory_attention: Any,
        memory_encoder: Any,
        config: VideoConfig,
        *,
        fill_hole_area: int = FILL_HOLE_AREA,
        device_bank: DeviceMemoryBank | None = None,
    ) -> None:
        self.decoder = decoder
        self.device_bank = device_bank
        self.memory_attention = memory_attention
        self.memory_encoder = memory_encoder
        # SAM2.0 memory encoders do not take the object score (no "no object" embedding).
        self._memory_takes_score = "object_score_logits" in {
            i.name for i in memory_encoder.get_inputs()
        }
        self.config = config
        self.fill_hole_area = int(fill_hole_area)
        self.stage_seconds: dict[str, float] = {}

    def reset_timings(self) -> None:
        """Zero :attr:`stage_seconds`."""
        self.stage_seconds = {}

    @contextlib.contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        """Add the wall time of the block to :attr:`stage_seconds`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + elapsed

    def track(
        self,
        state: StackState,
        track: ObjectTrack,
        frame: int,
        *,
        is_init: bool,
        points: Points | None,
        mask_input: np.ndarray | None,
        reverse: bool,
        encode_memory: bool,
    ) -> FrameResult:
        """SAM2's ``track_step`` for one object on one frame.

        Parameters
        ----------
        state, track, frame
            The stack, the object and the frame.
        is_init : bool
            A first prompt: decode on the frame's own features, without memory.
        points : (coords, labels), optional
            Prompts in the model's frame; ``None`` while propagating.
        mask_input : numpy.ndarray, optional
            ``(1, 1, 256, 256)`` logits of the previous result on the frame.
        reverse : bool
            Direction of the pass (which frames are "recent").
        encode_memory : bool
            Encode the result into memory now (propagation) rather than at commit (prompts).
        """
        with self.timing("encode"):
            emb = state.embedding(frame)
        features = emb  # on a first prompt: no_mem_embed is already added by the encoder
        if not is_init:
            conditioned = self.condition(state, track, frame, reverse, emb)
            features = dataclasses.replace(emb, image_embed=conditioned)
        if points is None:  # no prompt: one padding point, as the official predictor
            coords = np.zeros((1, 1, 2), dtype=np.float32)
            labels = -np.ones((1, 1), dtype=np.float32)
        else:
            coords, labels = points
        feeds = self.decoder.model_feeds(features, coords, labels, mask_input)
        with self.timing("decoder"):
            outputs = self.decoder.run(feeds)
        multimask = self.config.use_multimask(is_init, labels.shape[1] if points is not None else 0)
        chosen = self.decoder.select_tracked(
            outputs, multimask, multimask_pointer=self.config.use_multimask_token_for_obj_ptr
        )
        low_res, score = chosen.low_res, chosen.object_score
        if self.config.pred_obj_scores and not score > 0:
            low_res = np.full_like(low_res, NO_OBJECT_SCORE)
        result = FrameResult(
            low_res=fill_holes(low_res, self.fill_hole_area),
            obj_ptr=chosen.obj_ptr,
            object_score=score,
            iou=chosen.iou,
        )
        if encode_memory:
            # The memory sees the mask before hole filling, as in the official track_step.
            result.maskmem = self.encode_memory(emb, low_res, score, points is not None)
        return result

    def encode_memory(
        self, emb: ImageEmbedding, low_res: np.ndarray, score: float, from_points: bool
    ) -> np.ndarray:
        """Memory features ``(64, h, w)`` of a mask on a frame, as bfloat16 bits."""
        binarize = from_points and self.config.binarize_mask_from_pts_for_mem_enc
        feeds = {
            "image_embed": emb.image_embed,
            "mask_logits": np.ascontiguousarray(low_res, dtype=np.float32),
            "binarize": np.array([1.0 if binarize else 0.0], dtype=np.float32),
        }
        if self._memory_takes_score:
            feeds["object_score_logits"] = np.array([[score]], dtype=np.float32)
        with self.timing("memory_encoder"):
            (features,) = run_bound(self.memory_encoder, feeds)
        return to_bfloat16(features[0])

    def condition(
        self,
        state: StackState,
        track: ObjectTrack,
        frame: int,
        reverse: bool,
        emb: ImageEmbedding,
    ) -> Any:
        """The frame's features attended to the object's memory bank.

        With device-resident embeddings the result stays on the device for the decoder.
        """
        selection = select_memory(track, frame, reverse, state.num_frames, self.config)
        feeds = {"image_embed": emb.image_embed, **selection.small_inputs()}
        outputs = memory = None
        if emb.on_device and emb.device is not None:
            name = self.memory_attention.get_outputs()[0].name
            outputs = {name: emb.device.empty(emb.image_embed.shape())}
            if self.device_bank is not None:
                memory = self.device_bank.stack(selection.memories, emb.device)
        feeds["memory"] = selection.stacked_memory() if memory is None else memory
        with self.timing("memory_attention"):
            (conditioned,) = run_bound(self.memory_attention, feeds, outputs)
        return conditioned
