"""Work off the GUI thread: worker threads, progress bars that cancel, waiting in an event loop.

- :class:`Workers` runs a function (or a generator, step by step) in a napari worker thread
  and calls back on the GUI thread; it knows which workers are still running.
- :class:`JobRunner` runs the one load-and/or-encode :class:`Job` at a time, with a napari
  progress bar fed from the worker through a queued signal, and cancellation.
- :func:`run_loop_until` waits for a condition in a nested Qt event loop, so that console
  calls with ``wait=True`` block without freezing the viewer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from napari.qt.threading import create_worker
from napari.utils.progress import cancelable_progress
from qtpy.QtCore import QEventLoop, QObject, QTimer, Signal

__all__ = [
    "Cancelled",
    "Job",
    "JobRunner",
    "Outcome",
    "Progress",
    "Workers",
    "disconnect",
    "run_loop_until",
]


class Cancelled(Exception):
    """Raised inside a job's progress callback (e.g. during a download) to stop it."""


class Progress(cancelable_progress):
    """A napari progress bar whose cancel button calls back at once."""

    def cancel(self) -> None:
        super().cancel()
        if self.cancel_callback is not None:
            self.cancel_callback()


def disconnect(slots: list[tuple[Any, Callable]]) -> None:
    """Disconnect a finished worker's ``(signal, slot)`` pairs.

    Qt keeps a connected slot for as long as the worker lives, and these slots refer to the
    worker and the widget: a reference cycle through Qt that Python's garbage collector cannot
    see, which would keep every widget, viewer and model of a session in memory.
    """
    for signal, slot in slots:
        with contextlib.suppress(TypeError, RuntimeError):
            signal.disconnect(slot)
    slots.clear()


def run_loop_until(
    condition: Callable[[], bool], timeout: float | None, alive: Callable[[], bool]
) -> bool:
    """Run a nested Qt event loop (idle, not busy-polling) until ``condition()``.

    Also stops after ``timeout`` seconds, or when ``alive()`` turns False (the widget closed).
    Returns ``condition()`` at the end.
    """
    if condition() or not alive():
        return condition()
    loop = QEventLoop()
    check = QTimer()
    check.setInterval(10)
    check.timeout.connect(lambda: (condition() or not alive()) and loop.quit())
    if timeout is not None:
        QTimer.singleShot(int(timeout * 1000), loop.quit)
    check.start()
    loop.exec()
    check.stop()
    return condition()


class Workers:
    """The worker threads of one widget.

    Parameters
    ----------
    alive : callable
        ``alive()`` is False once the widget is closed: results then go nowhere.
    """

    def __init__(self, alive: Callable[[], bool]) -> None:
        self._alive = alive
        self._running: set[Any] = set()

    def __bool__(self) -> bool:
        """Whether a worker is still running."""
        return bool(self._running)

    def run(self, fn: Callable[[], Any], on_done: Callable[[Any], None]) -> Any:
        """Run ``fn`` (which never raises) in a worker thread; ``on_done`` on the GUI thread."""
        # napari's window keeps every worker (its task list), so the worker gets ``fn`` (and
        # the model, pixels... it refers to) only through a holder emptied when it finishes.
        holder = [fn]
        worker = create_worker(lambda: holder[0](), _start_thread=False)
        self._running.add(worker)

        def done(result: Any) -> None:
            if self._alive():
                on_done(result)

        def finished() -> None:
            self._running.discard(worker)
            disconnect(slots)
            holder.clear()

        slots = [(worker.returned, done), (worker.finished, finished)]
        for signal, slot in slots:
            signal.connect(slot)
        worker.start()
        return worker

    def run_steps(
        self,
        steps: Callable[[], Iterator[Any]],
        on_step: Callable[[Any], None],
        on_finished: Callable[[], None],
    ) -> Any:
        """Iterate ``steps()`` in a worker thread; each step to ``on_step`` on the GUI thread,
        then ``on_finished()`` there (after the worker left :attr:`running`)."""
        holder = [steps]  # as in run: napari keeps the worker

        def iterate() -> Any:
            yield from holder[0]()

        worker = create_worker(iterate, _start_thread=False)
        self._running.add(worker)

        def finished() -> None:
            disconnect(slots)
            holder.clear()
            self._running.discard(worker)
            on_finished()

        slots = [(worker.yielded, on_step), (worker.finished, finished)]
        for signal, slot in slots:
            signal.connect(slot)
        worker.start()
        return worker


