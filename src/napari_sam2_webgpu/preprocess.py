"""Kept for compatibility: the same names live in :mod:`napari_sam2_webgpu.image.preprocess`."""

from __future__ import annotations

from .image.preprocess import (
    DEFAULT_PERCENTILES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MIN_SIDE,
    MODEL_SIZE,
    ImageError,
    check_image,
    intensity_range,
    prepare_image,
    resize_normalised,
    resize_weights,
)

__all__ = [
    "DEFAULT_PERCENTILES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MIN_SIDE",
    "MODEL_SIZE",
    "ImageError",
    "check_image",
    "intensity_range",
    "prepare_image",
    "resize_normalised",
    "resize_weights",
]
