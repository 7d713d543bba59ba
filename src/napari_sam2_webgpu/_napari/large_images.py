"""Large images in napari: tiling settings, the tile grid, the store on disk, precomputing.

:class:`LargeImages` is the annotator's collaborator for what big slices and long stacks need:

- the tiling settings (:class:`~.tiling.TilingSettings`) every encode of the annotator follows;
- the tile grid of the displayed slice (:class:`~.tiling.TileGrid`, a Shapes layer);
- the image layer's embedding store on disk (:meth:`use_store`), tiled like its slices;
- precomputing every slice of the layer into that store (:meth:`precompute`, run in a worker
  by the widget with a progress bar and cancel).

Nothing here imports Qt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..image.tiling import TiledEmbedding, TileSpec
from .errors import AnnotatorError
from .slices import base_data
from .tiling import TileGrid, TilingSettings

if TYPE_CHECKING:  # pragma: no cover
    from ..store import EmbeddingStore, PrecomputeReport
    from .annotator import Annotator

__all__ = ["LargeImages"]


class LargeImages:
    """Tiling, the tile grid, the store and precomputing, for an :class:`Annotator`.

    Parameters
    ----------
    annotator : Annotator
    """

    def __init__(self, annotator: Annotator) -> None:
        self.annotator = annotator
        self.grid = TileGrid(annotator.viewer)

    # -- tiling -----------------------------------------------------------------------------------
    @property
    def tiling(self) -> TilingSettings:
        """How slices are tiled (a copy; set it, or use :meth:`set_tiling`)."""
        return replace(self.annotator.embeddings.tiling)

    @tiling.setter
    def tiling(self, settings: TilingSettings) -> None:
        tracker = self.annotator.embeddings
        if settings == tracker.tiling:
            return
        tracker.tiling = replace(settings)
        # Another tiling is another embedding of the slice (cached apart): look it up anew.
        tracker.forget()
        self.annotator.sync_embedding()
        self.refresh_grid()
        self.annotator.events.status()

    def set_tiling(
        self,
        mode: str | None = None,
        *,
        tile_size: int | None = None,
        halo: int | None = None,
        threshold: int | None = None,
    ) -> TilingSettings:
        """Change some of the tiling settings (ValueError if invalid); returns them."""
        now = self.annotator.embeddings.tiling
        spec = TileSpec(
            now.spec.tile_size if tile_size is None else tile_size,
            now.spec.halo if halo is None else halo,
        )
        self.tiling = TilingSettings(
            now.mode if mode is None else mode,  # type: ignore[arg-type]
            spec,
            now.threshold if threshold is None else int(threshold),
        )
        return self.tiling

    def describe(self) -> str:
        """How the displayed slice is encoded, and how many of its tiles are, in one line."""
        image = self.annotator.image
        sl = image.displayed_or_none()
        if sl is None:
            return ""
        tiling = self.annotator.embeddings.tiling
        text = tiling.describe(sl.shape)
        embedding = self._current_tiled()
        if embedding is not None:
            text += f"; {len(embedding.encoded)} of {len(embedding.layout)} in memory"
        return text

    def _current_tiled(self) -> TiledEmbedding | None:
        predictor = self.annotator.predictor
        embedding = None if predictor is None else predictor.embedding
        if isinstance(embedding, TiledEmbedding) and self.annotator.is_ready:
            return embedding
        return None

    # -- the grid ---------------------------------------------------------------------------------
    @property
    def grid_visible(self) -> bool:
        """Whether the tile grid is drawn."""
        return self.grid.visible

    def show_grid(self, visible: bool = True) -> None:
        """Draw (or remove) the displayed slice's tile windows as a Shapes layer."""
        self.grid.visible = bool(visible)
        self.refresh_grid()

    def refresh_grid(self) -> None:
        """Redraw the grid for the displayed slice (after a slice change or a decode)."""
        image = self.annotator.image
        sl = image.displayed_or_none()
        layout = None if sl is None else self.annotator.embeddings.tiling.layout_for(sl.shape)
        self.grid.show(image.layer, sl, layout, self._current_tiled())

    # -- the store --------------------------------------------------------------------------------
    def use_store(self, path: Any = None, *, dtype: str = "float32") -> EmbeddingStore:
        """See :meth:`Annotator.use_store`."""
        from .stores import open_layer_store

        layer = self.annotator.image.require()
        predictor = self.annotator.predictor
        if predictor is None:
            raise AnnotatorError("Load a model first: a store holds one model's embeddings.")
        tiles = self._store_tiles(layer)
        store = open_layer_store(layer, predictor, path, dtype=dtype, tiles=tiles)
        self.annotator.embeddings.attach_store(layer, store)
        return store

    def _store_tiles(self, layer: Any) -> TileSpec | None:
        """The tiles of the layer's frames (its last two axes), as the settings say."""
        shape = tuple(int(v) for v in base_data(layer).shape)
        if layer.rgb:
            shape = shape[:-1]
        return self.annotator.embeddings.tiling.spec_for((shape[-2], shape[-1]))

    @property
    def store(self) -> EmbeddingStore | None:
        """See :attr:`Annotator.store`."""
        layer = self.annotator.image.layer
        return None if layer is None else self.annotator.embeddings.store_of(layer)

    def close_store(self) -> None:
        """See :meth:`Annotator.close_store`."""
        layer = self.annotator.image.layer
        if layer is not None:
            self.annotator.embeddings.attach_store(layer, None)

    # -- precomputing -----------------------------------------------------------------------------
    def precompute(
        self,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | threading.Event | None = None,
    ) -> PrecomputeReport:
        """Encode every slice of the image layer (every tile, when tiled) into its store.

        Uses the layer's store (:meth:`use_store`; the default place when none is attached).
        The layer's data is read a slice (or a tile) at a time, so dask and zarr data are
        never loaded whole. Slices already stored are skipped; a cancel keeps what was stored.
        Runs on any thread (the widget runs it in a worker).

        Raises
        ------
        AnnotatorError
            No image layer or no model.
        napari_sam2_webgpu.store.StoreMismatchError, StoreUnavailableError
            As :meth:`use_store`.
        """
        from ..store import precompute_embeddings

        layer = self.annotator.image.require()
        predictor = self.annotator.predictor
        if predictor is None:
            raise AnnotatorError("Load a model first: precomputing encodes with it.")
        store = self.store or self.use_store()
        return precompute_embeddings(
            predictor,
            base_data(layer),
            store,
            contrast_limits=store.identity.contrast_limits,
            progress=progress,
            cancelled=cancelled,
        )
