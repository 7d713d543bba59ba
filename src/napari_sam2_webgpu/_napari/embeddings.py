"""Encoding a displayed slice, and finding a slice's embedding in the cache.

An embedding is cached under (layer, slice, contrast limits, model and tiling): a click and a
propagation run that need the same slice share one encode. :class:`EmbeddingTracker` knows which
embedding the predictor holds and for which slice, and (:class:`~.tiling.TilingSettings`) which
slices are encoded as tiles: those give a lazily encoded
:class:`~napari_sam2_webgpu.image.tiling.TiledEmbedding`, read a tile at a time from dask or
zarr data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image

from ..image import EmbeddingCache, EmbeddingKey
from .slices import (
    LARGE_IMAGE_PIXELS,
    SliceInfo,
    base_data,
    check_plane,
    contrast_limits,
    layer_id,
)
from .stores import frame_of
from .tiling import TilingSettings

if TYPE_CHECKING:  # pragma: no cover
    from ..image import ImageEmbedding, Sam2Predictor
    from ..image.tiling import TiledEmbedding, TileSpec
    from ..store import EmbeddingStore

logger = logging.getLogger("napari_sam2_webgpu")

__all__ = ["EmbeddingTracker", "EncodeRequest", "find_embedding", "model_key", "tiled_model"]


def model_key(predictor: Any) -> str:
    """Identity of a loaded model in cache keys (its name and encoder file)."""
    return f"{predictor.name}|{predictor.encoder_path or id(predictor)}"


@dataclass
class EncodeRequest:
    """What an encode needs; :meth:`load` reads the pixels (call it in the worker thread)."""

    layer: Image
    layer_id: Any
    slice: SliceInfo
    contrast_limits: tuple[float, float] | None
    rgb: bool
    store: EmbeddingStore | None = None  # the layer's store on disk, when it has this slice
    frame: int | None = None  # the slice's frame in it
    tiles: TileSpec | None = None  # encode as these tiles (None: whole)

    def load(self) -> np.ndarray:
        """The slice's pixels as a numpy array (reads dask/zarr data)."""
        return np.asarray(base_data(self.layer)[self.slice.indexer()])

    def lazy(self) -> Any:
        """The slice without reading it (dask/zarr stay lazy; numpy: a view)."""
        return base_data(self.layer)[self.slice.indexer()]

    def coarse(self) -> Any:
        """The slice from the coarsest pyramid level still at least 2048 pixels on its long
        side, for a tiled slice's overview (None: not multiscale, or no such level)."""
        layer = self.layer
        if not getattr(layer, "multiscale", False):
            return None
        sl, full = self.slice, layer.data[0].shape
        found = None
        for level in layer.data[1:]:
            if max(level.shape[sl.rows_axis], level.shape[sl.cols_axis]) < 2048:
                break
            # The same slice on the coarser level (its not-displayed axes may be scaled too).
            indexer = tuple(
                i * level.shape[a] // full[a] if isinstance(i, int) else i
                for a, i in enumerate(sl.indexer())
            )
            found = level[indexer]
        return found

    def compute(self, predictor: Sam2Predictor) -> ImageEmbedding | TiledEmbedding:
        """The slice's embedding: from the layer's store, else read and encoded (slow:
        seconds on a CPU) and added to the store. Tiled: a :class:`TiledEmbedding` at once,
        its tiles read from the store or encoded when first needed."""
        from ..store import StoreUnavailableError, encoder_checksum

        store, frame = self.store, self.frame
        if store is not None and store.identity.encoder_sha256 != encoder_checksum(
            predictor.encoder_path
        ):
            store = None  # another model: its embeddings are not this one's
        if self.tiles is not None:
            tiles = None if store is None or frame is None else store.frame_tiles(frame)
            return predictor.compute_tiled_embedding(
                self.lazy(),
                contrast_limits=self.contrast_limits,
                rgb=self.rgb,
                spec=self.tiles,
                store=tiles,
                overview=self.coarse(),
            )
        if store is not None and frame is not None:
            stored = store.get(frame)
            if stored is not None:
                return predictor.decoder.place(predictor.encoder.to_device(stored))
        embedding = predictor.compute_embedding(
            self.load(), contrast_limits=self.contrast_limits, rgb=self.rgb
        )
        if store is not None and frame is not None and store.writable:
            try:
                store.put(frame, embedding)
            except StoreUnavailableError as exc:
                logger.warning("%s; this slice's embedding is kept in memory only", exc)
        return embedding

    def key(self, model: str) -> EmbeddingKey:
        """The cache key of the embedding under ``model`` (see :func:`model_key`)."""
        return EmbeddingKey(
            self.layer_id, self.slice.key, self.contrast_limits, tiled_model(model, self.tiles)
        )


def tiled_model(model: str, tiles: TileSpec | None) -> str:
    """The model part of a cache key: a tiled embedding is another embedding of the slice."""
    return model if tiles is None else f"{model}|{tiles.describe()}"


def _serves(store: EmbeddingStore, request: EncodeRequest) -> bool:
    """Whether ``store`` holds ``request``'s kind of embedding (contrast limits, tiles)."""
    tiles = "none" if request.tiles is None else request.tiles.describe()
    identity = store.identity
    return identity.contrast_limits == request.contrast_limits and identity.tiles == tiles


