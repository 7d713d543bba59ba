"""The helper layers of interactive segmentation, and the prompts read from them.

- the *prompts* Points layer (the feature ``positive`` of each point is its polarity, the
  feature ``object`` the object it prompts),
- the *box* Shapes layer (an object's newest rectangle on a slice is its box prompt; the
  feature ``object`` says whose),
- the *preview* Labels layer (the current mask, one colour, one slice deep), and
- a new target Labels layer (the image's shape and transform).

Every helper layer shares the image layer's transform, so its data coordinates are the image's
pixel coordinates, whatever the world coordinates are. The functions here build and read layers;
:class:`PromptLayers` keeps the prompts and box layers in use (creation, muting, polarity, the
layers' data events).

Several objects can have prompts at once (to propagate them together): each prompt carries its
object's id, new prompts get the current object's, and :func:`slice_prompts` reads one
object's. The ids are drawn next to the prompts while more than one object has some.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from napari.layers import Image, Labels, Points, Shapes

from .errors import AnnotatorError, guarded
from .slices import LARGE_IMAGE_PIXELS, SliceInfo, layer_shape, transform_kwargs

__all__ = [
    "BOX_COLOR",
    "BOX_NAME",
    "LABELS_NAME",
    "NEGATIVE_COLOR",
    "POSITIVE_COLOR",
    "PREVIEW_COLOR",
    "PREVIEW_NAME",
    "PROMPTS_NAME",
    "PromptLayers",
    "box_corners",
    "describe",
    "make_box_layer",
    "make_labels_layer",
    "make_preview_layer",
    "make_prompts_layer",
    "misplaced_points",
    "older_boxes",
    "preview_shape",
    "prompt_objects",
    "slice_prompts",
]

PROMPTS_NAME = "SAM2 prompts"
BOX_NAME = "SAM2 box"
PREVIEW_NAME = "SAM2 preview"
#: Name of a new Labels layer: after its image ("cells labels"; napari adds " [1]"... if taken).
LABELS_NAME = "{image} labels"
POSITIVE_COLOR = "lime"
NEGATIVE_COLOR = "red"
BOX_COLOR = "cyan"
PREVIEW_COLOR = (1.0, 0.0, 1.0, 1.0)  # magenta: stands out on grey, fluorescence and H&E


def describe(obj: Any) -> str:
    """``'name'`` of a layer, or the repr of something else (messages for wrong arguments)."""
    name = getattr(obj, "name", None)
    return f"'{name}'" if isinstance(name, str) else repr(obj)


def _id_text(size: float) -> dict[str, Any]:
    """Each prompt's object id, drawn beside it (shown while several objects have prompts)."""
    return {
        "string": "{object}",
        "color": "white",
        "anchor": "upper_left",
        "size": float(np.clip(size, 8, 14)),
        "visible": False,
    }


def make_box_layer(image: Image) -> Shapes:
    """An empty Shapes layer for box prompts on ``image`` (edge width scaled to its size)."""
    shape = layer_shape(image)
    return Shapes(
        ndim=len(shape),
        name=BOX_NAME,
        edge_color=BOX_COLOR,
        face_color="transparent",
        edge_width=max(1.0, min(shape[-2:]) / 400),
        features={"object": np.zeros(0, dtype=np.int64)},
        feature_defaults={"object": 1},
        text=_id_text(min(shape[-2:]) / 40),
        **transform_kwargs(image),
    )


def make_prompts_layer(image: Image) -> Points:
    """An empty Points layer for point prompts on ``image``, coloured by polarity."""
    shape = layer_shape(image)
    size = max(3.0, min(shape[-2:]) / 60)
    return Points(
        ndim=len(shape),
        name=PROMPTS_NAME,
        features={"positive": np.zeros(0, dtype=bool), "object": np.zeros(0, dtype=np.int64)},
        feature_defaults={"positive": True, "object": 1},
        face_color="positive",
        face_color_cycle={True: POSITIVE_COLOR, False: NEGATIVE_COLOR},
        border_color="white",
        size=size,
        text=_id_text(size),
        **transform_kwargs(image),
    )


def _objects(layer: Points | Shapes | None) -> np.ndarray | None:
    """The object id of each prompt of a layer, or None when it has no ``object`` feature
    (a layer of an older version: all its prompts belong to the current object)."""
    if layer is None or "object" not in layer.features:
        return None
    return np.asarray(layer.features["object"], dtype=np.int64)


def _mine(layer: Points | Shapes | None, obj_id: int | None, n: int) -> np.ndarray:
    """Which of a layer's ``n`` prompts belong to ``obj_id`` (all when None or no feature)."""
    objects = _objects(layer)
    if obj_id is None or objects is None or len(objects) != n:
        return np.ones(n, dtype=bool)
    return objects == int(obj_id)


