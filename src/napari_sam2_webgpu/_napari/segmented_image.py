"""The image an annotator segments: its layer, the displayed slice, and that slice's embedding.

:class:`SegmentedImage` keeps the Image layer in use (and listens to its data), tells which 2D
slice the viewer displays, and, through an :class:`~.embeddings.EmbeddingTracker`, whether the
predictor holds that slice's embedding: what a click needs to decode at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image

from . import prompt_layers
from .embeddings import EmbeddingTracker, EncodeRequest, model_key
from .errors import NO_IMAGE, AnnotatorError
from .slices import SliceInfo, displayed_slice, world_to_data

if TYPE_CHECKING:  # pragma: no cover
    from ..image import ImageEmbedding, Sam2Predictor

__all__ = ["SegmentedImage"]


class SegmentedImage:
    """The Image layer being segmented, its displayed slice, and that slice's embedding.

    Parameters
    ----------
    viewer : napari.components.ViewerModel
        Whose dims say which slice is displayed.
    tracker : EmbeddingTracker
        The embedding cache, and which embedding the predictor holds.
    predictor : callable
        Returns the loaded ``Sam2Predictor`` (or None).
    on_data_changed : callable
        Called with no argument after the layer's data changed (its embeddings are dropped).
    """

    def __init__(
        self,
        viewer: Any,
        tracker: EmbeddingTracker,
        *,
        predictor: Callable[[], Sam2Predictor | None],
        on_data_changed: Callable[[], None],
    ) -> None:
        self.viewer = viewer
        self.tracker = tracker
        self._predictor = predictor
        self._on_data_changed = on_data_changed
        self._layer: Image | None = None
        self._slice_key: tuple | None = None  # the displayed slice last seen by slice_changed

    # -- the layer --------------------------------------------------------------------------------
    @property
    def layer(self) -> Image | None:
        """The Image layer being segmented (None: none chosen)."""
        return self._layer

    def set_layer(self, layer: Image | None) -> Image | None:
        """Segment ``layer`` from now on; returns the previous layer.

        The predictor's embedding is no longer taken as the displayed slice's.

        Raises
        ------
        AnnotatorError
            ``layer`` is not an Image layer (nothing changes then).
        """
        if layer is not None and not isinstance(layer, Image):
            raise AnnotatorError(
                f"{prompt_layers.describe(layer)} is not an image layer: choose an Image layer "
                "(e.g. viewer.layers['name'])."
            )
        old = self._layer
        self.disconnect()
        self._layer = layer
        if layer is not None:
            layer.events.data.connect(self._on_data)
        self.tracker.forget()
        return old

    def require(self) -> Image:
        """The layer, or :class:`AnnotatorError` telling the user to choose one."""
        if self._layer is None:
            raise AnnotatorError(NO_IMAGE)
        return self._layer

    def forget_layer(self) -> None:
        """The layer was removed from the viewer: drop it and its embeddings."""
        if self._layer is not None:
            self.tracker.drop_layer(self._layer)
        self.disconnect()
        self._layer = None
        self.tracker.forget()
        self._slice_key = None

    def disconnect(self) -> None:
        """Stop listening to the layer's data."""
        if self._layer is not None:
            self._layer.events.data.disconnect(self._on_data)

    def _on_data(self, event: Any = None) -> None:
        """The pixels changed: every embedding of the layer is stale."""
        if self._layer is not None:
            self.tracker.drop_layer(self._layer)
        self.tracker.forget()
        self._on_data_changed()

    # -- the displayed slice ----------------------------------------------------------------------
    def current_slice(self) -> SliceInfo:
        """The displayed slice of the layer (AnnotatorError when there is none)."""
        return displayed_slice(self.require(), self.viewer.dims)

    def displayed_or_none(self) -> SliceInfo | None:
        """The displayed slice, or None (no layer, 3D view, slice outside the layer)."""
        if self._layer is None:
            return None
        try:
            return self.current_slice()
        except AnnotatorError:
            return None

    def slice_changed(self) -> tuple[bool, SliceInfo | None]:
        """Whether another slice is displayed than at the previous call, and the slice.

        The dims also change without the slice changing (e.g. the range of the displayed
        axes): those changes are not slice changes.
        """
        sl = self.displayed_or_none()
        key = None if sl is None else sl.key
        changed, self._slice_key = key != self._slice_key, key
        return changed, sl

    def world_to_data(self, position: Sequence[float]) -> np.ndarray:
        """A world position (full or only the displayed axes) -> the layer's data coordinates."""
        return world_to_data(self.require(), self.viewer.dims, position)

    # -- the embedding ----------------------------------------------------------------------------
    def encode_request(self) -> tuple[EncodeRequest, str | None]:
        """The encoding of the displayed slice (validated), and a warning to show, if any.

        Raises
        ------
        AnnotatorError, ImageError
            No layer, 3D view, slice outside the layer, or pixels SAM2 cannot use.
        """
        return self.tracker.encode_request(self.require(), self.current_slice())

    def accept(
        self,
        request: EncodeRequest,
        embedding: ImageEmbedding,
        predictor: Sam2Predictor,
        apply: bool = True,
    ) -> bool:
        """Cache an embedding; make it current if it is still wanted; whether it is now.

        It is wanted when ``apply`` and it is of the layer, slice and model in use.
        """
        if request.layer not in self.viewer.layers:
            return False  # the layer was removed while encoding
        self.tracker.store(request, embedding, predictor)
        if not apply or request.layer is not self._layer:
            return False
        if predictor is None or predictor is not self._predictor():
            return False  # another model was loaded while encoding
        sl = self.displayed_or_none()
        if sl is None or sl.key != request.slice.key:
            return False
        self.tracker.adopt(request, sl, embedding, predictor)
        return True

    def sync(self) -> bool:
        """Make the displayed slice's cached embedding current; whether one is ready."""
        self.tracker.slice = None
        predictor = self._predictor()
        sl = self.displayed_or_none() if predictor is not None else None
        if sl is None:
            return False
        return self.tracker.sync(self._layer, sl, predictor)

    @property
    def is_ready(self) -> bool:
        """Whether the displayed slice is encoded (clicks decode at once)."""
        if self.tracker.slice is None or self._predictor() is None:
            return False
        sl = self.displayed_or_none()
        return sl is not None and self.tracker.holds(sl)

    def is_exact(self) -> bool:
        """Whether the current embedding is for the displayed slice *and* contrast limits."""
        return self.is_ready and self.tracker.exact(self._layer)

    @property
    def model_key(self) -> str | None:
        """Identity of the loaded model in cache keys."""
        predictor = self._predictor()
        return None if predictor is None else model_key(predictor)
