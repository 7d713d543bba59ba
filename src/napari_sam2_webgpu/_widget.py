"""The SAM2 dock widget: model, encode, prompts, commit, propagate; drivable from the console.

The widget is thin: layer wiring, decoding and committing live in :mod:`._annotator` (no Qt),
propagation through stacks in :mod:`._propagation` (no Qt), and the embedding cache in
:mod:`.embedding_cache`. What is here is Qt: controls, the worker threads for loading, encoding
and propagating (with napari progress bars that can be cancelled), the decode worker (latest
click wins), keyboard shortcuts, and status.

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

import contextlib
import logging
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from napari.utils.progress import cancelable_progress
from qtpy.QtCore import QEvent, QEventLoop, QObject, Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ._annotator import Annotator, AnnotatorError, EncodeRequest, _describe
from ._propagation import DIRECTIONS, PropagationController, PropagationRun
from .embedding_cache import EmbeddingCache
from .models import MODEL_SIZES
from .predictor import PromptError
from .preprocess import ImageError
from .runtime import BACKENDS

if TYPE_CHECKING:  # pragma: no cover
    import napari

    from .predictor import ImageEmbedding, Sam2Predictor

logger = logging.getLogger("napari_sam2_webgpu")

__all__ = ["SHORTCUTS", "Sam2Widget"]

CUSTOM = "custom files"
NEW_LABELS = "New Labels layer"

#: Keyboard shortcuts (napari key names) -> widget method. Active while the viewer has focus.
SHORTCUTS = {
    "C": "commit",
    "Shift-C": "clear",
    "T": "toggle_polarity",
    "N": "next_object",
    "Control-Z": "undo",
}
HELP = (
    "Left click: positive point. Control-click (Cmd on macOS) or right click: negative point. "
    "T swaps them. Drag a point to move it, select it and press Delete to remove it. Draw a "
    "rectangle in 'SAM2 box' for a box prompt."
)
PROPAGATE_HELP = (
    "Track the current object through the stack from its prompted slices into the Labels layer "
    "(background pixels only, unless overwrite is on). Add a point where it drifts and "
    "propagate again. C afterwards: done, next object."
)
SHORTCUT_HELP = "C commit · Shift+C clear · T positive/negative · N next object · Ctrl+Z undo"


class _Cancelled(Exception):
    """Raised inside a download's progress callback to stop it."""


@dataclass(frozen=True)
class _ModelChoice:
    size: str | None
    encoder: str | None
    decoder: str | None
    backend: str

    def describe(self) -> str:
        if self.size:
            return f"sam2.1 {self.size}"
        return Path(self.encoder or "?").name


@dataclass
class _Job:
    """One load and/or encode running in a worker thread."""

    token: int
    choice: _ModelChoice | None  # model to load first (None: the loaded one)
    request: EncodeRequest | None  # slice to encode (None: load only)
    progress: Any = None
    cancelled: bool = False
    worker: Any = None


@dataclass
class _Outcome:
    predictor: Any = None
    embedding: Any = None
    seconds: float = 0.0
    error: BaseException | None = None


class _Bridge(QObject):
    """Carries progress from worker threads to the GUI thread (queued signal)."""

    progress = Signal(object, str, int, int)


class _Progress(cancelable_progress):
    """A napari progress bar whose cancel button calls back at once."""

    def cancel(self) -> None:
        super().cancel()
        if self.cancel_callback is not None:
            self.cancel_callback()


def _error_message(exc: BaseException) -> str:
    """A one-paragraph message for a failed load or encode."""
    name = type(exc).__name__
    if isinstance(exc, MemoryError):
        return "SAM2 ran out of memory. Close other programs, or crop the image."
    if name == "WebGPUUnavailableError":
        return f"WebGPU is not available: {exc} Choose backend 'auto' or 'cpu'."
    if isinstance(exc, ImageError | AnnotatorError | FileNotFoundError | ValueError) or (
        name.startswith("Model")
    ):
        return str(exc)
    return f"SAM2 failed: {name}: {exc}"


