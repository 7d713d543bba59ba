"""Interactive SAM2 in napari without Qt: prompt layers -> predictor -> preview -> Labels layer.

:class:`Annotator` works on a ``napari.components.ViewerModel`` (or a full ``napari.Viewer``) and
never imports Qt, so that it can be tested and scripted without a window. It composes

- :mod:`.segmented_image` (:class:`~.segmented_image.SegmentedImage`: the image layer, its
  displayed slice and that slice's embedding, kept by an :class:`~.embeddings.EmbeddingTracker`),
- :mod:`.prompt_layers` (:class:`~.prompt_layers.PromptLayers`: the prompts and box layers),
- :mod:`.preview` (:class:`~.preview.Preview`: the preview layer and its mask),
- :mod:`.decoding` (:class:`~.decoding.PreviewDecoder` and its scheduler: newest prompt wins,
  fast decodes inline),
- :mod:`.target` (:class:`~.target.LabelsTarget`: the target Labels layer, the object id,
  commit and undo, written by the rules of :mod:`.labels`), and
- :mod:`.large_images` (:class:`~.large_images.LargeImages`, as :attr:`Annotator.large`:
  tiling, the tile grid, the store on disk, precomputing a stack),

and reacts to the viewer: slice changes, and removed layers.

Slow work is delegated: a slow decode goes through ``run_async(fn, on_done)`` (the widget passes
a worker thread), and encoding is requested through :attr:`Annotator.auto_encode` (the widget
runs it in a worker with a progress bar).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels, Points, Shapes
from napari.utils.events import EmitterGroup, Event
from napari.utils.notifications import show_warning

from ..image import EmbeddingCache
from .decoding import DecodeScheduler, PreviewDecoder
from .embeddings import EmbeddingTracker, EncodeRequest
from .errors import AnnotatorError
from .large_images import LargeImages
from .preview import Preview
from .prompt_layers import PromptLayers
from .recording import PromptRecorder
from .refining import Refinement, start_refinement
from .segmented_image import SegmentedImage
from .slices import SliceInfo, same_geometry
from .target import LabelsTarget
from .viewer_events import ViewerReactions

if TYPE_CHECKING:  # pragma: no cover
    from ..image import ImageEmbedding, Sam2Predictor
    from ..store import EmbeddingStore

__all__ = ["Annotator"]

#: The Annotator's events (see its ``events`` attribute).
EVENTS = ("status", "object_id", "polarity", "layers", "prompts", "error", "decoded")


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
        :attr:`inline_decode_seconds`). Default: :func:`time.perf_counter`; tests inject their
        own.

    Attributes
    ----------
    events : EmitterGroup
        ``status`` (something shown in the widget changed), ``object_id``, ``polarity``,
        ``layers`` (a layer in use was created, replaced or removed), ``prompts`` (points or
        boxes were added, moved or removed, on any slice), ``error`` (a problem was shown to the
        user; the event's ``message`` is the whole text) and ``decoded`` (a new mask is in the
        preview).
    predictor : Sam2Predictor or None
        The loaded model (set it with :meth:`set_predictor`).
    auto_encode : callable or None
        Called with no argument when prompts need an embedding that is not there; the widget
        starts an encode. When None, the user is told to encode.
    multimask : bool
        Ask the decoder for three candidate masks and show the best-scoring one.
    overwrite : bool
        Let :meth:`commit` paint over existing labels (default: background pixels only).
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
        self.events = EmitterGroup(source=self, **dict.fromkeys(EVENTS, Event))
        self.auto_encode: Callable[[], None] | None = None
        self.predictor: Sam2Predictor | None = None
        self.multimask = True
        self.overwrite = False
        self.embeddings = EmbeddingTracker(cache if cache is not None else EmbeddingCache())
        self.image = SegmentedImage(
            viewer,
            self.embeddings,
            predictor=lambda: self.predictor,
            on_data_changed=self._on_image_data,
        )
        self.prompts = PromptLayers(
            viewer,
            image=lambda: self.image.layer,
            current_slice=self.current_slice,
            on_change=self._on_prompts_changed,
            report_problem=self.report_problem,
        )
        self.preview = Preview(viewer)
        self.target = LabelsTarget(
            viewer,
            on_object_id=self.events.object_id,
            on_created=self.events.layers,
            reserved=self.prompts.objects,
        )
        self._new_object = False  # next_object() is moving on: the prompts stay with theirs
        self.events.object_id.connect(self._on_object_id)
        self._preview_decoder = PreviewDecoder(self, run_async, clock or time.perf_counter)
        self._decoder = self._preview_decoder.scheduler
        self._reactions = ViewerReactions(
            self, defer=defer, clear_preview=self._preview_decoder.clear_preview
        )
        self.large = LargeImages(self)
        self.refinement: Refinement | None = None  # a label being refined (see refine())
        self.recorder = PromptRecorder(self)  # prompts kept with the Labels layer
        # ``memory_preview(slice, points, labels, box)``: a function computing a propagated
        # object's memory-conditioned mask there, or None (set by the propagation controller).
        self.memory_preview: Callable[..., Callable[[], np.ndarray] | None] | None = None

    def close(self) -> None:
        """Disconnect from the viewer and its layers (the layers stay)."""
        self._decoder.closed = True
        self._preview_decoder.last_request = None  # it holds the model and an embedding
        self.memory_preview = None
        self._reactions.close()
        self.image.disconnect()
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
        return self.image.layer

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
        return self.target.layer

    def set_image_layer(self, layer: Image | None) -> None:
        """Segment ``layer`` from now on. Prompts are cleared unless the geometry is the same."""
        if layer is self.image.layer:
            return
        old = self.image.set_layer(layer)
        self.refinement = None  # a label's mask prompt belongs to the image it was started on
        if not same_geometry(old, layer):
            self._reactions.reset_helpers(layer)
            self.target.release_if_unfit(layer)
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
        self.target.choose(layer, self.image.layer, self.preview.layer)
        self.events.layers()

    def ensure_prompt_layers(self) -> Points:
        """Create the box and prompts layers if needed; the prompts layer becomes active."""
        if self.prompts.ensure(self.image.require()):
            self.events.layers()
        return self.prompts.points

    def ensure_labels_layer(self) -> Labels:
        """The target Labels layer, created (same shape and transform as the image) if needed."""
        return self.target.ensure(self.image.require())

    # -- embeddings -------------------------------------------------------------------------------
    @property
    def model_key(self) -> str | None:
        """Identity of the loaded model in cache keys."""
        return self.image.model_key

    def current_slice(self) -> SliceInfo:
        """The displayed slice of the image layer (AnnotatorError when there is none)."""
        return self.image.current_slice()

    def encode_request(self) -> EncodeRequest:
        """Describe the encoding of the displayed slice (validated, pixels not read yet).

        Raises
        ------
        AnnotatorError, ImageError
            No image, 3D view, slice outside the layer, or pixels SAM2 cannot use.
        """
        request, warning = self.image.encode_request()
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
        if not self.image.accept(request, embedding, predictor, apply):
            return False
        self.large.refresh_grid()
        self.ensure_prompt_layers()
        self.events.status()
        self.request_decode()
        return True

    def use_store(self, path: Any = None, *, dtype: str = "float32") -> EmbeddingStore:
        """Keep the image layer's embeddings in a store on disk (read first, written after).

        Reopening the image later (or another machine, with the same model) then costs no
        encoding for the slices stored. The store holds the layer's slices as napari displays
        them by default (the last two axes) with the current contrast limits and tiling;
        other views, limits and tilings encode as usual.

        Parameters
        ----------
        path : path, optional
            The store (a folder, ``*.sam2.zarr``); default: next to the layer's file, else in
            the cache (:func:`~napari_sam2_webgpu._napari.stores.default_store_path`).
        dtype : {"float32", "float16"}
            Precision of a new store.

        Returns
        -------
        EmbeddingStore

        Raises
        ------
        AnnotatorError
            No image layer or no model.
        napari_sam2_webgpu.store.StoreMismatchError
            The store was made for another model, image, contrast or tiling (named).
        napari_sam2_webgpu.store.StoreUnavailableError
            It cannot be created or written there.
        """
        return self.large.use_store(path, dtype=dtype)

    @property
    def store(self) -> EmbeddingStore | None:
        """The store on disk of the image layer's embeddings (see :meth:`use_store`)."""
        return self.large.store

    def close_store(self) -> None:
        """Stop using the image layer's store (the embeddings on disk stay)."""
        self.large.close_store()

    def sync_embedding(self) -> bool:
        """Make the displayed slice's cached embedding current; whether one is ready."""
        return self.image.sync()

    def has_exact_embedding(self) -> bool:
        """Whether the current embedding is for the displayed slice *and* contrast limits."""
        return self.image.is_exact()

    @property
    def is_ready(self) -> bool:
        """Whether the displayed slice is encoded (clicks decode at once)."""
        return self.image.is_ready

    def set_predictor(self, predictor: Sam2Predictor | None) -> None:
        """Use another model; its cached embeddings (if any) are reused."""
        self.predictor = predictor
        self.embeddings.key = None
        self._decoder.estimate = None
        self._preview_decoder.last_request = None  # of the model before
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

    def add_point(self, position: Sequence[float], positive: bool = True) -> None:
        """Add a point prompt at a world ``position`` (napari's axis order) and decode."""
        data = self.image.world_to_data(position)
        self.ensure_prompt_layers()
        self.prompts.add_point(self.image.layer, data, positive)

    def add_box(self, start: Sequence[float], end: Sequence[float]) -> None:
        """Add a box prompt between two opposite world corners and decode."""
        a, b = self.image.world_to_data(start), self.image.world_to_data(end)
        sl = self.current_slice()
        self.ensure_prompt_layers()
        self.prompts.add_box(self.image.layer, sl, a, b)

    @property
    def prompted_objects(self) -> list[int]:
        """The object ids that have prompts (points or boxes, on any slice), sorted."""
        return sorted(self.prompts.objects())

    def _on_object_id(self, event: Any) -> None:
        """Another object id: its prompts are the ones edited and decoded now.

        Typing a new id renames the object being prompted (its prompts follow) unless that id
        has prompts of its own; :meth:`next_object` leaves the prompts with their object.
        """
        previous = self.prompts.object_id
        self.prompts.set_object(event.value, rename=not self._new_object)
        if self.prompts.object_id != previous:
            self._decoder.invalidate()
            self._preview_decoder.clear_preview()
            self.request_decode()

    def _on_prompts_changed(self) -> None:
        """The user added, moved or removed prompts."""
        self.request_decode()
        self.events.prompts()

    def slice_prompts(
        self, sl: SliceInfo, obj_id: int | None = None
    ) -> tuple[np.ndarray | None, np.ndarray | None, Any]:
        """An object's prompts on a slice as the predictor takes them.

        Parameters
        ----------
        sl : SliceInfo
        obj_id : int, optional
            Default: the current object (:attr:`object_id`).

        Returns
        -------
        (points, labels, box)
            ``(N, 2)`` SAM ``(x, y)`` pixels and ``(N,)`` 1/0 labels (None without points), and
            the newest box on the slice as ``(4,)`` x0, y0, x1, y1 (None without one).
        """
        return self.prompts.slice_prompts(sl, obj_id)

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
        """Decodes expected to take less than this (seconds) run directly on the GUI thread.

        That is the lowest latency; slower ones (big images, slow CPUs) run through
        ``run_async`` with the newest prompt winning, and 0 sends every decode there. The
        expectation is the duration of the previous decode of the image, measured with
        ``clock``.
        """
        return self._decoder.inline_decode_seconds

    @inline_decode_seconds.setter
    def inline_decode_seconds(self, value: float) -> None:
        self._decoder.inline_decode_seconds = value

    def request_decode(self) -> None:
        """Decode the displayed slice's prompts (latest wins) and update the preview."""
        self._preview_decoder.request()

    @property
    def last_decode_seconds(self) -> float | None:
        """Time of the most recent decode (decoder and upsampling)."""
        return self._preview_decoder.last_decode_seconds

    @property
    def last_latency_seconds(self) -> float | None:
        """Time from the most recent prompt change to the preview being updated."""
        return self._preview_decoder.last_latency_seconds

    @property
    def last_score(self) -> float | None:
        """Predicted IoU of the mask in the preview."""
        return self._preview_decoder.last_score

    @property
    def preview_mask(self) -> np.ndarray | None:
        """The current mask as a 2D boolean array of the displayed slice, or None."""
        return self.preview.mask

    # -- commit, clear, undo ----------------------------------------------------------------------
    @property
    def object_id(self) -> int:
        """The label value the next commit writes."""
        return self.target.object_id

    @object_id.setter
    def object_id(self, value: int) -> None:
        self.target.object_id = value

    def next_free_id(self, scan: bool = False) -> int:
        """One more than the largest label in the target layer (1 when there is none), and
        than any object with prompts.

        Parameters
        ----------
        scan : bool
            Also read Labels data that is not a numpy array (dask, zarr; up to 128 Mi pixels)
            to find its largest label; otherwise such a layer gets the current id + 1.
        """
        return self.target.next_free_id(scan)

    def next_object(self) -> int:
        """Start another object: the id moves to the next free id; returns it.

        The prompts of the object before stay with it (shown, and propagated with the others);
        set :attr:`object_id` back to it to edit them.
        """
        self._new_object = True
        try:
            return self.target.next_object()
        finally:
            self._new_object = False

    def refine(self, label: int, layer: Labels | None = None) -> Refinement:
        """Refine an existing label on the displayed slice with SAM2.

        The label's pixels (e.g. from Cellpose, StarDist or an earlier commit) become the mask
        prompt, with their box: the preview shows SAM2's refinement, clicks on the slice
        correct it, and :meth:`commit` replaces exactly that label's pixels there (other labels
        untouched, one undo step). :meth:`clear` stops refining.

        Parameters
        ----------
        label : int
            The label id.
        layer : napari.layers.Labels, optional
            Where the label is (default: the target Labels layer); it becomes the target.

        Raises
        ------
        AnnotatorError
            No image, no Labels layer, one of another shape, or a label without pixels on the
            displayed slice.
        """
        layer = layer if layer is not None else self.labels_layer
        if layer is None:
            raise AnnotatorError("Choose the Labels layer that holds the label to refine.")
        sl = self.current_slice()
        if layer is not self.labels_layer:
            self.set_labels_layer(layer)
        refinement = start_refinement(layer, sl, label)
        self.clear()
        self.refinement = refinement
        self.object_id = refinement.label
        self.ensure_prompt_layers()
        self.events.status()
        self.request_decode()
        return refinement

    def commit(self) -> int:
        """Write the preview mask into the target Labels layer under :attr:`object_id`.

        Only background pixels are painted unless :attr:`overwrite` is set. The write is one
        step of the Labels layer's undo history. Afterwards the prompts are cleared and the
        object id moves to the next free id. While a label is refined (:meth:`refine`), the
        refined mask replaces that label's pixels on its slice instead.

        Returns
        -------
        int
            Number of pixels written (0 when nothing was).

        Raises
        ------
        AnnotatorError
            No mask, no image, or a Labels layer of another shape (nothing is written).
        """
        sl, mask = self.preview.slice, self.preview_mask
        request = self._preview_decoder.last_request
        refinement = self.refinement
        value, overwrite = self.object_id, bool(self.overwrite)
        if refinement is None or not refinement.applies_to(sl):
            refinement = None
        existing = refinement.layer if refinement is not None else self.target.in_viewer()
        if existing is not None and mask is not None:
            self.recorder.begin(existing)
        if refinement is not None:
            painted = refinement.commit(mask)
        else:
            painted = self.target.commit(mask, sl, self.image.layer, overwrite)
        labels = refinement.layer if refinement is not None else self.target.in_viewer()
        if labels is not None and request is not None:
            if existing is None:
                self.recorder.begin(labels, labelled=0)  # the commit created it
            self.recorder.commit(
                labels, request, value, overwrite and not refinement, refinement, mask
            )
        self.clear()
        self.next_object()
        self.events.status()
        return painted

    def clear(self, all_objects: bool = False) -> None:
        """Remove the current object's point and box prompts (``all_objects``: every object's)
        and the preview, and stop refining a label."""
        self.refinement = None
        self.prompts.clear(None if all_objects else self.object_id)
        self._decoder.invalidate()  # any decode in flight is now stale
        self._preview_decoder.clear_preview()
        self.events.prompts()
        self.events.status()

    def undo(self) -> bool:
        """Undo the last change of the target Labels layer (napari's own undo history).

        Returns
        -------
        bool
            Whether there was something to undo.
        """
        done = self.target.undo()
        if done:
            self.recorder.undo(self.labels_layer)
            self.events.status()
        return done

    # -- callbacks of the collaborators -----------------------------------------------------------
    def _on_image_data(self) -> None:
        """The image's pixels changed (its embeddings are already dropped)."""
        self._preview_decoder.clear_preview()
        self.events.status()
