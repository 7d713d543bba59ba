"""The dock's "Large images" section: tiling, the tile grid, the store, precomputing a stack.

:class:`LargeImagesPanel` holds the controls; :class:`LargeImagesRunner` binds them to the
Qt-free :class:`~napari_sam2_webgpu._napari.large_images.LargeImages` and runs "Precompute
stack" in a worker thread with its own progress bar (that cancels). Clicks go on meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_info
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from .._napari import AnnotatorError
from .._napari.tiling import TILING_MODES
from .jobs import Outcome, Progress, run_loop_until
from .status import error_message

if TYPE_CHECKING:  # pragma: no cover
    from .._napari import Annotator
    from ..store import PrecomputeReport
    from .errors import ErrorReporter
    from .jobs import Workers

__all__ = ["LargeImagesPanel", "LargeImagesRunner"]

_TILING_HELP = (
    "auto: slices longer than 2048 pixels on a side are encoded as overlapping tiles at full "
    "resolution (small objects keep their detail); on: every slice; off: each slice is "
    "shrunk to 1024 x 1024 as SAM2 does."
)


class LargeImagesPanel(QCollapsible):
    """The "Large images" section. Controls only."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Large images", parent)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        self.tiling_combo = QComboBox()
        self.tiling_combo.addItems(TILING_MODES)
        self.tiling_combo.setToolTip(_TILING_HELP)
        sizes = QHBoxLayout()
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(64, 16384)
        self.tile_spin.setSingleStep(256)
        self.tile_spin.setSuffix(" px")
        self.tile_spin.setToolTip("Tile side: 1024 = full resolution, 2048 = half, ...")
        self.halo_spin = QSpinBox()
        self.halo_spin.setRange(0, 4096)
        self.halo_spin.setSingleStep(32)
        self.halo_spin.setSuffix(" px")
        self.halo_spin.setToolTip(
            "Overlap around each tile's own part: objects up to twice this across are whole "
            "in one tile."
        )
        sizes.addWidget(QLabel("tile"))
        sizes.addWidget(self.tile_spin)
        sizes.addWidget(QLabel("halo"))
        sizes.addWidget(self.halo_spin)
        form.addRow("Tiling", self.tiling_combo)
        form.addRow("", sizes)
        self.grid_check = QCheckBox("Show tile grid")
        self.grid_check.setToolTip("Outline the displayed slice's tiles (green: encoded).")
        form.addRow("", self.grid_check)
        layout.addLayout(form)
        self.tiling_label = QLabel()
        self.tiling_label.setWordWrap(True)
        self.tiling_label.setStyleSheet("color: gray;")
        layout.addWidget(self.tiling_label)
        store_row = QHBoxLayout()
        self.store_button = QPushButton("Store embeddings")
        self.store_button.setToolTip(
            "Keep this image's embeddings in a store on disk (next to the image file, else in "
            "the cache): reopening it costs no encoding."
        )
        self.store_browse = QPushButton("…")
        self.store_browse.setToolTip("Choose where the store is (a folder ending .sam2.zarr).")
        self.precompute_button = QPushButton("Precompute stack")
        self.precompute_button.setToolTip(
            "Encode every slice (every tile) of the image into its store now, e.g. before "
            "annotating; slices stored already are skipped."
        )
        store_row.addWidget(self.store_button, 1)
        store_row.addWidget(self.store_browse)
        store_row.addWidget(self.precompute_button, 1)
        layout.addLayout(store_row)
        self.store_label = QLabel()
        self.store_label.setWordWrap(True)
        self.store_label.setStyleSheet("color: gray;")
        layout.addWidget(self.store_label)
        self.addWidget(body)

    def fit_halo(self) -> None:
        """The halo can be at most a quarter of the tile (a larger value is lowered)."""
        self.halo_spin.blockSignals(True)
        self.halo_spin.setMaximum(self.tile_spin.value() // 4)
        self.halo_spin.blockSignals(False)

    def show_settings(self, mode: str, tile_size: int, halo: int) -> None:
        """Show the tiling settings without emitting the controls' signals."""
        self.halo_spin.setMaximum(max(halo, tile_size // 4))
        for control, value in (
            (self.tiling_combo, mode),
            (self.tile_spin, tile_size),
            (self.halo_spin, halo),
        ):
            control.blockSignals(True)
            if isinstance(control, QComboBox):
                control.setCurrentText(value)
            else:
                control.setValue(value)
            control.blockSignals(False)

    def show_state(self, tiling: str, store: str, has_store: bool, precomputing: bool) -> None:
        """What the section says, and its buttons' texts."""
        self.tiling_label.setText(tiling)
        self.tiling_label.setVisible(bool(tiling))
        self.store_label.setText(store)
        self.store_label.setVisible(bool(store))
        self.store_button.setText("Stop storing" if has_store else "Store embeddings")
        self.precompute_button.setText("Cancel precompute" if precomputing else "Precompute stack")


@dataclass
class _Run:
    """One precomputing run."""

    cancelled: threading.Event


class _Bridge(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signal)."""

    progress = Signal(int, int)


class LargeImagesRunner:
    """Binds the panel to :attr:`Annotator.large` and precomputes in a worker thread.

    Parameters
    ----------
    panel : LargeImagesPanel
    annotator : Annotator
    workers : Workers
        Precomputing runs in one of them, with its own progress bar (that cancels).
    errors : ErrorReporter
    alive : callable
        False once the widget is closed.
    on_change : callable
        Called when the state changed (to refresh the status).
    """

    def __init__(
        self,
        panel: LargeImagesPanel,
        *,
        annotator: Annotator,
        workers: Workers,
        errors: ErrorReporter,
        alive: Callable[[], bool],
        on_change: Callable[[], None],
    ) -> None:
        self.panel = panel
        self._annotator = annotator
        self._workers = workers
        self._errors = errors
        self._alive = alive
        self._on_change = on_change
        self._run: _Run | None = None
        self._bar: Any = None
        self._bridge = _Bridge()
        self._bridge.progress.connect(self._show_progress)
        self.last_report: PrecomputeReport | None = None
        settings = annotator.large.tiling
        panel.show_settings(settings.mode, settings.spec.tile_size, settings.spec.halo)
        panel.tiling_combo.currentTextChanged.connect(lambda *_: self._from_panel())
        panel.tile_spin.valueChanged.connect(lambda *_: self._from_panel())
        panel.halo_spin.valueChanged.connect(lambda *_: self._from_panel())
        panel.grid_check.toggled.connect(self.show_grid)
        panel.store_button.clicked.connect(self._store_clicked)
        panel.store_browse.clicked.connect(self._browse)
        panel.precompute_button.clicked.connect(
            lambda: self.cancel() if self.busy else self.precompute()
        )

    # -- tiling -----------------------------------------------------------------------------------
    def set_tiling(self, mode: str | None, tile_size: int | None, halo: int | None) -> Any:
        """The console's ``set_tiling`` (ValueError for invalid settings)."""
        settings = self._annotator.large.set_tiling(mode, tile_size=tile_size, halo=halo)
        self.panel.show_settings(settings.mode, settings.spec.tile_size, settings.spec.halo)
        self.refresh()
        return settings

    def _from_panel(self) -> None:
        p = self.panel
        p.fit_halo()
        try:
            self.set_tiling(p.tiling_combo.currentText(), p.tile_spin.value(), p.halo_spin.value())
        except ValueError as exc:  # e.g. a halo too large for the tile
            self._errors.warn(f"Tiling not changed: {exc}")
            now = self._annotator.large.tiling
            p.show_settings(now.mode, now.spec.tile_size, now.spec.halo)

    def show_grid(self, visible: bool = True) -> None:
        """Draw (or remove) the tile grid."""
        self._annotator.large.show_grid(bool(visible))
        check = self.panel.grid_check
        check.blockSignals(True)
        check.setChecked(self._annotator.large.grid_visible)
        check.blockSignals(False)

    # -- the store --------------------------------------------------------------------------------
    def _store_clicked(self) -> None:
        if self._annotator.store is not None:
            self._annotator.close_store()
        else:
            self._errors.guard(self._annotator.use_store)
        self._on_change()

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self.panel, "Embedding store (a folder)", "", "Embedding store (*.sam2.zarr)"
        )
        if path:
            if not path.endswith(".sam2.zarr"):
                path += ".sam2.zarr"
            self._errors.guard(self._annotator.use_store, Path(path))
            self._on_change()

    # -- precomputing -----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether precomputing runs."""
        return self._run is not None

    def precompute(self, wait: bool = False) -> bool:
        """Encode every slice of the image into its store, in a worker; whether it started."""
        started = bool(self._errors.guard(self._start))
        if started and wait:
            run_loop_until(lambda: not self.busy, None, self._alive)
        return started

    def _start(self) -> bool:
        if self.busy:
            raise AnnotatorError("Precomputing is running: wait for it, or cancel it.")
        large = self._annotator.large
        layer = self._annotator.image.require()
        if self._annotator.predictor is None:
            raise AnnotatorError("Load a model first (press Encode): precomputing encodes with it.")
        store = large.store or large.use_store()  # on the GUI thread: the layer's state
        run = self._run = _Run(threading.Event())
        # Not a job of the JobRunner: clicks (and their encodes) go on meanwhile, sharing the
        # encoder (ONNX Runtime sessions are thread-safe) and the store (locked per write).
        self._bar = Progress(
            total=0,
            desc=f"SAM2: precomputing '{layer.name}' into {store.path.name}",
            cancel_callback=self.cancel,
        )
        bridge = self._bridge

        def work() -> Outcome:  # worker thread
            try:
                report = large.precompute(bridge.progress.emit, run.cancelled)
                return Outcome(embedding=report)
            except Exception as exc:  # noqa: BLE001 - reported on the GUI thread
                return Outcome(error=exc)

        self._workers.run(work, lambda outcome: self._done(run, outcome))
        self._on_change()
        return True

    def _show_progress(self, done: int, total: int) -> None:
        bar = self._bar
        if bar is not None and total:
            bar.total = total
            bar.n = min(done, total)
            bar.update(0)

    def cancel(self) -> None:
        """Stop precomputing after the slice (tile) being encoded; what was stored stays."""
        if self._run is not None:
            self._run.cancelled.set()
        self._close_bar()
        self._on_change()

    def _close_bar(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()

    def _done(self, run: _Run, outcome: Outcome) -> None:
        if self._run is run:
            self._run = None
        self._close_bar()
        if not self._alive():
            return
        report = outcome.embedding
        if outcome.error is not None:
            self._errors.fail(error_message(outcome.error), outcome.error)
        elif report is not None:
            self.last_report = report
            done = len(report.computed) + len(report.skipped)
            text = (
                f"SAM2: {len(report.computed)} slices encoded into the store, "
                f"{len(report.skipped)} stored already ({report.seconds:.0f} s)"
            )
            if report.cancelled:
                text = f"SAM2: precomputing cancelled; {done} slices are stored."
            if report.failed:
                index, why = report.failed[0]
                self._errors.warn(f"{text}; {len(report.failed)} failed (slice {index}: {why})")
            else:
                show_info(text)
        self._on_change()

    # -- what the panel shows ---------------------------------------------------------------------
    def refresh(self) -> None:
        """The panel's texts now."""
        large = self._annotator.large
        store = large.store
        # Not the count of stored slices: reading the flags of every slice and tile at each
        # refresh would cost a file per flag.
        where = "" if store is None else f"Store: {store.path} ({store.dtype})"
        self.panel.show_state(large.describe(), where, store is not None, self.busy)
        self.panel.precompute_button.setEnabled(self._annotator.image_layer is not None)
