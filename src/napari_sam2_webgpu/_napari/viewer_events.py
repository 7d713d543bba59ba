"""What an annotator does when the viewer changes: another slice is shown, a layer is removed.

:class:`ViewerReactions` connects to the viewer's dims and layer list for an
:class:`~.annotator.Annotator`, and keeps the annotator consistent: the displayed slice's
embedding and mask follow the slice, and a removed layer is never written again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_info, show_warning

from .errors import guarded

if TYPE_CHECKING:  # pragma: no cover
    from napari.layers import Image

    from .annotator import Annotator

__all__ = ["ViewerReactions"]


def _call_now(fn: Callable[[], None]) -> None:
    fn()


class ViewerReactions:
    """The annotator's reactions to slice changes and removed layers.

    Parameters
    ----------
    annotator : Annotator
        Kept consistent through its public API and its collaborators (``image``, ``prompts``,
        ``preview``, ``target``, ``decoder``, ``events``).
    clear_preview : callable
        Shows no mask.
    defer : callable, optional
        ``defer(fn)`` calls ``fn()`` soon, outside the current event: removing layers while
        napari removes one would nest in its removal loop. Default: at once.

    Attributes
    ----------
    closed : bool
        Set by :meth:`close`: deferred work and messages are dropped.
    """

    def __init__(
        self,
        annotator: Annotator,
        *,
        clear_preview: Callable[[], None],
        defer: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.annotator = annotator
        self.closed = False
        self._defer = defer or _call_now
        self._clear_preview = clear_preview
        for emitter, callback in self._callbacks():
            emitter.connect(callback)

    def _callbacks(self) -> list[tuple[Any, Callable]]:
        viewer = self.annotator.viewer
        return [
            (viewer.layers.events.removed, self.on_layer_removed),
            (viewer.dims.events.current_step, self.on_dims_changed),
            (viewer.dims.events.ndisplay, self.on_dims_changed),
            (viewer.dims.events.order, self.on_dims_changed),
        ]

    def close(self) -> None:
        """Disconnect from the viewer."""
        self.closed = True
        for emitter, callback in self._callbacks():
            emitter.disconnect(callback)

    def report_problem(self, message: str, show: Callable[[str], None] | None = None) -> None:
        """Tell the user (through the annotator: also its ``error`` event); for :func:`guarded`."""
        self.annotator.report_problem(message, show)

    def tell(self, message: str, show: Callable[[str], None] | None = None) -> None:
        """Notify (a warning by default), unless the viewer is closing (all its layers gone)."""
        if not self.closed and len(self.annotator.viewer.layers):
            (show or show_warning)(message)

    def reset_helpers(self, image: Image | None) -> None:
        """Another image geometry (or none): clear the prompts, re-place or drop helper layers."""
        self.annotator.prompts.reset(image)
        self.annotator.preview.remove()
        self._clear_preview()

    @guarded
    def on_dims_changed(self, event: Any = None) -> None:
        """Another slice may be shown: its embedding (if cached) and its prompts' mask."""
        a = self.annotator
        changed, sl = a.image.slice_changed()
        if not changed:
            return  # e.g. the range of the displayed axes changed: same slice
        a.sync_embedding()
        a.decoder.invalidate()
        self._clear_preview()
        a.large.refresh_grid()
        a.events.status()
        if sl is not None and a.is_ready:
            a.request_decode()

    @guarded
    def on_layer_removed(self, event: Any) -> None:
        """Forget a removed layer in use (the image, the target, a helper layer)."""
        a, layer = self.annotator, event.value
        if layer is a.image.layer:
            # Removing the helper layers now would nest in napari's own removal loop: defer.
            a.image.forget_layer()
            a.decoder.invalidate()
            self._defer(functools.partial(self.after_image_removed, layer.name))
        elif a.target.forget(layer):
            message = (
                f"The Labels layer '{layer.name}' was removed; the next commit creates a new "
                "one. Other Labels layers are untouched."
            )
            self._defer(functools.partial(self.tell, message, show_info))
        elif a.prompts.forget(layer):
            a.request_decode()
        elif layer is a.large.grid.layer:
            a.large.grid.visible = False  # removed by the user: hidden until asked again
            a.large.grid.layer = None
            return
        elif not a.preview.forget(layer):
            return
        a.events.layers()

    def after_image_removed(self, name: str) -> None:
        """Deferred after the image's removal: drop its helper layers, say so."""
        a = self.annotator
        if self.closed or a.image.layer is not None:
            return  # closed, or another image was chosen meanwhile
        self.reset_helpers(None)
        a.events.layers()
        a.events.status()
        self.tell(
            f"The image layer '{name}' was removed: its prompts and encodings are gone. "
            "Committed labels are kept."
        )
