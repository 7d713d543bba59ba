"""The widget's keyboard shortcuts, bound on the viewer and on the prompt layers.

napari dispatches a key to the active layer first, then to the viewer: the prompt layers get
the same bindings, so that C commits while "SAM2 prompts" is selected too. Unbinding puts back
whatever was bound before, in reverse order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["SHORTCUTS", "SHORTCUT_HELP", "KeyBindings"]

#: Keyboard shortcuts (napari key names) -> widget method. Active while the viewer has focus.
SHORTCUTS = {
    "C": "commit",
    "Shift-C": "clear",
    "T": "toggle_polarity",
    "N": "next_object",
    "P": "propagate",
    "Control-Z": "undo",
}
SHORTCUT_HELP = (
    "C commit · Shift+C clear · T positive/negative · N next object · P propagate · Ctrl+Z undo"
)


class KeyBindings:
    """:data:`SHORTCUTS` of one owner, bound on any number of keymap providers.

    Parameters
    ----------
    owner : object
        Has the methods named in :data:`SHORTCUTS` (the widget).
    alive : callable
        ``alive()`` is False once the owner is closed: a key then does nothing.
    """

    def __init__(self, owner: Any, alive: Callable[[], bool]) -> None:
        self._owner = owner
        self._alive = alive
        self._bound: list[tuple[Any, str, Any]] = []  # (target, key, previous binding)

    def bind(self, target: Any) -> None:
        """Bind every shortcut on ``target`` (a viewer or a layer), once."""
        if self.is_bound(target):
            return
        for key, method in SHORTCUTS.items():
            func = getattr(self._owner, method)
            previous = target.bind_key(
                key, lambda _target, f=func: f() if self._alive() else None, overwrite=True
            )
            self._bound.append((target, key, previous))

    def is_bound(self, target: Any) -> bool:
        """Whether :meth:`bind` was called for ``target`` (and not undone since)."""
        return any(bound is target for bound, _, _ in self._bound)

    def unbind_all(self) -> None:
        """Put back the bindings that were there before, on every target."""
        for target, key, previous in reversed(self._bound):
            target.bind_key(key, previous, overwrite=True)
        self._bound.clear()
