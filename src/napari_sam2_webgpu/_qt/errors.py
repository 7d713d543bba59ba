"""Failures as messages: a toast, the full text in the dock, and :attr:`last_error`.

The user guide promises that console methods never raise for a failure of the work itself
(only for wrong arguments): :meth:`ErrorReporter.guard` turns one into a message and None.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from napari.utils.notifications import show_error, show_warning

from .._napari import AnnotatorError
from ..image import ImageError, PromptError
from .status import EXPECTED_ERRORS

__all__ = ["ErrorReporter"]

logger = logging.getLogger("napari_sam2_webgpu")


class ErrorReporter:
    """Keeps the last failure and shows it.

    Parameters
    ----------
    show : callable
        ``show(message_or_None)`` shows the message in full in the dock (None: hide it).
    alive : callable
        False once the widget is closed: nothing is shown then.

    Attributes
    ----------
    last_error : str or None
        The last failure's message; None once an action succeeded since.
    count : int
        How many failures were reported, so that a caller can tell whether one was.
    """

    def __init__(self, show: Callable[[str | None], None], alive: Callable[[], bool]) -> None:
        self._show = show
        self._alive = alive
        self.last_error: str | None = None
        self.count = 0

    def guard(self, fn: Callable, *args: Any) -> Any:
        """Run a console method's work (arguments already checked): a failure becomes a
        message and None, never a traceback, as the user guide promises."""
        try:
            return fn(*args)
        except (AnnotatorError, ImageError, PromptError) as exc:
            self.warn(str(exc))
        except Exception as exc:  # e.g. a read-only Labels layer: say so, keep going
            message = f"SAM2 failed: {type(exc).__name__}: {exc}"
            logger.warning("napari-sam2-webgpu: %s", message, exc_info=exc)
            self.set(message)
            show_error(message)
        return None

    def warn(self, message: str) -> None:
        """Something the user can fix (no image, no model...): a warning."""
        self.set(message)
        show_warning(message)

    def fail(self, message: str, exc: BaseException | None = None) -> None:
        """A failed load, encode or propagation; an unexpected ``exc`` is logged in full."""
        self.set(message)
        if exc is not None and not isinstance(exc, EXPECTED_ERRORS):
            logger.warning("napari-sam2-webgpu: %s", message, exc_info=exc)
        show_error(message)

    def set(self, message: str | None) -> None:
        """Keep ``message`` as :attr:`last_error` and show it in full in the dock."""
        self.last_error = message or None
        if message:
            self.count += 1
        if self._alive():
            self._show(message)

    def clear(self) -> None:
        """An action succeeded: the last error is no longer current."""
        if self.last_error is not None:
            self.set(None)