def prompt_objects(points_layer: Points | None, box_layer: Shapes | None) -> set[int]:
    """The object ids that have prompts (points or boxes) in the layers."""
    ids: set[int] = set()
    for layer in (points_layer, box_layer):
        objects = _objects(layer)
        if objects is not None and len(objects) == len(layer.data):
            ids.update(int(i) for i in objects)
    return ids


def _set_defaults(layer: Points | Shapes, **values: Any) -> None:
    """Change some of a layer's feature defaults (napari wants every column)."""
    defaults = {k: v[0] for k, v in layer.feature_defaults.items()}
    defaults.update({k: v for k, v in values.items() if k in defaults})
    layer.feature_defaults = defaults


def preview_shape(sl: SliceInfo) -> tuple[int, ...]:
    """Data shape of a preview layer of slice ``sl``: length 1 on the not-displayed axes."""
    fixed = dict(sl.indices)
    return tuple(1 if a in fixed else n for a, n in enumerate(sl.shape_nd))


def make_preview_layer(image: Image, sl: SliceInfo) -> Labels:
    """A one-slice, one-colour, read-only Labels layer placed on slice ``sl`` of ``image``."""
    from napari.utils.colormaps import DirectLabelColormap

    colormap = DirectLabelColormap(
        color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: PREVIEW_COLOR}
    )
    preview = Labels(
        np.zeros(preview_shape(sl), dtype=np.uint8),
        name=PREVIEW_NAME,
        colormap=colormap,
        opacity=0.5,
        **transform_kwargs(image, sl),
    )
    preview.editable = False
    return preview


def make_labels_layer(image: Image) -> Labels:
    """An empty target Labels layer of the image's shape and transform.

    uint32, or uint16 for images over :data:`~.slices.LARGE_IMAGE_PIXELS` (half the memory).
    """
    shape = layer_shape(image)
    big = int(np.prod(shape, dtype=np.int64)) > LARGE_IMAGE_PIXELS
    return Labels(
        np.zeros(shape, dtype=np.uint16 if big else np.uint32),
        name=LABELS_NAME.format(image=image.name),
        **transform_kwargs(image),
    )


def slice_prompts(
    points_layer: Points | None,
    box_layer: Shapes | None,
    sl: SliceInfo,
    obj_id: int | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, Any]:
    """The prompts on a slice as the predictor takes them.

    Parameters
    ----------
    points_layer, box_layer
        The prompt layers (None: no such prompts).
    sl : SliceInfo
    obj_id : int, optional
        Only this object's prompts (default: every prompt on the slice).

    Returns
    -------
    (points, labels, box)
        ``(N, 2)`` SAM ``(x, y)`` pixels and ``(N,)`` 1/0 labels (None without points), and
        the newest box on the slice as ``(4,)`` x0, y0, x1, y1 (None without one).
    """
    points = labels = box = None
    layer = points_layer
    if layer is not None and len(layer.data):
        keep = sl.contains(layer.data) & sl.inside(layer.data)
        keep &= _mine(layer, obj_id, len(layer.data))
        if keep.any():
            points = sl.to_xy(layer.data[keep])
            positive = np.asarray(layer.features["positive"], dtype=bool)
            labels = positive[keep].astype(np.int64)
    if box_layer is not None:
        mine = _mine(box_layer, obj_id, len(box_layer.data))
        for k in reversed(range(len(box_layer.data))):
            vertices = box_layer.data[k]
            if mine[k] and len(vertices) and sl.contains(vertices).all():
                xy = sl.to_xy(vertices)
                x0, y0 = xy.min(axis=0)
                x1, y1 = xy.max(axis=0)
                if x1 - x0 >= 1 and y1 - y0 >= 1:
                    box = np.array([x0, y0, x1, y1])
                break
    return points, labels, box


def misplaced_points(
    sl: SliceInfo, data: np.ndarray, new: list[int], image_name: str
) -> tuple[list[int], str]:
    """Which of the just-added points ``new`` are not on a pixel of slice ``sl``, and why."""
    on_slice = sl.contains(data[new])
    ok = on_slice & sl.inside(data[new])
    bad = [i for i, good in zip(new, ok, strict=True) if not good]
    height, width = sl.shape
    if on_slice.all():
        message = (
            f"Click inside the image: '{image_name}' is {height} x {width} "
            "pixels (rows x columns). The point was not added."
        )
    else:
        message = (
            f"The point is not on the displayed slice ({sl.describe()}): step to its "
            "slice first. The point was not added."
        )
    return bad, message


