"""The official ``SAM2VideoPredictor``'s steps on a :class:`~.state.StackState`.

:class:`~.propagator.Sam2Propagator` is their public face. The steps: an object's prompts on
one frame (a start, or a correction of a tracked frame), the preflight that encodes the
prompted frames into memory, and one frame of a propagation pass for every object. The model
runs are :class:`~.tracker.FrameTracker`'s; what is kept per object is
:class:`~.state.ObjectTrack`'s.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import numpy as np

from ..image import postprocess
from ..image.prompts import PromptError, check_prompts
from .state import FrameResult, StackState
from .tracker import FrameTracker

__all__ = ["commit_prompts", "model_prompts", "prompt_frame", "track_frame"]


def model_prompts(
    state: StackState, points: Any, labels: Any, box: Any
) -> tuple[np.ndarray, np.ndarray]:
    """One object's prompts, checked, in the model's frame: ``(1, N, 2)``, ``(1, N)``.

    Raises
    ------
    PromptError
        Malformed prompts, points outside the frame, or prompts of several objects.
    """
    coords, point_labels, batched = check_prompts(points, labels, box, state.frame_hw)
    if batched:
        raise PromptError("add_prompts() takes one object's prompts: points (N, 2), box (4,).")
    coords = postprocess.to_model_coords(coords, state.frame_hw)
    return coords, point_labels.astype(np.float32)


def prompt_frame(
    tracker: FrameTracker,
    state: StackState,
    frame: int,
    obj_id: int,
    prompts: tuple[np.ndarray, np.ndarray],
    *,
    corrections_as_cond: bool,
    keep: bool = True,
) -> FrameResult:
    """Segment ``obj_id`` on ``frame`` from ``prompts`` (of :func:`model_prompts`), kept there.

    On a frame the object was not tracked on, this starts the object there, like an image
    prompt; on a tracked frame it corrects the tracked mask, with the memory and the previous
    mask as input, and the frame becomes a conditioning frame if ``corrections_as_cond``.
    ``keep=False`` computes the same result and changes nothing (a preview; the object must
    exist).
    """
    track = state.track(obj_id) if keep else state.objects[int(obj_id)]
    is_init = frame not in track.tracked
    reverse = False if is_init else track.tracked[frame]
    is_cond = is_init or corrections_as_cond
    prev = track.previous(frame, is_cond)
    mask_input = None
    if prev is not None:
        mask_input = np.clip(prev.low_res, -postprocess.LOGIT_CLAMP, postprocess.LOGIT_CLAMP)
    result = tracker.track(
        state,
        track,
        frame,
        is_init=is_init,
        points=prompts,
        mask_input=mask_input,
        reverse=reverse,
        encode_memory=False,
    )
    if keep:
        track.set_prompts(frame, prompts, result, is_cond)
    return result


def commit_prompts(tracker: FrameTracker, state: StackState) -> None:
    """Encode prompted frames into memory (the official ``propagate_in_video_preflight``).

    Raises
    ------
    RuntimeError
        No object has prompts, or one has no prompted frame left to start from.
    """
    if not state.objects:
        raise RuntimeError("No prompts yet: add points or a box on a frame first.")

    def encode(frame: int, result: Any) -> np.ndarray:
        emb = state.embedding(frame)
        return tracker.encode_memory(emb, result.low_res, result.object_score, True)

    for obj_id, track in state.objects.items():
        track.commit(encode)
        if not track.cond:
            raise RuntimeError(f"Object {obj_id} has no prompted frame to start from.")


def track_frame(
    tracker: FrameTracker,
    state: StackState,
    index: int,
    reverse: bool,
    skip: Container[int] = (),
) -> dict[int, np.ndarray]:
    """Every object's ``(H, W)`` boolean mask on frame ``index``, in a pass's direction.

    A conditioning frame keeps its prompted result; any other frame is tracked from the memory
    and its result encoded into it. Either way the frame is recorded as visited. Objects in
    ``skip`` are left out (not tracked, not recorded).
    """
    masks = {}
    for obj_id, track in state.objects.items():
        if obj_id in skip:
            continue
        result = track.cond.get(index)
        if result is None:
            result = tracker.track(
                state,
                track,
                index,
                is_init=False,
                points=None,
                mask_input=None,
                reverse=reverse,
                encode_memory=True,
            )
            track.record(index, reverse, result)
        else:
            track.record(index, reverse)
        masks[obj_id] = state.mask_of(result)
    return masks
