"""Object tracks of a label stack: one centroid per object per frame, and CSV files of them.

A propagation (or any labelling of a time series) gives each object one id on every frame it
is on. :func:`label_tracks` turns a ``(frames, height, width)`` label stack into tracks:
per object id and frame, the centroid of its pixels and their number. :func:`write_tracks_csv`
and :func:`read_tracks_csv` store them as CSV (``track_id,frame,y,x,area``, pixel units; a
frame without the object has no row), which Fiji's TrackMate, pandas or a spreadsheet read.

Pure numpy; lazy stacks (dask, zarr) are read one frame at a time, and each frame in bands of
rows, so memory stays bounded by a band of the frame.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TRACK_COLUMNS", "label_tracks", "read_tracks_csv", "write_tracks_csv"]

#: The columns of a tracks array and of the CSV files, in order.
TRACK_COLUMNS = ("track_id", "frame", "y", "x", "area")

_BAND_PIXELS = 1 << 22  # rows read at a time: about 4 Mi pixels


def _frame_sums(frame: Any, ids: set[int] | None) -> dict[int, np.ndarray]:
    """Per label of a 2D frame (0 excluded): ``[pixels, sum of rows, sum of columns]``."""
    height, width = frame.shape
    band = max(1, _BAND_PIXELS // max(width, 1))
    sums: dict[int, np.ndarray] = {}
    cols = np.arange(width, dtype=np.float64)
    for top in range(0, height, band):
        block = np.asarray(frame[top : top + band])
        if not block.any():
            continue
        values, inverse = np.unique(block, return_inverse=True)
        inverse = inverse.reshape(block.shape)
        n = len(values)
        count = np.bincount(inverse.ravel(), minlength=n)
        rows = np.arange(top, top + block.shape[0], dtype=np.float64)
        sum_y = np.bincount(inverse.ravel(), weights=np.repeat(rows, width), minlength=n)
        sum_x = np.bincount(inverse.ravel(), weights=np.tile(cols, block.shape[0]), minlength=n)
        for k, value in enumerate(values.tolist()):
            if value == 0 or (ids is not None and value not in ids):
                continue
            entry = sums.setdefault(int(value), np.zeros(3))
            entry += (count[k], sum_y[k], sum_x[k])
    return sums


def label_tracks(labels: Any, ids: Iterable[int] | None = None) -> np.ndarray:
    """The tracks of a label stack: one row per object and frame it is on.

    Parameters
    ----------
    labels : array-like
        ``(frames, height, width)`` integer labels (numpy, dask or zarr; read frame by frame).
    ids : iterable of int, optional
        Only these object ids (default: every label but 0).

    Returns
    -------
    numpy.ndarray
        ``(N, 5)`` float64, the columns of :data:`TRACK_COLUMNS`: object id, frame, centroid
        row and column (pixels), area (pixels); sorted by id, then frame.

    Raises
    ------
    ValueError
        Not a 3D stack, or not integer labels.
    """
    if not hasattr(labels, "shape"):
        labels = np.asarray(labels)
    shape = tuple(labels.shape)
    if len(shape) != 3:
        raise ValueError(
            f"tracks need a label stack (frames, height, width); got shape {shape}. For one "
            "frame there is nothing to track; for 4D data pass the stack of one position."
        )
    dtype = np.dtype(labels.dtype)
    if not (np.issubdtype(dtype, np.integer) or dtype == np.bool_):
        raise ValueError(f"tracks need integer labels, got {dtype}.")
    wanted = None if ids is None else {int(i) for i in ids}
    rows = []
    for t in range(shape[0]):
        for obj_id, (area, sum_y, sum_x) in _frame_sums(labels[t], wanted).items():
            rows.append((obj_id, t, sum_y / area, sum_x / area, area))
    if not rows:
        return np.zeros((0, len(TRACK_COLUMNS)))
    tracks = np.array(rows, dtype=np.float64)
    return tracks[np.lexsort((tracks[:, 1], tracks[:, 0]))]


def write_tracks_csv(
    path: str | os.PathLike, tracks: np.ndarray, *, overwrite: bool = False
) -> Path:
    """Write tracks (of :func:`label_tracks`) as CSV with a header of :data:`TRACK_COLUMNS`.

    Ids, frames and areas are written as integers, centroids with 3 decimals.

    Raises
    ------
    FileExistsError
        The file exists and ``overwrite`` is False (nothing is written).
    ValueError
        ``tracks`` is not ``(N, 5)``.
    """
    path = Path(path)
    tracks = np.asarray(tracks, dtype=np.float64)
    if tracks.ndim != 2 or tracks.shape[1] != len(TRACK_COLUMNS):
        raise ValueError(f"tracks must be (N, {len(TRACK_COLUMNS)}), got {tracks.shape}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists: choose another name, or overwrite it.")
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(TRACK_COLUMNS)
        for obj_id, frame, y, x, area in tracks:
            writer.writerow([int(obj_id), int(frame), f"{y:.3f}", f"{x:.3f}", int(area)])
    os.replace(partial, path)  # never a half-written file under the real name
    return path


def read_tracks_csv(path: str | os.PathLike) -> np.ndarray:
    """Read a CSV of :func:`write_tracks_csv` back as an ``(N, 5)`` array.

    Raises
    ------
    ValueError
        The header is not :data:`TRACK_COLUMNS` (the message names what it is).
    """
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != TRACK_COLUMNS:
            raise ValueError(
                f"{path} is not a tracks CSV: its header is {header}, expected "
                f"{','.join(TRACK_COLUMNS)}."
            )
        rows = [[float(v) for v in row] for row in reader if row]
    return np.array(rows, dtype=np.float64).reshape(-1, len(TRACK_COLUMNS))
