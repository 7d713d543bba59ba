"""The SAM2 dock widget: model, encode, prompts, commit, propagate; drivable from the console.

:class:`Sam2Widget` composes the panels (laid out by :mod:`.dock`) around the Qt-free
:class:`~napari_sam2_webgpu._annotator.Annotator` (prompts, decoding, commits) and
:class:`~napari_sam2_webgpu._propagation.PropagationController` (stacks). When to load and
encode is :mod:`.encoding`'s, the worker threads are :mod:`.jobs`' and :mod:`.propagation`'s,
what the buttons and events set off :mod:`.wiring`'s, the layer combos :mod:`.layer_choices`',
commit and undo :mod:`.commits`', closing :mod:`.lifecycle`'s, argument checks
:mod:`.arguments`', failures :mod:`.errors`', texts :mod:`.status`', keys :mod:`.shortcuts`'.
What is left here is the composition and the documented console API.

From napari's console (``viewer.window.add_plugin_dock_widget`` returns the widget)::

    _, w = viewer.window.add_plugin_dock_widget("napari-sam2-webgpu", "Segment Anything 2")
    w.load_model("tiny")              # or encoder=..., decoder=... ; backend="auto"
    w.encode(wait=True)
    w.add_point((120.0, 200.0))       # world coordinates, napari's axis order
    w.add_point((130.0, 260.0), positive=False)
    w.commit()
    w.propagate("both", wait=True)    # stacks: every prompted object through every slice
    w.review()                        # the slices to check (lost, reappears, low score)
    w.add_tracks(); w.export_tracks("tracks.csv")  # a Tracks layer, a CSV of centroids
    w.segment_all("stack", wait=True) # every object of every slice, into a new Labels layer
    w.set_tiling("auto")              # big slices as tiles at full resolution
    w.use_store(); w.precompute_embeddings(wait=True)  # every slice encoded, on disk
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Image, Labels, Tracks
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QWidget

from .._napari import (
    Annotator,
    AnnotatorError,
    PropagationController,
    PropagationRun,
    SegmentAllController,
    SegmentAllParams,
)
from ..image import EmbeddingCache
from .arguments import check_axis, check_direction, check_position, free_axes, model_choice
from .commits import Commits
from .dock import DockView
from .encoding import ModelSession
from .errors import ErrorReporter
from .jobs import JobRunner, Workers, run_loop_until
from .large_images import LargeImagesPanel, LargeImagesRunner
from .layer_choices import NEW_LABELS
from .lifecycle import Lifecycle
from .panels import CUSTOM
from .propagation import PropagationRunner
from .review import ReviewPanel, ReviewTable
from .segment_all import SegmentAllPanel, SegmentAllRunner
from .shortcuts import SHORTCUT_HELP, KeyBindings
from .status import describe_object, error_message, with_error
from .wiring import DockWiring

if TYPE_CHECKING:  # pragma: no cover
    import napari

    from .._napari.tiling import TilingSettings
    from ..image import ImageEmbedding, Sam2Predictor
    from ..video import ReviewFlag


__all__ = ["HELP", "NEW_LABELS", "Sam2Widget"]

HELP = (
    "Left click: positive point. Control-click (Cmd on macOS) or right click: negative point. "
    "T swaps them. Drag a point to move it, select it and press Delete to remove it. Draw a "
    "rectangle in 'SAM2 box' for a box prompt."
)


def _unwrap(obj: Any) -> Any:
    """The object behind napari's PublicOnlyProxy (or the object itself)."""
    return getattr(obj, "__wrapped__", obj)


