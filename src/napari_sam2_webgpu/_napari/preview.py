"""The preview: a one-slice Labels layer showing the current mask (not meant to be saved)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from napari.layers import Image, Labels

from .prompt_layers import make_preview_layer, preview_shape
from .slices import SliceInfo, transform_kwargs

__all__ = ["Preview"]


class Preview:
    """The preview layer in use and whether it shows a mask.

    Parameters
    ----------
    viewer : napari.components.ViewerModel
        Where the layer is inserted.
    """

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.layer: Labels | None = None
        self.slice: SliceInfo | None = None  # the slice the layer is placed on
        self.has_mask = False

    @property
    def mask(self) -> np.ndarray | None:
        """The current mask as a 2D boolean array of its slice, or None."""
        if not self.has_mask or self.layer is None:
            return None
        return np.asarray(self.layer.data).reshape(self.slice.shape).astype(bool)

    def show(self, image: Image, sl: SliceInfo, mask: np.ndarray, index: Callable[[], int]) -> bool:
        """Show the 2D ``mask`` of slice ``sl``; whether a layer was (re)created.

        A new layer goes to position ``index()`` of the layer list; the active layer stays active.
        """
        created = self._ensure(image, sl, index)
        np.copyto(self.layer.data, sl.expand(mask), casting="unsafe")
        self.layer.refresh()
        self.has_mask = True
        return created

    def _ensure(self, image: Image, sl: SliceInfo, index: Callable[[], int]) -> bool:
        layers = self.viewer.layers
        layer = self.layer
        created = False
        if layer is None or layer not in layers or layer.data.shape != preview_shape(sl):
            if layer is not None and layer in layers:
                layers.remove(layer)
            self.layer = make_preview_layer(image, sl)
            position = index()
            active = layers.selection.active
            layers.insert(position, self.layer)
            if active is not None and active in layers:
                layers.selection.active = active
            created = True
        elif self.slice is None or self.slice.key != sl.key:
            layer.translate = transform_kwargs(image, sl)["translate"]
        self.slice = sl
        return created

    def clear(self) -> None:
        """Show no mask (the layer stays)."""
        if self.has_mask and self.layer is not None:
            self.layer.data[...] = 0
            self.layer.refresh()
        self.has_mask = False

    def forget(self, layer: Any) -> bool:
        """``layer`` was removed from the viewer: whether it was the preview layer."""
        if layer is not self.layer:
            return False
        self.layer = None
        self.has_mask = False
        return True

    def remove(self) -> None:
        """Remove the layer from the viewer (e.g. the image geometry changed)."""
        layer, self.layer = self.layer, None
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.remove(layer)
