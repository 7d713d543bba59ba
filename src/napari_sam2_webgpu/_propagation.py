"""Compatibility module: propagation now lives in :mod:`napari_sam2_webgpu._napari.propagation`.

Re-exports the names this module used to define (the Qt widget imports some of them).
"""

from __future__ import annotations

from ._napari.propagation import (
    DIRECTIONS,
    PropagationController,
    PropagationRun,
    PropagationStep,
    StackSpec,
    _LayerFrames,
    stack_prompts,
    stack_spec,
    video_components,
)

__all__ = [
    "DIRECTIONS",
    "PropagationController",
    "PropagationRun",
    "PropagationStep",
    "StackSpec",
    "_LayerFrames",
    "stack_prompts",
    "stack_spec",
    "video_components",
]
