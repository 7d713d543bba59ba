"""One propagation run of the prompted objects: its steps (worker thread) and its record.

:class:`PropagationRun` is made by :class:`~.propagation.PropagationController`, which also
applies its steps to the Labels layer on the GUI thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..video.review import FrameScore
from .labels import UndoGroup
from .stack import Prompts, StackSpec, _signature

if TYPE_CHECKING:  # pragma: no cover
    from napari.layers import Labels

    from .propagation import PropagationController

__all__ = ["PropagationRun", "PropagationStep"]


def _locked(steps: Iterator[Any], lock: threading.Lock) -> Iterator[Any]:
    """``steps``, each computed while holding ``lock`` (a preview may read the state between
    two frames, never during one)."""
    while True:
        with lock:
            try:
                step = next(steps)
            except StopIteration:
                return
        yield step


@dataclass
class PropagationStep:
    """What the run yields: progress, and the objects' masks on a frame.

    Attributes
    ----------
    frame : int or None
        None for a progress-only step (the prompts are set; ``total`` is known).
    masks : dict or None
        ``{object_id: (H, W) boolean mask}`` on ``frame`` (the whole slice); objects stopped
        after being lost are left out.
    done, total : int
        Frames tracked so far and frames of the whole run (at most: a pass ends early when
        every object was lost, see :attr:`PropagationController.stop_after_lost`).
    scores : dict
        ``{object_id: FrameScore}`` on ``frame``.
    """

    frame: int | None
    masks: dict[int, np.ndarray] | None
    done: int
    total: int
    scores: dict[int, FrameScore] = field(default_factory=dict)


@dataclass
class PropagationRun:
    """One propagation of the prompted objects: made by :meth:`PropagationController.start`.

    Iterate :meth:`steps` (in a worker thread if you like) and hand each step to
    :meth:`PropagationController.apply` on the GUI thread; then call
    :meth:`PropagationController.finish`.

    Attributes
    ----------
    object_id : int
        The current object when the run started.
    object_ids : tuple of int
        Every object the run tracks (those with prompts on the stack), sorted.
    direction : str
    start_frame : int or None
        Where the passes start (None: the first prompted frame); a correction on a frame the
        review listed starts there, both ways.
    spec : StackSpec
    labels : napari.layers.Labels
        Where the masks are written.
    total : int
        Frames the run tracks (0 until the prompts are set).
    frames_written : list of int
        Frames written into the Labels layer, in order.
    scores : dict
        ``{object_id: {frame: FrameScore}}`` of the frames tracked so far.
    frames_encoded : int
        Slices encoded by this run (the others came from the cache).
    cancelled : bool
    error : BaseException or None
    seconds : float
        Wall time of the run, set by ``finish``.
    """

    object_id: int
    object_ids: tuple[int, ...]
    direction: str
    spec: StackSpec
    labels: Labels
    overwrite: bool
    # Object -> frames whose prompts were removed / frame -> prompts new or changed.
    prompt_clears: dict[int, list[int]]
    prompt_updates: dict[int, dict[int, Prompts]]
    controller: PropagationController
    start_frame: int | None = None
    stop_after_lost: int | None = None
    state_number: int = 0  # which tracking state the run used (recorded for replay)
    total: int = 0
    done: int = 0
    frames_written: list[int] = field(default_factory=list)
    scores: dict[int, dict[int, FrameScore]] = field(default_factory=dict)
    frames_encoded: int = 0
    cancelled: bool = False
    finished: bool = False
    error: BaseException | None = None
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0
    # Object -> frame -> prompt signature now in the tracking state (None: cleared), set by
    # the worker.
    applied: dict[int, dict[int, tuple | None]] = field(default_factory=dict)
    _history_item: list | None = None  # the run's undo step, once finished
    _encoded_before: int = 0
    # Groups the frames written into one undo step, from the first write until finish().
    _undo_group: UndoGroup = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._undo_group = UndoGroup(self.labels)

    @property
    def updates(self) -> dict[int, Prompts]:
        """The current object's frames whose prompts are new or changed (frame -> prompts)."""
        return self.prompt_updates.get(self.object_id, {})

    @property
    def clears(self) -> list[int]:
        """The current object's frames whose prompts were removed."""
        return self.prompt_clears.get(self.object_id, [])

    def cancel(self) -> None:
        """Stop after the frame being computed; frames written so far stay (and undo as one)."""
        self.cancelled = True

    def steps(self) -> Iterator[PropagationStep]:
        """Set the prompts and track frame by frame (slow: run it in a worker thread).

        Never raises: a failure ends the iteration and is kept in :attr:`error`.
        """
        try:
            yield from self._steps()
        except Exception as exc:  # noqa: BLE001 - reported by the GUI thread
            self.error = exc

    def _steps(self) -> Iterator[PropagationStep]:
        controller = self.controller
        propagator = controller._ensure_propagator()
        lock = controller._state_lock
        with lock:
            state = controller._ensure_state(self.spec, propagator)
            self.state_number = controller._state_number
            for other in [o for o in state.obj_ids if o not in self.object_ids]:
                # Its prompts are gone from the layers: a finished (or cleared) object.
                propagator.remove_object(state, other)
            for obj_id, frames in self.prompt_clears.items():
                for frame in frames:
                    propagator.clear_prompts(state, frame, obj_id)
                    self.applied.setdefault(obj_id, {})[frame] = None
        for obj_id, updates in self.prompt_updates.items():
            for frame, prompts in updates.items():
                if self.cancelled:
                    return
                points, labels, box = self.spec.to_window(prompts)
                with lock:
                    propagator.add_prompts(
                        state, frame, obj_id, points=points, labels=labels, box=box
                    )
                self.applied.setdefault(obj_id, {})[frame] = _signature(prompts)
        if self.cancelled:
            return
        passes = [False, True] if self.direction == "both" else [self.direction == "backward"]
        self.total = sum(
            len(propagator.frame_order(state, reverse, self.start_frame)) for reverse in passes
        )
        yield PropagationStep(None, None, 0, self.total)
        tracking = propagator.propagate(
            state,
            self.direction,
            start_frame=self.start_frame,
            stop_after_lost=self.stop_after_lost,
        )
        try:
            for done, (frame, masks) in enumerate(_locked(tracking, lock), 1):
                self.done = done
                scores = propagator.frame_scores(state, frame, masks)
                for obj_id, score in scores.items():
                    self.scores.setdefault(obj_id, {})[frame] = score
                full = {obj_id: self.spec.to_frame(mask) for obj_id, mask in masks.items()}
                yield PropagationStep(frame, full, done, self.total, scores)
                if self.cancelled:
                    return
        finally:
            tracking.close()

    @property
    def fps(self) -> float | None:
        """Frames written per second of the run."""
        if not self.seconds or not self.frames_written:
            return None
        return len(self.frames_written) / self.seconds

    def objects_text(self) -> str:
        """``"object 3"`` or ``"objects 3, 5"``."""
        ids = ", ".join(str(i) for i in self.object_ids)
        return f"object{'s' if len(self.object_ids) > 1 else ''} {ids}"

    def object_progress(self) -> dict[int, tuple[int, int]]:
        """Per object: frames tracked so far, and of those the frames it is present on."""
        out = {}
        for obj_id in self.object_ids:
            scores = self.scores.get(obj_id, {})
            out[obj_id] = (len(scores), sum(score.present for score in scores.values()))
        return out

    def describe(self) -> str:
        """A one-line summary for the status (progress while running), with each object's
        frames without it when several are tracked."""
        what = f"{self.objects_text()} ({self.direction})"
        if not self.finished:
            total = f" / {self.total}" if self.total else ""
            text = f"Propagating {what}: {len(self.frames_written)}{total} slices"
        else:
            how = "Cancelled" if self.cancelled else "Failed" if self.error else "Propagated"
            text = f"{how} {what}: {len(self.frames_written)} slices in {self.seconds:.1f} s"
            if self.fps:
                text += f" ({self.fps:.1f} slices/s)"
            if self.frames_encoded:
                text += f", {self.frames_encoded} encoded"
        missing = [
            f"object {obj_id} absent on {tracked - present} of them"
            for obj_id, (tracked, present) in self.object_progress().items()
            if tracked > present
        ]
        if missing:
            text += f"; {'; '.join(missing)}"
        return text
