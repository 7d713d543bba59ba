"""When the dock widget ends, and what it lets go of then: Qt-free.

napari ends a dock widget in three ways: ``close()``, Qt deleting it with the viewer (seen the
next time the widget is probed), and taking it out of its dock (``setParent(None)``) without
closing it. :class:`Lifecycle` turns each into one teardown, run once.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Lifecycle"]


class Lifecycle:
    """Whether the widget still lives; its teardown, run once.

    Parameters
    ----------
    probe : callable
        Touches the Qt object; raises RuntimeError once Qt deleted it.
    stop : callable
        Stops running work, while the widget still counts as alive (its callbacks still run).
    release : callable
        Lets go of everything (shortcuts, callbacks, the model), once it counts as closed.
    """

    def __init__(
        self, probe: Callable[[], object], stop: Callable[[], None], release: Callable[[], None]
    ) -> None:
        self._probe = probe
        self._stop = stop
        self._release = release
        self._docked = False
        self.closed = False

    def alive(self) -> bool:
        """False once closed or deleted by Qt (then torn down now)."""
        if self.closed:
            return False
        try:
            self._probe()
        except RuntimeError:  # wrapped C/C++ object has been deleted
            self.close()
            return False
        return True

    def parent_changed(self, has_parent: bool) -> None:
        """A dock widget taken out of its dock (after having been in one) is closed."""
        if has_parent:
            self._docked = True
        elif self._docked:
            self.close()

    def close(self) -> None:
        """Stop the work, then release everything; only the first call does anything."""
        if self.closed:
            return
        self._stop()
        self.closed = True
        self._release()
