"""Tracks of propagated objects: a napari Tracks layer and a CSV, from the Labels layer.

The objects of a propagation are read back from the Labels layer along the run's stack (its
frames, with the other not-displayed axes at the run's steps): :func:`stack_tracks` gives the
core's ``(N, 5)`` tracks (:func:`napari_sam2_webgpu.tracks.label_tracks`: id, frame, centroid
row and column of the displayed slice, area), :func:`show_tracks` puts them in a Tracks layer
(one track per object id, in the Labels layer's data coordinates and transform), and
:func:`napari_sam2_webgpu.tracks.write_tracks_csv` writes the CSV. No Qt.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..tracks import label_tracks
from .slices import transform_kwargs

if TYPE_CHECKING:  # pragma: no cover
    from napari.layers import Labels, Tracks

    from .stack import StackSpec

__all__ = ["TRACKS_NAME", "show_tracks", "stack_tracks", "tracks_layer_data"]

#: Name of the Tracks layer of a Labels layer.
TRACKS_NAME = "{labels} tracks"


class _LabelFrames:
    """The Labels layer's frames along a stack, as a lazy ``(T, H, W)`` array-like (rows and
    columns of the displayed slice)."""

    def __init__(self, labels: Labels, spec: StackSpec) -> None:
        self._labels = labels
        self._spec = spec
        self.shape = (spec.num_frames, *spec.template.shape)
        self.dtype = np.dtype(labels.data.dtype)

    def __getitem__(self, index: int) -> np.ndarray:
        sl = self._spec.frame_slice(int(index))
        plane = np.asarray(self._labels.data[sl.indexer()])
        return plane.T if sl.rows_axis > sl.cols_axis else plane


def stack_tracks(labels: Labels, spec: StackSpec, ids: Iterable[int] | None = None) -> np.ndarray:
    """The ``(N, 5)`` tracks (id, frame, row, column, area) of the objects ``ids`` (default:
    every label) in ``labels`` along the stack ``spec``."""
    return label_tracks(_LabelFrames(labels, spec), ids)


def tracks_layer_data(tracks: np.ndarray, spec: StackSpec) -> np.ndarray:
    """Tracks as napari's Tracks data: ``(N, 1 + ndim)``, the id then the centroid in the
    layer's data coordinates (the frame on the stack's axis)."""
    out = np.zeros((len(tracks), 1 + len(spec.template.shape_nd)))
    for k, (obj_id, frame, row, col, _) in enumerate(tracks):
        out[k, 0] = obj_id
        out[k, 1:] = spec.frame_slice(int(frame)).point(row, col)
    return out


def show_tracks(viewer: Any, labels: Labels, spec: StackSpec, tracks: np.ndarray) -> Tracks:
    """Add (or update) the Tracks layer "<labels> tracks": one track per object id.

    Returns
    -------
    napari.layers.Tracks
    """
    from napari.layers import Tracks

    data = tracks_layer_data(tracks, spec)
    name = TRACKS_NAME.format(labels=labels.name)
    features = {"area": tracks[:, 4]}
    existing = viewer.layers[name] if name in viewer.layers else None
    if isinstance(existing, Tracks) and existing.ndim == labels.ndim:
        existing.data = data
        existing.features = features
        return existing
    layer = Tracks(data, name=name, features=features, **transform_kwargs(labels))
    viewer.add_layer(layer)
    return layer
