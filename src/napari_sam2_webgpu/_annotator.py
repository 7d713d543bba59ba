"""Layer wiring for interactive SAM2: prompt layers -> predictor -> preview -> Labels layer.

This module is the napari half of the plugin without its Qt half: it works on a
``napari.components.ViewerModel`` (or a full ``napari.Viewer``) and never imports Qt, so that it
can be tested and scripted without a window. :class:`Annotator` owns

- the *prompts* Points layer (left click: positive point; Control-click or right click:
  negative point; the feature ``positive`` of each point says which),
- the *box* Shapes layer (a rectangle is a box prompt; the newest one on a slice counts),
- the *preview* Labels layer (the current mask, one colour), and
- the target Labels layer, into which :meth:`Annotator.commit` writes with undo history.

Coordinates: the prompt layers share the image layer's transform (scale, translate, rotate,
shear, affine), so their data coordinates are the image's pixel coordinates, whatever the world
coordinates are. The predictor speaks SAM's ``(x, y) = (column, row)`` of the displayed 2D slice.

Slow work is delegated: a decode that is fast (tens of milliseconds, measured on the previous
click) runs at once on the calling thread, a slower one through ``run_async(fn, on_done)`` (the
widget passes a worker thread; the newest prompt wins), and encoding is requested through
:attr:`Annotator.auto_encode` (the widget runs it in a worker with a progress bar).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels, Points, Shapes
from napari.utils.events import EmitterGroup, Event
from napari.utils.notifications import show_error, show_info, show_warning
from napari.utils.transforms import Affine

from .embedding_cache import EmbeddingCache, EmbeddingKey
from .predictor import PromptError
from .preprocess import ImageError, check_image

if TYPE_CHECKING:  # pragma: no cover
    from .predictor import ImageEmbedding, Sam2Predictor

logger = logging.getLogger("napari_sam2_webgpu")

__all__ = [
    "BOX_NAME",
    "LABELS_NAME",
    "LARGE_IMAGE_PIXELS",
    "PREVIEW_NAME",
    "PROMPTS_NAME",
    "Annotator",
    "AnnotatorError",
    "DecodeResult",
    "EncodeRequest",
    "SliceInfo",
    "displayed_slice",
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
#: Slices larger than this (8k x 8k) get a memory warning and single-mask decoding.
LARGE_IMAGE_PIXELS = 64_000_000
#: Decodes expected to take at most this long run on the GUI thread; longer ones in a worker.
#: Measured on 2 CPU cores, 2048 x 2048: 70 ms click to mask on the GUI thread, 180 ms through a
#: worker thread (it competes with napari's redraw for the cores); see docs/user-guide.md.
INLINE_DECODE_SECONDS = 0.15
#: Before the first decode of an image, slices up to this size are decoded on the GUI thread.
INLINE_DECODE_PIXELS = 2048 * 2048
_ACTIONS = {"added", "removed", "changed"}


class AnnotatorError(ValueError):
    """A user-facing problem (no image, wrong layer, 3D view...); the message says what to do.

    A ``ValueError``: from the console it is what a wrong argument (a Labels layer of another
    shape, a layer that is not an image) raises, as the user guide promises.
    """


# ------------------------------------------------------------------------------------------------
# slices and coordinates


@dataclass(frozen=True)
class SliceInfo:
    """The 2D slice of an image layer that the viewer displays.

    Attributes
    ----------
    shape_nd : tuple of int
        Shape of the layer's data without the RGB(A) channel axis.
    rows_axis, cols_axis : int
        The displayed data axes, ``rows_axis < cols_axis``: rows are SAM's y, columns its x.
    indices : tuple of (int, int)
        ``(axis, index)`` of every data axis that is not displayed.
    """

    shape_nd: tuple[int, ...]
    rows_axis: int
    cols_axis: int
    indices: tuple[tuple[int, int], ...]

    @property
    def ndim(self) -> int:
        return len(self.shape_nd)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the slice."""
        return self.shape_nd[self.rows_axis], self.shape_nd[self.cols_axis]

    @property
    def key(self) -> tuple:
        """Hashable identity of the slice (for the embedding cache)."""
        return (self.indices, (self.rows_axis, self.cols_axis))

    def indexer(self, rows: slice = slice(None), cols: slice = slice(None)) -> tuple:
        """Index of the slice (or a window of it) into the layer's data."""
        out: list[Any] = [slice(None)] * self.ndim
        for axis, index in self.indices:
            out[axis] = index
        out[self.rows_axis] = rows
        out[self.cols_axis] = cols
        return tuple(out)

    def fancy_index(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, ...]:
        """Indices into the layer's data of the slice pixels ``(rows[i], cols[i])``."""
        out: list[np.ndarray] = [np.empty(0, dtype=np.intp)] * self.ndim
        for axis, index in self.indices:
            out[axis] = np.full(len(rows), index, dtype=np.intp)
        out[self.rows_axis] = np.asarray(rows)
        out[self.cols_axis] = np.asarray(cols)
        return tuple(out)

    def contains(self, coords: np.ndarray) -> np.ndarray:
        """Which of ``(N, ndim)`` data coordinates lie on this slice (not-displayed axes)."""
        coords = np.asarray(coords, dtype=float).reshape(-1, self.ndim)
        keep = np.ones(len(coords), dtype=bool)
        for axis, index in self.indices:
            keep &= np.round(coords[:, axis]) == index
        return keep

    def inside(self, coords: np.ndarray) -> np.ndarray:
        """Which of ``(N, ndim)`` data coordinates fall on a pixel of the slice."""
        coords = np.asarray(coords, dtype=float).reshape(-1, self.ndim)
        height, width = self.shape
        rows, cols = coords[:, self.rows_axis], coords[:, self.cols_axis]
        return (rows >= -0.5) & (rows < height - 0.5) & (cols >= -0.5) & (cols < width - 0.5)

    def to_xy(self, coords: np.ndarray) -> np.ndarray:
        """``(N, ndim)`` data coordinates -> ``(N, 2)`` SAM ``(x, y)`` pixels, clipped inside."""
        coords = np.asarray(coords, dtype=float).reshape(-1, self.ndim)
        height, width = self.shape
        x = np.clip(coords[:, self.cols_axis], 0, width - 1)
        y = np.clip(coords[:, self.rows_axis], 0, height - 1)
        return np.stack([x, y], axis=1)

    def expand(self, plane: np.ndarray) -> np.ndarray:
        """A ``(height, width)`` array with length-1 axes added at the not-displayed axes."""
        axes = tuple(axis for axis, _ in self.indices)
        return np.expand_dims(plane, axes) if axes else plane

    def point(self, rows: float, cols: float) -> np.ndarray:
        """The data coordinates of ``(row, col)`` on this slice."""
        out = np.zeros(self.ndim)
        for axis, index in self.indices:
            out[axis] = index
        out[self.rows_axis], out[self.cols_axis] = rows, cols
        return out

    def describe(self) -> str:
        """E.g. ``"axis 0 = 12"`` or ``"2D"``."""
        if not self.indices:
            return "2D"
        return ", ".join(f"axis {a} = {i}" for a, i in self.indices)


