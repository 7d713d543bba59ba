"""Reviewing a propagation: per frame and object, how sure the model was, and where to look.

Each tracked frame gives every object a :class:`FrameScore` (SAM2's object-presence logit, the
decoder's predicted IoU, the mask's area). :func:`review_flags` reads an object's scores in
stack order and lists the frames a person should check:

- ``"lost"``: the object was present on the frame before and is not on this one (presence
  logit <= 0, an empty mask), with the span of frames it stays away;
- ``"reappears"``: present again after frames without it (a different cell may have been
  picked up);
- ``"low score"``: the predicted IoU falls below ``min_iou`` or drops by more than ``iou_drop``
  from the frame before (the mask is likely to be wrong).

Pure numpy-free bookkeeping: no Qt, no napari, no model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["FLAG_KINDS", "FrameScore", "ReviewFlag", "review_flags"]

#: The kinds of :class:`ReviewFlag`, in the order they are listed on a frame.
FLAG_KINDS = ("lost", "reappears", "low score")

#: Defaults of :func:`review_flags`.
MIN_IOU = 0.5
IOU_DROP = 0.2


@dataclass(frozen=True)
class FrameScore:
    """One object's scores on one tracked frame.

    Attributes
    ----------
    object_score : float
        SAM2's object-presence logit (> 0: the object is on the frame).
    iou : float
        The decoder's predicted IoU of the mask (NaN when unknown).
    area : int
        Pixels of the mask (-1 when not measured).
    """

    object_score: float
    iou: float = math.nan
    area: int = -1

    @property
    def present(self) -> bool:
        """Whether the model says the object is on the frame (and its mask is not empty)."""
        return self.object_score > 0 and self.area != 0


@dataclass(frozen=True)
class ReviewFlag:
    """A frame of an object worth checking.

    Attributes
    ----------
    object_id : int
    frame : int
        Where to look (the first frame of a span).
    kind : {"lost", "reappears", "low score"}
    detail : str
        What happened, in words ("not on slices 7-9", "predicted IoU 0.31 (0.85 before)").
    last_frame : int
        The last frame of the span (``frame`` for a single frame).
    """

    object_id: int
    frame: int
    kind: str
    detail: str
    last_frame: int = -1

    def __post_init__(self) -> None:
        if self.last_frame < 0:
            object.__setattr__(self, "last_frame", self.frame)


def _span(first: int, last: int) -> str:
    return f"slice {first}" if first == last else f"slices {first}-{last}"


def review_flags(
    scores: Mapping[int, Mapping[int, FrameScore]],
    *,
    min_iou: float = MIN_IOU,
    iou_drop: float = IOU_DROP,
) -> list[ReviewFlag]:
    """The frames to check, per object, in stack order.

    Parameters
    ----------
    scores : mapping
        ``{object_id: {frame: FrameScore}}``; frames need not be contiguous (a span of frames
        without scores is not a loss).
    min_iou : float
        A present object's predicted IoU below this is flagged ``"low score"``.
    iou_drop : float
        So is a fall of the predicted IoU by more than this from the previous scored frame.

    Returns
    -------
    list of ReviewFlag
        Sorted by object, then frame.
    """
    flags: list[ReviewFlag] = []
    for obj_id in sorted(scores):
        frames = sorted(scores[obj_id])
        seen = False  # present on an earlier frame
        lost_from: int | None = None
        previous_iou = math.nan
        for k, frame in enumerate(frames):
            score = scores[obj_id][frame]
            if not score.present:
                if seen and lost_from is None:
                    lost_from = frame
                # The span ends at the last absent frame before a present one (or the end).
                following = frames[k + 1] if k + 1 < len(frames) else None
                ends = following is None or scores[obj_id][following].present
                if lost_from is not None and ends:
                    flags.append(
                        ReviewFlag(
                            obj_id,
                            lost_from,
                            "lost",
                            f"not on {_span(lost_from, frame)}",
                            frame,
                        )
                    )
                previous_iou = math.nan
                continue
            if lost_from is not None:
                flags.append(
                    ReviewFlag(obj_id, frame, "reappears", f"back after {frame - lost_from} slices")
                )
                lost_from = None
            seen = True
            iou = score.iou
            if not math.isnan(iou):
                if iou < min_iou:
                    flags.append(ReviewFlag(obj_id, frame, "low score", f"predicted IoU {iou:.2f}"))
                elif not math.isnan(previous_iou) and previous_iou - iou > iou_drop:
                    flags.append(
                        ReviewFlag(
                            obj_id,
                            frame,
                            "low score",
                            f"predicted IoU {iou:.2f} ({previous_iou:.2f} before)",
                        )
                    )
            previous_iou = iou
    return flags
