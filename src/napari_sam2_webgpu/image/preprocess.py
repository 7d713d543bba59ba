"""Any napari image (dtype, channels, contrast) -> SAM2's normalised 1024 x 1024 input tensor.

SAM2ImagePredictor converts a uint8 RGB image with ``ToTensor`` (divide by 255), resizes it to
1024 x 1024 *without* keeping the aspect ratio (torchvision's antialiased bilinear resize) and
normalises with the ImageNet mean and std. This module reproduces that in numpy, and extends it
to what microscopy needs: grayscale, RGBA, uint16 and float data, NaNs, and napari's contrast
limits. The resize is done with two separable weight matrices, in row blocks, so that a 20,000
pixel image never needs a float copy of itself in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_PERCENTILES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MIN_SIDE",
    "MODEL_SIZE",
    "ImageError",
    "check_image",
    "image_window",
    "intensity_range",
    "prepare_image",
    "resize_normalised",
    "resize_weights",
]

MODEL_SIZE = 1024
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
#: Images smaller than this on a side carry too little for SAM2 to segment.
MIN_SIDE = 8
#: Default percentiles used to stretch non-uint8 data when no contrast limits are given.
DEFAULT_PERCENTILES = (0.1, 99.9)
_ROW_BLOCK = 1024


class ImageError(ValueError):
    """The image cannot be segmented; the message says why and what to do."""


def check_image(image: np.ndarray, *, rgb: bool | None = None) -> tuple[int, int, int]:
    """Validate an image and return its ``(height, width, channels)``.

    Parameters
    ----------
    image : numpy.ndarray
        2D ``(H, W)`` grayscale or 3D ``(H, W, C)`` with ``C`` in 1, 3 or 4 (channels last).
    rgb : bool, optional
        Force the interpretation of a 3D array: ``True`` for channels last, ``False`` to reject
        it as a stack (napari's ``layer.rgb``). ``None`` guesses from the last axis.

    Returns
    -------
    tuple of int
        Height, width and number of channels (1, 3 or 4).

    Raises
    ------
    ImageError
        With a message naming the problem: wrong type or dtype, wrong number of dimensions or
        channels, too small, or no finite value at all.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"Expected a numpy array, got {type(image).__name__}.")
    if image.dtype == bool:
        raise ImageError(
            "The image is boolean (a mask?). SAM2 needs intensities: pass the image layer, "
            "or convert with image.astype(np.uint8) * 255."
        )
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ImageError(
            f"Unsupported image dtype {image.dtype}: use integer or real floating data "
            "(for complex data pass np.abs(image))."
        )
    if image.ndim == 2:
        channels = 1
    elif image.ndim == 3 and rgb is not False and image.shape[-1] in (1, 3, 4):
        channels = image.shape[-1]
    elif image.ndim == 3:
        raise ImageError(
            f"A 3D array of shape {image.shape} is a stack, not a 2D image: pass one slice "
            "(e.g. image[z]), or channels last (H, W, 3) for RGB."
        )
    else:
        raise ImageError(
            f"Expected a 2D image (H, W) or (H, W, C) with C in 1, 3, 4; got {image.ndim}D "
            f"array of shape {image.shape}. Pass the 2D slice to segment."
        )
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ImageError(f"The image is empty (shape {image.shape}).")
    if min(height, width) < MIN_SIDE:
        raise ImageError(
            f"The image is {height} x {width} pixels; SAM2 needs at least {MIN_SIDE} pixels "
            "on each side."
        )
    return height, width, channels


