"""Which 2D slice of an image layer is displayed, and how its pixels map to data and world.

The core speaks SAM's ``(x, y) = (column, row)`` of one 2D slice; napari speaks data coordinates
of N-D layers with their own transforms. :class:`SliceInfo` converts between the two, and the
helpers here read a layer's shape and transform so that helper layers can share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.layers import Image
from napari.utils.transforms import Affine

from ..image import check_image
from .errors import AnnotatorError

__all__ = [
    "LARGE_IMAGE_PIXELS",
    "SliceInfo",
    "base_data",
    "check_plane",
    "contrast_limits",
    "displayed_slice",
    "layer_id",
    "layer_shape",
    "same_geometry",
    "transform_kwargs",
    "world_to_data",
]

#: Slices larger than this (8k x 8k) get a memory warning and single-mask decoding.
LARGE_IMAGE_PIXELS = 64_000_000


@dataclass(frozen=True)
class SliceInfo:
    """The 2D slice of an image layer that the viewer displays.

    Attributes
    ----------
    shape_nd : tuple of int
        Shape of the layer's data without the RGB(A) channel axis.
    rows_axis, cols_axis : int
        The displayed data axes, ``rows_axis < cols_axis``: rows are SAM's y, columns its x.
    indices : tuple of (int, int)
        ``(axis, index)`` of every data axis that is not displayed.
    """

    shape_nd: tuple[int, ...]
    rows_axis: int
    cols_axis: int
    indices: tuple[tuple[int, int], ...]

    @property
    def ndim(self) -> int:
        return len(self.shape_nd)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the slice."""
        return self.shape_nd[self.rows_axis], self.shape_nd[self.cols_axis]

    @property
    def key(self) -> tuple:
        """Hashable identity of the slice (for the embedding cache)."""
        return (self.indices, (self.rows_axis, self.cols_axis))

    def indexer(self, rows: slice = slice(None), cols: slice = slice(None)) -> tuple:
        """Index of the slice (or a window of it) into the layer's data."""
        out: list[Any] = [slice(None)] * self.ndim
        for axis, index in self.indices:
            out[axis] = index
        out[self.rows_axis] = rows
        out[self.cols_axis] = cols
        return tuple(out)

    def fancy_index(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, ...]:
        """Indices into the layer's data of the slice pixels ``(rows[i], cols[i])``."""
        out: list[np.ndarray] = [np.empty(0, dtype=np.intp)] * self.ndim
        for axis, index in self.indices:
            out[axis] = np.full(len(rows), index, dtype=np.intp)
        out[self.rows_axis] = np.asarray(rows)
        out[self.cols_axis] = np.asarray(cols)
        return tuple(out)

    def contains(self, coords: np.ndarray) -> np.ndarray:
        """Which of ``(N, ndim)`` data coordinates lie on this slice (not-displayed axes)."""
        coords = np.asarray(coords, dtype=float).reshape(-1, self.ndim)
        keep = np.ones(len(coords), dtype=bool)
        for axis, index in self.indices:
            keep &= np.round(coords[:, axis]) == index
        return keep

    def inside(self, coords: np.ndarray) -> np.ndarray:
        """Which of ``(N, ndim)`` data coordinates fall on a pixel of the slice."""
        coords = np.asarray(coords, dtype=float).reshape(-1, self.ndim)
        height, width = self.shape
        rows, cols = coords[:, self.rows_axis], coords[:, self.cols_axis]
        return (rows >= -0.5) & (rows < height - 0.5) & (cols >= -0.5) & (cols < width - 0.5)

    def to_xy(self, coords: np.ndarray) -> np.ndarray:
        """``(N, ndim)`` data coordinates -> ``(N, 2)`` SAM ``(x, y)`` pixels, clipped inside."""
        coords = np.asarray(coords, dtype=float).reshape(-1, self.ndim)
        height, width = self.shape
        x = np.clip(coords[:, self.cols_axis], 0, width - 1)
        y = np.clip(coords[:, self.rows_axis], 0, height - 1)
        return np.stack([x, y], axis=1)

    def expand(self, plane: np.ndarray) -> np.ndarray:
        """A ``(height, width)`` array with length-1 axes added at the not-displayed axes."""
        axes = tuple(axis for axis, _ in self.indices)
        return np.expand_dims(plane, axes) if axes else plane

    def point(self, rows: float, cols: float) -> np.ndarray:
        """The data coordinates of ``(row, col)`` on this slice."""
        out = np.zeros(self.ndim)
        for axis, index in self.indices:
            out[axis] = index
        out[self.rows_axis], out[self.cols_axis] = rows, cols
        return out

    def describe(self) -> str:
        """E.g. ``"axis 0 = 12"`` or ``"2D"``."""
        if not self.indices:
            return "2D"
        return ", ".join(f"axis {a} = {i}" for a, i in self.indices)


