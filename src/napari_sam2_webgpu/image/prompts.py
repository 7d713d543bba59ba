"""Prompt validation: points, labels, boxes and mask inputs, checked against an image's size.

Nothing here needs a model, so the CLI and the propagator can check prompts before one loads,
and every caller gets the same messages. Coordinates are SAM's: ``(x, y)`` pixels of the image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .preprocess import MODEL_SIZE

__all__ = ["LOW_RES", "PromptError", "check_mask_input", "check_prompts", "empty_mask_input"]

#: Side of the decoder's low-resolution logits, and so of ``mask_input`` (256).
LOW_RES = MODEL_SIZE // 4


class PromptError(ValueError):
    """A prompt (points, labels, box or mask input) is malformed; the message says how."""


def check_prompts(
    point_coords: Any, point_labels: Any, box: Any, image_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate prompts against an image's size and merge them as SAM2 does.

    Needs no model, so callers (the CLI, the propagator) can check prompts before loading one.

    Parameters
    ----------
    point_coords : array-like or None
        ``(N, 2)`` or ``(B, N, 2)`` points as ``(x, y)`` pixels.
    point_labels : array-like or None
        ``(N,)`` or ``(B, N)``: 1 object, 0 background.
    box : array-like or None
        ``(4,)`` or ``(B, 4)`` as ``x0, y0, x1, y1`` pixels.
    image_hw : (int, int)
        Height and width of the image the prompts are for.

    Returns
    -------
    coords : numpy.ndarray
        ``(B, N, 2)`` pixel coordinates, box corners before points.
    labels : numpy.ndarray
        ``(B, N)`` float32 labels (2 and 3 for box corners).
    batched : bool
        Whether the prompts had a batch dimension.

    Raises
    ------
    PromptError
        No prompt, a malformed one, or one outside the image.
    """
    if point_coords is None and point_labels is not None:
        raise PromptError("point_labels were given without point_coords.")
    points = None if point_coords is None else _check_points(point_coords, point_labels, image_hw)
    boxes = None if box is None else _check_box(box, image_hw)
    if points is None and boxes is None:
        raise PromptError("Prompts need at least one point or a box.")
    if boxes is None:
        return points
    if points is None:
        return boxes
    if points[0].shape[0] != boxes[0].shape[0]:
        raise PromptError(
            f"{boxes[0].shape[0]} box(es) but {points[0].shape[0]} point set(s): "
            "batch sizes must match."
        )
    # SAM2 puts box corners before the points.
    coords = np.concatenate([boxes[0], points[0]], axis=1)
    labels = np.concatenate([boxes[1], points[1]], axis=1)
    return coords, labels, points[2] or boxes[2]