def _device_line(info: Any) -> str:
    """One short line for the Device row: where the model runs (the details go in a tooltip)."""
    provider = getattr(info, "provider", None)
    adapter = getattr(info, "adapter", None)
    if provider == "webgpu":
        if adapter is None:
            return "WebGPU"
        backend = f" ({adapter.backend})" if getattr(adapter, "backend", "") else ""
        return f"WebGPU: {adapter.name}{backend}"
    if provider == "cpu":
        return "CPU (WebGPU unavailable)" if getattr(info, "fallback_reason", None) else "CPU"
    return str(info).splitlines()[0] if str(info) else "unknown"


def _device_details(info: Any) -> str:
    """The Device row's tooltip: the execution provider in full, and where to learn more."""
    lines = [info.describe() if hasattr(info, "describe") else str(info)]
    reason = getattr(info, "fallback_reason", None)
    if reason:
        lines.append(f"Why not WebGPU: {reason}")
    requested = getattr(info, "requested", None)
    if requested:
        lines.append(f"Backend asked for: {requested}")
    lines.append("'napari-sam2-webgpu doctor' prints the full report.")
    return "\n".join(lines)


def _disconnect(slots: list[tuple[Any, Callable]]) -> None:
    """Disconnect a finished worker's ``(signal, slot)`` pairs.

    Qt keeps a connected slot for as long as the worker lives, and these slots refer to the
    worker and the widget: a reference cycle through Qt that Python's garbage collector cannot
    see, which would keep every widget, viewer and model of a session in memory.
    """
    for signal, slot in slots:
        with contextlib.suppress(TypeError, RuntimeError):
            signal.disconnect(slot)
    slots.clear()


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
        self.annotator.auto_encode = self._auto_encode
        self.propagation = PropagationController(self.annotator)
        self._propagation_bar: Any = None
        self.last_error: str | None = None
        self._errors = 0  # counts failures, so that encode(wait=True) knows one was reported
        self._predictor: Sam2Predictor | None = None
        self._loaded_choice: _ModelChoice | None = None
        self._job: _Job | None = None
        self._tokens = 0
        self._encode_queued = False
        self._workers: set[Any] = set()
        self._bridge = _Bridge()
        self._bridge.progress.connect(self._on_progress)
        self._bound_keys: list[tuple[Any, str, Any]] = []
        self._closed = False
        self._finishing = 0  # inside _job_done (which may process Qt events)
        self._last_encode_seconds: float | None = None

        self._build_ui()
        self._connect()
        self._bind_keys(self.viewer)
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
        form = QFormLayout()
        layout.addLayout(form)

        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The image layer to segment (follows the selected layer).")
        form.addRow("Image", self.image_combo)

        self.model_combo = QComboBox()
        self.model_combo.addItems([*MODEL_SIZES, CUSTOM])
        self.model_combo.setToolTip(
            "SAM2.1 model size (downloaded once), or your own encoder/decoder ONNX files."
        )
        form.addRow("Model", self.model_combo)
        self.custom_box = QWidget()
        grid = QGridLayout(self.custom_box)
        grid.setContentsMargins(0, 0, 0, 0)
        self.encoder_edit, self.decoder_edit = QLineEdit(), QLineEdit()
        for row, (label, edit) in enumerate(
            (("encoder", self.encoder_edit), ("decoder", self.decoder_edit))
        ):
            edit.setPlaceholderText(f"{label} .onnx file")
            browse = QToolButton()
            browse.setText("…")
            browse.clicked.connect(lambda _=False, e=edit, n=label: self._browse(e, n))
            grid.addWidget(QLabel(label), row, 0)
            grid.addWidget(edit, row, 1)
            grid.addWidget(browse, row, 2)
        self.custom_box.setVisible(False)
        form.addRow(self.custom_box)

        self.backend_combo = QComboBox()
        self.backend_combo.addItems(BACKENDS)
        self.backend_combo.setToolTip(
            "auto: WebGPU when a GPU is usable, else the CPU. webgpu: GPU or an error. cpu: CPU."
        )
        form.addRow("Backend", self.backend_combo)
        self.device_label = QLabel("not loaded")
        self.device_label.setWordWrap(True)
        self.device_label.setToolTip("Where the loaded model runs (load a model first).")
        form.addRow("Device", self.device_label)

        self.encode_button = QPushButton("Encode")
        self.encode_button.setToolTip(
            "Encode the displayed slice (loads the model first). Clicking on a slice that is "
            "not encoded yet encodes it too."
        )
        layout.addWidget(self.encode_button)

        form2 = QFormLayout()
        layout.addLayout(form2)
        self.labels_combo = QComboBox()
        self.labels_combo.setToolTip("Where Commit writes: an existing Labels layer or a new one.")
        form2.addRow("Labels", self.labels_combo)
        row = QHBoxLayout()
        self.id_spin = QSpinBox()
        self.id_spin.setRange(1, 2**31 - 1)
        self.id_spin.setToolTip("The label value of the next commit.")
        self.next_button = QPushButton("Next (N)")
        self.next_button.setToolTip("Next free object id (largest label + 1).")
        row.addWidget(self.id_spin, 1)
        row.addWidget(self.next_button)
        form2.addRow("Object id", row)
        self.multimask_check = QCheckBox("Multimask (best of 3 candidates)")
        self.multimask_check.setChecked(True)
        self.overwrite_check = QCheckBox("Overwrite existing labels")
        self.overwrite_check.setToolTip(
            "Off: commits paint only background pixels, existing labels are kept."
        )
        form2.addRow(self.multimask_check)
        form2.addRow(self.overwrite_check)
        self.polarity_button = QPushButton()
        self.polarity_button.setCheckable(True)
        self.polarity_button.setToolTip(HELP)
        form2.addRow("Left click", self.polarity_button)
        help_label = QLabel(f"{HELP}\n{SHORTCUT_HELP}")
        help_label.setWordWrap(True)
        help_label.setStyleSheet("color: gray;")
        layout.addWidget(help_label)

        buttons = QHBoxLayout()
        self.commit_button = QPushButton("Commit (C)")
        self.clear_button = QPushButton("Clear (⇧C)")
        self.undo_button = QPushButton("Undo (^Z)")
        for button in (self.commit_button, self.clear_button, self.undo_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)
        row = QHBoxLayout()
        self.direction_combo = QComboBox()
        self.direction_combo.addItems(DIRECTIONS)
        self.direction_combo.setCurrentText("both")
        self.direction_combo.setToolTip("From the first prompted slice: to the end, start or both.")
        self.propagate_button = QPushButton("Propagate")
        row.addWidget(self.propagate_button, 1)
        row.addWidget(self.direction_combo)
        layout.addLayout(row)

        # The last failure in full (toasts cut long messages), selectable to copy it.
        self.error_label = QLabel()
        self.error_label.setObjectName("sam2_error")
        self.error_label.setWordWrap(True)
        self.error_label.setTextFormat(Qt.TextFormat.PlainText)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setStyleSheet("color: #e8605a;")  # readable on dark and light themes
        self.error_label.setVisible(False)
        layout.addWidget(self.error_label)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status_label)
        layout.addStretch(1)
        self._refresh_polarity()

    def _connect(self) -> None:
        self.image_combo.activated.connect(self._on_image_combo)
        self.labels_combo.activated.connect(self._on_labels_combo)
        self.model_combo.currentTextChanged.connect(self._on_model_combo)
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
        events.error.connect(lambda event: self._set_error(event.message))
        events.decoded.connect(lambda event: self._clear_error())
        layers = self.viewer.layers
        layers.events.inserted.connect(self._refresh_layer_choices)
        layers.events.removed.connect(self._on_layer_removed)
        layers.events.moved.connect(self._refresh_layer_choices)
        layers.selection.events.active.connect(self._on_active_layer)

    def _browse(self, edit: QLineEdit, label: str) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, f"SAM2 {label} (ONNX)", edit.text(), "ONNX models (*.onnx);;All files (*)"
        )
        if path:
            edit.setText(path)

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
        self._fill(self.image_combo, images, self.annotator.image_layer, "(no image layer)")
        self._fill(self.labels_combo, labels, self.annotator.labels_layer, NEW_LABELS, True)
        if self.annotator.image_layer is None and images:
            self.image_layer = images[-1]

    @staticmethod
    def _fill(combo: QComboBox, layers: list, current: Any, empty: str, keep_empty=False) -> None:
        combo.blockSignals(True)
        combo.clear()
        if keep_empty or not layers:
            combo.addItem(empty, None)
        for layer in layers:
            combo.addItem(layer.name, layer)
        index = max(0, next((i for i in range(combo.count()) if combo.itemData(i) is current), 0))
        combo.setCurrentIndex(index)
        combo.blockSignals(False)

    def _on_image_combo(self, index: int) -> None:
        layer = self.image_combo.itemData(index)
        if layer is not None:
            self.image_layer = layer

    def _on_labels_combo(self, index: int) -> None:
        try:
            self.labels_layer = self.labels_combo.itemData(index)
        except AnnotatorError as exc:
            self._warn(str(exc))
            self._refresh_layer_choices()

    def _on_layer_removed(self, event: Any) -> None:
        job = self._job
        if job is not None and job.request is not None and job.request.layer is event.value:
            self._encode_queued = False
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
            if layer is not None and not any(b[0] is layer for b in self._bound_keys):
                self._bind_keys(layer)
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
            raise AnnotatorError(f"{_describe(layer)} is not an image layer.")  # a ValueError
        if self._job is not None and self._job.request is not None:
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
        return self._predictor

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
        self.id_spin.blockSignals(True)
        self.id_spin.setValue(self.annotator.object_id)
        self.id_spin.blockSignals(False)

    def _on_multimask(self, on: bool) -> None:
        self.annotator.multimask = bool(on)
        self.annotator.request_decode()

    def _on_overwrite(self, on: bool) -> None:
        self.annotator.overwrite = bool(on)

    def _refresh_polarity(self, event: Any = None) -> None:
        positive = self.annotator.positive
        self.polarity_button.blockSignals(True)
        self.polarity_button.setChecked(not positive)
        self.polarity_button.setText(
            "positive point (green) · T" if positive else "negative point (red) · T"
        )
        self.polarity_button.blockSignals(False)

    # ------------------------------------------------------------- console API: model and encoding
    def _on_model_combo(self, text: str) -> None:
        self.custom_box.setVisible(text == CUSTOM)
        self._refresh_status()

    def _selected_choice(self) -> _ModelChoice:
        backend = self.backend_combo.currentText()
        size = self.model_combo.currentText()
        if size == CUSTOM:
            encoder, decoder = self.encoder_edit.text().strip(), self.decoder_edit.text().strip()
            return _ModelChoice(None, encoder or None, decoder or None, backend)
        return _ModelChoice(size, None, None, backend)

    def _show_choice(self, choice: _ModelChoice) -> None:
        for combo, text in (
            (self.model_combo, choice.size or CUSTOM),
            (self.backend_combo, choice.backend),
        ):
            combo.blockSignals(True)
            combo.setCurrentText(text)
            combo.blockSignals(False)
        if choice.size is None:
            self.encoder_edit.setText(choice.encoder or "")
            self.decoder_edit.setText(choice.decoder or "")
        self.custom_box.setVisible(choice.size is None)

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
            choice = _ModelChoice(None, str(encoder), str(decoder), backend)
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
            choice = _ModelChoice(size, None, None, backend)
        self._show_choice(choice)
        if choice == self._loaded_choice and self._predictor is not None:
            return self._predictor
        if self._job is not None and self._job.choice == choice:
            pass  # already loading it
        else:
            if self._job is not None:
                if self._job.request is not None:
                    self._encode_queued = True
                    show_info(
                        "Model switched during encoding: the displayed slice will be encoded "
                        f"again with {choice.describe()}."
                    )
                self.cancel(quiet=True)
            self._start_job(choice, None)
        if wait:
            self.wait()
            return self._predictor if self._loaded_choice == choice else None
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
        errors = self._errors
        if self._job is not None:
            self._encode_queued = True  # after the running load or encode
        else:
            self._start_encode()
        if not wait:
            return None
        # Only this encode (and the load before it): not decodes or a propagation.
        self._run_loop_until(
            lambda: self._job is None and not self._encode_queued and not self._finishing, None
        )
        # The chosen model's embedding only: after a failed load the old model is still there.
        chosen = self._selected_choice() == self._loaded_choice
        if chosen and self._predictor is not None and self.annotator.is_ready:
            embedding = self._predictor.embedding
            if embedding is not None:
                return embedding
        if self._errors == errors and self._alive():  # never a silent None
            self._warn(
                "SAM2: the displayed slice was not encoded (the encode was cancelled, or the "
                "image or slice changed meanwhile): press Encode again."
            )
        return None

    def _start_encode(self) -> None:
        choice = self._selected_choice()
        need_load = self._predictor is None or choice != self._loaded_choice
        try:
            request = self.annotator.encode_request()
        except (AnnotatorError, ImageError) as exc:
            self._fail(str(exc))
            return
        if need_load and choice.size is None and not (choice.encoder and choice.decoder):
            self._fail("Choose the encoder and decoder .onnx files of your custom model.")
            return
        if not need_load:
            cached = self.cache.get(request.key(self.annotator.model_key))
            if cached is not None:
                self._clear_error()
                self.annotator.finish_encode(request, cached, self._predictor)
                self._refresh_status()
                return
        self._start_job(choice if need_load else None, request)

    def _auto_encode(self) -> None:
        """Prompts arrived on a slice that is not encoded (called by the annotator)."""
        if self._job is not None:
            # After the running job, the displayed slice is encoded unless that job did it.
            self._encode_queued = True
            return
        if self._predictor is None:
            self._warn(
                "No SAM2 model is loaded yet: choose a model and press Encode. Your prompts "
                "are kept and decoded once the image is encoded."
            )
            return
        show_info("This slice is not encoded yet: encoding it now; the mask follows.")
        self._start_encode()

    def cancel(self, quiet: bool = False) -> None:
        """Stop the running load or encode (its result is discarded).

        A download stops at once; ONNX Runtime cannot interrupt a running encode, so that one
        finishes in the background (its embedding is still cached), but the widget is free.
        """
        job, self._job = self._job, None
        self._encode_queued = self._encode_queued and quiet
        if job is None:
            return
        job.cancelled = True
        self._close_progress(job)
        if not quiet:
            show_info("SAM2: cancelled.")
        self._refresh_status()

    def _on_encode_button(self) -> None:
        if self._job is not None:
            self.cancel()
        else:
            self.encode()

    # ------------------------------------------------------------- jobs (worker threads)
    def _start_job(self, choice: _ModelChoice | None, request: EncodeRequest | None) -> None:
        self._tokens += 1
        job = _Job(self._tokens, choice, request)
        # Current before its progress bar exists: creating one processes Qt events, in which a
        # waiting encode(wait=True) must not see "no job".
        self._job = job
        what = choice.describe() if choice is not None else ""
        # Steps (look for the model / create sessions / encode); downloads count KiB.
        steps = (2 if choice is not None else 0) + (1 if request is not None else 0)
        job.progress = _Progress(
            total=steps,
            desc=f"SAM2: loading {what}" if choice is not None else "SAM2: encoding",
            cancel_callback=lambda: self._cancel_job(job),
        )
        if job.cancelled:  # while the bar was being made
            self._close_progress(job)
            return
        predictor = self._predictor
        bridge = self._bridge

        def report(text: str, done: int, total: int = steps) -> None:
            if job.cancelled:
                raise _Cancelled
            bridge.progress.emit(job, text, done, total)

        def work() -> _Outcome:  # worker thread; never raises
            try:
                pred = predictor if choice is None else self._load(choice, report)
                if request is None or job.cancelled:
                    return _Outcome(predictor=pred)
                report(f"SAM2: encoding ({request.slice.describe()})", steps - 1)
                start = time.perf_counter()
                embedding = request.compute(pred)
                return _Outcome(pred, embedding, time.perf_counter() - start)
            except BaseException as exc:  # noqa: BLE001 - reported on the GUI thread
                return _Outcome(error=exc)

        job.worker = self._run_async(work, lambda outcome: self._job_done(job, outcome))
        self._refresh_status()

    @staticmethod
    def _load(choice: _ModelChoice, report: Callable[..., None]) -> Sam2Predictor:
        from .predictor import Sam2Predictor

        if choice.size is not None:
            from .models import resolve_model

            report(f"SAM2: looking for {choice.describe()}", 0)

            def download(done: int, total: int, filename: str) -> None:
                report(f"SAM2: downloading {filename}", done >> 10, total >> 10)

            # The library's one policy: an installed export (with video components) wins.
            paths = resolve_model(choice.size, progress=download)
            encoder, decoder, name = paths.encoder, paths.decoder, choice.describe()
        else:
            encoder, decoder, name = choice.encoder, choice.decoder, None
        report("SAM2: creating ONNX Runtime sessions", 1)
        return Sam2Predictor.from_files(encoder, decoder, choice.backend, name=name)

    def _cancel_job(self, job: _Job) -> None:
        if job is self._job:
            self.cancel()

    def _on_progress(self, job: _Job, text: str, done: int, total: int) -> None:
        bar = job.progress
        if job is not self._job or bar is None:
            return
        if bar.desc != text:
            bar.set_description(text)
        if bar.total != total:
            bar.total = total
        if total and bar.n != min(done, total):
            bar.n = min(done, total)
            bar.update(0)

    def _close_progress(self, job: _Job) -> None:
        if job.progress is not None:
            job.progress.close()
            job.progress = None

    def _job_done(self, job: _Job, outcome: _Outcome) -> None:
        if self._closed:
            return
        # Closing a progress bar processes Qt events: until the outcome is applied (and a
        # queued encode started), waiting callers must still see the widget busy.
        self._finishing += 1
        try:
            self._apply_outcome(job, outcome)
        finally:
            self._finishing -= 1
        self._refresh_status()

    def _apply_outcome(self, job: _Job, outcome: _Outcome) -> None:
        current = job is self._job
        if current:
            self._job = None
            self._close_progress(job)
        if outcome.error is not None:
            if current and not isinstance(outcome.error, _Cancelled):
                self._encode_queued = False
                self._fail(_error_message(outcome.error), outcome.error)
            return
        if current:
            self._clear_error()
        if current and job.choice is not None:
            self._set_predictor(outcome.predictor, job.choice)
        if outcome.embedding is not None:
            applied = self.annotator.finish_encode(
                job.request, outcome.embedding, outcome.predictor, apply=current
            )
            if applied and current:
                self._last_encode_seconds = outcome.seconds
        if self._encode_queued and self._job is None:
            self._encode_queued = False
            if not self.annotator.has_exact_embedding() or not self.annotator.is_ready:
                self._start_encode()

    def _set_predictor(self, predictor: Sam2Predictor, choice: _ModelChoice) -> None:
        self._predictor = predictor
        self._loaded_choice = choice
        self._last_encode_seconds = None
        info = predictor.backend_info
        self.device_label.setText(_device_line(info))
        self.device_label.setToolTip(_device_details(info))
        self.annotator.set_predictor(predictor)
        self.propagation.set_model(predictor, choice.size)

    def _run_async(self, fn: Callable[[], Any], on_done: Callable[[Any], None]) -> Any:
        """Run ``fn`` (which never raises) in a worker thread; ``on_done`` on the GUI thread."""
        # napari's window keeps every worker (its task list), so the worker gets ``fn`` (and
        # the model, pixels... it refers to) only through a holder emptied when it finishes.
        holder = [fn]
        worker = create_worker(lambda: holder[0](), _start_thread=False)
        self._workers.add(worker)

        def done(result: Any) -> None:
            if self._alive():
                on_done(result)

        def finished() -> None:
            self._workers.discard(worker)
            _disconnect(slots)
            holder.clear()

        slots = [(worker.returned, done), (worker.finished, finished)]
        for signal, slot in slots:
            signal.connect(slot)
        worker.start()
        return worker

    @property
    def busy(self) -> bool:
        """Whether a load, an encode, a decode or a propagation is running or queued."""
        return bool(
            self._job is not None
            or self._encode_queued
            or self._finishing
            or self.annotator.decoding
            or self._workers
            or self.propagation.running
        )

    def wait(self, timeout: float | None = None) -> bool:
        """Process events until no load, encode or decode is running; whether that happened.

        For scripts and the console (the viewer stays responsive meanwhile).
        """
        return self._run_loop_until(lambda: not self.busy, timeout)

    def _run_loop_until(self, condition: Callable[[], bool], timeout: float | None) -> bool:
        """Run a nested Qt event loop (idle, not busy-polling) until ``condition()``."""
        if condition() or not self._alive():
            return condition()
        loop = QEventLoop()
        check = QTimer()
        check.setInterval(10)
        check.timeout.connect(lambda: (condition() or not self._alive()) and loop.quit())
        if timeout is not None:
            QTimer.singleShot(int(timeout * 1000), loop.quit)
        check.start()
        loop.exec()
        check.stop()
        return condition()

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
        self._guard(self.annotator.add_point, self._check_position(position), bool(positive))

    def add_box(self, start: Sequence[float], end: Sequence[float]) -> None:
        """Add a box prompt between two opposite corners (world coordinates) and decode.

        Raises
        ------
        ValueError
            A corner is not 2 or ``viewer.dims.ndim`` numbers.
        """
        self._guard(self.annotator.add_box, self._check_position(start), self._check_position(end))

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
            self._clear_error()
            return 0
        painted = self._guard(self.annotator.commit) or 0
        if painted:
            self._clear_error()
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
            self._clear_error()
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
        run = self._guard(self.propagation.start, self.direction_combo.currentText(), axis)
        if run is None:
            return None
        self._propagation_bar = _Progress(
            total=0,
            desc=f"SAM2: propagating object {run.object_id}",
            cancel_callback=self.cancel_propagation,
        )
        holder = [run]  # see _run_async: napari keeps the worker

        def steps() -> Any:
            yield from holder[0].steps()

        worker = create_worker(steps, _start_thread=False)
        self._workers.add(worker)

        def finished() -> None:
            _disconnect(slots)
            holder.clear()
            self._on_propagation_done(run, worker)

        slots = [
            (worker.yielded, lambda step: self._on_propagation_step(run, step)),
            (worker.finished, finished),
        ]
        for signal, slot in slots:
            signal.connect(slot)
        worker.start()
        self._refresh_status()
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
        run = self.propagation.run
        if run is None:
            return
        run.cancel()
        self._close_propagation_bar()
        show_info(f"SAM2: propagation cancelled after {len(run.frames_written)} slices.")
        self._refresh_status()

    def _on_propagate_button(self) -> None:
        if self.propagation.running:
            self.cancel_propagation()
        else:
            self.propagate()

    def _on_propagation_step(self, run: PropagationRun, step: Any) -> None:
        if not self._alive() or run.cancelled:
            return
        try:
            self.propagation.apply(run, step)
        except Exception as exc:  # e.g. a read-only Labels layer: stop, say why
            run.error = exc
            run.cancel()
        bar = self._propagation_bar
        if bar is not None and step.total:
            bar.total = step.total
            bar.n = step.done
            bar.update(0)
        self._refresh_status()

    def _on_propagation_done(self, run: PropagationRun, worker: Any) -> None:
        self._workers.discard(worker)
        self.propagation.finish(run)
        if not self._alive():
            return
        self._close_propagation_bar()
        if run.error is not None:
            self._fail(_error_message(run.error), run.error)
        elif not run.cancelled:
            self._clear_error()
        self._refresh_status()

    def _close_propagation_bar(self) -> None:
        bar, self._propagation_bar = self._propagation_bar, None
        if bar is not None:
            bar.close()

    def _guard(self, fn: Callable, *args: Any) -> Any:
        """Run a console method's work (arguments already checked): a failure becomes a
        message and None, never a traceback, as the user guide promises."""
        try:
            return fn(*args)
        except (AnnotatorError, ImageError, PromptError) as exc:
            self._warn(str(exc))
        except Exception as exc:  # e.g. a read-only Labels layer: say so, keep going
            message = f"SAM2 failed: {type(exc).__name__}: {exc}"
            logger.warning("napari-sam2-webgpu: %s", message, exc_info=exc)
            self._set_error(message)
            show_error(message)
        return None

    def _warn(self, message: str) -> None:
        self._set_error(message)
        show_warning(message)

    def _fail(self, message: str, exc: BaseException | None = None) -> None:
        self._set_error(message)
        if exc is not None and not isinstance(
            exc, ImageError | AnnotatorError | FileNotFoundError | ValueError
        ):
            logger.warning("napari-sam2-webgpu: %s", message, exc_info=exc)
        show_error(message)

    def _set_error(self, message: str | None) -> None:
        """Keep ``message`` as :attr:`last_error` and show it in full in the dock."""
        self.last_error = message or None
        if message:
            self._errors += 1
        if not self._alive():
            return
        self.error_label.setText(message or "")
        self.error_label.setVisible(bool(message))

    def _clear_error(self) -> None:
        """An action succeeded: the last error is no longer current."""
        if self.last_error is not None:
            self._set_error(None)

    # ------------------------------------------------------------- shortcuts
    def _bind_keys(self, target: Any) -> None:
        for key, method in SHORTCUTS.items():
            func = getattr(self, method)
            previous = target.bind_key(
                key, lambda _target, f=func: f() if self._alive() else None, overwrite=True
            )
            self._bound_keys.append((target, key, previous))

    def _unbind_keys(self) -> None:
        for target, key, previous in reversed(self._bound_keys):
            target.bind_key(key, previous, overwrite=True)
        self._bound_keys.clear()

    # ------------------------------------------------------------- status
    def _refresh_status(self, event: Any = None) -> None:
        if not self._alive():
            return
        a = self.annotator
        busy = self._job is not None
        self.encode_button.setText("Cancel" if busy else "Encode")
        p = self._predictor
        lines = [f"Model: {p.name} on {p.device}" if p is not None else "Model: none loaded"]
        if busy:
            bar = self._job.progress
            lines.append(str(bar.desc) if bar is not None else "working…")
        elif a.image_layer is None:
            lines.append("Open an image layer.")
        elif a.is_ready:
            lines.append("Slice encoded: click on the objects.")
        else:
            lines.append("Slice not encoded: press Encode (or just click).")
        if self._last_encode_seconds is not None:
            lines.append(f"Last encode {self._last_encode_seconds:.2f} s")
        if a.last_decode_seconds is not None:
            score = f", IoU {a.last_score:.2f}" if a.last_score is not None else ""
            lines.append(
                f"Last decode {a.last_decode_seconds * 1e3:.0f} ms "
                f"(click to mask {a.last_latency_seconds * 1e3:.0f} ms{score})"
            )
        run = self.propagation.run or self.propagation.last_run
        if run is not None:
            lines.append(run.describe())
        elif p is not None and self.propagation.unavailable_summary:
            # One line; the Propagate button's tooltip has the whole explanation.
            lines.append(self.propagation.unavailable_summary)
        lines.append(f"Cache: {len(self.cache)} slices, {self.cache.nbytes / 2**20:.0f} MiB")
        self.status_label.setText("\n".join(lines))
        running = self.propagation.running
        reason = None if running else self.propagation.check()
        self.propagate_button.setText("Cancel propagation" if running else "Propagate")
        self.propagate_button.setEnabled(reason is None)
        self.propagate_button.setToolTip(reason or PROPAGATE_HELP)

    @property
    def status(self) -> str:
        """The status text, after the last error (if any) in full."""
        text = self.status_label.text()
        return f"{self.last_error}\n{text}" if self.last_error else text

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
        job, self._job = self._job, None
        if job is not None:
            job.cancelled = True
            self._close_progress(job)
        self._encode_queued = False
        self.propagation.cancel()
        self._close_propagation_bar()
        self._closed = True
        self._unbind_keys()
        self.annotator.close()
        # Let go of the model and the embeddings (up to the cache's GiB) now: napari may keep a
        # closed widget, or its whole window, alive for a while.
        self._predictor = self._loaded_choice = None
        self.annotator.predictor = None
        self.propagation.set_model(None)
        self.cache.clear()
        layers = self.viewer.layers
        for emitter, cb in (
            (layers.events.inserted, self._refresh_layer_choices),
            (layers.events.removed, self._on_layer_removed),
            (layers.events.moved, self._refresh_layer_choices),
            (layers.selection.events.active, self._on_active_layer),
        ):
            emitter.disconnect(cb)
        for layer in layers:
            layer.events.name.disconnect(self._refresh_layer_choices)
