"""Commit and undo as the dock does them, aware of propagation: Qt-free.

A propagated object is in the labels already (committing it means "done with it"), and undoing
a propagation keeps its object (its prompts are still there to run again).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari.utils.notifications import show_info

__all__ = ["Commits"]


class Commits:
    """Commit and undo of the current object, with messages.

    Parameters
    ----------
    annotator : Annotator
    propagation : PropagationController
    errors : ErrorReporter
        Failures become messages; a success clears the last one.
    wait_for_decode : callable
        Returns once the latest prompt's mask is shown.
    """

    def __init__(
        self, annotator: Any, propagation: Any, errors: Any, wait_for_decode: Callable[[], None]
    ) -> None:
        self._annotator = annotator
        self._propagation = propagation
        self._errors = errors
        self._wait_for_decode = wait_for_decode

    def commit(self) -> int:
        """Write the previewed mask (after the decode running); the number of pixels written."""
        self._wait_for_decode()
        if self._propagation.is_propagated():
            # The object is already in the labels: committing means "done with it".
            done = self._annotator.object_id
            self._propagation.finish_object()
            show_info(
                f"SAM2: object {done} was propagated; next object {self._annotator.object_id}."
            )
            self._errors.clear()
            return 0
        painted = self._errors.guard(self._annotator.commit) or 0
        if painted:
            self._errors.clear()
        return painted

    def undo(self) -> bool:
        """Undo the last change of the Labels layer; whether there was one."""
        keep = self._annotator.object_id if self._propagation.is_last_undo_step() else None
        done = self._annotator.undo()
        if keep is not None:
            self._annotator.object_id = keep
        if done:
            self._errors.clear()
        else:
            show_info("SAM2: nothing to undo.")
        return done
