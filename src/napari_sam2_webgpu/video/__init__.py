"""Propagate masks through z-stacks and time series with SAM2's memory.

========================  ==================================================================
:mod:`.state`             :class:`StackState`, per-object :class:`ObjectTrack` and
                          :class:`FrameResult`, with named transitions; :data:`DIRECTIONS`
:mod:`.memory`            memory slot and object-pointer selection, bfloat16 storage, hole
                          filling, :class:`VideoConfig`
:mod:`.tracker`           :class:`FrameTracker`: SAM2's ``track_step`` on the ONNX sessions
:mod:`.components`        the memory attention and memory encoder sessions and their checks
:mod:`.steps`             the video predictor's steps: prompting a frame, preflight, tracking
:mod:`.propagator`        :class:`Sam2Propagator`, the public API
:mod:`.review`            per-frame :class:`FrameScore` of each object, :func:`review_flags`
                          (the frames where an object is lost, reappears or scores low)
========================  ==================================================================

The image model is used only through :mod:`napari_sam2_webgpu.image`'s public names. Nothing
here imports ``onnxruntime`` or scipy at import time.
"""

from __future__ import annotations

from .memory import (
    FILL_HOLE_AREA,
    NO_OBJECT_SCORE,
    VideoConfig,
    fill_holes,
    from_bfloat16,
    to_bfloat16,
)
from .propagator import PropagationCancelled, Sam2Propagator
from .review import FrameScore, ReviewFlag, review_flags
from .state import DIRECTIONS, FrameResult, ObjectTrack, StackState, direction_passes
from .tracker import FrameTracker

__all__ = [
    "DIRECTIONS",
    "FILL_HOLE_AREA",
    "NO_OBJECT_SCORE",
    "FrameResult",
    "FrameScore",
    "FrameTracker",
    "ObjectTrack",
    "PropagationCancelled",
    "ReviewFlag",
    "Sam2Propagator",
    "StackState",
    "VideoConfig",
    "direction_passes",
    "fill_holes",
    "from_bfloat16",
    "review_flags",
    "to_bfloat16",
]
