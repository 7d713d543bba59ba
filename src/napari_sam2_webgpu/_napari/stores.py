"""Embedding stores for image layers: the store of a layer, and which frame a slice is.

A layer's store holds its 2D frames as napari shows them by default: the last two axes (rows,
columns; before the colour axis of an RGB layer) displayed, every other axis a stack axis.
Slices displayed another way (a transposed view) are encoded as usual, without the store.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..store import EmbeddingStore, StoreIdentity, encoder_checksum
from .slices import SliceInfo, base_data, contrast_limits

if TYPE_CHECKING:  # pragma: no cover
    from napari.layers import Image

    from ..image import Sam2Predictor
    from ..image.tiling import TileSpec

__all__ = ["STORE_SUFFIX", "default_store_path", "frame_of", "layer_store_identity"]

#: The suffix of a store next to an image file.
STORE_SUFFIX = ".sam2.zarr"


def _frame_axes(layer: Image) -> tuple[tuple[int, ...], tuple[int, int]]:
    shape = tuple(int(v) for v in base_data(layer).shape)
    if layer.rgb:
        shape = shape[:-1]
    if len(shape) < 2:
        raise ValueError(f"an image layer of shape {shape} has no 2D frames")
    return shape[:-2], (shape[-2], shape[-1])


def layer_store_identity(
    layer: Image, predictor: Sam2Predictor, tiles: TileSpec | None = None
) -> StoreIdentity:
    """What a store of ``layer`` encoded by ``predictor`` holds (its current contrast limits;
    each frame as ``tiles`` and an overview, or whole)."""
    leading, hw = _frame_axes(layer)
    return StoreIdentity(
        model=predictor.name,
        encoder_sha256=encoder_checksum(predictor.encoder_path),
        frames=leading,
        image_hw=hw,
        contrast_limits=contrast_limits(layer),
        rgb=bool(layer.rgb),
        tiles="none" if tiles is None else tiles.describe(),
    )


def frame_of(store: EmbeddingStore, sl: SliceInfo) -> int | None:
    """The store's frame for slice ``sl``, or ``None`` when the slice is not one of its frames
    (displayed along other axes, or of another shape)."""
    ndim = len(sl.shape_nd)
    if (sl.rows_axis, sl.cols_axis) != (ndim - 2, ndim - 1):
        return None
    if tuple(sl.shape) != tuple(store.identity.image_hw):
        return None
    index = tuple(i for _, i in sorted(sl.indices))
    if len(index) != len(store.identity.frames):
        return None
    try:
        return int(np.ravel_multi_index(index, store.identity.frames)) if index else 0
    except ValueError:
        return None


def default_store_path(layer: Image, cache: Path | None = None) -> Path:
    """Where ``layer``'s store goes by default: next to its file, else in the cache.

    ``<file>.sam2.zarr`` beside the file the layer was opened from (when its folder can be
    written), otherwise ``<cache>/embeddings/<name>-<hash>.sam2.zarr`` with a hash of the
    layer's name and shape (so two layers of one name do not share a store).
    """
    source = getattr(getattr(layer, "source", None), "path", None)
    if source:
        path = Path(str(source))
        if path.parent.is_dir() and _writable(path.parent):
            return path.with_name(path.name + STORE_SUFFIX)
    from ..models import cache_dir

    folder = (cache or cache_dir()) / "embeddings"
    shape = tuple(base_data(layer).shape)
    digest = hashlib.sha256(f"{layer.name}|{shape}|{base_data(layer).dtype}".encode()).hexdigest()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in layer.name)[:60] or "image"
    return folder / f"{safe}-{digest[:12]}{STORE_SUFFIX}"


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)


def open_layer_store(
    layer: Image,
    predictor: Sam2Predictor,
    path: Any = None,
    *,
    dtype: str = "float32",
    tiles: TileSpec | None = None,
) -> EmbeddingStore:
    """The store of ``layer`` at ``path`` (default: :func:`default_store_path`), created if
    missing; ``tiles`` for a layer whose slices are tiled. Errors as
    :meth:`EmbeddingStore.open`."""
    where = Path(path) if path is not None else default_store_path(layer)
    identity = layer_store_identity(layer, predictor, tiles)
    return EmbeddingStore.open(where, identity, dtype=dtype)
