"""The dock's rows as small QWidgets: controls only, no behaviour.

:class:`Sam2Widget <napari_sam2_webgpu._qt.widget.Sam2Widget>` composes them top to bottom
and connects their signals to the annotator and the job runner.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
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

from ..models import MODEL_SIZES, installed_models
from ..runtime import BACKENDS
from ..video import DIRECTIONS
from .loading import ModelChoice
from .status import device_details, device_line, polarity_text

__all__ = [
    "CUSTOM",
    "ActionsRow",
    "MessagesPanel",
    "ModelPanel",
    "ObjectPanel",
    "PropagationRow",
    "fill_layer_combo",
]

#: The model combo's entry for your own encoder/decoder files.
CUSTOM = "custom files"


def _form(widget: QWidget) -> QFormLayout:
    form = QFormLayout(widget)
    form.setContentsMargins(0, 0, 0, 0)
    return form


def fill_layer_combo(
    combo: QComboBox, layers: list, current: Any, empty: str, keep_empty: bool = False
) -> None:
    """Show ``layers`` (item data: the layer) in ``combo``, ``current`` selected, silently.

    ``empty`` is the entry shown when there is no layer, or always first if ``keep_empty``.
    """
    combo.blockSignals(True)
    combo.clear()
    if keep_empty or not layers:
        combo.addItem(empty, None)
    for layer in layers:
        combo.addItem(layer.name, layer)
    index = max(0, next((i for i in range(combo.count()) if combo.itemData(i) is current), 0))
    combo.setCurrentIndex(index)
    combo.blockSignals(False)


def _installed_names() -> list[str]:
    """Models installed with ``convert --install`` under their own name (not a size's)."""
    try:
        return [n for n in installed_models() if n not in MODEL_SIZES]
    except OSError:  # an unreadable cache lists nothing extra
        return []


class ModelPanel(QWidget):
    """Image layer, model (a size or custom files), backend, device, and the Encode button."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        layout.addLayout(form)

        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The image layer to segment (follows the selected layer).")
        form.addRow("Image", self.image_combo)

        self.model_combo = QComboBox()
        self.model_combo.addItems([*MODEL_SIZES, *_installed_names(), CUSTOM])
        self.model_combo.setToolTip(
            "SAM2.1 model size (built once from Meta's checkpoint), a model installed with "
            "`napari-sam2-webgpu convert ... --install`, or your own ONNX files."
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
        self.model_combo.currentTextChanged.connect(
            lambda text: self.custom_box.setVisible(text == CUSTOM)
        )

    def selected_choice(self) -> ModelChoice:
        """The model and backend chosen in the controls."""
        backend = self.backend_combo.currentText()
        size = self.model_combo.currentText()
        if size == CUSTOM:
            encoder, decoder = self.encoder_edit.text().strip(), self.decoder_edit.text().strip()
            return ModelChoice(None, encoder or None, decoder or None, backend)
        return ModelChoice(size, None, None, backend)

    def show_choice(self, choice: ModelChoice) -> None:
        """Set the controls to ``choice`` without emitting their signals."""
        name = choice.size or CUSTOM
        if self.model_combo.findText(name) < 0:  # installed after the dock was opened
            self.model_combo.insertItem(self.model_combo.count() - 1, name)
        for combo, text in (
            (self.model_combo, name),
            (self.backend_combo, choice.backend),
        ):
            combo.blockSignals(True)
            combo.setCurrentText(text)
            combo.blockSignals(False)
        if choice.size is None:
            self.encoder_edit.setText(choice.encoder or "")
            self.decoder_edit.setText(choice.decoder or "")
        self.custom_box.setVisible(choice.size is None)

    def show_device(self, info: Any) -> None:
        """Show where the loaded model runs (``BackendInfo``): a short line, details as tooltip."""
        self.device_label.setText(device_line(info))
        self.device_label.setToolTip(device_details(info))

    def _browse(self, edit: QLineEdit, label: str) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, f"SAM2 {label} (ONNX)", edit.text(), "ONNX models (*.onnx);;All files (*)"
        )
        if path:
            edit.setText(path)


class ObjectPanel(QWidget):
    """Target Labels layer, object id, multimask, overwrite, and the click polarity."""

    def __init__(self, help_text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        form = _form(self)
        self.labels_combo = QComboBox()
        self.labels_combo.setToolTip("Where Commit writes: an existing Labels layer or a new one.")
        form.addRow("Labels", self.labels_combo)
        row = QHBoxLayout()
        self.id_spin = QSpinBox()
        self.id_spin.setRange(1, 2**31 - 1)
        self.id_spin.setToolTip("The label value of the next commit.")
        self.next_button = QPushButton("Next (N)")
        self.next_button.setToolTip("Next free object id (largest label + 1).")
        row.addWidget(self.id_spin, 1)
        row.addWidget(self.next_button)
        form.addRow("Object id", row)
        self.multimask_check = QCheckBox("Multimask (best of 3 candidates)")
        self.multimask_check.setChecked(True)
        self.overwrite_check = QCheckBox("Overwrite existing labels")
        self.overwrite_check.setToolTip(
            "Off: commits paint only background pixels, existing labels are kept."
        )
        form.addRow(self.multimask_check)
        form.addRow(self.overwrite_check)
        self.polarity_button = QPushButton()
        self.polarity_button.setCheckable(True)
        self.polarity_button.setToolTip(help_text)
        form.addRow("Left click", self.polarity_button)

    def show_object_id(self, value: int) -> None:
        """Show ``value`` in the spin box without emitting its signal."""
        self.id_spin.blockSignals(True)
        self.id_spin.setValue(value)
        self.id_spin.blockSignals(False)

    def show_polarity(self, positive: bool) -> None:
        """Show what a plain left click adds, without emitting the button's signal."""
        self.polarity_button.blockSignals(True)
        self.polarity_button.setChecked(not positive)
        self.polarity_button.setText(polarity_text(positive))
        self.polarity_button.blockSignals(False)


class ActionsRow(QWidget):
    """Commit, Clear, Undo and Refine label."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.commit_button = QPushButton("Commit (C)")
        self.clear_button = QPushButton("Clear (⇧C)")
        self.undo_button = QPushButton("Undo (^Z)")
        self.refine_button = QPushButton("Refine label")
        self.refine_button.setToolTip(
            "Refine the label selected in the Labels layer (napari's label box or its picker) "
            "on this slice: its mask is SAM2's prompt, clicks correct it, Commit replaces it."
        )
        for button in (
            self.commit_button,
            self.clear_button,
            self.undo_button,
            self.refine_button,
        ):
            row.addWidget(button)


class PropagationRow(QWidget):
    """The Propagate button (Cancel propagation while one runs) and the direction."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.direction_combo = QComboBox()
        self.direction_combo.addItems(DIRECTIONS)
        self.direction_combo.setCurrentText("both")
        self.direction_combo.setToolTip("From the first prompted slice: to the end, start or both.")
        self.propagate_button = QPushButton("Propagate")
        row.addWidget(self.propagate_button, 1)
        row.addWidget(self.direction_combo)

    def show_state(self, text: str, enabled: bool, tooltip: str) -> None:
        """Set the button from :func:`~napari_sam2_webgpu._qt.status.propagate_button_state`."""
        self.propagate_button.setText(text)
        self.propagate_button.setEnabled(enabled)
        self.propagate_button.setToolTip(tooltip)


def _selectable_label() -> QLabel:
    label = QLabel()
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class MessagesPanel(QWidget):
    """The last failure in full (toasts cut long messages) and the status, both selectable."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.error_label = _selectable_label()
        self.error_label.setObjectName("sam2_error")
        self.error_label.setStyleSheet("color: #e8605a;")  # readable on dark and light themes
        self.error_label.setVisible(False)
        layout.addWidget(self.error_label)
        self.status_label = _selectable_label()
        layout.addWidget(self.status_label)

    def show_error(self, message: str | None) -> None:
        """Show ``message`` (hide the label for None)."""
        self.error_label.setText(message or "")
        self.error_label.setVisible(bool(message))
