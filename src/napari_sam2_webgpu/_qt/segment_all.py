"""The dock's "Segment all" section: its controls, and its runs off the GUI thread.

:class:`SegmentAllPanel` is the collapsible section (the button, the scope, an "Advanced" part
with the main parameters and Reset). :class:`SegmentAllRunner` runs the Qt-free
:class:`~napari_sam2_webgpu._napari.segment_all.SegmentAllController`'s steps as a job of the
widget's :class:`~.jobs.JobRunner`, so that segment all and the widget's loads and encodes wait
for each other as those jobs do (an encode asked for meanwhile is queued; segment all waits for a
running load, encode or propagation, and loads the chosen model first when needed). Each slice's
labels are carried to the GUI thread and written there; the progress bar counts decoder batches
over all slices, and its cancel (or the button's) keeps the slices written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_info
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from .._napari import (
    AnnotatorError,
    SegmentAllController,
    SegmentAllParams,
    SegmentAllPlan,
    SegmentAllRun,
)
from .._napari.segment_all import ORDERS, SCOPES
from ..image import ImageError
from .arguments import check_axis, free_axes
from .jobs import Cancelled, Job, Outcome, run_loop_until
from .status import error_message

if TYPE_CHECKING:  # pragma: no cover
    from napari.layers import Labels

    from .._napari import Annotator, PropagationController
    from .encoding import ModelSession
    from .errors import ErrorReporter
    from .jobs import JobRunner

__all__ = ["SCOPE_TEXTS", "SegmentAllPanel", "SegmentAllRunner"]

#: The scope combo's entries.
SCOPE_TEXTS = {"slice": "current slice", "stack": "whole stack"}

_HELP = (
    "Find every object of the image with SAM2's automatic mask generator (a grid of point "
    "prompts) into a new Labels layer '<image> instances'; existing Labels layers are never "
    "written. Correct the objects afterwards with clicks (the new layer becomes the target)."
)


def _spin(low: int, high: int, tip: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setToolTip(tip)
    return spin


def _unit_spin(tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(0.0, 1.0)
    spin.setSingleStep(0.05)
    spin.setDecimals(2)
    spin.setToolTip(tip)
    return spin


class SegmentAllPanel(QCollapsible):
    """The "Segment all" section: button, scope, and the Advanced parameters. Controls only."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Segment all", parent)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.run_button = QPushButton("Segment all")
        self.run_button.setToolTip(_HELP)
        self.scope_combo = QComboBox()
        for scope in SCOPES:
            self.scope_combo.addItem(SCOPE_TEXTS[scope], scope)
        self.scope_combo.setToolTip(
            "current slice: the displayed 2D slice. whole stack: every slice along the first "
            "axis that is not displayed (z or time), the other axes at the displayed step."
        )
        row.addWidget(self.run_button, 1)
        row.addWidget(self.scope_combo)
        layout.addLayout(row)

        # Not a nested QCollapsible: the outer one would keep its collapsed-inner height.
        self.advanced_button = QToolButton()
        self.advanced_button.setText("Advanced")
        self.advanced_button.setCheckable(True)
        self.advanced_button.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_button.setAutoRaise(True)
        self.advanced = QWidget()
        form = QFormLayout(self.advanced)
        form.setContentsMargins(12, 0, 0, 0)
        self.points_spin = _spin(1, 256, "Grid points a side (its square is the prompt count).")
        self.iou_spin = _unit_spin("Keep masks whose predicted IoU is above this.")
        self.stability_spin = _unit_spin(
            "Keep masks that change little with the binarisation threshold (stability score)."
        )
        self.nms_spin = _unit_spin("Box IoU above which the less confident duplicate is dropped.")
        self.crop_spin = _spin(0, 3, "Also segment overlapping crops (layer i: 4^i crops).")
        self.min_area_spin = _spin(
            0,
            65536,
            "Fill holes and remove islands up to this area, in the decoder's 256 x 256 "
            "low-resolution pixels (as SAM2 does); 0: off.",
        )
        self.m2m_check = QCheckBox("Refine masks (m2m)")
        self.m2m_check.setToolTip("A second decoder run per mask, its logits as prompt (2x time).")
        self.order_combo = QComboBox()
        self.order_combo.addItems(ORDERS)
        self.order_combo.setToolTip(
            "Where masks overlap: area = smaller on top (a nucleus in a cell survives); "
            "score = the most confident mask wins."
        )
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Back to the defaults for microscopy.")
        for label, control in (
            ("Points per side", self.points_spin),
            ("Pred. IoU threshold", self.iou_spin),
            ("Stability threshold", self.stability_spin),
            ("Box NMS threshold", self.nms_spin),
            ("Crop layers", self.crop_spin),
            ("Min region area", self.min_area_spin),
            ("", self.m2m_check),
            ("Overlap order", self.order_combo),
            ("", self.reset_button),
        ):
            form.addRow(label, control)
        self.advanced.setVisible(False)
        self.advanced_button.toggled.connect(self.show_advanced)
        layout.addWidget(self.advanced_button)
        layout.addWidget(self.advanced)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setStyleSheet("color: gray;")
        layout.addWidget(self.status_label)
        self.addWidget(body)
        self.expand(animate=False)

    def show_advanced(self, on: bool) -> None:
        """Show or hide the Advanced parameters."""
        self.advanced_button.blockSignals(True)
        self.advanced_button.setChecked(on)
        self.advanced_button.blockSignals(False)
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.advanced.setVisible(on)
        if self.isExpanded():
            self.expand(animate=False)  # the section's height follows

    def controls(self) -> dict[str, QWidget]:
        """The parameter controls by parameter name."""
        return {
            "points_per_side": self.points_spin,
            "pred_iou_thresh": self.iou_spin,
            "stability_score_thresh": self.stability_spin,
            "box_nms_thresh": self.nms_spin,
            "crop_n_layers": self.crop_spin,
            "min_mask_region_area": self.min_area_spin,
            "use_m2m": self.m2m_check,
            "order": self.order_combo,
        }

    def values(self) -> dict[str, Any]:
        """The parameters shown."""
        out: dict[str, Any] = {}
        for name, control in self.controls().items():
            if isinstance(control, QCheckBox):
                out[name] = control.isChecked()
            elif isinstance(control, QComboBox):
                out[name] = control.currentText()
            else:
                out[name] = control.value()
        return out

    def show_params(self, params: SegmentAllParams) -> None:
        """Show ``params`` without emitting the controls' signals."""
        for name, control in self.controls().items():
            value = getattr(params, name)
            control.blockSignals(True)
            if isinstance(control, QCheckBox):
                control.setChecked(bool(value))
            elif isinstance(control, QComboBox):
                control.setCurrentText(str(value))
            else:
                control.setValue(value)
            control.blockSignals(False)

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever the user changes a parameter."""
        for control in self.controls().values():
            signal = (
                control.toggled
                if isinstance(control, QCheckBox)
                else control.currentTextChanged
                if isinstance(control, QComboBox)
                else control.valueChanged
            )
            signal.connect(lambda *_: callback())

    @property
    def scope(self) -> str:
        """The chosen scope (one of ``SCOPES``)."""
        return str(self.scope_combo.currentData())

    @scope.setter
    def scope(self, value: str) -> None:
        self.scope_combo.setCurrentIndex(SCOPES.index(value))

    def show_state(self, running: bool, stack: bool, status: str) -> None:
        """The button (Cancel while running), the scope (no stack of a 2D image), the status."""
        self.run_button.setText("Cancel segment all" if running else "Segment all")
        if not stack and self.scope == "stack":
            self.scope = "slice"
        self.scope_combo.setEnabled(stack and not running)
        self.status_label.setText(status)
        self.status_label.setVisible(bool(status))


class _Bridge(QObject):
    """Carries a run's steps from the worker thread to the GUI thread (queued signal)."""

    step = Signal(object, object)


