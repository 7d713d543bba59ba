"""Interactive SAM2 in napari without Qt: prompt layers -> predictor -> preview -> Labels layer.

:class:`Annotator` works on a ``napari.components.ViewerModel`` (or a full ``napari.Viewer``) and
never imports Qt, so that it can be tested and scripted without a window. It composes

- :mod:`.slices` (the displayed slice and its coordinates),
- :mod:`.prompt_layers` (:class:`~.prompt_layers.PromptLayers`: the prompts and box layers),
- :mod:`.preview` (:class:`~.preview.Preview`: the preview layer and its mask),
- :mod:`.embeddings` (:class:`~.embeddings.EmbeddingTracker`: encode requests, cached
  embeddings, which one the predictor holds),
- :mod:`.decoding` (the decode scheduler: newest prompt wins, fast decodes inline), and
- :mod:`.labels` (commit into the target Labels layer, next free id, undo).

Slow work is delegated: a slow decode goes through ``run_async(fn, on_done)`` (the widget passes
a worker thread), and encoding is requested through :attr:`Annotator.auto_encode` (the widget
runs it in a worker with a progress bar).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels, Points, Shapes
from napari.utils.events import EmitterGroup, Event
from napari.utils.notifications import show_error, show_info, show_warning

from ..image import EmbeddingCache
from . import labels as labels_
from . import prompt_layers
from .decoding import DecodeRequest, DecodeResult, DecodeScheduler
from .embeddings import EmbeddingTracker, EncodeRequest, model_key
from .errors import AnnotatorError, guarded
from .preview import Preview
from .prompt_layers import PromptLayers
from .slices import (
    LARGE_IMAGE_PIXELS,
    SliceInfo,
    displayed_slice,
    layer_shape,
    same_geometry,
    world_to_data,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..image import ImageEmbedding, Sam2Predictor

logger = logging.getLogger("napari_sam2_webgpu")

__all__ = ["Annotator"]


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
        self.embeddings = EmbeddingTracker(cache if cache is not None else EmbeddingCache())
        self.prompts = PromptLayers(
            viewer,
            image=lambda: self._image,
            current_slice=self.current_slice,
            on_change=self._on_prompts_changed,
            report_problem=self.report_problem,
        )
        self.preview = Preview(viewer)
        self._defer = defer or (lambda fn: fn())
        self._decoder = DecodeScheduler(
            self._prepare_decode, self._decode_done, run_async, clock or time.perf_counter
        )
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
        self._object_id = 1
        self._image: Image | None = None
        self._labels: Labels | None = None
        self._closed = False
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
        self._closed = self._decoder.closed = True
        for emitter, cb in (
            (self.viewer.layers.events.removed, self._on_layer_removed),
            (self.viewer.dims.events.current_step, self._on_dims_changed),
            (self.viewer.dims.events.ndisplay, self._on_dims_changed),
            (self.viewer.dims.events.order, self._on_dims_changed),
        ):
            emitter.disconnect(cb)
        self._disconnect_image()
        self.prompts.disconnect()

    @property
    def cache(self) -> EmbeddingCache:
        """Where embeddings are kept per layer, slice, contrast and model."""
        return self.embeddings.cache

    def report_problem(self, message: str, show: Callable[[str], None] | None = None) -> None:
        """Tell the user about a problem (a warning by default) and emit ``events.error``."""
        (show or show_warning)(message)
        self.events.error(message=message)

    # -- layers in use ----------------------------------------------------------------------------
    @property
    def image_layer(self) -> Image | None:
        """The image layer being segmented."""
        return self._image

    @property
    def prompts_layer(self) -> Points | None:
        """The Points layer of point prompts (created on demand)."""
        return self.prompts.points

    @property
    def box_layer(self) -> Shapes | None:
        """The Shapes layer of box prompts (created on demand)."""
        return self.prompts.box

    @property
    def preview_layer(self) -> Labels | None:
        """The Labels layer showing the current mask (not meant to be saved)."""
        return self.preview.layer

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
                f"{prompt_layers.describe(layer)} is not an image layer: choose an Image layer "
                "(e.g. viewer.layers['name'])."
            )
        old = self._image
        self._disconnect_image()
        self._image = layer
        if layer is not None:
            layer.events.data.connect(self._on_image_data)
        if not same_geometry(old, layer):
            self._reset_helpers(layer)
            if (
                self._labels is not None
                and layer is not None
                and not self._labels_fit(self._labels)
            ):
                # A new target (the next commit creates one): its object ids start afresh.
                self._labels = None
                self._set_object_id(1)
        self.embeddings.forget()
        self._decoder.estimate = None
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
            if not isinstance(layer, Labels) or layer is self.preview.layer:
                raise AnnotatorError(
                    f"{prompt_layers.describe(layer)} cannot receive labels: pick a Labels layer."
                )
            if self._image is not None and not self._labels_fit(layer):
                raise AnnotatorError(self._shape_mismatch(layer))
        self._labels = layer
        # Another target: its own next free id, scanning lazy (dask, zarr) data once here.
        self._set_object_id(self.next_free_id(scan=True))
        self.events.layers()

    def _labels_fit(self, layer: Labels) -> bool:
        return self._image is None or tuple(layer.data.shape) == layer_shape(self._image)

    def _shape_mismatch(self, layer: Labels) -> str:
        return (
            f"The Labels layer '{layer.name}' has shape {tuple(layer.data.shape)} but the image "
            f"'{self._image.name}' has shape {layer_shape(self._image)}: choose a Labels layer of "
            "the image's shape, or 'New Labels layer'. Nothing was written."
        )

    def _disconnect_image(self) -> None:
        if self._image is not None:
            self._image.events.data.disconnect(self._on_image_data)

    def _reset_helpers(self, layer: Image | None) -> None:
        """New image geometry: clear prompts and re-place (or drop) the helper layers."""
        self.prompts.reset(layer)
        self.preview.remove()
        self._clear_preview()

    # -- helper layers ----------------------------------------------------------------------------
    def _require_image(self) -> Image:
        if self._image is None:
            raise AnnotatorError("Open an image and choose it in the SAM2 widget first.")
        return self._image

    def ensure_prompt_layers(self) -> Points:
        """Create the box and prompts layers if needed; the prompts layer becomes active."""
        if self.prompts.ensure(self._require_image()):
            self.events.layers()
        return self.prompts.points

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
        labels = prompt_layers.make_labels_layer(image)
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
        return None if self.predictor is None else model_key(self.predictor)

    def current_slice(self) -> SliceInfo:
        """The displayed slice of the image layer (AnnotatorError when there is none)."""
        return displayed_slice(self._require_image(), self.viewer.dims)

    def encode_request(self) -> EncodeRequest:
        """Describe the encoding of the displayed slice (validated, pixels not read yet).

        Raises
        ------
        AnnotatorError, ImageError
            No image, 3D view, slice outside the layer, or pixels SAM2 cannot use.
        """
        request, warning = self.embeddings.encode_request(
            self._require_image(), self.current_slice()
        )
        if warning is not None:
            show_warning(warning)
        return request

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
        self.embeddings.store(request, embedding, predictor)
        if not apply or request.layer is not self._image or predictor is not self.predictor:
            return False
        try:
            sl = self.current_slice()
        except AnnotatorError:
            return False
        if sl.key != request.slice.key or self.predictor is None:
            return False
        self.embeddings.adopt(request, sl, embedding, self.predictor)
        self.ensure_prompt_layers()
        self.events.status()
        self.request_decode()
        return True

    def sync_embedding(self) -> bool:
        """Make the displayed slice's cached embedding current; whether one is ready."""
        self.embeddings.slice = None
        if self._image is None or self.predictor is None:
            return False
        try:
            sl = self.current_slice()
        except AnnotatorError:
            return False
        return self.embeddings.sync(self._image, sl, self.predictor)

    def has_exact_embedding(self) -> bool:
        """Whether the current embedding is for the displayed slice *and* contrast limits."""
        return self.is_ready and self.embeddings.exact(self._image)

    @property
    def is_ready(self) -> bool:
        """Whether the displayed slice is encoded (clicks decode at once)."""
        if self.embeddings.slice is None or self.predictor is None or self._image is None:
            return False
        try:
            return self.embeddings.holds(self.current_slice())
        except AnnotatorError:
            return False

    def set_predictor(self, predictor: Sam2Predictor | None) -> None:
        """Use another model; its cached embeddings (if any) are reused."""
        self.predictor = predictor
        self.embeddings.key = None
        self._decoder.estimate = None
        self.sync_embedding()
        self.events.status()
        self.request_decode()

    # -- prompts ----------------------------------------------------------------------------------
    @property
    def positive(self) -> bool:
        """Polarity of a plain left click (Control-click and right click add the other one)."""
        return self.prompts.positive

    @positive.setter
    def positive(self, value: bool) -> None:
        self.prompts.positive = bool(value)
        self.events.polarity(value=self.prompts.positive)

    def toggle_polarity(self) -> bool:
        """Swap positive and negative for plain clicks; returns the new polarity."""
        self.positive = not self.positive
        return self.positive

    def _world_to_data(self, position: Sequence[float]) -> np.ndarray:
        """A world position (full or only the displayed axes) -> image data coordinates."""
        return world_to_data(self._require_image(), self.viewer.dims, position)

    def add_point(self, position: Sequence[float], positive: bool = True) -> None:
        """Add a point prompt at a world ``position`` (napari's axis order) and decode."""
        data = self._world_to_data(position)
        self.ensure_prompt_layers()
        self.prompts.add_point(self._image, data, positive)

    def add_box(self, start: Sequence[float], end: Sequence[float]) -> None:
        """Add a box prompt between two opposite world corners and decode."""
        a, b = self._world_to_data(start), self._world_to_data(end)
        sl = self.current_slice()
        self.ensure_prompt_layers()
        self.prompts.add_box(self._image, sl, a, b)

    def _on_prompts_changed(self) -> None:
        """The user added, moved or removed prompts."""
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
        return self.prompts.slice_prompts(sl)

    def _in_viewer(self, layer: Any) -> Any:
        return layer if layer is not None and layer in self.viewer.layers else None

    # -- decoding ---------------------------------------------------------------------------------
    @property
    def decoding(self) -> bool:
        """Whether a decode is running or waiting."""
        return self._decoder.busy

    @property
    def decoder(self) -> DecodeScheduler:
        """The decode scheduler (generation, decode in flight, duration estimate)."""
        return self._decoder

    @property
    def inline_decode_seconds(self) -> float:
        """Decodes expected to be faster than this run on the GUI thread (0: never)."""
        return self._decoder.inline_decode_seconds

    @inline_decode_seconds.setter
    def inline_decode_seconds(self, value: float) -> None:
        self._decoder.inline_decode_seconds = value

    def request_decode(self) -> None:
        """Decode the displayed slice's prompts (latest wins) and update the preview."""
        self._decoder.request()

    def _prepare_decode(self, generation: int) -> DecodeRequest | None:
        """The scheduler's ``prepare``: the displayed prompts, or None (and say why)."""
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
                self.report_problem(
                    "No SAM2 model is loaded yet: choose one in the SAM2 widget and press "
                    "Encode. Your prompts are kept and decoded once the image is encoded."
                )
            else:
                show_info("This slice is not encoded yet: press Encode in the SAM2 widget.")
            return None
        height, width = sl.shape
        multimask = self.multimask and height * width <= LARGE_IMAGE_PIXELS
        return DecodeRequest(
            generation,
            sl,
            points,
            labels,
            box,
            multimask,
            started=self._decoder.clock(),
            embedding=self.predictor.embedding,
            predictor=self.predictor,
        )

    def _decode_done(self, result: DecodeResult) -> None:
        """The scheduler's ``deliver``: show the newest mask, or the problem."""
        if result.error:
            self.report_problem(result.error)
            self._clear_preview()
            return
        try:
            self._show_preview(result)
        except Exception as exc:  # e.g. the image was removed in the meantime
            logger.exception("napari-sam2-webgpu: preview update failed")
            self.report_problem(
                f"SAM2: could not show the mask ({type(exc).__name__}: {exc}).", show_error
            )

    def _show_preview(self, result: DecodeResult) -> None:
        sl = result.request.slice
        image = self._require_image()
        if self.preview.show(image, sl, result.mask, self._insert_index_above_targets):
            self.events.layers()
        self.last_score = result.score
        self.last_decode_seconds = result.seconds
        self.last_latency_seconds = self._decoder.clock() - result.request.started
        self.events.status()
        self.events.decoded()

    def _clear_preview(self) -> None:
        self.preview.clear()
        self.last_score = None

    @property
    def preview_mask(self) -> np.ndarray | None:
        """The current mask as a 2D boolean array of the displayed slice, or None."""
        return self.preview.mask

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
        return labels_.next_free_id(self._in_viewer(self._labels), self._object_id, scan)

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
        sl = self.preview.slice
        labels = self.ensure_labels_layer()
        value = self._object_id
        labels_.check_label_value(labels, value)
        painted = labels_.paint_mask(labels, sl, mask, value, self.overwrite)
        if painted == 0:
            raise AnnotatorError(
                "Nothing was written: every pixel of the mask already has a label. Tick "
                "'Overwrite existing labels' to replace them."
            )
        self.clear()
        self.next_object()
        self.events.status()
        return painted

    def clear(self) -> None:
        """Remove all point and box prompts and the preview."""
        self.prompts.clear()
        self._decoder.invalidate()  # any decode in flight is now stale
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
        history = labels_.undo_history(labels)
        if history is not None and len(history) == 0:
            return False
        labels.undo()
        self.next_object()
        self.events.status()
        return True

    # -- viewer events ----------------------------------------------------------------------------
    @guarded
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
        self._decoder.invalidate()
        self._clear_preview()
        self.events.status()
        if sl is not None and self.is_ready:
            self.request_decode()

    def _on_image_data(self, event: Any = None) -> None:
        if self._image is not None:
            self.embeddings.drop_layer(self._image)
        self.embeddings.forget()
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

    @guarded
    def _on_layer_removed(self, event: Any) -> None:
        layer = event.value
        if layer is self._image:
            # Removing the helper layers now would nest in napari's own removal loop: defer.
            self.embeddings.drop_layer(layer)
            self._disconnect_image()
            self._image = None
            self.embeddings.forget()
            self._last_slice_key = None
            self._decoder.invalidate()
            self._defer(functools.partial(self._after_image_removed, layer.name))
        elif layer is self._labels:
            self._labels = None
            self._set_object_id(1)
            message = (
                f"The Labels layer '{layer.name}' was removed; the next commit creates a new "
                "one. Other Labels layers are untouched."
            )
            self._defer(lambda: self._tell(message, show_info))
        elif self.prompts.forget(layer):
            self.request_decode()
        elif self.preview.forget(layer):
            pass
        else:
            return
        self.events.layers()
