"""Writing masks into a Labels layer: value checks, painting rules, next free id, undo history.

Everything that touches a target Labels layer's pixels or its undo history is here, so that a
click's commit and a propagation run follow the same rules: paint background pixels only (or,
with ``overwrite``, any pixel), and make one user action one undo step.

napari has no public read access to a Labels layer's undo history; :func:`undo_history` is the
one place that reads it (``Labels._undo_history``), and it degrades to None when napari changes.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
from napari.layers import Labels

from .errors import AnnotatorError
from .slices import SliceInfo

__all__ = [
    "SCAN_PIXELS",
    "check_label_value",
    "max_label",
    "merge_history",
    "next_free_id",
    "paint_mask",
    "undo_history",
    "write_frame",
]

#: Non-numpy Labels data (dask, zarr) up to this many pixels is scanned for its largest label.
SCAN_PIXELS = 2**27


def check_label_value(labels: Labels, value: int) -> None:
    """Raise :class:`AnnotatorError` if ``value`` does not fit the Labels layer's dtype."""
    dtype = np.dtype(labels.data.dtype)
    if np.issubdtype(dtype, np.integer) and value > np.iinfo(dtype).max:
        raise AnnotatorError(
            f"Object id {value} does not fit the Labels layer's {dtype} data: "
            "use a Labels layer with a larger integer type."
        )


def max_label(data: Any) -> int | None:
    """The largest label of a Labels layer's data, or None when it is too costly to find."""
    if isinstance(data, np.ndarray):
        return int(data.max(initial=0))
    size = int(np.prod(getattr(data, "shape", ()), dtype=np.int64))
    if size == 0:
        return 0
    if size > SCAN_PIXELS:
        return None
    return int(np.asarray(data).max())


def next_free_id(labels: Labels | None, current: int, scan: bool = False) -> int:
    """One more than the largest label of ``labels`` (1 without a layer).

    Parameters
    ----------
    labels : napari.layers.Labels or None
        The target layer.
    current : int
        The object id in use: a layer whose data is not scanned gets ``current + 1``.
    scan : bool
        Also read data that is not a numpy array (dask, zarr; up to :data:`SCAN_PIXELS`).
    """
    if labels is None:
        return 1
    data = labels.data
    largest = max_label(data) if scan or isinstance(data, np.ndarray) else None
    if largest is None:  # not scanned: at least past the ids used so far
        return max(current + 1, 1)
    return largest + 1


def paint_mask(
    labels: Labels, sl: SliceInfo, mask: np.ndarray, value: int, overwrite: bool = False
) -> int:
    """Write ``value`` where the 2D ``mask`` is set on slice ``sl``; the number of pixels written.

    Only background pixels are painted unless ``overwrite``; pixels already holding ``value``
    are never counted. The write goes through ``Labels.data_setitem``: one undo step.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return 0
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    window = mask[r0:r1, c0:c1]
    # rows_axis < cols_axis, so the 2D window comes out as (rows, columns).
    region = np.asarray(labels.data[sl.indexer(slice(r0, r1), slice(c0, c1))])
    target = window & (region != value) if overwrite else window & (region == 0)
    rr, cc = np.nonzero(target)
    if rr.size == 0:
        return 0
    labels.data_setitem(sl.fancy_index(rr + r0, cc + c0), value)
    return int(rr.size)


def undo_history(labels: Labels) -> Any:
    """The Labels layer's undo history (a deque of items), or None if napari hides it."""
    return getattr(labels, "_undo_history", None)


def write_frame(
    labels: Labels,
    sl: SliceInfo,
    mask: np.ndarray,
    value: int,
    overwrite: bool,
    run_item: list | None,
) -> list | None:
    """Make ``mask`` the object ``value``'s pixels on slice ``sl`` (a propagated frame).

    Paints the mask (background only unless ``overwrite``) and erases the object's pixels that
    the mask no longer covers (those of an earlier run). The changes join ``run_item``, the undo
    item of the run so far, when nothing else was written in between (see
    :func:`merge_history`). Returns the run's undo item.
    """
    region = np.asarray(labels.data[sl.indexer()])
    own = region == value
    paint = mask & ~own if overwrite else mask & (region == 0)
    erase = own & ~mask  # the object's pixels of an earlier run that it no longer covers
    history = undo_history(labels)
    last = history[-1] if history else None
    block = getattr(labels, "block_history", contextlib.nullcontext)
    with block():
        for where, new in ((erase, 0), (paint, value)):
            if where.any():
                labels.data_setitem(sl.fancy_index(*np.nonzero(where)), new)
    if history is None:
        return run_item
    return merge_history(history, last, run_item)


def merge_history(history: Any, last: Any, run_item: list | None) -> list | None:
    """Fold the undo items added since ``last`` into the run's item: one undo for the run.

    napari's Labels history is a deque of items (lists of changes applied together). A run's
    frames arrive in separate GUI events, so each frame adds an item; when the run's item is
    right before them (nobody edited the layer in between) they join it, else they start a new
    one. Returns the run's item.
    """
    new = []
    for item in reversed(history):
        if item is last:
            break
        new.append(item)
    if not new:
        return run_item
    new.reverse()
    if run_item is None or len(history) <= len(new) or history[-len(new) - 1] is not run_item:
        run_item, new = new[0], new[1:]
    for _ in new:
        history.pop()  # they are all at the end
    for item in new:
        run_item.extend(item)
    return run_item
