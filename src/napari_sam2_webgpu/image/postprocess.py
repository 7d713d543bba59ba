"""Prompt coordinates into the model's frame, and low-resolution logits back to image masks.

SAM2 sees every image squeezed to 1024 x 1024 (no padding), so a point ``(x, y)`` in image
pixels becomes ``(x * 1024 / W, y * 1024 / H)``, and the decoder's 256 x 256 logits are resized
to ``(H, W)`` with PyTorch's bilinear ``interpolate(align_corners=False)``. Both are reproduced
here; upsampling is done in row blocks straight to booleans so that masks of very large images
never exist as full float arrays.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

from .preprocess import MODEL_SIZE

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
    "upsample_window",
    "upsample_taps",
]

MASK_THRESHOLD = 0.0
LOGIT_CLAMP = 32.0
_MAX_THREADS = 8
_PARALLEL_MIN_PIXELS = 4_000_000


def to_model_coords(coords: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Scale ``(..., 2)`` (x, y) pixel coordinates into the 1024 x 1024 model frame.

    Parameters
    ----------
    coords : numpy.ndarray
        Coordinates in SAM's (x, y) pixel convention.
    image_hw : (int, int)
        Height and width of the original image.

    Returns
    -------
    numpy.ndarray
        float32 coordinates of the same shape.
    """
    height, width = image_hw
    # Divide first, then multiply, like SAM2Transforms.transform_coords (bit-for-bit parity).
    out = np.asarray(coords, dtype=np.float32).copy()
    out[..., 0] = out[..., 0] / np.float32(width)
    out[..., 1] = out[..., 1] / np.float32(height)
    return out * np.float32(MODEL_SIZE)


@lru_cache(maxsize=32)
def upsample_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of PyTorch's bilinear ``align_corners=False`` on one axis.

    Parameters
    ----------
    in_size, out_size : int
        Input and output lengths.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        ``low`` and ``high`` source indices and the float32 weight of ``high`` for every output
        position (no antialiasing, like ``torch.nn.functional.interpolate``).
    """
    scale = np.float32(in_size / out_size)
    # float32 scale, but (i + 0.5) * scale - 0.5 rounded once, as PyTorch's fused multiply-add
    # does: rounding twice moves the source position by up to an ulp (1e-4 in the logits).
    src = ((np.arange(out_size) + 0.5) * np.float64(scale) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0.0))
    low = np.minimum(np.floor(src).astype(np.intp), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, (src - low).astype(np.float32)


def _lerp(values: np.ndarray, axis: int, out_size: int) -> np.ndarray:
    return _lerp_taps(values, axis, upsample_taps(values.shape[axis], out_size))


def _lerp_taps(
    values: np.ndarray, axis: int, taps: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> np.ndarray:
    # Two taps per output sample: far cheaper than a dense interpolation matrix.
    low, high, frac = taps
    shape = [1] * values.ndim
    shape[axis] = len(frac)
    frac = frac.reshape(shape)
    a = np.take(values, low, axis=axis)
    b = np.take(values, high, axis=axis)
    a *= np.float32(1.0) - frac
    b *= frac
    a += b
    return a


def upsample_logits(low_res: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Resize ``(..., h, w)`` logits to the image size (float32), as PyTorch's bilinear."""
    cols = _lerp(low_res.astype(np.float32), -1, image_hw[1])
    return _lerp(cols, -2, image_hw[0])


def upsample_window(
    low_res: np.ndarray, image_hw: tuple[int, int], floor: float
) -> tuple[int, int, np.ndarray] | None:
    """The part of one mask's upsampled logits that can exceed ``floor``, and where it is.

    A bilinear sample is a convex combination of four low-resolution values, so wherever all
    four are ``<= floor`` the upsampled value is too. Only the rectangle of output pixels that
    read a low-resolution value above ``floor`` is computed, with the same operations as
    :func:`upsample_logits` (so the same values); small objects cost little at any image size.

    Parameters
    ----------
    low_res : numpy.ndarray
        ``(h, w)`` logits.
    image_hw : (int, int)
        Output size.
    floor : float
        The lowest threshold the caller applies.

    Returns
    -------
    (int, int, numpy.ndarray) or None
        Top row and left column of the window in the output, and its float32 values; None when
        no low-resolution value exceeds ``floor`` (every output value is ``<= floor``).
    """
    rows, cols = np.nonzero(low_res > floor)
    if rows.size == 0:
        return None
    row_taps = upsample_taps(low_res.shape[0], image_hw[0])
    col_taps = upsample_taps(low_res.shape[1], image_hw[1])
    y0, y1 = _reading(row_taps, rows.min(), rows.max())
    x0, x1 = _reading(col_taps, cols.min(), cols.max())
    # The taps of the window's outputs only: the same operations as upsample_logits.
    cols = _lerp_taps(low_res.astype(np.float32), -1, tuple(t[x0:x1] for t in col_taps))
    return y0, x0, _lerp_taps(cols, -2, tuple(t[y0:y1] for t in row_taps))


