"""Review of a propagation (video/review.py): which frames to check, from per-frame scores."""

from __future__ import annotations

import math

from napari_sam2_webgpu.video import FrameScore, ReviewFlag, review_flags


def scores(*values):
    """``{frame: FrameScore}`` from ``(object_score, iou)`` per frame (None: not tracked)."""
    return {
        frame: FrameScore(score, iou, 0 if score <= 0 else 100)
        for frame, value in enumerate(values)
        if value is not None
        for score, iou in [value]
    }


def test_nothing_to_check_on_a_steady_track():
    assert review_flags({1: scores(*[(5.0, 0.9)] * 6)}) == []


def test_lost_span_and_reappearance():
    track = scores((5, 0.9), (5, 0.9), (-2, 0.1), (-3, 0.1), (-1, 0.2), (4, 0.88), (4, 0.9))
    flags = review_flags({3: track})
    assert flags == [
        ReviewFlag(3, 2, "lost", "not on slices 2-4", 4),
        ReviewFlag(3, 5, "reappears", "back after 3 slices"),
    ]
    # Lost to the end of the stack: one flag, no reappearance.
    flags = review_flags({3: scores((5, 0.9), (-2, 0.1), (-3, 0.1))})
    assert flags == [ReviewFlag(3, 1, "lost", "not on slices 1-2", 2)]


def test_absent_before_being_seen_is_not_a_loss():
    """An object prompted on a later slice is absent before it: nothing to flag there."""
    flags = review_flags({2: scores((-1, 0.2), (-1, 0.2), (5, 0.9), (5, 0.9))})
    assert flags == []


def test_low_and_dropping_scores():
    flags = review_flags({1: scores((5, 0.9), (5, 0.85), (5, 0.55), (5, 0.4), (5, 0.8))})
    assert [(f.frame, f.kind) for f in flags] == [(2, "low score"), (3, "low score")]
    assert flags[0].detail == "predicted IoU 0.55 (0.85 before)"
    assert flags[1].detail == "predicted IoU 0.40"
    # Thresholds are the caller's; an unknown IoU is never flagged.
    assert review_flags({1: scores((5, 0.9), (5, 0.55))}, iou_drop=0.5) == []
    assert review_flags({1: {0: FrameScore(5.0, math.nan, 10)}}) == []


def test_objects_and_gaps():
    """Flags are per object, sorted; frames not tracked (a gap) are neither lost nor seen."""
    a = scores((5, 0.9), None, None, (5, 0.9))
    b = scores((5, 0.9), (-1, 0.1), (5, 0.9))
    flags = review_flags({7: b, 2: a})
    assert [(f.object_id, f.frame, f.kind) for f in flags] == [(7, 1, "lost"), (7, 2, "reappears")]
    assert flags[0].detail == "not on slice 1" and flags[0].last_frame == 1


def test_empty_mask_counts_as_absent():
    track = {0: FrameScore(5.0, 0.9, 50), 1: FrameScore(2.0, 0.9, 0), 2: FrameScore(2.0, 0.9, 40)}
    assert [f.kind for f in review_flags({1: track})] == ["lost", "reappears"]
