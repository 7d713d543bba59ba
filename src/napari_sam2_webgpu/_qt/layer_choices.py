"""The dock's image and labels combos, kept in step with the viewer's layers (and back).

Needs no running Qt: the combos are only filled (:func:`.panels.fill_layer_combo`) and read
(``itemData``), the viewer only through its public layer list and events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari.layers import Image, Labels

from .._napari import AnnotatorError
from .panels import fill_layer_combo

__all__ = ["NEW_LABELS", "NO_IMAGE", "LayerChoices"]

NEW_LABELS = "New Labels layer"
NO_IMAGE = "(no image layer)"


class LayerChoices:
    """Fills the image and labels combos from the viewer; applies the user's choice.

    Follows the viewer (layers inserted, removed, moved or renamed; the active layer) and hands
    a chosen layer to ``choose_image`` / ``choose_labels`` (the widget's setters, which check it
    and may raise :class:`AnnotatorError`).

    Parameters
    ----------
    viewer : napari.Viewer
    annotator : Annotator
        Read only: its ``image_layer``, ``labels_layer`` and ``preview_layer``.
    image_combo, labels_combo : QComboBox
    alive : callable
        False once the widget is closed (then nothing is refreshed).
    defer : callable
        Runs a function later on the GUI thread (after napari's removal loop).
    choose_image, choose_labels : callable
        Set the layer in use.
    warn : callable
        Shows a message (a Labels layer that cannot be used).
    on_removed : callable
        Called with a layer removed from the viewer, before the combos are refreshed.
    """

    def __init__(
        self,
        viewer: Any,
        annotator: Any,
        image_combo: Any,
        labels_combo: Any,
        *,
        alive: Callable[[], bool],
        defer: Callable[[Callable[[], None]], None],
        choose_image: Callable[[Any], None],
        choose_labels: Callable[[Any], None],
        warn: Callable[[str], None],
        on_removed: Callable[[Any], None],
    ) -> None:
        self._viewer = viewer
        self._annotator = annotator
        self._image_combo = image_combo
        self._labels_combo = labels_combo
        self._alive = alive
        self._defer = defer
        self._choose_image = choose_image
        self._choose_labels = choose_labels
        self._warn = warn
        self._on_removed = on_removed

    def images(self) -> list[Image]:
        """The viewer's image layers, bottom to top."""
        return [layer for layer in self._viewer.layers if isinstance(layer, Image)]

    def labels(self) -> list[Labels]:
        """The viewer's Labels layers commits could go to (not the preview)."""
        preview = self._annotator.preview_layer
        return [
            layer
            for layer in self._viewer.layers
            if isinstance(layer, Labels) and layer is not preview
        ]

    def initial_image(self) -> Image | None:
        """The image to start with: the active layer if an image, else the top image."""
        active = self._viewer.layers.selection.active
        if isinstance(active, Image):
            return active
        images = self.images()
        return images[-1] if images else None

    def refresh(self, event: Any = None) -> None:
        """Refill both combos; choose the top image if none is chosen yet."""
        if not self._alive():
            return
        images, labels = self.images(), self.labels()
        for layer in images + labels:
            layer.events.name.disconnect(self.refresh)
            layer.events.name.connect(self.refresh)
        a = self._annotator
        fill_layer_combo(self._image_combo, images, a.image_layer, NO_IMAGE)
        fill_layer_combo(self._labels_combo, labels, a.labels_layer, NEW_LABELS, True)
        if a.image_layer is None and images:
            self._choose_image(images[-1])

    # ------------------------------------------------------------- events
    def on_image_combo(self, index: int) -> None:
        layer = self._image_combo.itemData(index)
        if layer is not None:
            self._choose_image(layer)

    def on_labels_combo(self, index: int) -> None:
        try:
            self._choose_labels(self._labels_combo.itemData(index))
        except AnnotatorError as exc:
            self._warn(str(exc))
            self.refresh()

    def on_layer_removed(self, event: Any) -> None:
        self._on_removed(event.value)
        # Choosing another image may remove helper layers: not inside napari's removal loop.
        self._defer(self.refresh)

    def on_active_layer(self, event: Any) -> None:
        layer = event.value
        if isinstance(layer, Image) and layer is not self._annotator.image_layer:
            self._choose_image(layer)

    # ------------------------------------------------------------- connections
    def _viewer_callbacks(self) -> list[tuple[Any, Callable]]:
        layers = self._viewer.layers
        return [
            (layers.events.inserted, self.refresh),
            (layers.events.removed, self.on_layer_removed),
            (layers.events.moved, self.refresh),
            (layers.selection.events.active, self.on_active_layer),
        ]

    def connect(self) -> None:
        """Follow the combos and the viewer."""
        self._image_combo.activated.connect(self.on_image_combo)
        self._labels_combo.activated.connect(self.on_labels_combo)
        for emitter, callback in self._viewer_callbacks():
            emitter.connect(callback)

    def disconnect(self) -> None:
        """Stop following the viewer (the combos go with the widget)."""
        for emitter, callback in self._viewer_callbacks():
            emitter.disconnect(callback)
        for layer in self._viewer.layers:
            layer.events.name.disconnect(self.refresh)