def find_embedding(
    cache: EmbeddingCache, key: EmbeddingKey
) -> tuple[EmbeddingKey, ImageEmbedding] | None:
    """The cached embedding for ``key``, else the newest of the same slice and model.

    The same slice encoded with other contrast limits is still a usable embedding (the exact
    one is preferred). Returns ``(key found, embedding)`` or None.
    """
    candidates = [key] + [
        k
        for k in reversed(cache.keys())
        if k.layer_id == key.layer_id and k.slice_key == key.slice_key and k.model == key.model
    ]
    for candidate in candidates:
        embedding = cache.get(candidate)
        if embedding is not None:
            return candidate, embedding
    return None


class EmbeddingTracker:
    """The embedding cache, and which cached embedding the predictor holds (for which slice).

    Parameters
    ----------
    cache : EmbeddingCache
        Where embeddings are kept per layer, slice, contrast and model.
    """

    def __init__(self, cache: EmbeddingCache) -> None:
        self.cache = cache
        self.slice: SliceInfo | None = None  # slice whose embedding the predictor holds
        self.key: EmbeddingKey | None = None  # its cache key
        self.stores: dict[Any, EmbeddingStore] = {}  # stores on disk, per layer
        self.tiling = TilingSettings()  # which slices are encoded as tiles
        self._warned_large: set[Any] = set()
        self._told_tiled: set[Any] = set()

    def forget(self) -> None:
        """The predictor's embedding is no longer known to be current."""
        self.slice = None
        self.key = None

    def drop_layer(self, image: Image) -> None:
        """Drop the embeddings of ``image`` (its data changed, or it was removed), and its store."""
        self.cache.drop_layer(layer_id(image))
        self.stores.pop(layer_id(image), None)

    def attach_store(self, image: Image, store: EmbeddingStore | None) -> None:
        """Read and write ``image``'s embeddings in ``store`` (``None``: no store)."""
        if store is None:
            self.stores.pop(layer_id(image), None)
        else:
            self.stores[layer_id(image)] = store

    def store_of(self, image: Image) -> EmbeddingStore | None:
        """The store attached to ``image``, if any."""
        return self.stores.get(layer_id(image))

    def encode_request(self, image: Image, sl: SliceInfo) -> tuple[EncodeRequest, str | None]:
        """Describe the encoding of slice ``sl`` (validated), and a message shown once per
        image when it is large or tiled (None otherwise).

        Raises
        ------
        AnnotatorError, ImageError
            3D view, slice outside the layer, or pixels SAM2 cannot use.
        """
        check_plane(image, sl)
        height, width = sl.shape
        warning = None
        if height * width > LARGE_IMAGE_PIXELS and layer_id(image) not in self._warned_large:
            self._warned_large.add(layer_id(image))
            warning = (
                f"'{image.name}' is {height:,} x {width:,} pixels: encoding is fine, but every "
                f"mask is full size ({height * width / 2**20:,.0f} MiB per mask), so clicks "
                "decode slower and multimask is off. Crop the image for faster interaction."
            )
        tiles = self.tiling.spec_for(sl.shape)
        if tiles is not None and layer_id(image) not in self._told_tiled:
            self._told_tiled.add(layer_id(image))
            rows, cols = tiles.layout(sl.shape).grid
            told = (
                f"'{image.name}' is {height:,} x {width:,} pixels: it is encoded as {rows} x "
                f"{cols} tiles of {tiles.tile_size} pixels at full resolution, each when a "
                "prompt first needs it (or precompute them in 'Large images')."
            )
            warning = told if warning is None else f"{warning}\n{told}"
        request = EncodeRequest(
            image, layer_id(image), sl, contrast_limits(image), bool(image.rgb), tiles=tiles
        )
        store = self.stores.get(request.layer_id)
        # The store serves the contrast limits and tiles it was made with; others encode as
        # usual.
        if store is not None and _serves(store, request):
            request.store, request.frame = store, frame_of(store, sl)
        return request, warning

    def store(self, request: EncodeRequest, embedding: ImageEmbedding, predictor: Any) -> None:
        """Cache an embedding ``predictor`` computed for ``request``."""
        self.cache.put(request.key(model_key(predictor)), embedding)

    def adopt(
        self,
        request: EncodeRequest,
        sl: SliceInfo,
        embedding: ImageEmbedding,
        predictor: Sam2Predictor,
    ) -> None:
        """Make ``embedding`` (of ``request``, displayed as ``sl``) the predictor's current one."""
        predictor.set_embedding(embedding)
        self.slice, self.key = sl, request.key(model_key(predictor))

    def sync(self, image: Image, sl: SliceInfo, predictor: Sam2Predictor) -> bool:
        """Make slice ``sl``'s cached embedding the predictor's current one; whether one is."""
        self.slice = None
        model = tiled_model(model_key(predictor), self.tiling.spec_for(sl.shape))
        key = EmbeddingKey(layer_id(image), sl.key, contrast_limits(image), model)
        if key == self.key and predictor.embedding is not None:
            self.slice = sl
            return True
        found = find_embedding(self.cache, key)
        if found is None:
            return False
        self.key, embedding = found
        predictor.set_embedding(embedding)
        self.slice = sl
        return True

    def refresh_current(self) -> None:
        """The current embedding grew (a tiled one encoded a tile): the cache measures it."""
        if self.key is not None:
            self.cache.refresh(self.key)

    def holds(self, sl: SliceInfo) -> bool:
        """Whether the predictor's embedding is known to be slice ``sl``'s."""
        return self.slice is not None and self.slice.key == sl.key

    def exact(self, image: Image) -> bool:
        """Whether the current embedding was made with ``image``'s current contrast limits."""
        return self.key is not None and self.key.contrast_limits == contrast_limits(image)
