"""The dock's panels, top to bottom, bound to the annotator's settings; what they show.

:class:`DockView` owns the layout of the panels of :mod:`.panels`, keeps the object row
(id, multimask, overwrite, polarity) in step with the annotator both ways, and shows the status
facts. The actions (buttons, combos of layers) are connected by the widget and its helpers.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from .panels import ActionsRow, MessagesPanel, ModelPanel, ObjectPanel, PropagationRow
from .status import StatusFacts, propagate_button_state, status_text

__all__ = ["CONTROLS", "DockView"]

#: The controls by name, per panel attribute, as before the split into panels (tests and
#: scripts read them as attributes of the widget).
CONTROLS = {
    "model_panel": (
        "image_combo model_combo custom_box encoder_edit decoder_edit backend_combo "
        "device_label encode_button"
    ),
    "object_panel": (
        "labels_combo id_spin next_button multimask_check overwrite_check polarity_button"
    ),
    "actions_row": "commit_button clear_button undo_button refine_button",
    "propagation_row": "direction_combo propagate_button",
    "messages": "error_label status_label",
}


class DockView:
    """The panels of the dock, laid out in ``parent`` top to bottom.

    Parameters
    ----------
    parent : QWidget
        The dock widget; gets the layout.
    help_text, shortcut_help : str
        How to prompt, and the keyboard shortcuts: shown under the object row and as the
        tooltip.
    """

    def __init__(self, parent: QWidget, help_text: str, shortcut_help: str) -> None:
        parent.setToolTip(f"{help_text}\nShortcuts: {shortcut_help}")
        layout = QVBoxLayout(parent)
        self.model_panel = ModelPanel()
        self.object_panel = ObjectPanel(help_text)
        help_label = QLabel(f"{help_text}\n{shortcut_help}")
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

    def parts(self) -> dict[str, Any]:
        """The panels and every control of :data:`CONTROLS`, by name."""
        found: dict[str, Any] = {}
        for panel_name, names in CONTROLS.items():
            panel = getattr(self, panel_name)
            found[panel_name] = panel
            for name in names.split():
                found[name] = getattr(panel, name)
        return found

    def bind_settings(self, annotator: Any) -> None:
        """Keep the object row and the annotator's settings in step, both ways."""
        panel = self.object_panel

        def on_id_spin(value: int) -> None:
            if value != annotator.object_id:
                annotator.object_id = value

        def on_multimask(on: bool) -> None:
            annotator.multimask = bool(on)
            annotator.request_decode()

        def on_overwrite(on: bool) -> None:
            annotator.overwrite = bool(on)

        def on_polarity(on: bool) -> None:
            annotator.positive = not on

        def show_object_id(event: Any = None) -> None:
            panel.show_object_id(annotator.object_id)

        def show_polarity(event: Any = None) -> None:
            panel.show_polarity(annotator.positive)

        panel.id_spin.valueChanged.connect(on_id_spin)
        panel.multimask_check.toggled.connect(on_multimask)
        panel.overwrite_check.toggled.connect(on_overwrite)
        panel.polarity_button.toggled.connect(on_polarity)
        annotator.events.object_id.connect(
            lambda event=None: panel.show_object_id(annotator.object_id)
        )
        annotator.events.polarity.connect(
            lambda event=None: panel.show_polarity(annotator.positive)
        )
        panel.show_polarity(annotator.positive)

    def show_status(self, facts: StatusFacts, propagating: bool, reason: str | None) -> None:
        """The status text, the Encode/Cancel button and the propagation row."""
        self.model_panel.encode_button.setText("Cancel" if facts.job is not None else "Encode")
        self.messages.status_label.setText(status_text(facts))
        self.propagation_row.show_state(*propagate_button_state(propagating, reason))
