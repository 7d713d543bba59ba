"""The stack a propagation runs through, and the prompts of its objects on it (no Qt).

:class:`StackSpec` names the frames (an image's slices along one not-displayed axis, the other
not-displayed axes held at the displayed step, the tracked window of tiled slices);
:func:`stack_spec` makes it from the annotator's displayed slice; :func:`stack_prompts` and
:func:`stack_objects` read each object's prompts on every frame from the prompt layers, and
:func:`tracking_window` chooses the tile a tiled stack is tracked in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..image.tiling import Tile, TileSpec, paste, prompt_extent, to_window
from .embeddings import EncodeRequest
from .errors import NO_IMAGE, AnnotatorError
from .slices import SliceInfo, base_data, contrast_limits, layer_id

if TYPE_CHECKING:  # pragma: no cover
    from napari.layers import Image

    from .annotator import Annotator

__all__ = [
    "Prompts",
    "StackSpec",
    "stack_objects",
    "stack_prompts",
    "stack_spec",
    "tracking_window",
]


@dataclass(frozen=True)
class StackSpec:
    """The stack a run propagates through: the frames of an image along one data axis.

    Attributes
    ----------
    layer : napari.layers.Image
    axis : int
        The data axis of the frames (a not-displayed axis).
    template : SliceInfo
        The displayed slice; frame ``i`` is this slice with ``axis`` at ``i``.
    contrast_limits : (float, float) or None
    rgb : bool
    model : str
        The model key of the embedding cache.
    tiles : TileSpec or None
        The frames' tiles, when the annotator tiles slices of this size.
    window : Tile or None
        For tiled frames: the tile every frame is tracked in (chosen from the object's
        prompts when a run starts, see :func:`tracking_window`); None: the whole frame (its
        overview embedding, when tiled).
    """

    layer: Image
    axis: int
    template: SliceInfo
    contrast_limits: tuple[float, float] | None
    rgb: bool
    model: str
    tiles: TileSpec | None = None
    window: Tile | None = None

    @property
    def num_frames(self) -> int:
        return self.template.shape_nd[self.axis]

    @property
    def fixed(self) -> tuple[tuple[int, int], ...]:
        """``(axis, index)`` of the other not-displayed axes (held at the displayed step)."""
        return tuple((a, i) for a, i in self.template.indices if a != self.axis)

    @property
    def key(self) -> tuple:
        """Identity of the stack: a new key means a new tracking state."""
        t = self.template
        data = id(base_data(self.layer))  # replaced data is another stack
        return (
            layer_id(self.layer),
            data,
            self.axis,
            self.fixed,
            (t.rows_axis, t.cols_axis),
            self.contrast_limits,
            self.model,
            self.tiles,
            None if self.window is None else self.window.box,
        )

    @property
    def frame_hw(self) -> tuple[int, int]:
        """Height and width of what is tracked: the window, or the whole frame."""
        return self.template.shape if self.window is None else self.window.hw

    def to_window(self, prompts: Prompts) -> Prompts:
        """Prompts in slice pixels -> in the tracked window's pixels."""
        points, labels, box = prompts
        points, box = to_window(points, box, self.window)
        return points, labels, box

    def to_frame(self, mask: np.ndarray) -> np.ndarray:
        """A tracked (window-sized) mask -> a mask of the whole slice."""
        return paste(mask[None], self.window, self.template.shape)[0]

    def frame_slice(self, index: int) -> SliceInfo:
        """The 2D slice of frame ``index``."""
        t = self.template
        indices = tuple((a, int(index) if a == self.axis else i) for a, i in t.indices)
        return SliceInfo(t.shape_nd, t.rows_axis, t.cols_axis, indices)

    def encode_request(self, index: int) -> EncodeRequest:
        """What encoding frame ``index`` needs: the same request (and cache key) as a click."""
        return EncodeRequest(
            self.layer,
            layer_id(self.layer),
            self.frame_slice(index),
            self.contrast_limits,
            self.rgb,
            tiles=self.tiles,
        )


