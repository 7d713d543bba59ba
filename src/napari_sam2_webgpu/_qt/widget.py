"""The SAM2 dock widget: model, encode, prompts, commit, propagate; drivable from the console.

:class:`Sam2Widget` composes the rows of :mod:`.panels` around the Qt-free
:class:`~napari_sam2_webgpu._annotator.Annotator` (prompts, decoding, commits) and
:class:`~napari_sam2_webgpu._propagation.PropagationController` (stacks). When to load and
encode is :mod:`.encoding`'s, the worker threads are :mod:`.jobs`' and :mod:`.propagation`'s,
failures :mod:`.errors`', texts :mod:`.status`', keys :mod:`.shortcuts`'. What is left here is
the composition and the documented console API.

From napari's console (``viewer.window.add_plugin_dock_widget`` returns the widget)::

    _, w = viewer.window.add_plugin_dock_widget("napari-sam2-webgpu", "Segment Anything 2")
    w.load_model("tiny")              # or encoder=..., decoder=... ; backend="auto"
    w.encode(wait=True)
    w.add_point((120.0, 200.0))       # world coordinates, napari's axis order
    w.add_point((130.0, 260.0), positive=False)
    w.commit()
    w.propagate("both", wait=True)    # stacks: the current object through every slice
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_info
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from .._annotator import Annotator, AnnotatorError
from .._propagation import DIRECTIONS, PropagationController, PropagationRun
from ..image import EmbeddingCache
from ..models import MODEL_SIZES
from ..runtime import BACKENDS
from .encoding import ModelSession
from .errors import ErrorReporter
from .jobs import JobRunner, Workers, run_loop_until
from .loading import ModelChoice
from .panels import (
    CUSTOM,
    ActionsRow,
    MessagesPanel,
    ModelPanel,
    ObjectPanel,
    PropagationRow,
    fill_layer_combo,
)
from .propagation import PropagationRunner
from .shortcuts import SHORTCUT_HELP, KeyBindings
from .status import (
    StatusFacts,
    describe_object,
    error_message,
    propagate_button_state,
    status_text,
    with_error,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari

    from ..image import ImageEmbedding, Sam2Predictor


__all__ = ["HELP", "NEW_LABELS", "Sam2Widget"]

NEW_LABELS = "New Labels layer"
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

    Every button is also a method, for napari's console (see :meth:`load_model`,
    :meth:`encode`, :meth:`add_point`, :meth:`add_box`, :meth:`commit`, :meth:`propagate`,
    :meth:`clear`, :meth:`undo`); the layers in use are :attr:`image_layer`,
    :attr:`prompts_layer`, :attr:`box_layer`, :attr:`preview_layer` and :attr:`labels_layer`.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        Injected by napari when the widget is opened from the Plugins menu.

    Attributes
    ----------
    viewer : napari.Viewer
    annotator : napari_sam2_webgpu._annotator.Annotator
        The Qt-free core: prompts, decoding, preview, commits.
    cache : EmbeddingCache
        Embeddings per image layer, slice, contrast limits and model (LRU, bounded in bytes).
    propagation : napari_sam2_webgpu._propagation.PropagationController
        The Qt-free propagation through stacks (its ``check()`` says why Propagate is off).
    session : napari_sam2_webgpu._qt.encoding.ModelSession
        The loaded model (``session.predictor``) and when to load and encode.
    jobs : napari_sam2_webgpu._qt.jobs.JobRunner
        The running load or encode (``jobs.current``) and the encode queued after it.
    errors : napari_sam2_webgpu._qt.errors.ErrorReporter
        Turns failures into messages; keeps the last one.
    last_error : str or None
        The message of the last failure, shown in full in the dock under the buttons; None
        once an action (load, encode, decode, commit, undo, propagation) succeeded since.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        # napari hands plugin widgets a PublicOnlyProxy of the viewer, through which every
        # layer is a new proxy object: identity checks against event values would fail. Keep
        # the viewer itself (only its public API is used).
        self.viewer = _unwrap(napari_viewer)
        self.cache = EmbeddingCache()
        self.annotator = Annotator(
            self.viewer, cache=self.cache, run_async=self._run_async, defer=self._defer
        )
        self.propagation = PropagationController(self.annotator)
        self._closed = False
        self.errors = ErrorReporter(lambda message: self.messages.show_error(message), self._alive)
        self._workers = Workers(self._alive)
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

        self._build_ui()
        self._connect()
        self._keys.bind(self.viewer)
        self._refresh_layer_choices()
        active = self.viewer.layers.selection.active
        images = [layer for layer in self.viewer.layers if isinstance(layer, Image)]
        if isinstance(active, Image):
            self.image_layer = active
        elif images:
            self.image_layer = images[-1]
        self._refresh_status()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        self.setToolTip(f"{HELP}\nShortcuts: {SHORTCUT_HELP}")
        layout = QVBoxLayout(self)
        self.model_panel = ModelPanel()
        self.object_panel = ObjectPanel(HELP)
        help_label = QLabel(f"{HELP}\n{SHORTCUT_HELP}")
        help_label.setWordWrap(True)
        help_label.setStyleSheet("color: gray;")
        self.actions_row = ActionsRow()
        self.propagation_row = PropagationRow()
        self.messages = MessagesPanel()
        for part in (
            self.model_panel,
            self.object_panel,
            help_label,
            self.actions_row,
            self.propagation_row,
            self.messages,
        ):
            layout.addWidget(part)
        layout.addStretch(1)
        # The controls by name, as before the split into panels (tests and scripts use them).
        controls = {
            self.model_panel: (
                "image_combo model_combo custom_box encoder_edit decoder_edit backend_combo "
                "device_label encode_button"
            ),
            self.object_panel: (
                "labels_combo id_spin next_button multimask_check overwrite_check polarity_button"
            ),
            self.actions_row: "commit_button clear_button undo_button",
            self.propagation_row: "direction_combo propagate_button",
            self.messages: "error_label status_label",
        }
        for panel, names in controls.items():
            for name in names.split():
                setattr(self, name, getattr(panel, name))
        self._refresh_polarity()

    def _connect(self) -> None:
        self.image_combo.activated.connect(self._on_image_combo)
        self.labels_combo.activated.connect(self._on_labels_combo)
        self.model_combo.currentTextChanged.connect(lambda _: self._refresh_status())
        self.backend_combo.currentTextChanged.connect(lambda _: self._refresh_status())
        self.encode_button.clicked.connect(self._on_encode_button)
        self.next_button.clicked.connect(lambda: self.next_object())
        self.commit_button.clicked.connect(lambda: self.commit())
        self.clear_button.clicked.connect(lambda: self.clear())
        self.undo_button.clicked.connect(lambda: self.undo())
        self.propagate_button.clicked.connect(self._on_propagate_button)
        self.id_spin.valueChanged.connect(self._on_id_spin)
        self.multimask_check.toggled.connect(self._on_multimask)
        self.overwrite_check.toggled.connect(self._on_overwrite)
        self.polarity_button.toggled.connect(lambda on: setattr(self, "positive", not on))

        events = self.annotator.events
        events.status.connect(self._refresh_status)
        events.object_id.connect(self._on_object_id)
        events.polarity.connect(self._refresh_polarity)
        events.layers.connect(self._on_layers_changed)
        events.prompts.connect(self._refresh_status)
        events.error.connect(lambda event: self.errors.set(event.message))
        events.decoded.connect(lambda event: self.errors.clear())
        for emitter, callback in self._viewer_callbacks():
            emitter.connect(callback)

    def _viewer_callbacks(self) -> list[tuple[Any, Callable]]:
        layers = self.viewer.layers
        return [
            (layers.events.inserted, self._refresh_layer_choices),
            (layers.events.removed, self._on_layer_removed),
            (layers.events.moved, self._refresh_layer_choices),
            (layers.selection.events.active, self._on_active_layer),
        ]

    # --------------------------------------------------------- layer choices
    def _refresh_layer_choices(self, event: Any = None) -> None:
        if not self._alive():
            return
        images = [layer for layer in self.viewer.layers if isinstance(layer, Image)]
        labels = [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Labels) and layer is not self.annotator.preview_layer
        ]
        for layer in images + labels:
            layer.events.name.disconnect(self._refresh_layer_choices)
            layer.events.name.connect(self._refresh_layer_choices)
        a = self.annotator
        fill_layer_combo(self.image_combo, images, a.image_layer, "(no image layer)")
        fill_layer_combo(self.labels_combo, labels, a.labels_layer, NEW_LABELS, True)
        if self.annotator.image_layer is None and images:
            self.image_layer = images[-1]

    def _on_image_combo(self, index: int) -> None:
        layer = self.image_combo.itemData(index)
        if layer is not None:
            self.image_layer = layer

    def _on_labels_combo(self, index: int) -> None:
        try:
            self.labels_layer = self.labels_combo.itemData(index)
        except AnnotatorError as exc:
            self.errors.warn(str(exc))
            self._refresh_layer_choices()

    def _on_layer_removed(self, event: Any) -> None:
        job = self.jobs.current
        if job is not None and job.request is not None and job.request.layer is event.value:
            self.jobs.queued = False
            self.cancel(quiet=True)
        # Choosing another image may remove helper layers: not inside napari's removal loop.
        self._defer(self._refresh_layer_choices)

    def _defer(self, fn: Callable[[], None]) -> None:
        def run() -> None:
            if self._alive():
                fn()

        QTimer.singleShot(0, run)

    def _alive(self) -> bool:
        """False once the widget is closed or Qt deleted it (the viewer was closed)."""
        if self._closed:
            return False
        try:
            self.objectName()
        except RuntimeError:  # wrapped C/C++ object has been deleted
            self._teardown()
            return False
        return True

    def _on_active_layer(self, event: Any) -> None:
        layer = event.value
        if isinstance(layer, Image) and layer is not self.annotator.image_layer:
            self.image_layer = layer

    def _on_layers_changed(self, event: Any = None) -> None:
        for layer in (self.annotator.prompts_layer, self.annotator.box_layer):
            if layer is not None:
                self._keys.bind(layer)
        self._refresh_layer_choices()
        self._refresh_status()

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
        self._refresh_layer_choices()
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
        self._refresh_layer_choices()

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

    def _on_id_spin(self, value: int) -> None:
        if value != self.annotator.object_id:
            self.annotator.object_id = value

    def _on_object_id(self, event: Any = None) -> None:
        self.object_panel.show_object_id(self.annotator.object_id)

    def _on_multimask(self, on: bool) -> None:
        self.annotator.multimask = bool(on)
        self.annotator.request_decode()

    def _on_overwrite(self, on: bool) -> None:
        self.annotator.overwrite = bool(on)

    def _refresh_polarity(self, event: Any = None) -> None:
        self.object_panel.show_polarity(self.annotator.positive)

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

        Parameters
        ----------
        size : {"tiny", "small", "base_plus", "large"}, optional
            A SAM2.1 size from the registry (downloaded once, then cached). Default: the one
            chosen in the widget.
        encoder, decoder : path, optional
            Your own ONNX pair instead of ``size`` (both, this plugin's export or samexporter's).
        backend : {"auto", "webgpu", "cpu"}
            Execution provider; ``"auto"`` prefers WebGPU and falls back to the CPU.
        wait : bool
            Block (keeping the viewer responsive) until the model is loaded.

        Returns
        -------
        Sam2Predictor or None
            The loaded predictor when ``wait`` is True and loading succeeded, else None. A
            failure is shown in the viewer and kept in :attr:`last_error`.

        Raises
        ------
        ValueError
            Invalid arguments (unknown size or backend, only one of encoder/decoder).
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if (encoder is None) != (decoder is None):
            raise ValueError("Give both encoder= and decoder= (or neither).")
        if encoder is not None:
            if size is not None:
                raise ValueError("Give either size or encoder/decoder files, not both.")
            choice = ModelChoice(None, str(encoder), str(decoder), backend)
        else:
            if size is None:
                size = self.model_combo.currentText()
                if size == CUSTOM:
                    return self.load_model(
                        encoder=self.encoder_edit.text() or None,
                        decoder=self.decoder_edit.text() or None,
                        backend=backend,
                        wait=wait,
                    )
            if size not in MODEL_SIZES:
                raise ValueError(f"size must be one of {MODEL_SIZES}, got {size!r}")
            choice = ModelChoice(size, None, None, backend)
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

        Loads the chosen model first if needed. Embeddings are cached per layer, slice,
        contrast limits and model, so encoding a slice again is instant.

        Parameters
        ----------
        wait : bool
            Block (keeping the viewer responsive) until the embedding is ready, after a load
            still running (e.g. ``load_model(...)`` without ``wait``) and this encode.

        Returns
        -------
        ImageEmbedding or None
            With ``wait=True``, the embedding of the displayed slice. None when it could not be
            made (the load or the encode failed, no image, cancelled...): the reason is then
            shown in the viewer and the dock, and kept in :attr:`last_error`.
        """
        errors = self.errors.count
        self.session.encode()  # now, or after the running load or encode
        if not wait:
            return None
        # Only this encode (and the load before it): not decodes or a propagation.
        self._run_loop_until(lambda: not self.jobs.busy, None)
        embedding = self.session.chosen_embedding()
        if embedding is not None:
            return embedding
        if self.errors.count == errors and self._alive():  # never a silent None
            self.errors.warn(
                "SAM2: the displayed slice was not encoded (the encode was cancelled, or the "
                "image or slice changed meanwhile): press Encode again."
            )
        return None

    def cancel(self, quiet: bool = False) -> None:
        """Stop the running load or encode (its result is discarded).

        A download stops at once; ONNX Runtime cannot interrupt a running encode, so that one
        finishes in the background (its embedding is still cached), but the widget is free.
        """
        self.session.cancel(quiet)

    def _on_encode_button(self) -> None:
        if self.jobs.current is not None:
            self.cancel()
        else:
            self.encode()

    # ------------------------------------------------------------- jobs (worker threads)
    def _run_async(self, fn: Callable[[], Any], on_done: Callable[[Any], None]) -> Any:
        """Run ``fn`` (which never raises) in a worker thread; ``on_done`` on the GUI thread."""
        return self._workers.run(fn, on_done)

    @property
    def busy(self) -> bool:
        """Whether a load, an encode, a decode or a propagation is running or queued."""
        return bool(
            self.jobs.busy or self.annotator.decoding or self._workers or self.propagation.running
        )

    def wait(self, timeout: float | None = None) -> bool:
        """Process events until no load, encode or decode is running; whether that happened.

        For scripts and the console (the viewer stays responsive meanwhile).
        """
        return self._run_loop_until(lambda: not self.busy, timeout)

    def _run_loop_until(self, condition: Callable[[], bool], timeout: float | None) -> bool:
        return run_loop_until(condition, timeout, self._alive)

    # ------------------------------------------------------------- console API: prompts
    def add_point(self, position: Sequence[float], positive: bool = True) -> None:
        """Add a point prompt and decode (as a click would).

        Parameters
        ----------
        position : sequence of float
            World coordinates in napari's axis order, as ``event.position`` of a click (all
            ``viewer.dims.ndim`` of them, or only the two displayed ones).
        positive : bool
            Object (True) or background (False).

        Raises
        ------
        ValueError
            ``position`` is not 2 or ``viewer.dims.ndim`` numbers.
        """
        self.errors.guard(self.annotator.add_point, self._check_position(position), bool(positive))

    def add_box(self, start: Sequence[float], end: Sequence[float]) -> None:
        """Add a box prompt between two opposite corners (world coordinates) and decode.

        Raises
        ------
        ValueError
            A corner is not 2 or ``viewer.dims.ndim`` numbers.
        """
        self.errors.guard(
            self.annotator.add_box, self._check_position(start), self._check_position(end)
        )

    def _check_position(self, position: Sequence[float]) -> np.ndarray:
        """A world position as floats; ValueError (a wrong argument) for a wrong length."""
        pos = np.asarray(position, dtype=float).ravel()  # ValueError/TypeError: not numbers
        ndim = self.viewer.dims.ndim
        if len(pos) not in (2, ndim):
            raise ValueError(
                f"position has {len(pos)} coordinates; give the {ndim} world coordinates in "
                "napari's axis order (as event.position), or the 2 displayed ones."
            )
        return pos

    def commit(self) -> int:
        """Write the previewed mask into :attr:`labels_layer` under :attr:`object_id`.

        Waits for a decode still running. Paints only background pixels unless
        :attr:`overwrite`; one undo step of the Labels layer. Then clears the prompts and moves
        to the next free id. Returns the number of pixels written (0 if none, with a message).
        Right after :meth:`propagate` the object is in the labels already: only the clearing
        and the next id happen.
        """
        self.wait_for_decode()
        if self.propagation.is_propagated():
            # The object is already in the labels: committing means "done with it".
            done = self.object_id
            self.propagation.finish_object()
            show_info(f"SAM2: object {done} was propagated; next object {self.object_id}.")
            self.errors.clear()
            return 0
        painted = self.errors.guard(self.annotator.commit) or 0
        if painted:
            self.errors.clear()
        return painted

    def clear(self) -> None:
        """Remove the prompts and the preview (committed labels are untouched)."""
        self.annotator.clear()

    def undo(self) -> bool:
        """Undo the last change of :attr:`labels_layer` (napari's undo, as Ctrl+Z there)."""
        # Undoing a propagation keeps its object (its prompts are still there to run again).
        keep = self.object_id if self.propagation.is_last_undo_step() else None
        done = self.annotator.undo()
        if keep is not None:
            self.object_id = keep
        if done:
            self.errors.clear()
        else:
            show_info("SAM2: nothing to undo.")
        return done

    def next_object(self) -> int:
        """Set :attr:`object_id` to the next free id (largest label + 1); returns it."""
        return self.annotator.next_object()

    def wait_for_decode(self, timeout: float | None = None) -> None:
        """Process events until the latest prompt's mask is shown (or ``timeout`` seconds).

        Without a timeout, as :meth:`commit` waits: a decode always ends, and on a busy
        machine a fixed limit would commit a stale mask.
        """
        self._run_loop_until(lambda: not self.annotator.decoding, timeout)

    # ------------------------------------------------------------- console API: propagation
    def propagate(
        self, direction: str | None = None, *, axis: int | None = None, wait: bool = False
    ) -> PropagationRun | None:
        """Propagate the current object through the stack, in a worker thread.

        Its prompts on every slice go to SAM2's video propagator; each tracked slice is written
        into :attr:`labels_layer` under :attr:`object_id` as it arrives, as commits are
        (background or this object's pixels only, unless :attr:`overwrite`), replacing the
        object's earlier pixels there. The run is one undo step. To correct a slice where the
        mask drifted, add a point there and propagate again.

        Parameters
        ----------
        direction : {"forward", "backward", "both"}, optional
            From the first prompted slice on; default: the widget's choice.
        axis : int, optional
            Data axis to propagate along (default: the first one not displayed).
        wait : bool
            Block (keeping the viewer responsive) until the run ends.

        Returns
        -------
        PropagationRun or None
            The run (``frames_written``, ``seconds``, ``cancelled``, ``error``); None when it
            cannot start (the reason is shown and kept in :attr:`last_error`).

        Raises
        ------
        ValueError
            An unknown direction, or an axis that is displayed or not an axis of the image.
        """
        if direction is not None:
            if direction not in DIRECTIONS:
                raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
            self.direction_combo.setCurrentText(direction)
        if axis is not None:
            axis = self._check_axis(axis)
        run = self.errors.guard(self.propagation.start, self.direction_combo.currentText(), axis)
        if run is None:
            return None
        self._propagation_runner.start(run)
        if wait:
            self._run_loop_until(lambda: run.finished, None)
        return run

    def _check_axis(self, axis: Any) -> int:
        """``axis`` as an int; ValueError unless it is a not-displayed axis of the image."""
        try:
            axis = operator.index(axis)
        except TypeError:
            raise ValueError(f"axis must be an integer, got {axis!r}") from None
        try:
            sl = self.annotator.current_slice()
        except AnnotatorError:
            return axis  # no image, or a 3D view: a failure that start() reports
        free = [a for a, _ in sl.indices]
        if axis not in free:
            raise ValueError(
                f"axis must be a data axis of '{self.image_layer.name}' that is not displayed "
                f"({free or 'none: it is a 2D image'}), got {axis}"
            )
        return axis

    def cancel_propagation(self) -> None:
        """Stop the propagation after the slice being computed; slices written stay."""
        self._propagation_runner.cancel()

    def _on_propagate_button(self) -> None:
        if self.propagation.running:
            self.cancel_propagation()
        else:
            self.propagate()

    # ------------------------------------------------------------- status
    def _refresh_status(self, event: Any = None) -> None:
        if not self._alive():
            return
        a, p = self.annotator, self.session.predictor
        job_text = self.jobs.progress_text
        self.encode_button.setText("Cancel" if job_text is not None else "Encode")
        run = self.propagation.run or self.propagation.last_run
        facts = StatusFacts(
            model=f"{p.name} on {p.device}" if p is not None else None,
            job=job_text,
            has_image=a.image_layer is not None,
            ready=a.is_ready,
            last_encode_seconds=self.session.last_encode_seconds,
            last_decode_seconds=a.last_decode_seconds,
            last_latency_seconds=a.last_latency_seconds,
            last_score=a.last_score,
            propagation=run.describe() if run is not None else None,
            propagation_unavailable=self.propagation.unavailable_summary,
            cache_slices=len(self.cache),
            cache_bytes=self.cache.nbytes,
        )
        self.status_label.setText(status_text(facts))
        running = self.propagation.running
        reason = None if running else self.propagation.check()
        self.propagation_row.show_state(*propagate_button_state(running, reason))

    @property
    def last_error(self) -> str | None:
        """The message of the last failure (shown in full in the dock), or None."""
        return self.errors.last_error

    @property
    def status(self) -> str:
        """The status text, after the last error (if any) in full."""
        return with_error(self.last_error, self.status_label.text())

    # ------------------------------------------------------------- teardown
    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        self._teardown()
        super().closeEvent(event)

    def event(self, event: QEvent) -> bool:
        # napari closes a dock widget by taking it out of its dock (setParent(None)), without
        # closing it: that is when the shortcuts and layer callbacks must go.
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif getattr(self, "_docked", False):
                self._teardown()
        return super().event(event)

    def close(self) -> bool:
        """Close the widget: unbind its shortcuts and stop following the viewer."""
        self._teardown()
        return super().close()

    def _teardown(self) -> None:
        if self._closed:
            return
        self.jobs.cancel()
        self.jobs.queued = False
        self.propagation.cancel()
        self._propagation_runner.close_bar()
        self._closed = True
        self._keys.unbind_all()
        self.annotator.close()
        # Let go of the model and the embeddings (up to the cache's GiB) now: napari may keep a
        # closed widget, or its whole window, alive for a while.
        self.session.close()
        self.annotator.predictor = None
        self.propagation.set_model(None)
        self.cache.clear()
        for emitter, callback in self._viewer_callbacks():
            emitter.disconnect(callback)
        for layer in self.viewer.layers:
            layer.events.name.disconnect(self._refresh_layer_choices)
