"""Mask records to an instance label image, without overlaps, by a documented rule.

:func:`masks_to_labels` turns the records of
:class:`~napari_sam2_webgpu.image.automatic.AutomaticMaskGenerator` (or any list of masks with
the same keys) into one label image; :func:`drawing_order` is the rule, shared with the
generator's own painting of its candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from ..coco import decode_rle

__all__ = ["drawing_order", "masks_to_labels"]


def drawing_order(
    areas: np.ndarray, iou: np.ndarray, stability: np.ndarray, order: str
) -> np.ndarray:
    """The order masks are drawn in so that the rule of :func:`masks_to_labels` holds.

    ``"area"``: largest first (stable); ``"score"``: by increasing predicted IoU, then
    stability score, then index, so the most confident mask is drawn last.

    Raises
    ------
    ValueError
        Unknown ``order``.
    """
    if order == "area":
        return np.argsort(-np.asarray(areas, dtype=np.float64), kind="stable")
    if order == "score":
        return np.lexsort((np.arange(len(iou)), stability, iou))
    raise ValueError(f"order must be 'area' or 'score', got {order!r}.")


def _record_mask(record: dict[str, Any], shape: tuple[int, int]) -> tuple[tuple, np.ndarray]:
    """The record's mask inside its box (slices into the image, boolean patch)."""
    seg = record["segmentation"]
    mask = decode_rle(seg) if isinstance(seg, dict) else np.asarray(seg, dtype=bool)
    if mask.shape != tuple(shape):
        raise ValueError(f"A mask of shape {mask.shape} does not fit a label image of {shape}.")
    bbox = record.get("bbox")
    if bbox is None:
        return (slice(None), slice(None)), mask
    x, y, w, h = (int(round(v)) for v in bbox)
    where = (slice(y, y + h + 1), slice(x, x + w + 1))  # official boxes: w, h one short
    patch = mask[where]
    if np.count_nonzero(patch) != np.count_nonzero(mask):  # box not that of the mask
        return (slice(None), slice(None)), mask
    return where, patch


def masks_to_labels(
    records: Sequence[dict[str, Any]],
    shape: tuple[int, int],
    order: Literal["area", "score"] = "area",
) -> np.ndarray:
    """An int32 instance label image from mask records, without overlaps.

    Label ``i + 1`` is ``records[i]`` (0 is background). Where masks overlap, the rule is:

    - ``order="area"``: masks are drawn largest first, so a smaller mask is drawn over a larger
      one: small objects inside big ones (a nucleus in a cell) survive, and the big object
      keeps the rest of its pixels;
    - ``order="score"``: masks are drawn by increasing ``predicted_iou`` (ties: increasing
      ``stability_score``), so every pixel goes to the most confident mask covering it.

    Each pixel belongs to exactly one label; a record hidden completely by others has no
    pixels left (use :func:`skimage.segmentation.relabel_sequential` for consecutive labels).

    Parameters
    ----------
    records : sequence of dict
        From :meth:`AutomaticMaskGenerator.generate` (``segmentation`` as a boolean array or an
        uncompressed RLE; ``area``, ``bbox``, ``predicted_iou``, ``stability_score`` as there).
    shape : (int, int)
        Height and width of the label image.
    order : {"area", "score"}
        Which mask wins where masks overlap (see above).

    Returns
    -------
    numpy.ndarray
        ``shape`` int32 labels.

    Raises
    ------
    ValueError
        Unknown ``order``, or a mask of another shape.

    Examples
    --------
    >>> big = np.zeros((4, 4), bool); big[:, :] = True
    >>> small = np.zeros((4, 4), bool); small[1:3, 1:3] = True
    >>> recs = [{"segmentation": big, "area": 16, "predicted_iou": 0.9},
    ...         {"segmentation": small, "area": 4, "predicted_iou": 0.8}]
    >>> masks_to_labels(recs, (4, 4))
    array([[1, 1, 1, 1],
           [1, 2, 2, 1],
           [1, 2, 2, 1],
           [1, 1, 1, 1]], dtype=int32)
    >>> int(masks_to_labels(recs, (4, 4), order="score").max())
    1
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2:
        raise ValueError(f"shape must be (height, width), got {shape}.")
    # Areas only when they decide (an RLE is decoded for each); drawing_order checks ``order``.
    sequence = drawing_order(
        np.array([_area(r) for r in records] if order == "area" else [0.0] * len(records)),
        np.array([float(r.get("predicted_iou", 0.0)) for r in records]),
        np.array([float(r.get("stability_score", 0.0)) for r in records]),
        order,
    )
    labels = np.zeros(shape, dtype=np.int32)
    for i in sequence:
        where, patch = _record_mask(records[i], shape)
        labels[where][patch] = i + 1
    return labels


def _area(record: dict[str, Any]) -> float:
    if "area" in record:
        return float(record["area"])
    seg = record["segmentation"]
    return float(np.count_nonzero(decode_rle(seg) if isinstance(seg, dict) else seg))
