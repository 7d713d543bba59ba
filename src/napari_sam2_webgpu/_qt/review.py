"""The "Propagation review" section: the slices to check after a propagation, and where to stop.

The flags are the Qt-free :meth:`PropagationController.review
<napari_sam2_webgpu._napari.propagation.PropagationController.review>`'s; a click on a row is
:meth:`~napari_sam2_webgpu._napari.propagation.PropagationController.go_to` (the slice is
shown and its object becomes the current one, so that a click corrects it; propagating then
starts from that slice, both ways).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

__all__ = ["ReviewPanel", "ReviewTable"]

COLUMNS = ("Object", "Slices", "What")


class ReviewPanel(QCollapsible):
    """The "Propagation review" section. Controls only."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Propagation review", parent)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        self.summary_label = QLabel("Propagate to list the slices worth checking.")
        self.summary_label.setWordWrap(True)
        self.summary_label.setStyleSheet("color: gray;")
        layout.addWidget(self.summary_label)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setToolTip(
            "Slices where an object is lost, reappears or its predicted IoU is low or drops. "
            "Click a row to go there (its object becomes the current one): a click corrects "
            "it, and Propagate then starts from that slice, both ways."
        )
        self.table.setMaximumHeight(180)
        layout.addWidget(self.table)
        form = QFormLayout()
        self.stop_spin = QSpinBox()
        self.stop_spin.setRange(0, 10_000)
        self.stop_spin.setSpecialValueText("never")
        self.stop_spin.setSuffix(" slices")
        self.stop_spin.setToolTip(
            "Stop tracking an object once it has been absent this many slices in a row "
            "(never: to the end of the stack)."
        )
        form.addRow("Stop when lost for", self.stop_spin)
        layout.addLayout(form)
        tracks = QHBoxLayout()
        self.tracks_button = QPushButton("Tracks layer")
        self.tracks_button.setToolTip(
            "A Tracks layer of the stack's objects: each label's centroid on every slice, one "
            "track per object id (updated when pressed again)."
        )
        self.export_tracks_button = QPushButton("Export tracks…")
        self.export_tracks_button.setToolTip(
            "The same tracks as CSV: track_id, frame, y, x, area (pixels)."
        )
        tracks.addWidget(self.tracks_button)
        tracks.addWidget(self.export_tracks_button)
        layout.addLayout(tracks)
        self.addWidget(body)


class ReviewTable:
    """Fills the review section from the controller; rows jump to their slice.

    Parameters
    ----------
    panel : ReviewPanel
    controller : PropagationController
    report : callable
        ``report(fn, *args)`` runs ``fn`` and shows an error as a message (the widget's
        ``errors.guard``).
    """

    def __init__(self, panel: ReviewPanel, controller: Any, report: Callable[..., Any]) -> None:
        self.panel = panel
        self._controller = controller
        self._report = report
        self.flags: list[Any] = []
        panel.table.cellClicked.connect(self.on_row)
        panel.stop_spin.valueChanged.connect(self.on_stop)
        panel.tracks_button.clicked.connect(lambda: self._report(controller.show_tracks))
        panel.export_tracks_button.clicked.connect(self.on_export)

    def on_export(self) -> None:
        """The Export tracks button: a CSV file chosen in a dialog."""
        path, _ = QFileDialog.getSaveFileName(
            self.panel, "Export tracks", "tracks.csv", "CSV (*.csv)"
        )
        if path:
            self._report(self.export, path)

    def export(self, path: str, ids: Any = None) -> Any:
        """Write the tracks of the last run's stack to ``path`` (replaced if it exists: the
        dialog asked)."""
        from ..tracks import write_tracks_csv

        return write_tracks_csv(path, self._controller.tracks(ids), overwrite=True)

    def on_stop(self, value: int) -> None:
        """The stop spin box: 0 is "never"."""
        self._controller.stop_after_lost = int(value) or None

    def on_row(self, row: int, column: int = 0) -> None:
        """A click on a row: show its slice and object."""
        if 0 <= row < len(self.flags):
            self._report(self._controller.go_to, self.flags[row])

    def refresh(self) -> None:
        """Show the controller's flags now (only rebuilt when they changed)."""
        controller = self._controller
        flags = [] if controller.running else controller.review()
        if flags == self.flags and self.panel.table.rowCount() == len(flags):
            return
        self.flags = flags
        table = self.panel.table
        table.setRowCount(len(flags))
        for row, flag in enumerate(flags):
            span = (
                str(flag.frame)
                if flag.last_frame == flag.frame
                else f"{flag.frame}-{flag.last_frame}"
            )
            for column, text in enumerate(
                (str(flag.object_id), span, f"{flag.kind}: {flag.detail}")
            ):
                table.setItem(row, column, QTableWidgetItem(text))
        tracked = len(controller.scores)
        if controller.running:
            text = "Propagating…"
        elif not tracked:
            text = "Propagate to list the slices worth checking."
        elif not flags:
            text = f"{_objects(tracked)} tracked: nothing to check."
        else:
            text = f"{_objects(tracked)} tracked: {len(flags)} to check (click to go there)."
        self.panel.summary_label.setText(text)


def _objects(n: int) -> str:
    return f"{n} object{'s' if n != 1 else ''}"