@dataclass
class Job:
    """One load and/or encode running in a worker thread.

    ``choice`` is the model to load first (None: the loaded one), ``request`` the slice to
    encode (None: load only).
    """

    token: int
    choice: Any = None
    request: Any = None
    progress: Any = None
    cancelled: bool = False
    worker: Any = None


@dataclass
class Outcome:
    """What a job's worker returns: the predictor, the embedding and its time, or the error."""

    predictor: Any = None
    embedding: Any = None
    seconds: float = 0.0
    error: BaseException | None = None


class _Bridge(QObject):
    """Carries progress from worker threads to the GUI thread (queued signal)."""

    progress = Signal(object, str, int, int)


#: ``report(text, done, total=steps)`` from a worker thread; raises :class:`Cancelled`.
Report = Callable[..., None]


class JobRunner:
    """At most one current :class:`Job`, its progress bar, and the encode queued after it.

    Parameters
    ----------
    workers : Workers
    on_cancel : callable
        Called when the user cancels the current job from its progress bar.
    on_change : callable
        Called when a job started or finished (to refresh the status).
    """

    def __init__(
        self, workers: Workers, on_cancel: Callable[[], None], on_change: Callable[[], None]
    ) -> None:
        self._workers = workers
        self._on_cancel = on_cancel
        self._on_change = on_change
        self._tokens = 0
        self._bridge = _Bridge()
        self._bridge.progress.connect(self._on_progress)
        self.current: Job | None = None
        #: Encode the displayed slice once the current job is done.
        self.queued = False
        #: Inside a job's ``on_done`` (which may process Qt events): still busy.
        self.finishing = 0

    @property
    def busy(self) -> bool:
        """Whether a job runs, finishes, or an encode is queued."""
        return bool(self.current is not None or self.queued or self.finishing)

    @property
    def progress_text(self) -> str | None:
        """The current job's progress text (``""`` before its bar exists); None without a job."""
        job = self.current
        if job is None:
            return None
        return str(job.progress.desc) if job.progress is not None else ""

    def start(
        self,
        desc: str,
        steps: int,
        work: Callable[[Job, Report], Outcome],
        on_done: Callable[[Job, Outcome], None],
        *,
        choice: Any = None,
        request: Any = None,
    ) -> Job:
        """Make a job current and run ``work(job, report)`` (never raising) in a worker.

        ``on_done(job, outcome)`` runs on the GUI thread, also for a job cancelled or replaced
        meanwhile (compare with :attr:`current`); :attr:`busy` stays True during it.
        """
        self._tokens += 1
        job = Job(self._tokens, choice, request)
        # Current before its progress bar exists: creating one processes Qt events, in which a
        # waiting encode(wait=True) must not see "no job".
        self.current = job
        job.progress = Progress(
            total=steps, desc=desc, cancel_callback=lambda: self._cancel_from_bar(job)
        )
        if job.cancelled:  # while the bar was being made
            self.close_progress(job)
            return job
        bridge = self._bridge

        def report(text: str, done: int, total: int = steps) -> None:
            if job.cancelled:
                raise Cancelled
            bridge.progress.emit(job, text, done, total)

        job.worker = self._workers.run(
            lambda: work(job, report), lambda outcome: self._finish(job, outcome, on_done)
        )
        self._on_change()
        return job

    def release(self, job: Job) -> bool:
        """Whether ``job`` was the current one; it no longer is, and its bar is closed."""
        if job is not self.current:
            return False
        self.current = None
        self.close_progress(job)
        return True

    def cancel(self) -> Job | None:
        """Stop the current job (its result will be discarded); returns it."""
        job, self.current = self.current, None
        if job is not None:
            job.cancelled = True
            self.close_progress(job)
        return job

    @staticmethod
    def close_progress(job: Job) -> None:
        """Close ``job``'s progress bar (this processes Qt events)."""
        if job.progress is not None:
            job.progress.close()
            job.progress = None

    def _finish(self, job: Job, outcome: Outcome, on_done: Callable[[Job, Outcome], None]) -> None:
        # Closing a progress bar processes Qt events: until the outcome is applied (and a
        # queued encode started), waiting callers must still see the runner busy.
        self.finishing += 1
        try:
            on_done(job, outcome)
        finally:
            self.finishing -= 1
        self._on_change()

    def _cancel_from_bar(self, job: Job) -> None:
        if job is self.current:
            self._on_cancel()

    def _on_progress(self, job: Job, text: str, done: int, total: int) -> None:
        bar = job.progress
        if job is not self.current or bar is None:
            return
        if bar.desc != text:
            bar.set_description(text)
        if bar.total != total:
            bar.total = total
        if total and bar.n != min(done, total):
            bar.n = min(done, total)
            bar.update(0)
