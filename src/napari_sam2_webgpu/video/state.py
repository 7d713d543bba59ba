"""What one stack's segmentation holds: frames, embeddings, and each object's prompts and results.

The propagator changes this state only through the named transitions here
(:meth:`ObjectTrack.set_prompts`, :meth:`ObjectTrack.commit`, :meth:`ObjectTrack.record`,
:meth:`ObjectTrack.clear_frame`, :meth:`StackState.track`, ...), so the bookkeeping of SAM2's
conditioning and non-conditioning outputs is in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..image.embedding_cache import EmbeddingCache, EmbeddingKey
from ..image.encoder import ImageEmbedding
from ..image.postprocess import logits_to_masks
from ..image.preprocess import ImageError
from ..image.prompts import PromptError

__all__ = [
    "DIRECTIONS",
    "FrameResult",
    "ObjectTrack",
    "StackState",
    "check_stack",
    "direction_passes",
]

#: ``propagate`` directions: from the first prompted frame to the end, to the start, or both.
DIRECTIONS = ("forward", "backward", "both")


def direction_passes(direction: str) -> list[bool]:
    """The passes of a run in ``direction``, as ``reverse`` flags (``"both"``: forward first)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return [False, True] if direction == "both" else [direction == "backward"]


def check_stack(shape: Sequence[int], rgb: bool | None) -> None:
    """Raise :class:`ImageError` unless ``shape`` is a stack ``(T, H, W)`` or ``(T, H, W, C)``."""
    if len(shape) not in (3, 4) or (len(shape) == 4 and rgb is False) or (len(shape) == 3 and rgb):
        raise ImageError(
            f"Propagation needs a stack (frames, height, width[, channels]); got shape "
            f"{tuple(shape)}. Use Sam2Predictor for a single image."
        )
    if len(shape) == 4 and shape[-1] not in (1, 3, 4):
        raise ImageError(
            f"The last axis of a 4D stack must be colour channels (1, 3 or 4); got shape "
            f"{tuple(shape)}. Pass one 3D stack (frames, height, width) at a time."
        )
    if shape[0] < 1:
        raise ImageError("The stack has no frames.")


@dataclass
class FrameResult:
    """One object's result on one frame: what the memory bank and the display need.

    Attributes
    ----------
    low_res : numpy.ndarray
        ``(1, 1, 256, 256)`` logits, holes filled.
    obj_ptr : numpy.ndarray
        ``(256,)`` object pointer.
    object_score : float
        Object-presence logit.
    maskmem : numpy.ndarray or None
        ``(64, h, w)`` memory features as bfloat16 bits; ``None`` until encoded.
    iou : float
        The decoder's predicted IoU of the mask (NaN when unknown).
    """

    low_res: np.ndarray
    obj_ptr: np.ndarray
    object_score: float
    maskmem: np.ndarray | None = None
    iou: float = float("nan")


Points = tuple[np.ndarray, np.ndarray]


@dataclass
class ObjectTrack:
    """Prompts, memory bank and results of one object.

    Attributes
    ----------
    points : dict
        Frame -> ``(coords, labels)`` of its prompts, in the model's frame.
    cond : dict
        Conditioning frames (prompted, encoded into memory) -> result.
    non_cond : dict
        Tracked frames -> result.
    pending : dict
        Frame -> ``(result, is_cond)`` of prompts not yet encoded into memory.
    tracked : dict
        Frames visited by a propagation -> whether the pass was in reverse.
    """

    points: dict[int, Points] = field(default_factory=dict)
    cond: dict[int, FrameResult] = field(default_factory=dict)
    non_cond: dict[int, FrameResult] = field(default_factory=dict)
    pending: dict[int, tuple[FrameResult, bool]] = field(default_factory=dict)
    tracked: dict[int, bool] = field(default_factory=dict)

    def latest(self, frame: int) -> FrameResult | None:
        """The newest result on ``frame`` (a pending prompt's first), or ``None``."""
        if frame in self.pending:
            return self.pending[frame][0]
        return self.cond.get(frame) or self.non_cond.get(frame)

    def previous(self, frame: int, is_cond: bool) -> FrameResult | None:
        """The result a new prompt on ``frame`` refines (its mask becomes ``mask_input``)."""
        if frame in self.pending and self.pending[frame][1] == is_cond:
            return self.pending[frame][0]
        return self.cond.get(frame) or self.non_cond.get(frame)

    def start_frames(self) -> list[int]:
        """Frames a propagation can start from: conditioning and pending ones."""
        return [*self.cond, *self.pending]

    def set_prompts(self, frame: int, points: Points, result: FrameResult, is_cond: bool) -> None:
        """Prompts on ``frame`` gave ``result``; it enters memory at the next :meth:`commit`."""
        self.points[frame] = points
        self.pending[frame] = (result, is_cond)

    def commit(self, encode: Callable[[int, FrameResult], np.ndarray]) -> None:
        """Move pending results into the bank (``propagate_in_video_preflight``).

        ``encode(frame, result)`` gives the memory features of a result that has none yet.
        Non-conditioning results go first, as the official predictor consolidates them.
        """
        for want_cond in (False, True):
            for frame, (result, is_cond) in list(self.pending.items()):
                if is_cond != want_cond:
                    continue
                if result.maskmem is None:
                    result.maskmem = encode(frame, result)
                (self.cond if is_cond else self.non_cond)[frame] = result
                del self.pending[frame]
        for frame in self.cond:
            self.non_cond.pop(frame, None)

    def record(self, frame: int, reverse: bool, result: FrameResult | None = None) -> None:
        """A pass in direction ``reverse`` visited ``frame``, tracking ``result`` there."""
        if result is not None:
            self.non_cond[frame] = result
        self.tracked[frame] = reverse

    def clear_frame(self, frame: int) -> bool:
        """Drop the prompts on ``frame`` and every tracked result; whether prompts remain."""
        self.points.pop(frame, None)
        self.pending.pop(frame, None)
        self.cond.pop(frame, None)
        self.non_cond.clear()
        self.tracked.clear()
        return bool(self.points)


