"""SAM2's memory bank: which frames and object pointers a frame attends to, and their storage.

Follows ``SAM2Base._prepare_memory_conditioned_features`` for evaluation: the conditioning
frames closest in time (all by default), the ``num_maskmem - 1`` most recent tracked frames in
the pass's direction, and up to ``max_obj_ptrs_in_encoder`` object pointers. Memory features
are kept as bfloat16 bits, as the official predictor keeps them, and masks get their small
holes filled as ``build_sam2_video_predictor`` does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .state import FrameResult, ObjectTrack

__all__ = [
    "FILL_HOLE_AREA",
    "NO_OBJECT_SCORE",
    "MemorySelection",
    "VideoConfig",
    "closest_cond_frames",
    "fill_holes",
    "from_bfloat16",
    "memory_inputs",
    "select_memory",
    "to_bfloat16",
]

#: Mask logit the official predictor gives frames where the object is judged absent.
NO_OBJECT_SCORE = -1024.0
#: Holes up to this many low-resolution pixels are filled, as ``build_sam2_video_predictor``.
FILL_HOLE_AREA = 8


def to_bfloat16(values: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (nearest, ties to even), stored as uint16.

    The official predictor keeps memory features in bfloat16; doing the same halves the memory
    bank and keeps the numbers identical.
    """
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def from_bfloat16(values: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 bits -> float32."""
    return (values.astype(np.uint32) << np.uint32(16)).view(np.float32)


def fill_holes(logits: np.ndarray, max_area: int = FILL_HOLE_AREA) -> np.ndarray:
    """Fill background holes of at most ``max_area`` pixels in ``(..., h, w)`` mask logits.

    A hole is an 8-connected region of logits <= 0; filled pixels get 0.1, as in SAM2's
    ``fill_holes_in_mask_scores``. ``max_area <= 0`` returns ``logits`` unchanged.
    """
    if max_area <= 0:
        return logits
    from scipy import ndimage  # imported here: needed only once a stack is tracked

    out = np.array(logits, dtype=np.float32, copy=True)
    flat = out.reshape(-1, *out.shape[-2:])
    structure = np.ones((3, 3), dtype=bool)
    for plane in flat:
        labels, count = ndimage.label(plane <= 0, structure=structure)
        if count == 0:
            continue
        areas = np.bincount(labels.ravel())
        small = areas <= max_area
        small[0] = False
        plane[small[labels]] = 0.1
    return out


@dataclass(frozen=True)
class VideoConfig:
    """Tracking settings stored in the exported memory attention's metadata.

    See ``SAM2Base`` for the meaning of each; the defaults are SAM2.1's.
    """

    image_size: int = 1024
    num_maskmem: int = 7
    max_obj_ptrs_in_encoder: int = 16
    memory_temporal_stride_for_eval: int = 1
    max_cond_frames_in_attn: int = -1
    use_obj_ptrs_in_encoder: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True
    only_obj_ptrs_in_the_past_for_eval: bool = True
    multimask_output_in_sam: bool = True
    multimask_output_for_tracking: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    use_multimask_token_for_obj_ptr: bool = True
    add_all_frames_to_correct_as_cond: bool = False
    directly_add_no_mem_embed: bool = True
    binarize_mask_from_pts_for_mem_enc: bool = True
    pred_obj_scores: bool = True

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> VideoConfig:
        """The settings in a model's ``video_config`` metadata (unknown keys are ignored)."""
        raw = json.loads(meta["video_config"])
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def use_multimask(self, is_init: bool, num_points: int) -> bool:
        """Whether a decode picks the best of three masks (SAM2's ``_use_multimask``)."""
        return (
            self.multimask_output_in_sam
            and (is_init or self.multimask_output_for_tracking)
            and self.multimask_min_pt_num <= num_points <= self.multimask_max_pt_num
        )


def closest_cond_frames(
    frame: int, cond: dict[int, FrameResult], max_num: int
) -> tuple[dict[int, FrameResult], dict[int, FrameResult]]:
    """SAM2's ``select_closest_cond_frames``: at most ``max_num`` conditioning frames.

    Returns the selected frames and the others (which still serve as recent memory).
    """
    if max_num == -1 or len(cond) <= max_num:
        return dict(cond), {}
    selected: dict[int, FrameResult] = {}
    before = max((t for t in cond if t < frame), default=None)
    if before is not None:
        selected[before] = cond[before]
    after = min((t for t in cond if t >= frame), default=None)
    if after is not None:
        selected[after] = cond[after]
    rest = sorted((t for t in cond if t not in selected), key=lambda t: abs(t - frame))
    for t in rest[: max_num - len(selected)]:
        selected[t] = cond[t]
    return selected, {t: v for t, v in cond.items() if t not in selected}


def _memory_slots(
    track: ObjectTrack,
    frame: int,
    reverse: bool,
    selected: dict[int, FrameResult],
    unselected: dict[int, FrameResult],
    c: VideoConfig,
) -> list[tuple[FrameResult, int]]:
    """Results with memory features and their temporal position index, conditioning first."""
    slots: list[tuple[int, FrameResult | None]] = [(0, out) for out in selected.values()]
    stride = c.memory_temporal_stride_for_eval
    for t_pos in range(1, c.num_maskmem):
        t_rel = c.num_maskmem - t_pos  # frames before this one (in tracking order)
        if t_rel == 1:
            prev = frame + 1 if reverse else frame - 1
        elif not reverse:
            prev = ((frame - 2) // stride) * stride - (t_rel - 2) * stride
        else:
            prev = -(-(frame + 2) // stride) * stride + (t_rel - 2) * stride
        out = track.non_cond.get(prev)
        slots.append((t_pos, out if out is not None else unselected.get(prev)))
    return [
        (out, c.num_maskmem - t_pos - 1)
        for t_pos, out in slots
        if out is not None and out.maskmem is not None
    ]


def _pointer_slots(
    track: ObjectTrack,
    frame: int,
    reverse: bool,
    selected: dict[int, FrameResult],
    unselected: dict[int, FrameResult],
    num_frames: int,
    c: VideoConfig,
) -> list[tuple[int, np.ndarray]]:
    """Object pointers and their signed frame distance, conditioning frames first."""
    if not c.use_obj_ptrs_in_encoder:
        return []
    max_ptrs = min(num_frames, c.max_obj_ptrs_in_encoder)
    if c.only_obj_ptrs_in_the_past_for_eval:
        ptr_cond = {t: o for t, o in selected.items() if (t >= frame if reverse else t <= frame)}
    else:
        ptr_cond = selected
    sign = -1 if reverse else 1
    pointers = [
        ((frame - t) * sign if c.use_signed_tpos_enc_to_obj_ptrs else abs(frame - t), o.obj_ptr)
        for t, o in ptr_cond.items()
    ]
    for t_diff in range(1, max_ptrs):
        t = frame + t_diff if reverse else frame - t_diff
        if t < 0 or t >= num_frames:
            break
        out = track.non_cond.get(t, unselected.get(t))
        if out is not None:
            pointers.append((t_diff, out.obj_ptr))
    return pointers


@dataclass(frozen=True)
class MemorySelection:
    """What one object attends to on one frame: memories, their positions, object pointers.

    Attributes
    ----------
    memories : list of FrameResult
        The results whose memory features are attended to, conditioning frames first.
    memory_tpos : numpy.ndarray
        ``(N,)`` int64 temporal position index of each memory.
    obj_ptrs : numpy.ndarray
        ``(P, 256)`` object pointers.
    obj_ptr_offsets : numpy.ndarray
        ``(P,)`` their signed frame distances, normalised.
    """

    memories: list[FrameResult]
    memory_tpos: np.ndarray
    obj_ptrs: np.ndarray
    obj_ptr_offsets: np.ndarray

    def stacked_memory(self) -> np.ndarray:
        """The memory features as one ``(N, 64, h, w)`` float32 array (the model's input)."""
        return np.stack([from_bfloat16(m.maskmem) for m in self.memories])

    def small_inputs(self) -> dict[str, np.ndarray]:
        """Every memory-attention input but ``image_embed`` and ``memory``."""
        return {
            "memory_tpos": self.memory_tpos,
            "obj_ptrs": self.obj_ptrs,
            "obj_ptr_offsets": self.obj_ptr_offsets,
        }


def select_memory(
    track: ObjectTrack, frame: int, reverse: bool, num_frames: int, config: VideoConfig
) -> MemorySelection:
    """The memory bank one object attends to on ``frame``, in a pass's direction.

    Raises
    ------
    RuntimeError
        The object has no memory yet (propagation must start from a prompt).
    """
    selected, unselected = closest_cond_frames(frame, track.cond, config.max_cond_frames_in_attn)
    memories = _memory_slots(track, frame, reverse, selected, unselected, config)
    if not memories:
        raise RuntimeError(f"Frame {frame}: no memory to track from (propagate from a prompt).")
    pointers = _pointer_slots(track, frame, reverse, selected, unselected, num_frames, config)
    t_diff_max = max(min(num_frames, config.max_obj_ptrs_in_encoder) - 1, 1)
    return MemorySelection(
        memories=[m for m, _ in memories],
        memory_tpos=np.array([t for _, t in memories], dtype=np.int64),
        obj_ptrs=np.array([p for _, p in pointers], dtype=np.float32).reshape(-1, 256),
        obj_ptr_offsets=np.array([d / t_diff_max for d, _ in pointers], dtype=np.float32),
    )


def memory_inputs(
    track: ObjectTrack, frame: int, reverse: bool, num_frames: int, config: VideoConfig
) -> dict[str, np.ndarray]:
    """The memory-attention inputs (all but ``image_embed``) for one object on ``frame``.

    Raises
    ------
    RuntimeError
        The object has no memory yet (propagation must start from a prompt).
    """
    selection = select_memory(track, frame, reverse, num_frames, config)
    return {"memory": selection.stacked_memory(), **selection.small_inputs()}
