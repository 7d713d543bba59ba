"""Tiling in napari: when a slice is tiled, and the tile grid drawn over the image.

:class:`TilingSettings` decides, per slice size, whether slices are encoded as tiles
(:mod:`napari_sam2_webgpu.image.tiling`): ``"auto"`` tiles slices longer than
:data:`~napari_sam2_webgpu.image.tiling.TILING_THRESHOLD` pixels on a side. Clicks, boxes,
segment all, propagation and stores all ask it, so one slice is tiled the same way everywhere.

:class:`TileGrid` keeps a Shapes layer ("SAM2 tiles") showing the displayed slice's tile
windows: encoded tiles outlined in green, the others in grey.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..image.tiling import TILING_THRESHOLD, TiledEmbedding, TileLayout, TileSpec, needs_tiling
from .slices import SliceInfo, transform_kwargs

if TYPE_CHECKING:  # pragma: no cover
    from napari.layers import Image, Shapes

__all__ = ["TILE_GRID_NAME", "TILING_MODES", "TileGrid", "TilingSettings"]

#: What the tiling mode can be.
TILING_MODES = ("auto", "on", "off")
#: The name of the tile grid's Shapes layer.
TILE_GRID_NAME = "SAM2 tiles"

TilingMode = Literal["auto", "on", "off"]


@dataclass
class TilingSettings:
    """Whether and how slices are tiled.

    Attributes
    ----------
    mode : {"auto", "on", "off"}
        ``"auto"``: slices longer than ``threshold`` pixels on a side are tiled; ``"on"``:
        every slice; ``"off"``: none (the slice is shrunk to 1024², as SAM2 does).
    spec : TileSpec
        Tile size and halo.
    threshold : int
        The ``"auto"`` size limit.
    """

    mode: TilingMode = "auto"
    spec: TileSpec = field(default_factory=TileSpec)
    threshold: int = TILING_THRESHOLD

    def __post_init__(self) -> None:
        if self.mode not in TILING_MODES:
            raise ValueError(f"tiling mode must be one of {TILING_MODES}, got {self.mode!r}")

    def spec_for(self, hw: tuple[int, int]) -> TileSpec | None:
        """The tiles of a slice of ``hw`` pixels (None: encoded whole)."""
        if self.mode == "off" or (self.mode == "auto" and not needs_tiling(hw, self.threshold)):
            return None
        return self.spec

    def layout_for(self, hw: tuple[int, int]) -> TileLayout | None:
        """The tile layout of a slice of ``hw`` pixels (None: encoded whole)."""
        spec = self.spec_for(hw)
        return None if spec is None else spec.layout(hw)

    def describe(self, hw: tuple[int, int]) -> str:
        """One line for the dock, e.g. ``"tiled: 5 x 5 tiles of 1024 px (halo 128)"``."""
        layout = self.layout_for(hw)
        if layout is None:
            why = "tiling is off" if self.mode == "off" else "small enough"
            return f"{hw[0]:,} x {hw[1]:,}: encoded whole ({why})"
        rows, cols = layout.grid
        return (
            f"{hw[0]:,} x {hw[1]:,}: tiled, {rows} x {cols} tiles of {self.spec.tile_size} px "
            f"(halo {self.spec.halo})"
        )


def tile_rectangles(layout: TileLayout, sl: SliceInfo) -> list[np.ndarray]:
    """Each tile's window as a rectangle of 4 vertices in the layer's data coordinates."""
    rects = []
    for tile in layout.tiles:
        x0, y0, x1, y1 = tile.box
        corners = [(y0, x0), (y0, x1), (y1, x1), (y1, x0)]
        rects.append(np.array([sl.point(r - 0.5, c - 0.5) for r, c in corners], dtype=float))
    return rects


class TileGrid:
    """The tile windows of the displayed slice, drawn in a Shapes layer.

    Parameters
    ----------
    viewer : napari.Viewer
    """

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.visible = False
        self.layer: Shapes | None = None
        self._drawn: tuple | None = None  # (layout, slice key, encoded) last drawn

    def show(
        self,
        image: Image | None,
        sl: SliceInfo | None,
        layout: TileLayout | None,
        embedding: Any = None,
    ) -> None:
        """Draw the grid of ``layout`` on slice ``sl`` of ``image`` (nothing when hidden or
        not tiled); tiles held by ``embedding`` (a TiledEmbedding) are outlined in green."""
        if not self.visible or image is None or sl is None or layout is None:
            self._clear()
            return
        encoded = tuple(embedding.encoded) if isinstance(embedding, TiledEmbedding) else ()
        drawn = (layout, sl.key, encoded, id(image))
        if drawn == self._drawn and self.layer is not None and self.layer in self.viewer.layers:
            return
        rects = tile_rectangles(layout, sl)
        colours = ["lime" if t.index in encoded else "gray" for t in layout.tiles]
        layer = self._layer(image, sl)
        layer.data = []
        layer.add_rectangles(rects, edge_color=colours, face_color="transparent", edge_width=2)
        self._drawn = drawn

    def _layer(self, image: Image, sl: SliceInfo) -> Shapes:
        if self.layer is None or self.layer not in self.viewer.layers:
            active = self.viewer.layers.selection.active
            self.layer = self.viewer.add_shapes(
                name=TILE_GRID_NAME,
                ndim=sl.ndim,
                face_color="transparent",
                opacity=0.7,
                **transform_kwargs(image),
            )
            self.layer.editable = False
            # Just above the image: the prompt layers stay on top, and the active layer (where
            # clicks go) stays active; the grid is only a guide.
            layers = self.viewer.layers
            if image in layers:
                layers.move(layers.index(self.layer), layers.index(image) + 1)
            if active is not None and active in layers:
                layers.selection.active = active
        return self.layer

    def _clear(self) -> None:
        self._drawn = None
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        self.layer = None
