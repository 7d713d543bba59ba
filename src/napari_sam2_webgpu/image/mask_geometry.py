"""Geometry of automatic mask generation: point grids, crop boxes, mask boxes, box NMS and
small-region filling (numpy/scipy versions of ``sam2.utils.amg``; no torch, no Qt).
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np

__all__ = [
    "batched_mask_to_box",
    "box_nms",
    "build_point_grid",
    "fill_small_regions",
    "generate_crop_boxes",
    "layer_point_grids",
]


def build_point_grid(n_per_side: int) -> np.ndarray:
    """``(n*n, 2)`` points ``(x, y)`` evenly spaced in the unit square, half a step from edges.

    Examples
    --------
    >>> build_point_grid(2)
    array([[0.25, 0.25],
           [0.75, 0.25],
           [0.25, 0.75],
           [0.75, 0.75]])
    """
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side, indexing="xy")
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def layer_point_grids(n_per_side: int, n_layers: int, downscale: int) -> list[np.ndarray]:
    """One grid per crop layer, ``n_per_side / downscale**layer`` points a side."""
    return [build_point_grid(int(n_per_side / downscale**i)) for i in range(n_layers + 1)]


def generate_crop_boxes(
    image_hw: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """The whole image, then ``(2**(i+1))**2`` overlapping crops for each layer ``i``.

    Parameters
    ----------
    image_hw : (int, int)
        Image height and width.
    n_layers : int
        Crop layers beyond the whole image.
    overlap_ratio : float
        Overlap of neighbouring first-layer crops, as a fraction of the image's short side
        (halved at each further layer).

    Returns
    -------
    crop_boxes : list of [x0, y0, x1, y1]
        In pixels, ``x1``/``y1`` exclusive; the whole image first.
    layer_indices : list of int
        The layer of each box (0 for the whole image).

    Examples
    --------
    >>> generate_crop_boxes((100, 100), 1, 0.2)[0]
    [[0, 0, 100, 100], [0, 0, 60, 60], [0, 40, 60, 100], [40, 0, 100, 60], [40, 40, 100, 100]]
    """
    height, width = image_hw
    boxes, layers = [[0, 0, width, height]], [0]
    for layer in range(n_layers):
        n_side = 2 ** (layer + 1)
        overlap = int(overlap_ratio * min(height, width) * (2 / n_side))
        crop_w = math.ceil((overlap * (n_side - 1) + width) / n_side)
        crop_h = math.ceil((overlap * (n_side - 1) + height) / n_side)
        x0s = [int((crop_w - overlap) * i) for i in range(n_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(n_side)]
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)])
            layers.append(layer + 1)
    return boxes, layers


def batched_mask_to_box(masks: np.ndarray) -> np.ndarray:
    """Boxes ``(N, 4)`` ``x0, y0, x1, y1`` (inclusive) around ``(N, H, W)`` masks; 0s if empty.

    Examples
    --------
    >>> m = np.zeros((1, 4, 5), bool); m[0, 1:3, 2:4] = True
    >>> batched_mask_to_box(m)
    array([[2, 1, 3, 2]])
    """
    n, height, width = masks.shape
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    boxes = np.stack(
        [
            cols.argmax(axis=1),
            rows.argmax(axis=1),
            width - 1 - cols[:, ::-1].argmax(axis=1),
            height - 1 - rows[:, ::-1].argmax(axis=1),
        ],
        axis=-1,
    ).astype(np.int64)
    boxes[~rows.any(axis=1)] = 0
    return boxes.reshape(n, 4)


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression, as ``torchvision.ops.nms``.

    Boxes are taken in order of decreasing score (ties in their given order); each one kept
    suppresses the later ones whose box IoU with it exceeds ``iou_threshold``. Every step is a
    vector operation over all boxes.

    Parameters
    ----------
    boxes : numpy.ndarray
        ``(N, 4)`` ``x0, y0, x1, y1``.
    scores : numpy.ndarray
        ``(N,)``.
    iou_threshold : float
        Boxes overlapping a kept one by more than this are dropped.

    Returns
    -------
    numpy.ndarray
        Indices of the kept boxes, by decreasing score.

    Examples
    --------
    >>> box_nms(np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]]),
    ...         np.array([0.5, 0.9, 0.1]), 0.7)
    array([1, 2])
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    b = np.asarray(boxes, dtype=np.float32)[order]
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    suppressed = np.zeros(len(b), dtype=bool)
    keep = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(len(b)):
            if suppressed[i]:
                continue
            keep.append(i)
            rest = slice(i + 1, None)
            w = np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0])
            h = np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1])
            inter = np.clip(w, 0, None) * np.clip(h, 0, None)
            iou = inter / (areas[i] + areas[rest] - inter)
            # float32 IoU against the threshold as a double, as torchvision compares them;
            # NaN (two empty boxes) never suppresses.
            suppressed[rest] |= iou.astype(np.float64) > float(iou_threshold)
    return order[np.array(keep, dtype=np.intp)]


def fill_small_regions(logits: np.ndarray, max_area: float, threshold: float = 0.0) -> np.ndarray:
    """SAM2's hole and sprinkle removal on mask logits (``SAM2Transforms.postprocess_masks``).

    Background regions (8-connected, logits ``<= threshold``) of at most ``max_area`` pixels
    become foreground (``threshold + 10``); foreground regions of the *input* of at most
    ``max_area`` pixels become background (``threshold - 10``). SAM2 does this on the decoder's
    low-resolution logits, so areas are in low-resolution pixels.

    Parameters
    ----------
    logits : numpy.ndarray
        ``(N, h, w)`` logits.
    max_area : float
        Largest area filled or removed; nothing changes when it is 0.
    threshold : float
        Logit threshold between background and foreground.

    Returns
    -------
    numpy.ndarray
        A float32 copy with the regions changed.

    Examples
    --------
    >>> x = -np.ones((1, 5, 5), np.float32); x[0, 1:4, 1:4] = 1; x[0, 2, 2] = -1
    >>> int((fill_small_regions(x, 1)[0] > 0).sum())
    9
    """
    out = np.array(logits, dtype=np.float32)
    if max_area <= 0 or out.size == 0:
        return out
    from scipy import ndimage  # only when asked: keeps importing this package light

    # One call labels every mask: the structure connects pixels within a plane only.
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    foreground = out > threshold
    for region, value in ((~foreground, threshold + 10.0), (foreground, threshold - 10.0)):
        labels, _ = ndimage.label(region, structure=structure)
        areas = np.bincount(labels.ravel())
        areas[0] = 0
        small = (labels > 0) & (areas[labels] <= max_area)
        out[small] = value
    return out
