"""What the dock's controls and the viewer's events set off, connected in one place.

:class:`DockWiring` connects the buttons and combos of :class:`~.dock.DockView`, the
annotator's events and the viewer's layers (through :class:`~.layer_choices.LayerChoices`) to
the widget's console API, so that a click does exactly what the console method does. It also
turns Encode and Propagate into Cancel while their work runs, keeps the shortcuts on the
prompt layers as they come and go, and shows the status.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .layer_choices import LayerChoices
from .status import gather_facts

if TYPE_CHECKING:  # pragma: no cover
    from .dock import DockView
    from .shortcuts import KeyBindings
    from .widget import Sam2Widget

__all__ = ["DockWiring"]


class DockWiring:
    """The dock's controls, the annotator's events and the layer combos, wired to the widget.

    Parameters
    ----------
    widget : Sam2Widget
        The buttons call its console methods; its collaborators (``viewer``, ``annotator``,
        ``jobs``, ``session``, ``propagation``, ``cache``, ``errors``) are read.
    view : DockView
        The controls, and where the status is shown.
    keys : KeyBindings
        The widget's shortcuts, bound on each new prompt layer too.
    alive : callable
        False once the widget is closed: nothing is shown then.
    defer : callable
        Runs a function later on the GUI thread.

    Attributes
    ----------
    layer_choices : LayerChoices
        The image and labels combos, kept in step with the viewer's layers.
    """

    def __init__(
        self,
        widget: Sam2Widget,
        view: DockView,
        keys: KeyBindings,
        *,
        alive: Callable[[], bool],
        defer: Callable[[Callable[[], None]], None],
    ) -> None:
        self._widget = widget
        self._view = view
        self._keys = keys
        self._alive = alive
        self.layer_choices = LayerChoices(
            widget.viewer,
            widget.annotator,
            view.model_panel.image_combo,
            view.object_panel.labels_combo,
            alive=alive,
            defer=defer,
            choose_image=lambda layer: setattr(widget, "image_layer", layer),
            choose_labels=lambda layer: setattr(widget, "labels_layer", layer),
            warn=widget.errors.warn,
            on_removed=self.on_layer_removed,
        )

    def connect(self) -> None:
        """Connect the controls, the annotator's events and the layer combos."""
        widget, model, actions = self._widget, self._view.model_panel, self._view.actions_row
        model.model_combo.currentTextChanged.connect(lambda _: self.refresh_status())
        model.backend_combo.currentTextChanged.connect(lambda _: self.refresh_status())
        model.encode_button.clicked.connect(self.encode_or_cancel)
        # Lambdas: the button's ``checked`` argument must not reach the console method.
        self._view.object_panel.next_button.clicked.connect(lambda: widget.next_object())
        actions.commit_button.clicked.connect(lambda: widget.commit())
        actions.clear_button.clicked.connect(lambda: widget.clear())
        actions.undo_button.clicked.connect(lambda: widget.undo())
        actions.refine_button.clicked.connect(lambda: widget.refine_selected())
        self._view.propagation_row.propagate_button.clicked.connect(self.propagate_or_cancel)
        widget.segment_all_runner.connect(lambda: widget.segment_all())

        events = widget.annotator.events
        events.status.connect(self.refresh_status)
        events.layers.connect(self.on_layers_changed)
        events.prompts.connect(self.refresh_status)
        events.error.connect(lambda event: widget.errors.set(event.message))
        events.decoded.connect(lambda event: widget.errors.clear())
        self.layer_choices.connect()

    def disconnect(self) -> None:
        """Unbind the shortcuts everywhere and stop following the viewer's layers."""
        self._keys.unbind_all()
        self.layer_choices.disconnect()

    def refresh_status(self, event: Any = None) -> None:
        """Show the status, the Encode/Cancel button and the propagation row as they are now."""
        if not self._alive():
            return
        widget = self._widget
        propagation = widget.propagation
        facts = gather_facts(
            widget.annotator, widget.session, widget.jobs, propagation, widget.cache
        )
        running = propagation.running
        reason = None if running else propagation.check()
        if widget.segment_all_runner.busy and not running:
            reason = "Segment all is running: wait for it, or cancel it."
        self._view.show_status(facts, running, reason)
        widget.segment_all_runner.refresh()
        widget.large_images_runner.refresh()
        widget.review_table.refresh()

    def encode_or_cancel(self) -> None:
        """The Encode button: Cancel while a load or an encode runs."""
        if self._widget.jobs.current is not None:
            self._widget.cancel()
        else:
            self._widget.encode()

    def propagate_or_cancel(self) -> None:
        """The Propagate button: Cancel propagation while one runs."""
        if self._widget.propagation.running:
            self._widget.cancel_propagation()
        else:
            self._widget.propagate()

    def on_layer_removed(self, layer: Any) -> None:
        """A layer left the viewer: a load or encode of it is of no use any more."""
        jobs = self._widget.jobs
        job = jobs.current
        if job is not None and job.request is not None and job.request.layer is layer:
            jobs.queued = False
            self._widget.cancel(quiet=True)

    def on_layers_changed(self, event: Any = None) -> None:
        """The annotator's helper layers changed: shortcuts on new prompt layers, combos."""
        annotator = self._widget.annotator
        for layer in (annotator.prompts_layer, annotator.box_layer):
            if layer is not None:
                self._keys.bind(layer)
        self.layer_choices.refresh()
        self.refresh_status()