def check_label_value(labels: Labels, value: int) -> None:
    """Raise :class:`AnnotatorError` if ``value`` does not fit the Labels layer's dtype."""
    dtype = np.dtype(labels.data.dtype)
    if np.issubdtype(dtype, np.integer) and value > np.iinfo(dtype).max:
        raise AnnotatorError(
            f"Object id {value} does not fit the Labels layer's {dtype} data: "
            "use a Labels layer with a larger integer type."
        )


def _layer_shape(layer: Image) -> tuple[int, ...]:
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = tuple(int(s) for s in data.shape)
    return shape[:-1] if layer.rgb else shape


def _base_data(layer: Image) -> Any:
    """The full-resolution array of an image layer (level 0 when multiscale)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def displayed_slice(layer: Image, dims: Any) -> SliceInfo:
    """The 2D slice of ``layer`` that ``dims`` (``viewer.dims``) displays.

    Raises
    ------
    AnnotatorError
        3D display, fewer than two of the layer's axes displayed, or the displayed position
        outside the layer (e.g. z = 40 of a 30-slice stack shown next to a longer one).
    """
    if dims.ndisplay != 2:
        raise AnnotatorError(
            "SAM2 segments 2D slices: switch the viewer to 2D (the 2D/3D button, or Ctrl+Y)."
        )
    shape = _layer_shape(layer)
    ndim = len(shape)
    offset = dims.ndim - ndim
    displayed = sorted(d - offset for d in dims.displayed if d - offset >= 0)
    if len(displayed) != 2:
        raise AnnotatorError(
            f"The image layer '{layer.name}' is not displayed as a 2D plane in this view."
        )
    position = np.asarray(layer.world_to_data(dims.point), dtype=float)
    indices = []
    for axis in range(ndim):
        if axis in displayed:
            continue
        index = int(np.round(position[axis]))
        if not 0 <= index < shape[axis]:
            raise AnnotatorError(
                f"The displayed slice (axis {axis} at {index}) is outside the image layer "
                f"'{layer.name}' ({shape[axis]} planes on that axis)."
            )
        indices.append((axis, index))
    return SliceInfo(shape, displayed[0], displayed[1], tuple(indices))


def _transform_kwargs(layer: Any, sl: SliceInfo | None = None) -> dict[str, Any]:
    """Keyword arguments giving a new layer ``layer``'s transform.

    With ``sl``, the new layer has length-1 axes at the not-displayed axes, moved to the slice.
    """
    scale = np.asarray(layer.scale, dtype=float)
    translate = np.asarray(layer.translate, dtype=float)
    if sl is not None and sl.indices:
        offset = np.zeros(len(scale))
        for axis, index in sl.indices:
            offset[axis] = index
        linear = Affine(scale=scale, rotate=layer.rotate, shear=layer.shear).linear_matrix
        translate = translate + linear @ offset
    return {
        "scale": scale,
        "translate": translate,
        "rotate": np.asarray(layer.rotate),
        "shear": np.asarray(layer.shear),
        "affine": np.asarray(layer.affine.affine_matrix),
    }


def _same_geometry(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    if _layer_shape(a) != _layer_shape(b):
        return False
    ka, kb = _transform_kwargs(a), _transform_kwargs(b)
    return all(np.allclose(ka[k], kb[k]) for k in ka)


def _describe(obj: Any) -> str:
    """``'name'`` of a layer, or the repr of something else (messages for wrong arguments)."""
    name = getattr(obj, "name", None)
    return f"'{name}'" if isinstance(name, str) else repr(obj)


#: Non-numpy Labels data (dask, zarr) up to this many pixels is scanned for its largest label.
_SCAN_PIXELS = 2**27


def _max_label(data: Any) -> int | None:
    """The largest label of a Labels layer's data, or None when it is too costly to find."""
    if isinstance(data, np.ndarray):
        return int(data.max(initial=0))
    size = int(np.prod(getattr(data, "shape", ()), dtype=np.int64))
    if size == 0:
        return 0
    if size > _SCAN_PIXELS:
        return None
    return int(np.asarray(data).max())


def _layer_id(layer: Any) -> Any:
    return getattr(layer, "unique_id", None) or id(layer)


def _check_plane(layer: Image, sl: SliceInfo) -> None:
    """Validate the slice's shape and dtype without reading pixels (ImageError if unusable)."""
    data = _base_data(layer)
    shape = sl.shape + ((int(data.shape[-1]),) if layer.rgb else ())
    # A zero-strided stand-in: check_image looks at shape and dtype only.
    dummy = np.lib.stride_tricks.as_strided(
        np.zeros(1, dtype=np.dtype(data.dtype)), shape=shape, strides=(0,) * len(shape)
    )
    check_image(dummy, rgb=bool(layer.rgb))


# ------------------------------------------------------------------------------------------------
# requests and results