def _check_points(
    point_coords: Any, point_labels: Any, image_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Points as ``(B, N, 2)`` pixel coordinates and ``(B, N)`` float labels, validated."""
    if point_labels is None:
        raise PromptError(
            "point_labels must be given with point_coords (1 = object, 0 = background)."
        )
    coords = np.asarray(point_coords, dtype=np.float64)
    labels = np.asarray(point_labels)
    batched = coords.ndim == 3
    if coords.ndim == 2:
        coords, labels = coords[None], labels[None]
    if coords.ndim != 3 or coords.shape[-1] != 2:
        raise PromptError(
            "point_coords must have shape (N, 2) or (B, N, 2) as (x, y); "
            f"got {np.shape(point_coords)}."
        )
    if labels.shape != coords.shape[:-1]:
        raise PromptError(
            f"{coords.shape[-2]} point(s) but point_labels has shape "
            f"{np.shape(point_labels)}: give one label per point."
        )
    if coords.shape[1] == 0:
        raise PromptError("point_coords is empty.")
    if not np.all(np.isfinite(coords)):
        raise PromptError("point_coords contains NaN or infinite values.")
    if not np.all(np.isin(labels, (0, 1))):
        raise PromptError(
            f"point_labels must be 1 (object) or 0 (background); got {np.unique(labels).tolist()}."
        )
    height, width = image_hw
    # Pixel i covers [i - 0.5, i + 0.5]: anything within the image's extent is accepted.
    outside = (
        (coords[..., 0] < -0.5)
        | (coords[..., 0] > width - 0.5)
        | (coords[..., 1] < -0.5)
        | (coords[..., 1] > height - 0.5)
    )
    if np.any(outside):
        x, y = coords[outside][0]
        raise PromptError(
            f"Point (x={x:g}, y={y:g}) is outside the image (width {width}, height {height}; "
            f"x in [0, {width - 1}], y in [0, {height - 1}])."
        )
    return coords, labels.astype(np.float32), batched


def _check_box(box: Any, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, bool]:
    """Boxes as ``(B, 2, 2)`` corner coordinates with SAM2's corner labels 2 and 3."""
    boxes = np.asarray(box, dtype=np.float64)
    batched = boxes.ndim == 2
    if boxes.ndim == 1:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise PromptError(
            f"box must be (4,) or (B, 4) as x0, y0, x1, y1; got shape {np.shape(box)}."
        )
    if not np.all(np.isfinite(boxes)):
        raise PromptError("box contains NaN or infinite values.")
    height, width = image_hw
    # Boxes drawn right-to-left or bottom-to-top are still boxes.
    x0, x1 = np.minimum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 0], boxes[:, 2])
    y0, y1 = np.minimum(boxes[:, 1], boxes[:, 3]), np.maximum(boxes[:, 1], boxes[:, 3])
    if np.any((x1 < -0.5) | (y1 < -0.5) | (x0 > width - 0.5) | (y0 > height - 0.5)):
        raise PromptError(f"The box lies entirely outside the image ({width} x {height}).")
    x0, x1 = np.clip(x0, -0.5, width - 0.5), np.clip(x1, -0.5, width - 0.5)
    y0, y1 = np.clip(y0, -0.5, height - 0.5), np.clip(y1, -0.5, height - 0.5)
    if np.any((x1 - x0 <= 0) | (y1 - y0 <= 0)):
        raise PromptError("The box has zero width or height.")
    corners = np.stack([np.stack([x0, y0], -1), np.stack([x1, y1], -1)], axis=1)
    labels = np.tile(np.array([[2.0, 3.0]], dtype=np.float32), (len(boxes), 1))
    return corners, labels, batched


def empty_mask_input(n_sets: int) -> tuple[np.ndarray, np.ndarray]:
    """The decoder's ``mask_input`` and ``has_mask_input`` when no mask is given."""
    return (
        np.zeros((n_sets, 1, LOW_RES, LOW_RES), dtype=np.float32),
        np.zeros(n_sets, dtype=np.float32),
    )


def check_mask_input(mask_input: Any, n_sets: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate a mask prompt and shape it for ``n_sets`` prompt sets.

    Parameters
    ----------
    mask_input : array-like or None
        Low-resolution logits ``(1, 256, 256)`` (the third output of ``predict``), or
        ``(B, 1, 256, 256)``; ``None`` for no mask.
    n_sets : int
        Number of prompt sets B; a single mask is used for all of them.

    Returns
    -------
    mask : numpy.ndarray
        ``(B, 1, 256, 256)`` float32.
    has_mask : numpy.ndarray
        ``(B,)`` float32: 1 with a mask, 0 without.

    Raises
    ------
    PromptError
        Wrong shape, or values that are not finite.
    """
    if mask_input is None:
        return empty_mask_input(n_sets)
    mask = np.asarray(mask_input, dtype=np.float32)
    while mask.ndim < 4:
        mask = mask[None]
    if mask.shape[1:] != (1, LOW_RES, LOW_RES) or mask.shape[0] not in (1, n_sets):
        raise PromptError(
            f"mask_input must be low-resolution logits of shape (1, {LOW_RES}, {LOW_RES}) "
            f"(the third output of predict), got {np.shape(mask_input)}."
        )
    if not np.all(np.isfinite(mask)):
        raise PromptError("mask_input contains NaN or infinite values.")
    mask = np.ascontiguousarray(np.broadcast_to(mask, (n_sets, 1, LOW_RES, LOW_RES)))
    return mask, np.ones(n_sets, dtype=np.float32)