@dataclass
class _Pending:
    """A segment-all asked for, waiting for a load, an encode or a propagation to end."""

    plan: SegmentAllPlan
    layer: Labels
    errors: int  # failures reported before it was asked for


class SegmentAllRunner:
    """Segment all for the widget: parameters, waiting for other work, the job, the steps.

    Parameters
    ----------
    controller : SegmentAllController
    panel : SegmentAllPanel
    annotator : Annotator
    session : ModelSession
        The loaded model; a load is started when the chosen model is not loaded.
    jobs : JobRunner
        The run is one of its jobs (progress bar, cancel, busy).
    errors : ErrorReporter
    propagation : PropagationController
        Segment all waits while it runs.
    selected_choice : callable
        The model chosen in the widget.
    alive : callable
        False once the widget is closed.
    on_change : callable
        Called when the state changed (to refresh the status).
    """

    def __init__(
        self,
        controller: SegmentAllController,
        panel: SegmentAllPanel,
        *,
        annotator: Annotator,
        session: ModelSession,
        jobs: JobRunner,
        errors: ErrorReporter,
        propagation: PropagationController,
        selected_choice: Callable[[], Any],
        alive: Callable[[], bool],
        on_change: Callable[[], None],
    ) -> None:
        self.controller = controller
        self.panel = panel
        self._annotator = annotator
        self._session = session
        self._jobs = jobs
        self._errors = errors
        self._propagation = propagation
        self._selected_choice = selected_choice
        self._alive = alive
        self._on_change = on_change
        self._pending: _Pending | None = None
        self._job: Job | None = None
        self._bridge = _Bridge()
        self._bridge.step.connect(self._on_step)
        panel.show_params(controller.params)
        panel.on_change(self._from_panel)
        panel.reset_button.clicked.connect(lambda: self.set_params(SegmentAllParams()))

    def connect(self, segment_all: Callable[[], Any]) -> None:
        """The button: ``segment_all()`` (the widget's console method), Cancel while busy."""
        self.panel.run_button.clicked.connect(lambda: self.cancel() if self.busy else segment_all())

    # -- parameters -------------------------------------------------------------------------------
    def set_params(self, value: SegmentAllParams | Mapping[str, Any]) -> None:
        """``SegmentAllParams`` as they are, or a mapping of changes (ValueError if wrong)."""
        if isinstance(value, SegmentAllParams):
            params = value.replace()
        else:
            params = self.controller.params.replace(**dict(value))
        self.controller.params = params
        self.panel.show_params(params)

    def _from_panel(self) -> None:
        self.controller.params = self.controller.params.replace(**self.panel.values())

    # -- runs -------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether a run is waiting to start or running."""
        # The controller's run first: starting the job processes events (its progress bar).
        return self._pending is not None or self._job is not None or self.controller.running

    def segment_all(
        self, scope: str | None, axis: int | None, wait: bool, params: Mapping[str, Any]
    ) -> Labels | None:
        """The widget's console method (see ``Sam2Widget.segment_all``)."""
        if scope is not None:
            if scope not in SCOPES:
                raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
            self.panel.scope = scope
        if axis is not None:
            axis = check_axis(axis, *free_axes(self._annotator))
        if params:
            self.set_params(params)
        layer = self._errors.guard(self._request, self.panel.scope, axis)
        if layer is not None and wait:
            run_loop_until(lambda: not self.busy, None, self._alive)
        return layer

    def _request(self, scope: str, axis: int | None) -> Labels:
        if self.busy:
            raise AnnotatorError("Segment all is running: wait for it, or cancel it.")
        choice = self._selected_choice()
        loaded = self._session.is_loaded(choice)
        if not loaded and choice.size is None and not (choice.encoder and choice.decoder):
            raise AnnotatorError("Choose the encoder and decoder .onnx files of your custom model.")
        plan = self.controller.plan(scope, axis)
        layer, _ = self.controller.output_layer(plan.image)
        self._pending = _Pending(plan, layer, self._errors.count)
        if not loaded:
            self._session.load(choice)
        self.poll()
        self._on_change()
        return layer

    def poll(self) -> None:
        """Start the waiting run once no load, encode or propagation runs."""
        pending = self._pending
        if pending is None or self._job is not None:
            return
        if self._jobs.busy or self._propagation.running:
            return
        self._pending = None
        try:
            if not self._session.is_loaded(self._selected_choice()):
                raise AnnotatorError(
                    "Segment all did not start: the chosen model is not loaded (press Encode)."
                )
            run = self.controller.start(pending.plan)
        except (AnnotatorError, ImageError) as exc:
            self.controller.discard(pending.layer)
            if self._errors.count == pending.errors:  # else the load said why already
                self._errors.warn(str(exc))
            return
        self._start_job(run)

    def _start_job(self, run: SegmentAllRun) -> None:
        bridge = self._bridge

        def work(job: Job, report: Callable[..., None]) -> Outcome:  # worker thread
            def progress(done: int, total: int, text: str) -> None:
                try:
                    report(text, done, total)
                except Cancelled:
                    pass  # the run polls job.cancelled itself

            for step in run.steps(progress, cancelled=lambda: job.cancelled):
                bridge.step.emit(run, step)
            return Outcome()

        self._job = job = self._jobs.start(
            f"SAM2: segment all ({run.plan.describe()})",
            0,
            work,
            lambda job, outcome: self._done(job, run),
        )
        if job.worker is None:  # cancelled while its progress bar was being made
            self._done(job, run)

    def cancel(self) -> None:
        """Stop the run (slices written stay), or drop one still waiting to start."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self.controller.discard(pending.layer)
        run = self.controller.run
        if run is not None:
            run.cancel()
            if self._job is not None and self._job is self._jobs.current:
                self._jobs.cancel()
        self._on_change()

    def _on_step(self, run: SegmentAllRun, step: Any) -> None:
        if not self._alive() or run.finished:
            return
        if self._job is None or self._job.cancelled:
            run.cancel()
        try:
            self.controller.apply(run, step)
        except Exception as exc:  # e.g. ids beyond the layer's dtype: stop, say why
            run.error = exc
            run.cancel()
        self.refresh()

    def _done(self, job: Job, run: SegmentAllRun) -> None:
        """The run ended (GUI thread): messages, then the encode queued meanwhile."""
        self._jobs.release(job)
        if self._job is job:
            self._job = None
        self.controller.finish(run)
        where = f"'{run.labels.name}'"
        if run.error is not None:
            self._errors.fail(error_message(run.error), run.error)
        elif run.cancelled:
            show_info(f"SAM2: segment all cancelled; the {len(run.written)} slices written stay.")
        else:
            self._errors.clear()
            if run.failed:
                index, why = next(iter(run.failed.items()))
                self._errors.warn(
                    f"SAM2: {len(run.failed)} slice(s) could not be segmented "
                    f"({run.plan.slices[index].describe()}: {why})."
                )
            if run.objects == 0:
                show_info(
                    f"SAM2: no objects found; {where} is empty. Lower the IoU and stability "
                    "thresholds (Advanced) for faint objects."
                )
        jobs = self._jobs
        if jobs.queued and jobs.current is None:
            jobs.queued = False
            if not self._annotator.has_exact_embedding() or not self._annotator.is_ready:
                self._session.start_encode()
        self._on_change()

    def close(self) -> None:
        """The widget closes: a waiting run never starts, a running one stops."""
        self._pending = None
        self.controller.cancel()

    # -- what the panel shows ---------------------------------------------------------------------
    def refresh(self) -> None:
        """The panel's state now; a waiting run starts if it can."""
        self.poll()
        try:
            stack = bool(self._annotator.current_slice().indices)
        except AnnotatorError:
            stack = False
        run = self.controller.run or self.controller.last_run
        status = "Waiting for the model or a running job…" if self._pending is not None else ""
        if run is not None and not status:
            status = run.describe()
        self.panel.show_state(self.busy, stack, status)
