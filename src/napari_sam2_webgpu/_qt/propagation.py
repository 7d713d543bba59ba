"""Propagation runs off the GUI thread: a worker, a progress bar that cancels, the outcome.

The run itself (which slices, what is written where) is the Qt-free
:class:`~napari_sam2_webgpu._propagation.PropagationController`'s; this only carries its steps
from a worker thread to the GUI thread, where they are written into the Labels layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari.utils.notifications import show_info

from .._napari import PropagationController, PropagationRun
from .jobs import Progress, Workers

__all__ = ["PropagationRunner"]


class PropagationRunner:
    """Runs one :class:`PropagationRun` at a time in a worker thread, with a progress bar.

    Parameters
    ----------
    controller : PropagationController
    workers : Workers
    alive : callable
        False once the widget is closed: steps are then dropped.
    on_change : callable
        Called after every step and state change (to refresh the status).
    on_failed : callable
        ``on_failed(exc)``: a run ended with an error.
    on_succeeded : callable
        A run ended, neither failed nor cancelled.
    """

    def __init__(
        self,
        controller: PropagationController,
        workers: Workers,
        *,
        alive: Callable[[], bool],
        on_change: Callable[[], None],
        on_failed: Callable[[BaseException], None],
        on_succeeded: Callable[[], None],
    ) -> None:
        self._controller = controller
        self._workers = workers
        self._alive = alive
        self._on_change = on_change
        self._on_failed = on_failed
        self._on_succeeded = on_succeeded
        self._bar: Any = None

    def start(self, run: PropagationRun) -> None:
        """Run ``run``'s steps in a worker; each step is written on the GUI thread."""
        self._bar = Progress(
            total=0, desc=f"SAM2: propagating {run.objects_text()}", cancel_callback=self.cancel
        )
        self._workers.run_steps(
            run.steps, lambda step: self._on_step(run, step), lambda: self._on_done(run)
        )
        self._on_change()

    def cancel(self) -> None:
        """Stop the running propagation after the slice being computed; slices written stay."""
        run = self._controller.run
        if run is None:
            return
        run.cancel()
        self.close_bar()
        show_info(f"SAM2: propagation cancelled after {len(run.frames_written)} slices.")
        self._on_change()

    def close_bar(self) -> None:
        """Close the progress bar, if one is open."""
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()

    def _on_step(self, run: PropagationRun, step: Any) -> None:
        if not self._alive() or run.cancelled:
            return
        try:
            self._controller.apply(run, step)
        except Exception as exc:  # e.g. a read-only Labels layer: stop, say why
            run.error = exc
            run.cancel()
        bar = self._bar
        if bar is not None and step.total:
            bar.total = step.total
            bar.n = step.done
            bar.update(0)
        self._on_change()

    def _on_done(self, run: PropagationRun) -> None:
        self._controller.finish(run)
        if not self._alive():
            return
        self.close_bar()
        if run.error is not None:
            self._on_failed(run.error)
        elif not run.cancelled:
            self._on_succeeded()
        self._on_change()