@dataclass
class EncodeRequest:
    """What an encode needs; :meth:`load` reads the pixels (call it in the worker thread)."""

    layer: Image
    layer_id: Any
    slice: SliceInfo
    contrast_limits: tuple[float, float] | None
    rgb: bool

    def load(self) -> np.ndarray:
        """The slice's pixels as a numpy array (reads dask/zarr data)."""
        return np.asarray(_base_data(self.layer)[self.slice.indexer()])

    def compute(self, predictor: Sam2Predictor) -> ImageEmbedding:
        """Read the slice and encode it (slow: seconds on a CPU)."""
        return predictor.compute_embedding(
            self.load(), contrast_limits=self.contrast_limits, rgb=self.rgb
        )

    def key(self, model: str) -> EmbeddingKey:
        return EmbeddingKey(self.layer_id, self.slice.key, self.contrast_limits, model)


@dataclass
class DecodeRequest:
    generation: int
    slice: SliceInfo
    points: np.ndarray | None
    labels: np.ndarray | None
    box: np.ndarray | None
    multimask: bool
    started: float = 0.0
    inline: bool = False
    #: The slice's embedding, taken when the request is made: the worker decodes against it,
    #: so a mask can never mix two images when the GUI thread switches slices meanwhile.
    embedding: ImageEmbedding | None = None


@dataclass
class DecodeResult:
    """A decoded mask (or the reason there is none)."""

    request: DecodeRequest
    mask: np.ndarray | None = None
    score: float | None = None
    seconds: float = 0.0
    error: str | None = None