def intensity_range(
    image: np.ndarray, contrast_limits: Sequence[float] | None = None
) -> tuple[float, float]:
    """The intensity interval mapped to [0, 1] before the model sees the image.

    Parameters
    ----------
    image : numpy.ndarray
        The validated image.
    contrast_limits : (float, float), optional
        napari's contrast limits; used as given when present.

    Returns
    -------
    (float, float)
        ``(low, high)``. ``(0, 255)`` for uint8 (what SAM2 was trained with), ``(0, 1)`` for
        float data already inside [0, 1], otherwise robust percentiles of the finite values.

    Raises
    ------
    ImageError
        When the image has no finite value, or contrast limits are not two finite numbers with
        low < high.
    """
    if contrast_limits is not None:
        low, high = (float(v) for v in contrast_limits)
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ImageError(f"Contrast limits must be finite, got {contrast_limits}.")
        if high <= low:
            raise ImageError(
                f"Contrast limits must be (low, high) with low < high, got ({low:g}, {high:g})."
            )
        return low, high
    if image.dtype == np.uint8:
        return 0.0, 255.0
    sample = image[:: max(1, image.shape[0] // 2048), :: max(1, image.shape[1] // 2048)]
    finite = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample.ravel()
    if finite.size == 0:
        finite = image[np.isfinite(image)]
        if finite.size == 0:
            raise ImageError("The image has no finite value (all NaN or infinite).")
    if finite.dtype.kind == "f" and finite.min() >= 0.0 and finite.max() <= 1.0:
        return 0.0, 1.0
    low, high = np.percentile(finite, DEFAULT_PERCENTILES)
    if high <= low:  # flat or nearly flat image: fall back to the full range
        low, high = float(finite.min()), float(finite.max())
    return float(low), float(high)


def _normalise_block(block: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map intensities to [0, 1] float32; NaN and values below ``low`` become 0."""
    out = block.astype(np.float32, copy=True)
    if high > low:
        if low != 0.0:
            out -= np.float32(low)
        if high - low != 1.0:
            out /= np.float32(high - low)
    else:
        out[...] = 0.0
    if block.dtype.kind == "f":  # integers have no NaN or infinity
        np.nan_to_num(out, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def resize_weights(in_size: int, out_size: int) -> np.ndarray:
    """Weights of torchvision's antialiased bilinear resize along one axis.

    Parameters
    ----------
    in_size, out_size : int
        Input and output lengths.

    Returns
    -------
    numpy.ndarray
        ``(out_size, in_size)`` float32 matrix ``W`` such that ``W @ x`` resizes ``x``; the
        same triangle filter, support and border renormalisation as torch's
        ``interpolate(..., mode="bilinear", antialias=True)`` (and PIL).
    """
    scale = in_size / out_size
    support = max(scale, 1.0)  # the triangle widens when downsampling: antialiasing
    inv = 1.0 / support
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        start = max(int(center - support + 0.5), 0)
        stop = min(int(center + support + 0.5), in_size)
        j = np.arange(start, stop)
        w = np.clip(1.0 - np.abs((j - center + 0.5) * inv), 0.0, None)
        total = w.sum()
        if total > 0:
            weights[i, start:stop] = w / total
    return weights.astype(np.float32)


@lru_cache(maxsize=16)
def _sparse_weights(in_size: int, out_size: int) -> Any:
    """:func:`resize_weights` as a sparse (CSC) matrix, or None when it is the identity.

    Each output pixel reads only a few input pixels (about twice the scale factor), so the
    sparse products cost a fraction of the dense ones on large images. Only this sparse form is
    cached: the dense matrix of a 20,000-pixel axis alone is 80 MB.
    """
    if in_size == out_size:
        return None  # torchvision's antialiased resize to the same size copies
    from scipy import sparse

    return sparse.csc_matrix(resize_weights(in_size, out_size))


def resize_normalised(
    image: np.ndarray,
    low: float,
    high: float,
    size: int = MODEL_SIZE,
) -> np.ndarray:
    """Normalise intensities to [0, 1] and resize to ``size`` x ``size``, block by block.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)``, already validated.
    low, high : float
        Intensity interval mapped to [0, 1].
    size : int
        Output side.

    Returns
    -------
    numpy.ndarray
        ``(C, size, size)`` float32 in [0, 1].
    """
    height, width = image.shape[:2]
    planes = image[..., None] if image.ndim == 2 else image
    w_rows = _sparse_weights(height, size)
    w_cols = _sparse_weights(width, size)
    channels = planes.shape[-1]
    # Rows first, in blocks: the float copy of a block is all the extra memory needed.
    partial = np.zeros((channels, size, width), dtype=np.float32)
    for start in range(0, height, _ROW_BLOCK):
        block = _normalise_block(planes[start : start + _ROW_BLOCK], low, high)
        stop = start + block.shape[0]
        if w_rows is None:
            partial[:, start:stop] = np.moveaxis(block, -1, 0)
            continue
        rows = w_rows[:, start:stop]
        for c in range(channels):
            partial[c] += rows @ np.ascontiguousarray(block[..., c])
    if w_cols is None:
        return partial
    out = np.empty((channels, size, size), dtype=np.float32)
    w_cols = w_cols.tocsr()
    for c in range(channels):
        # Sparse products read the dense operand row-major: transpose it once, explicitly.
        out[c] = (w_cols @ np.ascontiguousarray(partial[c].T)).T
    return out


def image_window(
    image: np.ndarray,
    *,
    contrast_limits: Sequence[float] | None = None,
    rgb: bool | None = None,
) -> tuple[np.ndarray, float, float]:
    """Validate an image, drop its alpha channel and find its intensity window.

    The first step of :func:`prepare_image` (and of the same work done on the GPU, see
    :mod:`.device_preprocess`); parameters as there.

    Returns
    -------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` with C = 1 or 3 (a view of the input).
    low, high : float
        Intensities mapped to black and white.

    Raises
    ------
    ImageError
        See :func:`check_image` and :func:`intensity_range`.
    """
    check_image(image, rgb=rgb)
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    low, high = intensity_range(image, contrast_limits)
    return image, low, high


def prepare_image(
    image: np.ndarray,
    *,
    contrast_limits: Sequence[float] | None = None,
    rgb: bool | None = None,
) -> np.ndarray:
    """Turn an image into the encoder's input tensor.

    Parameters
    ----------
    image : numpy.ndarray
        2D grayscale ``(H, W)``, or ``(H, W, C)`` with C = 1 (gray), 3 (RGB) or 4 (RGBA, alpha
        dropped). Any integer or floating dtype; NaNs count as background.
    contrast_limits : (float, float), optional
        Intensities mapped to black and white (napari's ``layer.contrast_limits``). By default
        uint8 uses 0..255, float data within [0, 1] is used as is, and everything else is
        stretched between its 0.1 and 99.9 percentiles.
    rgb : bool, optional
        See :func:`check_image`.

    Returns
    -------
    numpy.ndarray
        ``(1, 3, 1024, 1024)`` float32, ImageNet-normalised.
    """
    image, low, high = image_window(image, contrast_limits=contrast_limits, rgb=rgb)
    planes = resize_normalised(image, low, high)
    if planes.shape[0] == 1:  # resizing is linear, so gray -> RGB can wait until now
        planes = np.repeat(planes, 3, axis=0)
    planes -= IMAGENET_MEAN[:, None, None]
    planes /= IMAGENET_STD[:, None, None]
    return planes[None]