class _LayerFrames:
    """The frames of a :class:`StackSpec` (their window, when tiled) as a lazy
    ``(T, H, W[, C])`` array-like."""

    def __init__(self, spec: StackSpec) -> None:
        self._spec = spec
        self._data = base_data(spec.layer)
        channels = (int(self._data.shape[-1]),) if spec.rgb else ()
        self.shape = (spec.num_frames, *spec.frame_hw, *channels)
        self.dtype = self._data.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        window = self._spec.window
        rows, cols = (slice(None), slice(None)) if window is None else window.slices
        return np.asarray(self._data[self._spec.frame_slice(int(index)).indexer(rows, cols)])


def stack_spec(annotator: Annotator, axis: int | None = None) -> StackSpec:
    """The stack through the displayed slice of the annotator's image.

    Parameters
    ----------
    annotator : Annotator
    axis : int, optional
        Data axis of the image to propagate along; must not be displayed. Default: the first
        not-displayed axis (the only one of a 3D image).

    Raises
    ------
    AnnotatorError
        No image, 3D view, a 2D image, or ``axis`` displayed.
    """
    image = annotator.image_layer
    if image is None:
        raise AnnotatorError(NO_IMAGE)
    sl = annotator.current_slice()
    free = [a for a, _ in sl.indices]
    if not free:
        raise AnnotatorError(
            f"'{image.name}' is a single 2D image: propagation goes through a stack (a 3D image, "
            "a time series...)."
        )
    if axis is None:
        axis = free[0]
    elif int(axis) not in free:
        raise AnnotatorError(
            f"Axis {axis} is displayed (or not an axis of '{image.name}'): propagate along one of "
            f"the axes that are not displayed, {free}."
        )
    model = annotator.model_key
    if model is None:
        raise AnnotatorError("Load a model first (press Encode).")
    tiles = annotator.embeddings.tiling.spec_for(sl.shape)
    return StackSpec(image, int(axis), sl, contrast_limits(image), bool(image.rgb), model, tiles)


def _window(spec: StackSpec, objects: dict[int, dict[int, Prompts]]) -> Tile | None:
    """:func:`tracking_window` of all the objects' prompts together."""
    every = [p for prompts in objects.values() for p in prompts.values()]
    return tracking_window(spec, dict(enumerate(every)))


def tracking_window(spec: StackSpec, prompts: dict[int, Prompts]) -> Tile | None:
    """The tile a tiled stack's object is tracked in: the one that holds all its prompts (on
    every frame) best, as for a click (:meth:`TileLayout.choose
    <napari_sam2_webgpu.image.tiling.TileLayout.choose>`); None (the whole frame at the
    overview's resolution) when they fit in no tile, or the stack is not tiled."""
    if spec.tiles is None or not prompts:
        return None
    extent = prompt_extent(*(c for points, _, box in prompts.values() for c in (points, box)))
    return spec.tiles.layout(spec.template.shape).choose(extent)


Prompts = tuple[Any, Any, Any]  # points (N, 2) xy, labels (N,), box (4,); None where absent


def _signature(prompts: Prompts) -> tuple:
    return tuple(None if p is None else np.asarray(p, dtype=float).tobytes() for p in prompts)


def stack_prompts(
    annotator: Annotator, spec: StackSpec, obj_id: int | None = None
) -> dict[int, Prompts]:
    """An object's prompts on each frame of the stack, as a click on that frame would decode
    them (default: the current object's)."""
    frames: set[int] = set()
    layer = annotator.prompts_layer
    if layer is not None and layer in annotator.viewer.layers and len(layer.data):
        frames.update(np.round(np.asarray(layer.data)[:, spec.axis]).astype(int).tolist())
    box = annotator.box_layer
    if box is not None and box in annotator.viewer.layers:
        for vertices in box.data:
            if len(vertices):
                frames.add(int(np.round(np.asarray(vertices)[0, spec.axis])))
    out = {}
    for frame in sorted(f for f in frames if 0 <= f < spec.num_frames):
        prompts = annotator.slice_prompts(spec.frame_slice(frame), obj_id)
        if prompts[0] is not None or prompts[2] is not None:
            out[frame] = prompts
    return out


def stack_objects(annotator: Annotator, spec: StackSpec) -> dict[int, dict[int, Prompts]]:
    """Every object's prompts on the stack's frames: ``{object_id: {frame: prompts}}``, for
    the objects that have some (sorted by id)."""
    ids = annotator.prompted_objects or [annotator.object_id]
    out = {}
    for obj_id in ids:
        prompts = stack_prompts(annotator, spec, obj_id)
        if prompts:
            out[obj_id] = prompts
    return out