def older_boxes(box_layer: Shapes, sl: SliceInfo, obj_id: int | None = None) -> list[int]:
    """Indices of ``obj_id``'s boxes on slice ``sl`` except the newest (one box per slice and
    object; all objects' boxes when ``obj_id`` is None)."""
    mine = _mine(box_layer, obj_id, len(box_layer.data))
    on_slice = [i for i, d in enumerate(box_layer.data) if mine[i] and sl.contains(d).all()]
    return on_slice[:-1]


def box_corners(sl: SliceInfo, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The four corners on slice ``sl`` of the rectangle with opposite data corners a and b."""
    r0, r1 = sorted((a[sl.rows_axis], b[sl.rows_axis]))
    c0, c1 = sorted((a[sl.cols_axis], b[sl.cols_axis]))
    return np.stack([sl.point(r0, c0), sl.point(r0, c1), sl.point(r1, c1), sl.point(r1, c0)])


_ACTIONS = {"added", "removed", "changed"}


def _remove(layer: Points | Shapes, indices: Any) -> None:
    """Remove some prompts of a layer, keeping its features in step with its data (a Shapes
    layer's ``data = []`` leaves its features behind)."""
    indices = [int(i) for i in indices]
    if not indices:
        return
    layer.selected_data = set()
    if isinstance(layer, Points):
        layer.remove(indices)
    else:
        layer.selected_data = set(indices)
        layer.remove_selected()


class PromptLayers:
    """The prompts (Points) and box (Shapes) layers in use, and the user's edits of them.

    Parameters
    ----------
    viewer : napari.components.ViewerModel
        Where the layers are added.
    image : callable
        The image layer being segmented (names it in messages).
    current_slice : callable
        The displayed slice of the image (raises AnnotatorError when there is none).
    on_change : callable
        Called with no argument after the user added, moved or removed prompts.
    report_problem : callable
        ``report_problem(message, show=None)`` tells the user (bad points, errors in handlers).
    """

    def __init__(
        self,
        viewer: Any,
        *,
        image: Callable[[], Image | None],
        current_slice: Callable[[], SliceInfo],
        on_change: Callable[[], None],
        report_problem: Callable[..., None],
    ) -> None:
        self.viewer = viewer
        self.points: Points | None = None
        self.box: Shapes | None = None
        self.positive = True
        self.object_id = 1  # whose prompts new clicks and boxes are, and which are decoded
        self._image = image
        self._current_slice = current_slice
        self._on_change = on_change
        self.report_problem = report_problem
        self._muted = 0

    @contextlib.contextmanager
    def muted(self) -> Iterator[None]:
        """Ignore the layers' data events caused by the program itself (not the user)."""
        self._muted += 1
        try:
            yield
        finally:
            self._muted -= 1

    def in_viewer(self, layer: Any) -> Any:
        """``layer`` if it is in the viewer, else None."""
        return layer if layer is not None and layer in self.viewer.layers else None

    def ensure(self, image: Image) -> bool:
        """Create the box and prompts layers if needed (prompts active); whether any was."""
        created = False
        if self.in_viewer(self.box) is None:
            self.box = make_box_layer(image)
            _set_defaults(self.box, object=self.object_id)
            self.box.events.data.connect(self._on_box_data)
            self.viewer.add_layer(self.box)
            self.box.mode = "add_rectangle"
            created = True
        if self.in_viewer(self.points) is None:
            self.points = make_prompts_layer(image)
            _set_defaults(self.points, object=self.object_id)
            self.points.mouse_drag_callbacks.insert(0, self._on_press)
            self.points.events.data.connect(self._on_points_data)
            self.viewer.add_layer(self.points)
            self.points.mode = "add"
            created = True
            self.viewer.layers.selection.active = self.points
        return created

    def disconnect(self) -> None:
        """Stop listening to the layers (they stay in the viewer)."""
        if self.points is not None:
            self.points.events.data.disconnect(self._on_points_data)
            if self._on_press in self.points.mouse_drag_callbacks:
                self.points.mouse_drag_callbacks.remove(self._on_press)
        if self.box is not None:
            self.box.events.data.disconnect(self._on_box_data)

    def reset(self, image: Image | None) -> None:
        """New image geometry: empty the layers and re-place them, or remove them."""
        for attr in ("points", "box"):
            helper = getattr(self, attr)
            if helper is None:
                continue
            if image is not None and helper.ndim == len(layer_shape(image)):
                with self.muted():
                    _remove(helper, range(len(helper.data)))
                for name, value in transform_kwargs(image).items():
                    setattr(helper, name, value)
            else:
                setattr(self, attr, None)
                if helper in self.viewer.layers:
                    self.viewer.layers.remove(helper)

    def clear(self, obj_id: int | None = None) -> None:
        """Remove ``obj_id``'s points and boxes, or every prompt when None (no change event)."""
        with self.muted():
            for layer in (self.points, self.box):
                if layer is not None and len(layer.data):
                    mine = _mine(layer, obj_id, len(layer.data))
                    _remove(layer, np.flatnonzero(mine))
        self._show_ids()

    def objects(self) -> set[int]:
        """The object ids that have prompts."""
        return prompt_objects(self.in_viewer(self.points), self.in_viewer(self.box))

    def set_object(self, obj_id: int, rename: bool = False) -> None:
        """Make ``obj_id`` the current object (new prompts are its, its prompts are decoded).

        With ``rename``, the current object's prompts become ``obj_id``'s when ``obj_id`` has
        none of its own (a new id for the object being prompted); otherwise they stay with
        their object.
        """
        obj_id = int(obj_id)
        old, self.object_id = self.object_id, obj_id
        if rename and old != obj_id and obj_id not in self.objects():
            with self.muted():
                for layer in (self.points, self.box):
                    objects = _objects(self.in_viewer(layer))
                    if objects is not None and len(objects) == len(layer.data):
                        features = layer.features.copy()
                        features.loc[objects == old, "object"] = obj_id
                        layer.features = features
        for layer in (self.points, self.box):
            if layer is not None and "object" in layer.features:
                _set_defaults(layer, object=obj_id)
        self._show_ids()

    def _show_ids(self) -> None:
        """Draw the object ids beside the prompts while several objects have some."""
        several = len(self.objects()) > 1
        for layer in (self.points, self.box):
            if layer is not None and "object" in layer.features and layer.text.visible != several:
                layer.text.visible = several

    def forget(self, layer: Any) -> bool:
        """``layer`` was removed from the viewer: whether it was one of these layers."""
        if layer is self.points:
            self.points = None
        elif layer is self.box:
            self.box = None
        else:
            return False
        return True

    def add_point(self, image: Image, data: np.ndarray, positive: bool) -> None:
        """Add a point at image data coordinates ``data`` with the given polarity."""
        self.ensure(image)
        layer = self.points
        previous = bool(layer.feature_defaults["positive"][0])
        _set_defaults(layer, positive=bool(positive))
        try:
            layer.add(data[None])
        finally:
            _set_defaults(layer, positive=previous)

    def add_box(self, image: Image, sl: SliceInfo, a: np.ndarray, b: np.ndarray) -> None:
        """Add the box on slice ``sl`` with opposite image data corners ``a`` and ``b``."""
        corners = box_corners(sl, a, b)
        self.ensure(image)
        self.box.add(corners, shape_type="rectangle")

    def slice_prompts(
        self, sl: SliceInfo, obj_id: int | None = None
    ) -> tuple[np.ndarray | None, np.ndarray | None, Any]:
        """An object's prompts on slice ``sl`` as the predictor takes them (see
        :func:`slice_prompts`); default: the current object's."""
        obj_id = self.object_id if obj_id is None else obj_id
        return slice_prompts(self.in_viewer(self.points), self.in_viewer(self.box), sl, obj_id)

    def _on_press(self, layer: Points, event: Any) -> None:
        """First drag callback of the prompts layer: choose the polarity of the point to add."""
        negative = getattr(event, "button", 1) == 2 or "Control" in (event.modifiers or ())
        _set_defaults(layer, positive=self.positive != negative, object=self.object_id)

    @guarded
    def _on_points_data(self, event: Any) -> None:
        action = str(getattr(event, "action", "changed")).lower()
        if self._muted or action not in _ACTIONS:
            return
        layer = self.points
        if action == "added" and layer is not None and len(layer.data):
            n = len(layer.data)
            indices = getattr(event, "data_indices", None) or (-1,)
            new = sorted({int(i) % n for i in indices if -n <= int(i) < n})
            self._drop_bad_points(layer, new)
        self._show_ids()
        self._on_change()

    def _drop_bad_points(self, layer: Points, new: list[int]) -> None:
        """Remove just-added points that are not on a pixel of the displayed slice."""
        try:
            sl = self._current_slice()
        except AnnotatorError as exc:
            bad = new
            message = str(exc)
        else:
            bad, message = misplaced_points(sl, layer.data, new, self._image().name)
        if bad:
            with self.muted():
                layer.selected_data = set()
                layer.remove(bad)
            self.report_problem(message)

    @guarded
    def _on_box_data(self, event: Any) -> None:
        action = str(getattr(event, "action", "changed")).lower()
        if self._muted or action not in _ACTIONS:
            return
        box = self.box
        if action == "added" and box is not None and len(box.data) > 1:
            try:
                sl = self._current_slice()
            except AnnotatorError:
                sl = None
            if sl is not None:
                # One box per slice and object: the newest replaces the others.
                older = older_boxes(box, sl, self.object_id)
                if older:
                    with self.muted():
                        _remove(box, older)
        self._show_ids()
        self._on_change()
