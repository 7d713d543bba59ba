"""What the dock's controls and events set off: stand-in widget, view and signals, no Qt."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from napari.components import LayerList
from napari.layers import Image

from napari_sam2_webgpu._qt.wiring import DockWiring

from .fakes import FakeCombo, FakeSignal


class FakeButton:
    def __init__(self) -> None:
        self.clicked = FakeSignal()


class FakeKeys:
    def __init__(self) -> None:
        self.bound: list = []
        self.unbound = False

    def bind(self, target) -> None:
        self.bound.append(target)

    def unbind_all(self) -> None:
        self.unbound = True


CONSOLE_METHODS = {
    "next_object",
    "commit",
    "clear",
    "undo",
    "encode",
    "cancel",
    "propagate",
    "cancel_propagation",
    "segment_all",
    "refine_selected",
}


class FakeWidget:
    """The console API the buttons call, recording each call, and the collaborators read."""

    def __init__(self) -> None:
        self.calls: list = []
        self.viewer = SimpleNamespace(layers=LayerList())
        events = {name: FakeSignal() for name in ("status", "layers", "prompts", "error")}
        self.annotator = SimpleNamespace(
            events=SimpleNamespace(decoded=FakeSignal(), **events),
            image_layer=None,
            labels_layer=None,
            preview_layer=None,
            prompts_layer=None,
            box_layer=None,
            is_ready=False,
            last_decode_seconds=None,
            last_latency_seconds=None,
            last_score=None,
        )
        self.errors = SimpleNamespace(
            warn=lambda message: self.calls.append(("warn", message)),
            set=lambda message: self.calls.append(("error", message)),
            clear=lambda: self.calls.append(("clear errors",)),
        )
        self.jobs = SimpleNamespace(current=None, queued=True, progress_text=None)
        self.propagation = SimpleNamespace(
            running=False,
            run=None,
            last_run=None,
            unavailable_summary=None,
            check=lambda: "no stack",
        )
        self.session = SimpleNamespace(predictor=None, last_encode_seconds=None)
        self.segment_all_runner = SimpleNamespace(
            busy=False,
            connect=lambda segment_all: setattr(self, "segment_all_button", segment_all),
            refresh=lambda: None,
        )
        self.large_images_runner = SimpleNamespace(busy=False, refresh=lambda: None)
        self.review_table = SimpleNamespace(refresh=lambda: None)
        self.cache = type("Cache", (), {"__len__": lambda self: 0, "nbytes": 0})()

    def __getattr__(self, name: str):
        if name not in CONSOLE_METHODS:
            raise AttributeError(name)
        return lambda *args, **kw: self.calls.append((name, *args, *kw.items()))


def _view() -> tuple[SimpleNamespace, list]:
    shown: list = []
    view = SimpleNamespace(
        model_panel=SimpleNamespace(
            image_combo=FakeCombo(),
            model_combo=SimpleNamespace(currentTextChanged=FakeSignal()),
            backend_combo=SimpleNamespace(currentTextChanged=FakeSignal()),
            encode_button=FakeButton(),
        ),
        object_panel=SimpleNamespace(labels_combo=FakeCombo(), next_button=FakeButton()),
        actions_row=SimpleNamespace(
            commit_button=FakeButton(),
            clear_button=FakeButton(),
            undo_button=FakeButton(),
            refine_button=FakeButton(),
        ),
        propagation_row=SimpleNamespace(propagate_button=FakeButton()),
        show_status=lambda facts, running, reason: shown.append((facts, running, reason)),
    )
    return view, shown


def _wiring(alive: bool = True):
    widget, keys = FakeWidget(), FakeKeys()
    view, shown = _view()
    wiring = DockWiring(widget, view, keys, alive=lambda: alive, defer=lambda fn: fn())
    wiring.connect()
    return wiring, widget, view, keys, shown


def test_buttons_call_the_console_methods():
    _, widget, view, _, _ = _wiring()
    view.object_panel.next_button.clicked.emit(False)
    for name in ("commit", "clear", "undo", "refine"):
        getattr(view.actions_row, f"{name}_button").clicked.emit(False)
    calls = [("next_object",), ("commit",), ("clear",), ("undo",), ("refine_selected",)]
    assert widget.calls == calls
    widget.segment_all_button()
    assert widget.calls[-1] == ("segment_all",)


def test_encode_button_cancels_while_a_job_runs():
    _, widget, view, _, _ = _wiring()
    view.model_panel.encode_button.clicked.emit()
    widget.jobs.current = object()
    view.model_panel.encode_button.clicked.emit()
    assert widget.calls == [("encode",), ("cancel",)]


def test_propagate_button_cancels_while_a_propagation_runs():
    _, widget, view, _, _ = _wiring()
    view.propagation_row.propagate_button.clicked.emit()
    widget.propagation.running = True
    view.propagation_row.propagate_button.clicked.emit()
    assert widget.calls == [("propagate",), ("cancel_propagation",)]


def test_status_shows_facts_and_why_propagate_is_off_while_alive():
    wiring, widget, view, _, shown = _wiring()
    view.model_panel.model_combo.currentTextChanged.emit("small")
    facts, running, reason = shown[-1]
    assert facts.model is None and not running and reason == "no stack"
    widget.propagation.running = True
    widget.annotator.events.status.emit(None)
    assert shown[-1][1:] == (True, None)  # no reason while it runs
    widget.propagation.running = False
    widget.segment_all_runner.busy = True
    widget.annotator.events.status.emit(None)
    assert shown[-1][1:] == (False, "Segment all is running: wait for it, or cancel it.")
    closed, _, _, _, closed_shown = _wiring(alive=False)
    closed.refresh_status()
    assert closed_shown == []


def test_annotator_errors_and_decodes_reach_the_error_reporter():
    _, widget, _, _, _ = _wiring()
    widget.annotator.events.error.emit(SimpleNamespace(message="no model"))
    widget.annotator.events.decoded.emit(SimpleNamespace())
    assert widget.calls == [("error", "no model"), ("clear errors",)]


def test_removing_the_layer_being_encoded_cancels_its_job_only():
    wiring, widget, _, _, _ = _wiring()
    layer, other = object(), object()
    widget.jobs.current = SimpleNamespace(request=SimpleNamespace(layer=layer))
    wiring.on_layer_removed(other)
    assert widget.calls == [] and widget.jobs.queued
    wiring.on_layer_removed(layer)
    assert widget.calls == [("cancel", ("quiet", True))] and not widget.jobs.queued
    widget.jobs.current = SimpleNamespace(request=None)  # a load: not about a layer
    wiring.on_layer_removed(layer)
    assert len(widget.calls) == 1


def test_new_prompt_layers_get_the_shortcuts_and_the_combos_follow():
    wiring, widget, view, keys, shown = _wiring()
    image = Image(np.zeros((4, 4)), name="cells")
    widget.viewer.layers.append(image)  # followed through the layer combos
    assert widget.image_layer is image  # the top image is chosen through the widget's setter
    prompts = object()
    widget.annotator.prompts_layer = prompts
    widget.annotator.events.layers.emit(None)
    assert keys.bound == [prompts] and shown
    wiring.disconnect()
    assert keys.unbound
    widget.viewer.layers.append(Image(np.zeros((4, 4)), name="later"))
    assert [text for text, _ in view.model_panel.image_combo.items] == ["cells"]