class StackState:
    """One stack being segmented: its frames, embeddings and the objects' memory banks.

    Made by :meth:`~napari_sam2_webgpu.video.Sam2Propagator.init_state`; pass it to the
    propagator's other methods.

    Attributes
    ----------
    frames : array-like
        ``(T, H, W[, C])``.
    contrast_limits : (float, float) or None
        The same for every frame, or ``None`` (per frame).
    num_frames : int
        Length of the stack.
    frame_hw : (int, int)
        Height and width of a frame.
    objects : dict
        Object id -> :class:`ObjectTrack`, in the order they were added.
    frames_encoded : int
        Frames encoded by this state (embeddings computed, not taken from the cache).
    """

    def __init__(
        self,
        frames: Any,
        *,
        contrast_limits: Sequence[float] | None,
        embed: Callable[[np.ndarray], ImageEmbedding],
        embedding_provider: Callable[[int], ImageEmbedding] | None,
        cache: EmbeddingCache,
        model_name: str,
        to_masks: Callable[[np.ndarray, tuple[int, int]], np.ndarray] = logits_to_masks,
    ) -> None:
        self.frames = frames
        self._to_masks = to_masks
        self.contrast_limits = None if contrast_limits is None else tuple(contrast_limits)
        self.num_frames = int(frames.shape[0])
        self.frame_hw = (int(frames.shape[1]), int(frames.shape[2]))
        self._embed = embed
        self._provider = embedding_provider
        self._cache = cache
        self._model = model_name
        self.objects: dict[int, ObjectTrack] = {}
        self.frames_encoded = 0

    @property
    def obj_ids(self) -> list[int]:
        """Object ids with prompts, in the order they were added."""
        return list(self.objects)

    def prompted_frames(self, obj_id: int) -> list[int]:
        """Frames where ``obj_id`` has prompts, sorted."""
        track = self.objects.get(obj_id)
        return sorted(track.points) if track else []

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as a numpy array (lazy stacks are read here)."""
        return np.asarray(self.frames[index])

    def check_frame(self, frame: Any) -> int:
        """``frame`` as an index of this stack, or a :class:`PromptError`."""
        index = int(frame)
        if not 0 <= index < self.num_frames:
            raise PromptError(f"Frame {frame} is outside the stack (0 to {self.num_frames - 1}).")
        return index

    def embedding(self, index: int) -> ImageEmbedding:
        """The frame's image embedding, computed once and cached."""
        if self._provider is not None:
            return self._provider(index)
        key = EmbeddingKey(id(self), (index,), self.contrast_limits, self._model)
        emb = self._cache.get(key)
        if emb is None:
            emb = self._embed(self.frame(index))
            self.frames_encoded += 1
            self._cache.put(key, emb)
        return emb

    def masks(self, frame: int) -> dict[int, np.ndarray]:
        """Current boolean masks ``(H, W)`` of every object with a result on ``frame``."""
        out = {}
        for obj_id, track in self.objects.items():
            result = track.latest(frame)
            if result is not None:
                out[obj_id] = self.mask_of(result)
        return out

    def mask_of(self, result: FrameResult) -> np.ndarray:
        """A result's boolean mask at frame size."""
        return self._to_masks(result.low_res[0], self.frame_hw)[0]

    # -- transitions ------------------------------------------------------------------------------
    def track(self, obj_id: int) -> ObjectTrack:
        """The track of ``obj_id``, started empty if new."""
        return self.objects.setdefault(int(obj_id), ObjectTrack())

    def remove_object(self, obj_id: int) -> None:
        """Forget one object's prompts and results."""
        self.objects.pop(int(obj_id), None)

    def reset(self) -> None:
        """Forget every prompt and result (embeddings stay cached)."""
        self.objects.clear()

    def clear_prompts(self, frame: int, obj_id: int) -> None:
        """Drop an object's prompts on ``frame`` and what was tracked; the object if none left."""
        track = self.objects.get(int(obj_id))
        if track is not None and not track.clear_frame(int(frame)):
            self.objects.pop(int(obj_id))

    def frame_order(
        self, reverse: bool, start_frame: int | None = None, max_frames: int | None = None
    ) -> list[int]:
        """The frames one propagation pass visits, in order.

        Starts at ``start_frame`` (default: the first frame with prompts, of any object) and
        goes at most ``max_frames`` past it.
        """
        starts = [t for track in self.objects.values() for t in track.start_frames()]
        if not starts:
            raise RuntimeError("No prompts yet: add points or a box on a frame first.")
        start = min(starts) if start_frame is None else self.check_frame(start_frame)
        limit = self.num_frames if max_frames is None else int(max_frames)
        if reverse:
            end = max(start - limit, 0)
            return list(range(start, end - 1, -1)) if start > 0 else []
        end = min(start + limit, self.num_frames - 1)
        return list(range(start, end + 1))