def layer_shape(layer: Image) -> tuple[int, ...]:
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = tuple(int(s) for s in data.shape)
    return shape[:-1] if layer.rgb else shape


def base_data(layer: Image) -> Any:
    """The full-resolution array of an image layer (level 0 when multiscale)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def displayed_slice(layer: Image, dims: Any) -> SliceInfo:
    """The 2D slice of ``layer`` that ``dims`` (``viewer.dims``) displays.

    Raises
    ------
    AnnotatorError
        3D display, fewer than two of the layer's axes displayed, or the displayed position
        outside the layer (e.g. z = 40 of a 30-slice stack shown next to a longer one).
    """
    if dims.ndisplay != 2:
        raise AnnotatorError(
            "SAM2 segments 2D slices: switch the viewer to 2D (the 2D/3D button, or Ctrl+Y)."
        )
    shape = layer_shape(layer)
    ndim = len(shape)
    offset = dims.ndim - ndim
    displayed = sorted(d - offset for d in dims.displayed if d - offset >= 0)
    if len(displayed) != 2:
        raise AnnotatorError(
            f"The image layer '{layer.name}' is not displayed as a 2D plane in this view."
        )
    position = np.asarray(layer.world_to_data(dims.point), dtype=float)
    indices = []
    for axis in range(ndim):
        if axis in displayed:
            continue
        index = int(np.round(position[axis]))
        if not 0 <= index < shape[axis]:
            raise AnnotatorError(
                f"The displayed slice (axis {axis} at {index}) is outside the image layer "
                f"'{layer.name}' ({shape[axis]} planes on that axis)."
            )
        indices.append((axis, index))
    return SliceInfo(shape, displayed[0], displayed[1], tuple(indices))


def transform_kwargs(layer: Any, sl: SliceInfo | None = None) -> dict[str, Any]:
    """Keyword arguments giving a new layer ``layer``'s transform.

    With ``sl``, the new layer has length-1 axes at the not-displayed axes, moved to the slice.
    """
    scale = np.asarray(layer.scale, dtype=float)
    translate = np.asarray(layer.translate, dtype=float)
    if sl is not None and sl.indices:
        offset = np.zeros(len(scale))
        for axis, index in sl.indices:
            offset[axis] = index
        linear = Affine(scale=scale, rotate=layer.rotate, shear=layer.shear).linear_matrix
        translate = translate + linear @ offset
    return {
        "scale": scale,
        "translate": translate,
        "rotate": np.asarray(layer.rotate),
        "shear": np.asarray(layer.shear),
        "affine": np.asarray(layer.affine.affine_matrix),
    }


def same_geometry(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    if layer_shape(a) != layer_shape(b):
        return False
    ka, kb = transform_kwargs(a), transform_kwargs(b)
    return all(np.allclose(ka[k], kb[k]) for k in ka)


def layer_id(layer: Any) -> Any:
    return getattr(layer, "unique_id", None) or id(layer)


def check_plane(layer: Image, sl: SliceInfo) -> None:
    """Validate the slice's shape and dtype without reading pixels (ImageError if unusable)."""
    data = base_data(layer)
    shape = sl.shape + ((int(data.shape[-1]),) if layer.rgb else ())
    # A zero-strided stand-in: check_image looks at shape and dtype only.
    dummy = np.lib.stride_tricks.as_strided(
        np.zeros(1, dtype=np.dtype(data.dtype)), shape=shape, strides=(0,) * len(shape)
    )
    check_image(dummy, rgb=bool(layer.rgb))


def contrast_limits(layer: Any) -> tuple[float, float] | None:
    """A layer's contrast limits as two floats (part of an embedding's cache key), or None."""
    limits = getattr(layer, "contrast_limits", None)
    return None if limits is None else (float(limits[0]), float(limits[1]))


def world_to_data(layer: Image, dims: Any, position: Sequence[float]) -> np.ndarray:
    """A world position (all ``dims.ndim`` coordinates, or the 2 displayed) -> layer data."""
    pos = np.asarray(position, dtype=float).ravel()
    if len(pos) == 2 and dims.ndim > 2:
        full = np.asarray(dims.point, dtype=float)
        full[list(dims.displayed)] = pos
        pos = full
    elif len(pos) < layer.ndim:
        raise ValueError(
            f"position has {len(pos)} coordinates; give the {dims.ndim} world coordinates "
            f"in napari's axis order (as event.position), or the 2 displayed ones."
        )
    return np.asarray(layer.world_to_data(pos), dtype=float)