class Sam2Widget(QWidget):
    """Segment Anything 2 in napari: encode an image layer, click, commit to a Labels layer.

    Every button is also a method, for napari's console: the members are listed, with examples,
    in docs/user-guide.md, "Console scripting". ``napari_viewer`` is injected by napari.

    The collaborators are public attributes: ``viewer``, ``annotator`` (the Qt-free core:
    prompts, decoding, preview, commits), ``cache`` (embeddings per layer, slice, contrast
    limits and model), ``propagation`` (the Qt-free propagation; ``check()`` says why Propagate
    is off), ``segmentation`` (the Qt-free segment all; :mod:`.segment_all` runs it),
    ``session`` (the loaded model and when to load and encode; :mod:`.encoding`), ``jobs``
    (the running load, encode or segment all; :mod:`.jobs`), ``errors`` (failures as messages;
    :mod:`.errors`) and ``layer_choices`` (the layer combos; :mod:`.layer_choices`).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        # napari hands plugin widgets a PublicOnlyProxy of the viewer, through which every
        # layer is a new proxy object: identity checks against event values would fail. Keep
        # the viewer itself (only its public API is used).
        self.viewer = _unwrap(napari_viewer)
        self._lifecycle = Lifecycle(self.objectName, self._stop_work, self._release)
        self.cache = EmbeddingCache()
        self._workers = Workers(self._alive)
        self.annotator = Annotator(
            self.viewer, cache=self.cache, run_async=self._workers.run, defer=self._defer
        )
        self.propagation = PropagationController(self.annotator)
        self.segmentation = SegmentAllController(self.annotator)
        self.errors = ErrorReporter(lambda message: self.messages.show_error(message), self._alive)
        self.jobs = JobRunner(self._workers, self.cancel, self._refresh_status)
        self._keys = KeyBindings(self, self._alive)
        self._propagation_runner = PropagationRunner(
            self.propagation,
            self._workers,
            alive=self._alive,
            on_change=self._refresh_status,
            on_failed=lambda exc: self.errors.fail(error_message(exc), exc),
            on_succeeded=self.errors.clear,
        )
        self.session = ModelSession(
            self.annotator,
            self.cache,
            self.propagation,
            self.jobs,
            self.errors,
            selected_choice=lambda: self.model_panel.selected_choice(),
            show_device=lambda info: self.model_panel.show_device(info),
            on_change=self._refresh_status,
        )
        self.annotator.auto_encode = self.session.auto_encode
        self._commits = Commits(self.annotator, self.propagation, self.errors, self.wait_for_decode)

        self._build_ui()
        self.segment_all_runner = SegmentAllRunner(
            self.segmentation,
            self.segment_all_panel,
            annotator=self.annotator,
            session=self.session,
            jobs=self.jobs,
            errors=self.errors,
            propagation=self.propagation,
            selected_choice=lambda: self.model_panel.selected_choice(),
            alive=self._alive,
            on_change=self._refresh_status,
        )
        self.large_images_runner = LargeImagesRunner(
            self.large_images_panel,
            annotator=self.annotator,
            workers=self._workers,
            errors=self.errors,
            alive=self._alive,
            on_change=self._refresh_status,
        )
        self.review_table = ReviewTable(self.review_panel, self.propagation, self.errors.guard)
        self._wiring = DockWiring(
            self, self._view, self._keys, alive=self._alive, defer=self._defer
        )
        self.layer_choices = self._wiring.layer_choices
        self._wiring.connect()
        self._keys.bind(self.viewer)
        self.layer_choices.refresh()
        initial = self.layer_choices.initial_image()
        if initial is not None:
            self.image_layer = initial
        self._refresh_status()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        self._view = DockView(self, HELP, SHORTCUT_HELP)
        # The panels and controls by name, as before the split (tests and scripts use them).
        for name, part in self._view.parts().items():
            setattr(self, name, part)
        self.segment_all_panel = SegmentAllPanel()  # above the messages
        self.layout().insertWidget(self.layout().indexOf(self.messages), self.segment_all_panel)
        self.large_images_panel = LargeImagesPanel()  # collapsed: most images are not large
        self.layout().insertWidget(self.layout().indexOf(self.messages), self.large_images_panel)
        self.review_panel = ReviewPanel()  # under Propagate
        self.layout().insertWidget(
            self.layout().indexOf(self.propagation_row) + 1, self.review_panel
        )
        self._view.bind_settings(self.annotator)

    def _defer(self, fn: Callable[[], None]) -> None:
        def run() -> None:
            if self._alive():
                fn()

        QTimer.singleShot(0, run)

    # ------------------------------------------------------------- console API: layers
    @property
    def image_layer(self) -> Image | None:
        """The image layer to segment (settable; follows the selected image layer)."""
        return self.annotator.image_layer

    @image_layer.setter
    def image_layer(self, layer: Image | None) -> None:
        layer = _unwrap(layer)
        if layer is self.annotator.image_layer:
            return
        if layer is not None and not isinstance(layer, Image):
            raise AnnotatorError(f"{describe_object(layer)} is not an image layer.")
        if self.jobs.current is not None and self.jobs.current.request is not None:
            self.cancel(quiet=True)
        self.annotator.set_image_layer(layer)
        self.layer_choices.refresh()
        self._refresh_status()

    @property
    def prompts_layer(self):
        """The Points layer of point prompts ("SAM2 prompts"), created on demand."""
        return self.annotator.prompts_layer

    @property
    def box_layer(self):
        """The Shapes layer of box prompts ("SAM2 box"), created on demand."""
        return self.annotator.box_layer

    @property
    def preview_layer(self):
        """The Labels layer showing the current mask ("SAM2 preview"); don't save it."""
        return self.annotator.preview_layer

    @property
    def labels_layer(self) -> Labels | None:
        """The Labels layer commits write to (None: a new one at the next commit). Settable."""
        return self.annotator.labels_layer

    @labels_layer.setter
    def labels_layer(self, layer: Labels | None) -> None:
        self.annotator.set_labels_layer(_unwrap(layer))
        self.layer_choices.refresh()

    @property
    def predictor(self) -> Sam2Predictor | None:
        """The loaded :class:`~napari_sam2_webgpu.predictor.Sam2Predictor`, or None."""
        return self.session.predictor

    # ------------------------------------------------------------- console API: settings
    @property
    def object_id(self) -> int:
        """The label value of the next commit."""
        return self.annotator.object_id

    @object_id.setter
    def object_id(self, value: int) -> None:
        self.annotator.object_id = value

    @property
    def multimask(self) -> bool:
        """Decode three candidate masks and keep the best (True) or one mask (False)."""
        return self.annotator.multimask

    @multimask.setter
    def multimask(self, value: bool) -> None:
        self.multimask_check.setChecked(bool(value))

    @property
    def overwrite(self) -> bool:
        """Whether commits may paint over existing labels (default False)."""
        return self.annotator.overwrite

    @overwrite.setter
    def overwrite(self, value: bool) -> None:
        self.overwrite_check.setChecked(bool(value))

    @property
    def positive(self) -> bool:
        """Polarity of a plain left click; Control-click or right click add the other."""
        return self.annotator.positive

    @positive.setter
    def positive(self, value: bool) -> None:
        self.annotator.positive = bool(value)

    def toggle_polarity(self) -> bool:
        """Swap positive/negative for plain clicks (shortcut T); returns the new polarity."""
        return self.annotator.toggle_polarity()

    # ------------------------------------------------------------- console API: model and encoding
    def load_model(
        self,
        size: str | None = None,
        *,
        encoder: str | Path | None = None,
        decoder: str | Path | None = None,
        backend: str = "auto",
        wait: bool = False,
    ) -> Sam2Predictor | None:
        """Load a model in a worker thread (download, then ONNX Runtime sessions).

        ``size`` is a SAM2.1 size of the registry (default: the widget's choice), or give your
        own ``encoder`` and ``decoder`` ONNX files; ``backend`` is "auto", "webgpu" or "cpu".
        With ``wait``, blocks (the viewer stays responsive) and returns the predictor (None if
        loading failed: the reason is in :attr:`last_error`). ValueError for invalid arguments
        (see :func:`.arguments.model_choice`). More in docs/user-guide.md, "Console scripting".
        """
        if size is None and encoder is None and decoder is None:
            size = self.model_combo.currentText()
            if size == CUSTOM:
                size = None
                encoder = self.encoder_edit.text() or None
                decoder = self.decoder_edit.text() or None
        choice = model_choice(size, encoder, decoder, backend)
        self.model_panel.show_choice(choice)
        if self.session.is_loaded(choice):
            return self.session.predictor
        self.session.load(choice)
        if wait:
            self.wait()
            return self.session.predictor if self.session.loaded_choice == choice else None
        return None

    def encode(self, wait: bool = False) -> ImageEmbedding | None:
        """Encode the displayed slice of :attr:`image_layer` in a worker thread.

        Loads the chosen model first if needed; embeddings are cached (encoding a slice again
        is instant). With ``wait``, blocks until a load still running and this encode are done
        and returns the embedding, or None with the reason in :attr:`last_error`.
        """
        if not wait:
            self.session.encode()  # now, or after the running load or encode
            return None
        return self.session.encode_and_wait(
            lambda condition: run_loop_until(condition, None, self._alive), self._alive
        )

    def cancel(self, quiet: bool = False) -> None:
        """Stop the running load or encode (its result is discarded).

        A download stops at once; ONNX Runtime cannot interrupt a running encode, so that one
        finishes in the background (its embedding is still cached), but the widget is free.
        """
        self.session.cancel(quiet)

    # ------------------------------------------------------------- console API: waiting
    @property
    def busy(self) -> bool:
        """Whether a load, an encode, a decode, a propagation or segment all runs or waits."""
        return bool(
            self.jobs.busy
            or self.annotator.decoding
            or self._workers
            or self.propagation.running
            or self.segment_all_runner.busy
            or self.large_images_runner.busy
        )

    def wait(self, timeout: float | None = None) -> bool:
        """Process events until no load, encode or decode is running; whether that happened.

        For scripts and the console (the viewer stays responsive meanwhile).
        """
        return run_loop_until(lambda: not self.busy, timeout, self._alive)

    # ------------------------------------------------------------- console API: prompts
    def add_point(self, position: Sequence[float], positive: bool = True) -> None:
        """Add a point prompt and decode (as a click would).

        ``position``: world coordinates in napari's axis order, as ``event.position`` of a click
        (all ``viewer.dims.ndim`` of them, or the 2 displayed ones; else ValueError).
        """
        pos = check_position(position, self.viewer.dims.ndim)
        self.errors.guard(self.annotator.add_point, pos, bool(positive))

    def add_box(self, start: Sequence[float], end: Sequence[float]) -> None:
        """Add a box prompt between two opposite corners (world coordinates) and decode."""
        ndim = self.viewer.dims.ndim
        self.errors.guard(
            self.annotator.add_box, check_position(start, ndim), check_position(end, ndim)
        )

    def commit(self) -> int:
        """Write the previewed mask into :attr:`labels_layer` under :attr:`object_id`.

        Waits for a decode still running; background pixels only unless :attr:`overwrite`; one
        undo step. Then clears the prompts and moves to the next free id. Returns the number of
        pixels written (0 if none, with a message). Right after :meth:`propagate` the object is
        in the labels already: only the clearing and the next id happen.
        """
        return self._commits.commit()

    def refine(self, label: int, layer: Labels | None = None) -> bool:
        """Refine an existing label on the displayed slice (e.g. Cellpose output): its pixels
        and box are SAM2's mask prompt, the preview shows the refinement, clicks correct it,
        and :meth:`commit` replaces exactly that label's pixels (others untouched, one undo
        step). ``layer``: the Labels layer holding it (default :attr:`labels_layer`). Decoded
        once the slice is encoded, as prompts are. Returns whether refining started (else the
        reason is in :attr:`last_error`)."""
        self.wait()
        started = self.errors.guard(self.annotator.refine, int(label), layer) is not None
        self._refresh_status()
        return started

    def refine_selected(self) -> bool:
        """The Refine label button: refine the label selected in the active Labels layer (the
        target layer when the active layer is not a Labels layer), as :meth:`refine`."""
        active = self.viewer.layers.selection.active
        layer = active if isinstance(active, Labels) and active is not self.preview_layer else None
        layer = layer if layer is not None else self.labels_layer
        if layer is None:
            self.errors.fail("Select the Labels layer that holds the label to refine.")
            return False
        return self.refine(int(layer.selected_label), layer)

    def clear(self, all_objects: bool = False) -> None:
        """Remove the current object's prompts (``all_objects``: every object's) and the
        preview; committed labels are untouched."""
        self.annotator.clear(all_objects)

    def undo(self) -> bool:
        """Undo the last change of :attr:`labels_layer` (napari's undo, as Ctrl+Z there).

        Undoing a propagation keeps its object (its prompts are still there to run again).
        """
        return self._commits.undo()

    def next_object(self) -> int:
        """Start another object: :attr:`object_id` moves to the next free id (past the largest
        label and every prompted object); the prompts before stay with their object (to
        propagate several objects together). Returns the new id."""
        return self.annotator.next_object()

    def wait_for_decode(self, timeout: float | None = None) -> None:
        """Process events until the latest prompt's mask is shown (or ``timeout`` seconds).

        Without a timeout, as :meth:`commit` waits: a decode always ends, and on a busy
        machine a fixed limit would commit a stale mask.
        """
        run_loop_until(lambda: not self.annotator.decoding, timeout, self._alive)

    # ------------------------------------------------------------- console API: propagation
    def propagate(
        self, direction: str | None = None, *, axis: int | None = None, wait: bool = False
    ) -> PropagationRun | None:
        """Propagate every prompted object through the stack, together, in a worker thread.

        Each tracked slice is written into :attr:`labels_layer`, every object under its own id
        (the current one under :attr:`object_id`; :meth:`next_object` starts another one and
        keeps the prompts before) as commits are; the run is one undo step. ``direction``
        ("forward", "backward", "both"; default: the widget's choice), ``axis`` (default: the
        first one not displayed), ``wait`` (block until the run ends). Returns the run, or
        None when it cannot start (the reason is in :attr:`last_error`); ValueError for a
        wrong direction or axis. More in docs/user-guide.md, "Propagating through a stack"
        and "Many objects, and reviewing a propagation".
        """
        if direction is not None:
            self.direction_combo.setCurrentText(check_direction(direction))
        if axis is not None:
            axis = check_axis(axis, *free_axes(self.annotator))
        if self.segment_all_runner.busy:
            self.errors.warn("Segment all is running: wait for it, or cancel it.")
            return None
        run = self.errors.guard(self.propagation.start, self.direction_combo.currentText(), axis)
        if run is None:
            return None
        self._propagation_runner.start(run)
        if wait:
            run_loop_until(lambda: run.finished, None, self._alive)
        return run

    def cancel_propagation(self) -> None:
        """Stop the propagation after the slice being computed; slices written stay."""
        self._propagation_runner.cancel()

    def review(self) -> list[ReviewFlag]:
        """The slices to check after propagating: per object, where it is lost, reappears or
        its predicted IoU is low or drops (the "Propagation review" table's rows)."""
        return self.propagation.review()

    def go_to(self, flag: ReviewFlag | int) -> None:
        """Show a review flag (or the table's row ``flag``): its slice, its object current."""
        if isinstance(flag, int):
            flags = self.review()
            if not 0 <= flag < len(flags):
                raise ValueError(f"row {flag} is not in the review table ({len(flags)} rows)")
            flag = flags[flag]
        self.errors.guard(self.propagation.go_to, flag)

    def add_tracks(self, ids: Any = None) -> Tracks | None:
        """The Tracks layer of the last propagation's stack ("<labels> tracks": each object's
        centroid per slice, one track per id; default every label there). None, with the
        reason in :attr:`last_error`, when there is none."""
        return self.errors.guard(self.propagation.show_tracks, ids)

    def export_tracks(
        self, path: str | Path, ids: Any = None, *, overwrite: bool = False
    ) -> Path | None:
        """Write the same tracks as CSV (track_id, frame, y, x, area). An existing file is
        kept unless ``overwrite`` (ValueError). Returns the path, or None (see
        :attr:`last_error`)."""
        from ..tracks import write_tracks_csv

        if Path(path).exists() and not overwrite:
            raise ValueError(f"{path} exists: pass overwrite=True to replace it.")
        tracks = self.errors.guard(self.propagation.tracks, ids)
        if tracks is None:
            return None
        return write_tracks_csv(path, tracks, overwrite=True)

    def save_labels(self, path: str | Path, *, overwrite: bool = False) -> list[str]:
        """Save :attr:`labels_layer` (.tif, .npy) with its recorded prompts beside it
        (``NAME.prompts.json``, what ``napari-sam2-webgpu replay`` reads), as File > Save with
        "Labels with SAM2 prompts" does. ValueError when there is no Labels layer, or the file
        exists and ``overwrite`` is False. Returns the files written."""
        from .._napari.recording import write_labels_with_prompts

        labels = self.labels_layer
        if labels is None:
            raise ValueError("No Labels layer to save: commit or choose one first.")
        if Path(path).exists() and not overwrite:
            raise ValueError(f"{path} exists: pass overwrite=True to replace it.")
        return write_labels_with_prompts(str(path), labels.data, {"metadata": labels.metadata})

    @property
    def stop_after_lost(self) -> int | None:
        """Propagation stops tracking an object once it has been absent this many slices in a
        row (None: never; the review section's spin box)."""
        return self.propagation.stop_after_lost

    @stop_after_lost.setter
    def stop_after_lost(self, value: int | None) -> None:
        value = 0 if value is None else int(value)
        if value < 0:
            raise ValueError(f"stop_after_lost must be at least 1 (or None), got {value}")
        self.review_panel.stop_spin.setValue(value)

    # ------------------------------------------------------------- console API: segment all
    def segment_all(
        self, scope: str | None = None, *, axis: int | None = None, wait: bool = False, **params
    ) -> Labels | None:
        """Segment every object of the displayed slice (``scope="slice"``) or of every slice
        of the stack (``"stack"``, along ``axis``: default the first one not displayed), in a
        worker thread, into a new Labels layer ``"<image> instances"`` (an earlier run's layer
        of the same image is reused: only the slices segmented change).

        Loads the chosen model first if needed, and waits for a running load, encode or
        propagation. ``params`` (:class:`SegmentAllParams` names) set the panel's values for
        this and later runs. Returns the Labels layer (filled slice by slice; with ``wait``,
        once the run ended), or None when it cannot start (the reason is in :attr:`last_error`);
        ValueError for a wrong scope, axis or parameter. More in docs/user-guide.md.
        """
        return self.segment_all_runner.segment_all(scope, axis, wait, params)

    # ------------------------------------------------------------- console API: large images
    def use_store(self, path: str | None = None, *, dtype: str = "float32"):
        """Keep the image layer's embeddings in a store on disk, so that reopening the image
        (or a store made by ``napari-sam2-webgpu embed``) costs no encoding. Default place:
        next to the image file, else in the cache. Needs a loaded model. Raises when the
        store was made for another model, image, contrast or tiling, or cannot be written (the
        message says which); more in docs/embedding-store.md."""
        self.wait()
        store = self.annotator.use_store(path, dtype=dtype)
        self._refresh_status()
        return store

    def precompute_embeddings(self, wait: bool = False) -> bool:
        """Encode every slice (every tile, when tiled) of the image layer into its store, in a
        worker with a progress bar that cancels; slices stored already are skipped. Uses the
        store of :meth:`use_store` (the default place when none is in use). Clicks go on
        meanwhile. Returns whether it started (else the reason is in :attr:`last_error`)."""
        return self.large_images_runner.precompute(wait)

    def cancel_precompute(self) -> None:
        """Stop precomputing after the slice or tile being encoded; what was stored stays."""
        self.large_images_runner.cancel()

    @property
    def tiling(self) -> TilingSettings:
        """How slices are tiled (a copy): ``mode`` ("auto", "on", "off"), ``spec`` (tile size
        and halo), ``threshold``. Change it with :meth:`set_tiling`."""
        return self.annotator.large.tiling

    def set_tiling(
        self, mode: str | None = None, *, tile_size: int | None = None, halo: int | None = None
    ) -> TilingSettings:
        """Encode large slices as overlapping tiles at full resolution: ``mode`` "auto" (slices
        longer than 2048 pixels on a side), "on" (every slice) or "off"; ``tile_size`` (1024:
        native scale) and ``halo`` (overlap) in pixels. ValueError for invalid values. More
        in docs/tiling.md."""
        return self.large_images_runner.set_tiling(mode, tile_size, halo)

    def show_tile_grid(self, visible: bool = True) -> None:
        """Outline the displayed slice's tiles in a Shapes layer "SAM2 tiles" (encoded tiles
        in green)."""
        self.large_images_runner.show_grid(visible)

    def cancel_segment_all(self) -> None:
        """Stop segment all before the next decoder batch; the slices written stay."""
        self.segment_all_runner.cancel()

    @property
    def segment_all_params(self) -> SegmentAllParams:
        """Segment all's parameters (settable: a dict of changes, or ``SegmentAllParams()``
        for the defaults)."""
        return self.segmentation.params

    @segment_all_params.setter
    def segment_all_params(self, value: SegmentAllParams | dict) -> None:
        self.segment_all_runner.set_params(value)

    # ------------------------------------------------------------- status
    def _refresh_status(self, event: Any = None) -> None:
        self._wiring.refresh_status()

    @property
    def last_error(self) -> str | None:
        """The message of the last failure (shown in full in the dock), or None."""
        return self.errors.last_error

    @property
    def status(self) -> str:
        """The status text, after the last error (if any) in full."""
        return with_error(self.last_error, self.status_label.text())

    # ------------------------------------------------------------- lifecycle
    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        self._lifecycle.close()
        super().closeEvent(event)

    def event(self, event: QEvent) -> bool:
        # napari closes a dock widget by taking it out of its dock (setParent(None)), without
        # closing it: that is when the shortcuts and layer callbacks must go.
        if event.type() == QEvent.Type.ParentChange:
            self._lifecycle.parent_changed(self.parent() is not None)
        return super().event(event)

    def close(self) -> bool:
        """Close the widget: unbind its shortcuts and stop following the viewer."""
        self._lifecycle.close()
        return super().close()

    @property
    def _closed(self) -> bool:
        return self._lifecycle.closed

    def _alive(self) -> bool:
        """False once the widget is closed or Qt deleted it (the viewer was closed)."""
        return self._lifecycle.alive()

    def _stop_work(self) -> None:
        self.segment_all_runner.close()
        self.large_images_runner.cancel()
        self.jobs.cancel()
        self.jobs.queued = False
        self.propagation.cancel()
        self._propagation_runner.close_bar()

    def _release(self) -> None:
        self._wiring.disconnect()
        self.annotator.close()
        # Let go of the model and the embeddings (up to the cache's GiB) now: napari may keep a
        # closed widget, or its whole window, alive for a while.
        self.session.close()
        self.annotator.predictor = None
        self.propagation.set_model(None)
        self.cache.clear()