def _reading(taps: tuple[np.ndarray, np.ndarray, np.ndarray], first: int, last: int):
    """Output positions ``[start, stop)`` that read a source index in ``[first, last]``."""
    low, high, _ = taps
    # Both tap indices grow with the output position: the positions form one run.
    start = int(np.searchsorted(high, first, side="left"))
    stop = int(np.searchsorted(low, last, side="right"))
    return start, stop


def logits_to_masks(
    low_res: np.ndarray,
    image_hw: tuple[int, int],
    threshold: float = MASK_THRESHOLD,
) -> np.ndarray:
    """Upsample ``(..., h, w)`` logits to ``(..., H, W)`` boolean masks, in row blocks.

    Parameters
    ----------
    low_res : numpy.ndarray
        Decoder logits, typically ``(K, 256, 256)``.
    image_hw : (int, int)
        Target height and width.
    threshold : float
        Logit threshold (SAM2 uses 0).

    Returns
    -------
    numpy.ndarray
        Boolean masks.
    """
    height, width = image_hw
    # Columns first: the (..., h, W) intermediate is small. Along rows, every output row lies
    # between two source rows i and j, so "a + f * (b - a) > t" becomes "f * d > t - a" with
    # d and a computed once per source row: no gathers, and no full-size float array ever.
    cols = _lerp(low_res.astype(np.float32), -1, width)
    low, high, frac = upsample_taps(low_res.shape[-2], height)
    masks = np.empty(low_res.shape[:-2] + (height, width), dtype=bool)
    starts = np.flatnonzero(np.diff(low, prepend=-1))
    bounds = list(zip(starts, [*starts[1:], height], strict=True))

    def fill(groups: list[tuple[int, int]]) -> None:
        for start, stop in groups:
            a = cols[..., low[start], :][..., None, :]
            d = cols[..., high[start], :][..., None, :] - a
            np.greater(
                frac[start:stop, None] * d, np.float32(threshold) - a, out=masks[..., start:stop, :]
            )

    workers = min(_MAX_THREADS, os.cpu_count() or 1)
    if workers > 1 and masks.size >= _PARALLEL_MIN_PIXELS:
        # numpy releases the GIL in these loops, so threads scale on big images.
        chunks = [bounds[i::workers] for i in range(workers)]
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fill, chunks))
    else:
        fill(bounds)
    return masks


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def stability_scores(logits: np.ndarray, delta: float) -> np.ndarray:
    """SAM2's mask stability: area above ``+delta`` over area above ``-delta``."""
    flat = logits.reshape(*logits.shape[:-2], -1)
    inner = np.count_nonzero(flat > delta, axis=-1).astype(np.float32)
    outer = np.count_nonzero(flat > -delta, axis=-1).astype(np.float32)
    return np.where(outer > 0, inner / np.maximum(outer, 1.0), np.float32(1.0))


def best_of(logits: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The best-scoring mask of each prompt set: (B, K, h, w), (B, K) -> (B, 1, h, w), (B, 1)."""
    best = np.argmax(scores, axis=-1)
    batch = np.arange(scores.shape[0])
    return logits[batch, best][:, None], scores[batch, best][:, None]


def select_single_mask(
    single_logits: np.ndarray,
    single_iou: np.ndarray,
    multi_logits: np.ndarray,
    multi_iou: np.ndarray,
    *,
    delta: float = 0.05,
    thresh: float = 0.98,
) -> tuple[np.ndarray, np.ndarray]:
    """SAM2's dynamic single-mask choice, per prompt set.

    Keeps the single-mask token's output when it is stable, otherwise falls back to the
    multimask output with the best predicted IoU (``dynamic_multimask_via_stability``).

    Parameters
    ----------
    single_logits : numpy.ndarray
        ``(B, 1, h, w)`` single-mask token logits.
    single_iou : numpy.ndarray
        ``(B, 1)`` its predicted IoU.
    multi_logits : numpy.ndarray
        ``(B, 3, h, w)`` multimask logits.
    multi_iou : numpy.ndarray
        ``(B, 3)`` their predicted IoUs.
    delta, thresh : float
        Stability delta and threshold (SAM2.1 uses 0.05 and 0.98).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(B, 1, h, w)`` logits and ``(B, 1)`` scores.
    """
    best_logits, best_iou = best_of(multi_logits, multi_iou)
    stable = stability_scores(single_logits[:, 0], delta) >= thresh
    logits = np.where(stable[:, None, None, None], single_logits, best_logits)
    iou = np.where(stable[:, None], single_iou, best_iou)
    return logits, iou
