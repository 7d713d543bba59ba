"""Kept for compatibility: the same names live in :mod:`napari_sam2_webgpu.image.postprocess`."""

from __future__ import annotations

from .image.postprocess import (
    LOGIT_CLAMP,
    MASK_THRESHOLD,
    best_of,
    logits_to_masks,
    mask_iou,
    select_single_mask,
    stability_scores,
    to_model_coords,
    upsample_logits,
    upsample_taps,
)

__all__ = [
    "LOGIT_CLAMP",
    "MASK_THRESHOLD",
    "best_of",
    "logits_to_masks",
    "mask_iou",
    "select_single_mask",
    "stability_scores",
    "to_model_coords",
    "upsample_logits",
    "upsample_taps",
]