def _guarded(method: Callable) -> Callable:
    """Event callbacks: user-facing errors become notifications, never traceback dialogs."""

    @functools.wraps(method)
    def wrapper(self: Annotator, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (AnnotatorError, ImageError, PromptError) as exc:
            self._problem(str(exc))
        except Exception as exc:  # a bug: keep the viewer usable and say what happened
            logger.exception("napari-sam2-webgpu: error in %s", method.__name__)
            self._problem(f"SAM2: unexpected error ({type(exc).__name__}: {exc}).", show_error)
        return None

    return wrapper


def _model_key(predictor: Any) -> str:
    return f"{predictor.name}|{predictor.encoder_path or id(predictor)}"


def _run_now(fn: Callable[[], Any], on_done: Callable[[Any], None]) -> None:
    on_done(fn())


# ------------------------------------------------------------------------------------------------
# the annotator


class Annotator:
    """Interactive SAM2 segmentation of an image layer into a Labels layer.

    Parameters
    ----------
    viewer : napari.components.ViewerModel
        The viewer (a ``napari.Viewer`` is one).
    cache : EmbeddingCache, optional
        Where embeddings are kept per layer, slice, contrast and model.
    run_async : callable, optional
        ``run_async(fn, on_done)`` runs ``fn()`` (which never raises) and calls
        ``on_done(result)`` on the GUI thread. Default: synchronously.
    defer : callable, optional
        ``defer(fn)`` calls ``fn()`` soon, outside the current event (the widget uses a Qt
        timer), for work that must not nest in napari's layer removal. Default: at once.
    clock : callable, optional
        Seconds as a float, for timing decodes (which decides where the next one runs, see
        ``inline_decode_seconds``). Default: :func:`time.perf_counter`; tests inject their own.

    Attributes
    ----------
    events : EmitterGroup
        ``status`` (something shown in the widget changed), ``object_id``, ``polarity``,
        ``layers`` (a layer in use was created, replaced or removed), ``prompts`` (points or
        boxes were added, moved or removed, on any slice), ``error`` (a problem was shown to the
        user; the event's ``message`` is the whole text) and ``decoded`` (a new mask is in the
        preview).
    auto_encode : callable or None
        Called with no argument when prompts need an embedding that is not there; the widget
        starts an encode. When None, the user is told to encode.
    multimask : bool
        Ask the decoder for three candidate masks and show the best-scoring one.
    overwrite : bool
        Let :meth:`commit` paint over existing labels (default: background pixels only).
    inline_decode_seconds : float
        Decodes expected to be faster than this run directly on the GUI thread (lowest
        latency); slower ones (big images, slow CPUs) run through ``run_async`` with the newest
        prompt winning. 0 sends every decode to ``run_async``. The expectation is the duration
        of the previous decode of the image, measured with ``clock``.
    last_decode_seconds, last_latency_seconds : float or None
        Time of the most recent decode (decoder and upsampling), and from the prompt change to
        the preview being updated.
    last_score : float or None
        Predicted IoU of the mask in the preview.
    """

    def __init__(
        self,
        viewer: Any,
        *,
        cache: EmbeddingCache | None = None,
        run_async: Callable[[Callable[[], Any], Callable[[Any], None]], None] | None = None,
        defer: Callable[[Callable[[], None]], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.viewer = viewer
        self.cache = cache if cache is not None else EmbeddingCache()
        self._run_async = run_async or _run_now
        self._defer = defer or (lambda fn: fn())
        self._clock = clock or time.perf_counter
        self.events = EmitterGroup(
            source=self,
            status=Event,
            object_id=Event,
            polarity=Event,
            layers=Event,
            prompts=Event,
            error=Event,
            decoded=Event,
        )
        self.auto_encode: Callable[[], None] | None = None
        self.predictor: Sam2Predictor | None = None
        self.multimask = True
        self.overwrite = False
        self.inline_decode_seconds = INLINE_DECODE_SECONDS
        self._decode_estimate: float | None = None
        self._positive = True
        self._object_id = 1
        self._image: Image | None = None
        self._prompts: Points | None = None
        self._box: Shapes | None = None
        self._preview: Labels | None = None
        self._labels: Labels | None = None
        self._slice: SliceInfo | None = None  # slice whose embedding the predictor holds
        self._embedding_key: EmbeddingKey | None = None
        self._generation = 0
        self._in_flight = False
        self._pending = False
        self._preview_slice: SliceInfo | None = None
        self._has_preview = False
        self._warned_large: set[Any] = set()
        self._closed = False
        self._muted = 0
        self._last_slice_key: tuple | None = None
        self.last_decode_seconds: float | None = None
        self.last_latency_seconds: float | None = None
        self.last_score: float | None = None

        viewer.layers.events.removed.connect(self._on_layer_removed)
        viewer.dims.events.current_step.connect(self._on_dims_changed)
        viewer.dims.events.ndisplay.connect(self._on_dims_changed)
        viewer.dims.events.order.connect(self._on_dims_changed)

    def close(self) -> None:
        """Disconnect from the viewer and its layers (the layers stay)."""
        self._closed = True
        for emitter, cb in (
            (self.viewer.layers.events.removed, self._on_layer_removed),
            (self.viewer.dims.events.current_step, self._on_dims_changed),
            (self.viewer.dims.events.ndisplay, self._on_dims_changed),
            (self.viewer.dims.events.order, self._on_dims_changed),
        ):
            emitter.disconnect(cb)
        self._disconnect_image()
        if self._prompts is not None:
            self._prompts.events.data.disconnect(self._on_prompts_data)
            if self._on_prompts_press in self._prompts.mouse_drag_callbacks:
                self._prompts.mouse_drag_callbacks.remove(self._on_prompts_press)
        if self._box is not None:
            self._box.events.data.disconnect(self._on_box_data)

    def _problem(self, message: str, show: Callable[[str], None] | None = None) -> None:
        """Tell the user about a problem (a warning by default) and emit ``events.error``."""
        (show or show_warning)(message)
        self.events.error(message=message)

    @contextlib.contextmanager
    def _mute(self) -> Iterator[None]:
        """Ignore the prompt layers' data events caused by the annotator itself."""
        self._muted += 1
        try:
            yield
        finally:
            self._muted -= 1

    # -- layers in use ----------------------------------------------------------------------------
    @property
    def image_layer(self) -> Image | None:
        """The image layer being segmented."""
        return self._image

    @property
    def prompts_layer(self) -> Points | None:
        """The Points layer of point prompts (created on demand)."""
        return self._prompts

    @property
    def box_layer(self) -> Shapes | None:
        """The Shapes layer of box prompts (created on demand)."""
        return self._box

    @property
    def preview_layer(self) -> Labels | None:
        """The Labels layer showing the current mask (not meant to be saved)."""
        return self._preview

    @property
    def labels_layer(self) -> Labels | None:
        """The Labels layer commits go to; None means a new one is created at the first commit."""
        return self._labels

    def set_image_layer(self, layer: Image | None) -> None:
        """Segment ``layer`` from now on. Prompts are cleared unless the geometry is the same."""
        if layer is self._image:
            return
        if layer is not None and not isinstance(layer, Image):
            raise AnnotatorError(
                f"{_describe(layer)} is not an image layer: choose an Image layer "
                "(e.g. viewer.layers['name'])."
            )
        old = self._image
        self._disconnect_image()
        self._image = layer
        if layer is not None:
            layer.events.data.connect(self._on_image_data)
        if not _same_geometry(old, layer):
            self._reset_helpers(layer)
            if (
                self._labels is not None
                and layer is not None
                and not self._labels_fit(self._labels)
            ):
                # A new target (the next commit creates one): its object ids start afresh.
                self._labels = None
                self._set_object_id(1)
        self._slice = None
        self._embedding_key = None
        self._decode_estimate = None
        self.sync_embedding()
        self.events.layers()
        self.request_decode()

    def set_labels_layer(self, layer: Labels | None) -> None:
        """Commit into ``layer`` (None: create a new Labels layer at the next commit).

        Raises
        ------
        AnnotatorError
            ``layer`` is not a Labels layer, or its shape differs from the image's.
        """
        if layer is not None:
            if not isinstance(layer, Labels) or layer is self._preview:
                raise AnnotatorError(
                    f"{_describe(layer)} cannot receive labels: pick a Labels layer."
                )
            if self._image is not None and not self._labels_fit(layer):
                raise AnnotatorError(self._shape_mismatch(layer))
        self._labels = layer
        # Another target: its own next free id, scanning lazy (dask, zarr) data once here.
        self._set_object_id(self.next_free_id(scan=True))
        self.events.layers()

    def _labels_fit(self, layer: Labels) -> bool:
        return self._image is None or tuple(layer.data.shape) == _layer_shape(self._image)

    def _shape_mismatch(self, layer: Labels) -> str:
        return (
            f"The Labels layer '{layer.name}' has shape {tuple(layer.data.shape)} but the image "
            f"'{self._image.name}' has shape {_layer_shape(self._image)}: choose a Labels layer of "
            "the image's shape, or 'New Labels layer'. Nothing was written."
        )

    def _disconnect_image(self) -> None:
        if self._image is not None:
            self._image.events.data.disconnect(self._on_image_data)

    def _reset_helpers(self, layer: Image | None) -> None:
        """New image geometry: clear prompts and re-place (or drop) the helper layers."""
        for attr in ("_prompts", "_box", "_preview"):
            helper = getattr(self, attr)
            if helper is None:
                continue
            if layer is not None and helper.ndim == len(_layer_shape(layer)) and attr != "_preview":
                with self._mute():
                    helper.data = np.empty((0, helper.ndim)) if attr == "_prompts" else []
                for name, value in _transform_kwargs(layer).items():
                    setattr(helper, name, value)
            else:
                self._remove_helper(attr)
        self._clear_preview()

    def _remove_helper(self, attr: str) -> None:
        helper = getattr(self, attr)
        setattr(self, attr, None)
        if helper is not None and helper in self.viewer.layers:
            self.viewer.layers.remove(helper)

    # -- helper layers ----------------------------------------------------------------------------
    def _require_image(self) -> Image:
        if self._image is None:
            raise AnnotatorError("Open an image and choose it in the SAM2 widget first.")
        return self._image

    def ensure_prompt_layers(self) -> Points:
        """Create the box and prompts layers if needed; the prompts layer becomes active."""
        image = self._require_image()
        shape = _layer_shape(image)
        created = False
        if self._box is None or self._box not in self.viewer.layers:
            self._box = Shapes(
                ndim=len(shape),
                name=BOX_NAME,
                edge_color=BOX_COLOR,
                face_color="transparent",
                edge_width=max(1.0, min(shape[-2:]) / 400),
                **_transform_kwargs(image),
            )
            self._box.events.data.connect(self._on_box_data)
            self.viewer.add_layer(self._box)
            self._box.mode = "add_rectangle"
            created = True
        if self._prompts is None or self._prompts not in self.viewer.layers:
            self._prompts = Points(
                ndim=len(shape),
                name=PROMPTS_NAME,
                features={"positive": np.zeros(0, dtype=bool)},
                feature_defaults={"positive": True},
                face_color="positive",
                face_color_cycle={True: POSITIVE_COLOR, False: NEGATIVE_COLOR},
                border_color="white",
                size=max(3.0, min(shape[-2:]) / 60),
                **_transform_kwargs(image),
            )
            self._prompts.mouse_drag_callbacks.insert(0, self._on_prompts_press)
            self._prompts.events.data.connect(self._on_prompts_data)
            self.viewer.add_layer(self._prompts)
            self._prompts.mode = "add"
            created = True
            self.viewer.layers.selection.active = self._prompts
        if created:
            self.events.layers()
        return self._prompts

    def _ensure_preview(self, sl: SliceInfo) -> Labels:
        image = self._require_image()
        data_shape = tuple(1 if a in dict(sl.indices) else n for a, n in enumerate(sl.shape_nd))
        preview = self._preview
        if preview is None or preview not in self.viewer.layers or preview.data.shape != data_shape:
            if preview is not None and preview in self.viewer.layers:
                self.viewer.layers.remove(preview)
            from napari.utils.colormaps import DirectLabelColormap

            colormap = DirectLabelColormap(
                color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: PREVIEW_COLOR}
            )
            preview = Labels(
                np.zeros(data_shape, dtype=np.uint8),
                name=PREVIEW_NAME,
                colormap=colormap,
                opacity=0.5,
                **_transform_kwargs(image, sl),
            )
            preview.editable = False
            self._preview = preview
            index = self._insert_index_above_targets()
            active = self.viewer.layers.selection.active
            self.viewer.layers.insert(index, preview)
            if active is not None and active in self.viewer.layers:
                self.viewer.layers.selection.active = active
            self.events.layers()
        elif self._preview_slice is None or self._preview_slice.key != sl.key:
            preview.translate = _transform_kwargs(image, sl)["translate"]
        self._preview_slice = sl
        return preview

    def _insert_index_above_targets(self) -> int:
        """Index just above the image and the target Labels layer, below the prompt layers."""
        layers = self.viewer.layers
        index = 0
        for layer in (self._image, self._labels):
            if layer is not None and layer in layers:
                index = max(index, layers.index(layer) + 1)
        return index

    def ensure_labels_layer(self) -> Labels:
        """The target Labels layer, created (same shape and transform as the image) if needed."""
        image = self._require_image()
        if self._labels is not None and self._labels in self.viewer.layers:
            if not self._labels_fit(self._labels):
                raise AnnotatorError(self._shape_mismatch(self._labels))
            return self._labels
        shape = _layer_shape(image)
        big = int(np.prod(shape, dtype=np.int64)) > LARGE_IMAGE_PIXELS
        labels = Labels(
            np.zeros(shape, dtype=np.uint16 if big else np.uint32),
            name=LABELS_NAME.format(image=image.name),
            **_transform_kwargs(image),
        )
        active = self.viewer.layers.selection.active
        self.viewer.layers.insert(self.viewer.layers.index(image) + 1, labels)
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active
        self._labels = labels
        self.events.layers()
        return labels

    # -- embeddings -------------------------------------------------------------------------------
    @property
    def model_key(self) -> str | None:
        """Identity of the loaded model in cache keys."""
        return None if self.predictor is None else _model_key(self.predictor)

    def current_slice(self) -> SliceInfo:
        """The displayed slice of the image layer (AnnotatorError when there is none)."""
        return displayed_slice(self._require_image(), self.viewer.dims)

    def _contrast(self) -> tuple[float, float] | None:
        limits = getattr(self._image, "contrast_limits", None)
        return None if limits is None else (float(limits[0]), float(limits[1]))

    def encode_request(self) -> EncodeRequest:
        """Describe the encoding of the displayed slice (validated, pixels not read yet).

        Raises
        ------
        AnnotatorError, ImageError
            No image, 3D view, slice outside the layer, or pixels SAM2 cannot use.
        """
        image = self._require_image()
        sl = self.current_slice()
        _check_plane(image, sl)
        height, width = sl.shape
        if height * width > LARGE_IMAGE_PIXELS and _layer_id(image) not in self._warned_large:
            self._warned_large.add(_layer_id(image))
            show_warning(
                f"'{image.name}' is {height:,} x {width:,} pixels: encoding is fine, but every "
                f"mask is full size ({height * width / 2**20:,.0f} MiB per mask), so clicks "
                "decode slower and multimask is off. Crop the image for faster interaction."
            )
        return EncodeRequest(image, _layer_id(image), sl, self._contrast(), bool(image.rgb))

    def finish_encode(
        self,
        request: EncodeRequest,
        embedding: ImageEmbedding,
        predictor: Sam2Predictor,
        *,
        apply: bool = True,
    ) -> bool:
        """Store an embedding computed by ``predictor``; make it current if it is still wanted.

        Parameters
        ----------
        apply : bool
            False only caches it (e.g. the encode was cancelled).

        Returns
        -------
        bool
            Whether the embedding is now the current one (same model, layer and slice).
        """
        if request.layer not in self.viewer.layers:
            return False  # the layer was removed while encoding
        self.cache.put(request.key(_model_key(predictor)), embedding)
        if not apply or request.layer is not self._image or predictor is not self.predictor:
            return False
        try:
            sl = self.current_slice()
        except AnnotatorError:
            return False
        if sl.key != request.slice.key or self.predictor is None:
            return False
        self.predictor.set_embedding(embedding)
        self._slice, self._embedding_key = sl, request.key(_model_key(predictor))
        self.ensure_prompt_layers()
        self.events.status()
        self.request_decode()
        return True

    def sync_embedding(self) -> bool:
        """Make the displayed slice's cached embedding current; whether one is ready."""
        self._slice = None
        if self._image is None or self.predictor is None:
            return False
        try:
            sl = self.current_slice()
        except AnnotatorError:
            return False
        model = self.model_key
        key = EmbeddingKey(_layer_id(self._image), sl.key, self._contrast(), model)
        if key == self._embedding_key and self.predictor.embedding is not None:
            self._slice = sl
            return True
        candidates = [key] + [
            # The same slice encoded with other contrast limits is still a usable embedding.
            k
            for k in reversed(self.cache.keys())
            if k.layer_id == key.layer_id and k.slice_key == sl.key and k.model == model
        ]
        for candidate in candidates:
            embedding = self.cache.get(candidate)
            if embedding is not None:
                self.predictor.set_embedding(embedding)
                self._slice, self._embedding_key = sl, candidate
                return True
        return False

    def has_exact_embedding(self) -> bool:
        """Whether the current embedding is for the displayed slice *and* contrast limits."""
        if not self.is_ready or self._embedding_key is None:
            return False
        return self._embedding_key.contrast_limits == self._contrast()

    @property
    def is_ready(self) -> bool:
        """Whether the displayed slice is encoded (clicks decode at once)."""
        if self._slice is None or self.predictor is None or self._image is None:
            return False
        try:
            return self.current_slice().key == self._slice.key
        except AnnotatorError:
            return False

    def set_predictor(self, predictor: Sam2Predictor | None) -> None:
        """Use another model; its cached embeddings (if any) are reused."""
        self.predictor = predictor
        self._embedding_key = None
        self._decode_estimate = None
        self.sync_embedding()
        self.events.status()
        self.request_decode()

    # -- prompts ----------------------------------------------------------------------------------
    @property
    def positive(self) -> bool:
        """Polarity of a plain left click (Control-click and right click add the other one)."""
        return self._positive

    @positive.setter
    def positive(self, value: bool) -> None:
        self._positive = bool(value)
        self.events.polarity(value=self._positive)

    def toggle_polarity(self) -> bool:
        """Swap positive and negative for plain clicks; returns the new polarity."""
        self.positive = not self._positive
        return self._positive

    def _on_prompts_press(self, layer: Points, event: Any) -> None:
        """First drag callback of the prompts layer: choose the polarity of the point to add."""
        negative = getattr(event, "button", 1) == 2 or "Control" in (event.modifiers or ())
        layer.feature_defaults = {"positive": self._positive != negative}

    def _world_to_data(self, position: Sequence[float]) -> np.ndarray:
        """A world position (full or only the displayed axes) -> image data coordinates."""
        image = self._require_image()
        pos = np.asarray(position, dtype=float).ravel()
        dims = self.viewer.dims
        if len(pos) == 2 and dims.ndim > 2:
            full = np.asarray(dims.point, dtype=float)
            full[list(dims.displayed)] = pos
            pos = full
        elif len(pos) < image.ndim:
            raise ValueError(
                f"position has {len(pos)} coordinates; give the {dims.ndim} world coordinates "
                f"in napari's axis order (as event.position), or the 2 displayed ones."
            )
        return np.asarray(image.world_to_data(pos), dtype=float)

    def add_point(self, position: Sequence[float], positive: bool = True) -> None:
        """Add a point prompt at a world ``position`` (napari's axis order) and decode."""
        data = self._world_to_data(position)
        layer = self.ensure_prompt_layers()
        previous = bool(layer.feature_defaults["positive"][0])
        layer.feature_defaults = {"positive": bool(positive)}
        try:
            layer.add(data[None])
        finally:
            layer.feature_defaults = {"positive": previous}

    def add_box(self, start: Sequence[float], end: Sequence[float]) -> None:
        """Add a box prompt between two opposite world corners and decode."""
        a, b = self._world_to_data(start), self._world_to_data(end)
        sl = self.current_slice()
        r0, r1 = sorted((a[sl.rows_axis], b[sl.rows_axis]))
        c0, c1 = sorted((a[sl.cols_axis], b[sl.cols_axis]))
        corners = np.stack([sl.point(r0, c0), sl.point(r0, c1), sl.point(r1, c1), sl.point(r1, c0)])
        self.ensure_prompt_layers()
        self._box.add(corners, shape_type="rectangle")

    @_guarded
    def _on_prompts_data(self, event: Any) -> None:
        action = str(getattr(event, "action", "changed")).lower()
        if self._muted or action not in _ACTIONS:
            return
        layer = self._prompts
        if action == "added" and layer is not None and len(layer.data):
            n = len(layer.data)
            indices = getattr(event, "data_indices", None) or (-1,)
            new = sorted({int(i) % n for i in indices if -n <= int(i) < n})
            self._drop_bad_points(layer, new)
        self.request_decode()
        self.events.prompts()

    def _drop_bad_points(self, layer: Points, new: list[int]) -> None:
        """Remove just-added points that are not on a pixel of the displayed slice."""
        try:
            sl = self.current_slice()
        except AnnotatorError as exc:
            bad = new
            message = str(exc)
        else:
            on_slice = sl.contains(layer.data[new])
            ok = on_slice & sl.inside(layer.data[new])
            bad = [i for i, good in zip(new, ok, strict=True) if not good]
            height, width = sl.shape
            if on_slice.all():
                message = (
                    f"Click inside the image: '{self._image.name}' is {height} x {width} "
                    "pixels (rows x columns). The point was not added."
                )
            else:
                message = (
                    f"The point is not on the displayed slice ({sl.describe()}): step to its "
                    "slice first. The point was not added."
                )
        if bad:
            with self._mute():
                layer.selected_data = set()
                layer.remove(bad)
            self._problem(message)

    @_guarded
    def _on_box_data(self, event: Any) -> None:
        action = str(getattr(event, "action", "changed")).lower()
        if self._muted or action not in _ACTIONS:
            return
        box = self._box
        if action == "added" and box is not None and len(box.data) > 1:
            try:
                sl = self.current_slice()
            except AnnotatorError:
                sl = None
            if sl is not None:
                # One box per slice: the newest replaces the others.
                on_slice = [i for i, d in enumerate(box.data) if sl.contains(d).all()]
                older = on_slice[:-1]
                if older:
                    with self._mute():
                        box.selected_data = set(older)
                        box.remove_selected()
        self.request_decode()
        self.events.prompts()

    def slice_prompts(self, sl: SliceInfo) -> tuple[np.ndarray | None, np.ndarray | None, Any]:
        """The prompts on a slice as the predictor takes them.

        Returns
        -------
        (points, labels, box)
            ``(N, 2)`` SAM ``(x, y)`` pixels and ``(N,)`` 1/0 labels (None without points), and
            the newest box on the slice as ``(4,)`` x0, y0, x1, y1 (None without one).
        """
        points = labels = box = None
        layer = self._prompts
        if layer is not None and layer in self.viewer.layers and len(layer.data):
            keep = sl.contains(layer.data) & sl.inside(layer.data)
            if keep.any():
                points = sl.to_xy(layer.data[keep])
                positive = np.asarray(layer.features["positive"], dtype=bool)
                labels = positive[keep].astype(np.int64)
        shapes = self._box
        if shapes is not None and shapes in self.viewer.layers:
            for vertices in reversed(list(shapes.data)):
                if len(vertices) and sl.contains(vertices).all():
                    xy = sl.to_xy(vertices)
                    x0, y0 = xy.min(axis=0)
                    x1, y1 = xy.max(axis=0)
                    if x1 - x0 >= 1 and y1 - y0 >= 1:
                        box = np.array([x0, y0, x1, y1])
                    break
        return points, labels, box

    # -- decoding ---------------------------------------------------------------------------------
    @property
    def decoding(self) -> bool:
        """Whether a decode is running or waiting."""
        return self._in_flight or self._pending

    def request_decode(self) -> None:
        """Decode the displayed slice's prompts (latest wins) and update the preview."""
        if self._closed:
            return
        self._generation += 1
        if self._in_flight:
            self._pending = True
            return
        self._start_decode()

    def _start_decode(self) -> None:
        request = self._make_request()
        if request is None:
            return
        self._in_flight = True
        predictor = self.predictor
        request.inline = self._decode_inline(request)
        run = _run_now if request.inline else self._run_async
        run(lambda: self._decode(predictor, request), self._decode_done)

    def _decode_inline(self, request: DecodeRequest) -> bool:
        """Whether this decode is fast enough to run on the calling (GUI) thread."""
        if self.inline_decode_seconds <= 0:
            return False
        if self._decode_estimate is None:
            height, width = request.slice.shape
            return height * width <= INLINE_DECODE_PIXELS
        return self._decode_estimate <= self.inline_decode_seconds

    def _make_request(self) -> DecodeRequest | None:
        if self._image is None:
            self._clear_preview()
            return None
        try:
            sl = self.current_slice()
        except AnnotatorError:
            self._clear_preview()
            return None
        points, labels, box = self.slice_prompts(sl)
        if points is None and box is None:
            self._clear_preview()
            return None
        if not self.is_ready:
            self._clear_preview()
            if self.auto_encode is not None:
                self.auto_encode()  # the widget encodes, or says why it cannot
            elif self.predictor is None:
                self._problem(
                    "No SAM2 model is loaded yet: choose one in the SAM2 widget and press "
                    "Encode. Your prompts are kept and decoded once the image is encoded."
                )
            else:
                show_info("This slice is not encoded yet: press Encode in the SAM2 widget.")
            return None
        height, width = sl.shape
        multimask = self.multimask and height * width <= LARGE_IMAGE_PIXELS
        return DecodeRequest(
            self._generation,
            sl,
            points,
            labels,
            box,
            multimask,
            started=self._clock(),
            embedding=self.predictor.embedding,
        )

    def _decode(self, predictor: Sam2Predictor, request: DecodeRequest) -> DecodeResult:
        """Runs on the worker thread; never raises."""
        clock = self._clock
        start = clock()
        try:
            # Only the best mask is upsampled to full size: what the preview shows.
            mask, score, _ = predictor.predict_best(
                point_coords=request.points,
                point_labels=request.labels,
                box=request.box,
                multimask_output=request.multimask,
                embedding=request.embedding,
            )
            return DecodeResult(request, mask, score, clock() - start, None)
        except (PromptError, ValueError) as exc:
            return DecodeResult(request, error=str(exc))
        except Exception as exc:
            logger.exception("napari-sam2-webgpu: decoding failed")
            return DecodeResult(request, error=f"Decoding failed: {type(exc).__name__}: {exc}")

    def _decode_done(self, result: DecodeResult) -> None:
        self._in_flight = False
        if self._closed:
            return
        if result.mask is not None:
            self._decode_estimate = result.seconds
        if self._pending:
            self._pending = False
            self._start_decode()
            return
        if result.request.generation != self._generation:
            return
        if result.error:
            self._problem(result.error)
            self._clear_preview()
            return
        try:
            self._show_preview(result)
        except Exception as exc:  # e.g. the image was removed in the meantime
            logger.exception("napari-sam2-webgpu: preview update failed")
            self._problem(
                f"SAM2: could not show the mask ({type(exc).__name__}: {exc}).", show_error
            )

    def _show_preview(self, result: DecodeResult) -> None:
        sl = result.request.slice
        preview = self._ensure_preview(sl)
        np.copyto(preview.data, sl.expand(result.mask), casting="unsafe")
        preview.refresh()
        self._has_preview = True
        self.last_score = result.score
        self.last_decode_seconds = result.seconds
        self.last_latency_seconds = self._clock() - result.request.started
        self.events.status()
        self.events.decoded()

    def _clear_preview(self) -> None:
        if self._has_preview and self._preview is not None:
            self._preview.data[...] = 0
            self._preview.refresh()
        self._has_preview = False
        self.last_score = None

    @property
    def preview_mask(self) -> np.ndarray | None:
        """The current mask as a 2D boolean array of the displayed slice, or None."""
        if not self._has_preview or self._preview is None:
            return None
        return np.asarray(self._preview.data).reshape(self._preview_slice.shape).astype(bool)

    # -- commit, clear, undo ----------------------------------------------------------------------
    @property
    def object_id(self) -> int:
        """The label value the next commit writes."""
        return self._object_id

    @object_id.setter
    def object_id(self, value: int) -> None:
        value = int(value)
        if value < 1:
            raise ValueError(f"object ids start at 1 (0 is background), got {value}")
        self._set_object_id(value)

    def _set_object_id(self, value: int) -> None:
        self._object_id = int(value)
        self.events.object_id(value=self._object_id)

    def next_free_id(self, scan: bool = False) -> int:
        """One more than the largest label in the target layer (1 when there is none).

        Parameters
        ----------
        scan : bool
            Also read Labels data that is not a numpy array (dask, zarr; up to 128 Mi pixels)
            to find its largest label; otherwise such a layer gets the current id + 1.
        """
        labels = self._labels
        if labels is None or labels not in self.viewer.layers:
            return 1
        data = labels.data
        largest = _max_label(data) if scan or isinstance(data, np.ndarray) else None
        if largest is None:  # not scanned: at least past the ids used so far
            return max(self._object_id + 1, 1)
        return largest + 1

    def next_object(self) -> int:
        """Move the object id to the next free id; returns it."""
        self.object_id = self.next_free_id()
        return self._object_id

    def commit(self) -> int:
        """Write the preview mask into the target Labels layer under :attr:`object_id`.

        Only background pixels are painted unless :attr:`overwrite` is set. The write is one
        entry of the Labels layer's undo history. Afterwards the prompts are cleared and the
        object id moves to the next free id.

        Returns
        -------
        int
            Number of pixels written (0 when nothing was).

        Raises
        ------
        AnnotatorError
            No mask, no image, or a Labels layer of another shape (nothing is written).
        """
        mask = self.preview_mask
        if mask is None or not mask.any():
            raise AnnotatorError(
                "Nothing to commit: click on an object (or draw a box) and wait for the mask."
            )
        sl = self._preview_slice
        labels = self.ensure_labels_layer()
        value = self._object_id
        check_label_value(labels, value)
        painted = self._paint(labels, sl, mask, value)
        if painted == 0:
            raise AnnotatorError(
                "Nothing was written: every pixel of the mask already has a label. Tick "
                "'Overwrite existing labels' to replace them."
            )
        self.clear()
        self.next_object()
        self.events.status()
        return painted

    def _paint(self, labels: Labels, sl: SliceInfo, mask: np.ndarray, value: int) -> int:
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        window = mask[r0:r1, c0:c1]
        # rows_axis < cols_axis, so the 2D window comes out as (rows, columns).
        region = np.asarray(labels.data[sl.indexer(slice(r0, r1), slice(c0, c1))])
        target = window & (region != value) if self.overwrite else window & (region == 0)
        rr, cc = np.nonzero(target)
        if rr.size == 0:
            return 0
        labels.data_setitem(sl.fancy_index(rr + r0, cc + c0), value)
        return int(rr.size)

    def clear(self) -> None:
        """Remove all point and box prompts and the preview."""
        with self._mute():
            if self._prompts is not None and len(self._prompts.data):
                self._prompts.selected_data = set()
                self._prompts.data = np.empty((0, self._prompts.ndim))
            if self._box is not None and len(self._box.data):
                self._box.selected_data = set()
                self._box.data = []
        self._generation += 1  # any decode in flight is now stale
        self._clear_preview()
        self.events.prompts()
        self.events.status()

    def undo(self) -> bool:
        """Undo the last change of the target Labels layer (napari's own undo history).

        Returns
        -------
        bool
            Whether there was something to undo.
        """
        labels = self._labels
        if labels is None or labels not in self.viewer.layers:
            return False
        history = getattr(labels, "_undo_history", None)
        if history is not None and len(history) == 0:
            return False
        labels.undo()
        self.next_object()
        self.events.status()
        return True

    # -- viewer events ----------------------------------------------------------------------------
    @_guarded
    def _on_dims_changed(self, event: Any = None) -> None:
        try:
            sl = self.current_slice() if self._image is not None else None
        except AnnotatorError:
            sl = None
        key = None if sl is None else sl.key
        if key == self._last_slice_key:
            return  # e.g. the range of the displayed axes changed: same slice
        self._last_slice_key = key
        self.sync_embedding()
        self._generation += 1
        self._clear_preview()
        self.events.status()
        if sl is not None and self.is_ready:
            self.request_decode()

    def _on_image_data(self, event: Any = None) -> None:
        if self._image is not None:
            self.cache.drop_layer(_layer_id(self._image))
        self._slice = None
        self._embedding_key = None
        self._clear_preview()
        self.events.status()

    def _after_image_removed(self, name: str) -> None:
        if self._closed or self._image is not None:
            return
        self._reset_helpers(None)
        self.events.layers()
        self.events.status()
        self._tell(
            f"The image layer '{name}' was removed: its prompts and encodings are gone. "
            "Committed labels are kept."
        )

    def _tell(self, message: str, show: Callable[[str], None] | None = None) -> None:
        """Notify (a warning by default), unless the viewer is closing (all its layers gone)."""
        if not self._closed and len(self.viewer.layers):
            (show or show_warning)(message)

    @_guarded
    def _on_layer_removed(self, event: Any) -> None:
        layer = event.value
        if layer is self._image:
            # Removing the helper layers now would nest in napari's own removal loop: defer.
            self.cache.drop_layer(_layer_id(layer))
            self._disconnect_image()
            self._image = None
            self._slice = self._embedding_key = self._last_slice_key = None
            self._generation += 1
            self._defer(functools.partial(self._after_image_removed, layer.name))
        elif layer is self._labels:
            self._labels = None
            self._set_object_id(1)
            message = (
                f"The Labels layer '{layer.name}' was removed; the next commit creates a new "
                "one. Other Labels layers are untouched."
            )
            self._defer(lambda: self._tell(message, show_info))
        elif layer is self._prompts:
            self._prompts = None
            self.request_decode()
        elif layer is self._box:
            self._box = None
            self.request_decode()
        elif layer is self._preview:
            self._preview = None
            self._has_preview = False
        else:
            return
        self.events.layers()
