"""GUI tests of the SAM2 dock widget with a real napari viewer (run under Xvfb).

The widget is docked through the npe2 contribution, loads the micro model (a random-weight
network with the real SAM2.1 graph) on the CPU, and everything heavy runs in worker threads as in
real use; the tests wait for them with ``qtbot.waitUntil``. Clicks go through the layers' own
mouse-callback path (``mouse_press_callbacks`` / ``mouse_release_callbacks``), keyboard shortcuts
through the canvas.

Set ``NAPARI_SAM2_WEBGPU_SCREENSHOT=docs/screenshot.png`` to write the user guide's screenshot.
"""

from __future__ import annotations

import gc
import os
import shutil
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
from napari.utils._proxies import ReadOnlyWrapper
from napari.utils.interactions import (
    mouse_move_callbacks,
    mouse_press_callbacks,
    mouse_release_callbacks,
)
from napari.utils.notifications import ErrorNotification, NotificationSeverity, notification_manager
from napari.utils.progress import progress

from .._napari.stacks import (
    OBJECT,
    OTHER,
    blob_centre,
    expected_labels,
    moving_blob_stack,
    state_masks,
)
from ..conftest import MouseEvent, blob_image

pytestmark = pytest.mark.gui

PLUGIN, WIDGET = "napari-sam2-webgpu", "Segment Anything 2"
# ms. Only a safety net against a hang: every wait is on a condition (an encode takes ~0.5 s on
# 2 idle CPU cores, but any time on a busy CI machine).
TIMEOUT = 300_000


def _event(kind, position, pos=(0, 0), **kwargs):
    kwargs.setdefault("dims_displayed", (1, 2))  # the widget tests click in 3D stacks
    event = MouseEvent(kind, tuple(position), pos=np.asarray(pos, float), **kwargs)
    return ReadOnlyWrapper(event, exceptions=("handled",))


def click(layer, position, **kwargs):
    """A click at a world position, through the layer's own mouse callbacks."""
    mouse_press_callbacks(layer, _event("mouse_press", position, **kwargs))
    mouse_release_callbacks(layer, _event("mouse_release", position, **kwargs))


def drag(layer, start, end):
    """Press at ``start``, move and release at ``end`` (world positions)."""
    mouse_press_callbacks(layer, _event("mouse_press", start, pos=(0, 0)))
    for t in (0.5, 1.0):
        point = np.asarray(start) + t * (np.asarray(end) - np.asarray(start))
        mouse_move_callbacks(
            layer, _event("mouse_move", point, pos=(100 * t, 100 * t), is_dragging=True)
        )
    mouse_release_callbacks(layer, _event("mouse_release", end, pos=(100, 100)))


class Notes:
    """Notifications shown during a test."""

    def __init__(self):
        self.start = len(notification_manager.records)

    @property
    def new(self):
        return notification_manager.records[self.start :]

    def messages(self, severity=None):
        return [
            str(n.message)
            for n in self.new
            if severity is None or n.severity == NotificationSeverity(severity)
        ]

    def assert_no_traceback(self):
        errors = [n for n in self.new if isinstance(n, ErrorNotification)]
        assert not errors, [str(n.message) for n in errors]


@pytest.fixture
def notes():
    yield (n := Notes())
    n.assert_no_traceback()


@pytest.fixture
def dock(make_napari_viewer, micro_model_files, qtbot):
    """``dock(show=False)`` -> (viewer, widget) docked through npe2, with the micro files set."""
    _, files = micro_model_files
    made = []

    def make(show=False, size=(1400, 900)):
        viewer = make_napari_viewer(show=show)
        viewer.window._qt_window.resize(*size)
        return viewer

    def docked(viewer):
        from napari_sam2_webgpu._qt import Sam2Widget

        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
        assert isinstance(widget, Sam2Widget)
        widget.model_combo.setCurrentText("custom files")
        widget.encoder_edit.setText(str(files.encoder))
        widget.decoder_edit.setText(str(files.decoder))
        widget.backend_combo.setCurrentText("cpu")
        made.append(widget)
        return widget

    yield make, docked
    for widget in made:  # let worker threads finish before the viewer goes
        qtbot.waitUntil(lambda w=widget: not w.busy, timeout=TIMEOUT)
        # Closing frees the model and embeddings at once (napari keeps closed windows).
        widget.close()


def wait_idle(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)


def wait_mask(qtbot, widget):
    qtbot.waitUntil(
        lambda: not widget.busy and widget.annotator.preview_mask is not None, timeout=TIMEOUT
    )


def press(viewer, qtbot, key, modifier=None):
    """A key press on the canvas, through napari's key bindings."""
    from qtpy.QtCore import Qt

    native = viewer.window._qt_viewer.canvas.native
    mod = modifier if modifier is not None else Qt.KeyboardModifier.NoModifier
    qtbot.keyClick(native, key, mod)


def stack_data():
    return np.stack([blob_image(160, 192, seed=z)[..., 0] for z in range(5)])


# -- the whole flow -------------------------------------------------------------------------------


def test_full_flow(dock, qtbot, notes, tmp_path):
    """Dock, encode, clicks, box, two commits, pre-existing labels, 3D stepping, undo."""
    from qtpy.QtCore import Qt

    make, docked = dock
    viewer = make()
    image = viewer.add_image(stack_data(), name="stack", scale=(2.0, 0.5, 0.5), translate=(0, 4, 8))
    manual = np.zeros(image.data.shape, np.uint16)
    manual[2, 60:100, 70:120] = 1  # a hand-made label on the slice we annotate
    manual[0, :10, :10] = 1
    labels = viewer.add_labels(manual.copy(), name="manual", scale=image.scale)
    labels.translate = image.translate
    viewer.dims.set_current_step(0, 2)
    widget = docked(viewer)
    widget.annotator.inline_decode_seconds = 0  # every decode in the worker thread

    # 1. defaults: the image layer (the active layer is the Labels one), layer lists, tooltip
    assert widget.image_layer is image
    assert widget.image_combo.currentText() == "stack"
    assert [widget.labels_combo.itemText(i) for i in range(widget.labels_combo.count())] == [
        "New Labels layer",
        "manual",
    ]
    assert "C commit" in widget.toolTip() and "Control-click" in widget.toolTip()
    widget.labels_combo.setCurrentIndex(1)
    widget.labels_combo.activated.emit(1)
    assert widget.labels_layer is labels and widget.object_id == 2

    # 2. encode through the button: load + encode in a worker, with a progress bar
    qtbot.mouseClick(widget.encode_button, Qt.MouseButton.LeftButton)
    assert widget.busy and widget.encode_button.text() == "Cancel"
    bars = [str(bar.desc) for bar in progress._all_instances]  # napari's activity dock
    assert any(desc.startswith("SAM2") for desc in bars), bars
    wait_idle(qtbot, widget)
    assert not any(str(bar.desc).startswith("SAM2") for bar in progress._all_instances)
    assert widget.predictor is not None and widget.predictor.backend == "cpu"
    assert "CPU" in widget.device_label.text()
    assert widget.annotator.is_ready and "Last encode" in widget.status
    prompts = widget.prompts_layer
    assert prompts is not None and prompts.mode == "add"
    assert viewer.layers.selection.active is prompts

    # 3. a positive click, then a negative one with Control, through the mouse callbacks
    inside = image.data_to_world([2, 80, 96])
    click(prompts, inside)
    wait_mask(qtbot, widget)
    first = widget.annotator.preview_mask.copy()
    click(prompts, image.data_to_world([2, 20, 20]), modifiers=("Control",))
    wait_mask(qtbot, widget)
    assert prompts.features["positive"].tolist() == [True, False]
    assert "Last decode" in widget.status
    assert widget.preview_layer.data.shape == (1, 160, 192)

    # 4. commit object 2 (button): the hand-made label survives
    mask = widget.annotator.preview_mask.copy()
    qtbot.mouseClick(widget.commit_button, Qt.MouseButton.LeftButton)
    assert (labels.data[2] == 2).sum() == (mask & (manual[2] == 0)).sum() > 0
    np.testing.assert_array_equal(labels.data[2][manual[2] == 1], 1)
    assert widget.object_id == 3 and len(prompts.data) == 0
    assert widget.annotator.preview_mask is None and first.any()

    # 5. a box prompt drawn in the Shapes layer, committed with the C shortcut
    box = widget.box_layer
    viewer.layers.selection.active = box
    assert box.mode == "add_rectangle"
    drag(box, image.data_to_world([2, 10, 100]), image.data_to_world([2, 70, 180]))
    assert len(box.data) == 1
    wait_mask(qtbot, widget)
    mask2 = widget.annotator.preview_mask.copy()
    press(viewer, qtbot, Qt.Key.Key_C)
    assert (labels.data[2] == 3).sum() == (mask2 & (manual[2] == 0) & ~mask).sum() > 0
    np.testing.assert_array_equal(labels.data[2][manual[2] == 1], 1)
    np.testing.assert_array_equal(labels.data[0], manual[0])
    assert widget.object_id == 4 and len(box.data) == 0

    # 6. step through the stack: a click on a new slice encodes it; going back is cached
    viewer.layers.selection.active = prompts
    viewer.dims.set_current_step(0, 3)
    assert not widget.annotator.is_ready
    click(prompts, image.data_to_world([3, 80, 96]))
    wait_mask(qtbot, widget)
    assert any("encoding it now" in m for m in notes.messages("info"))
    press(viewer, qtbot, Qt.Key.Key_T)
    assert widget.positive is False and "negative" in widget.polarity_button.text()
    press(viewer, qtbot, Qt.Key.Key_T)
    widget.commit()
    assert (labels.data[3] == 4).any() and not (labels.data[2] == 4).any()
    assert len(widget.cache) == 2
    viewer.dims.set_current_step(0, 2)
    assert widget.annotator.is_ready and not widget.busy  # cached: no encode started
    viewer.dims.set_current_step(0, 3)
    assert widget.annotator.is_ready

    # 7. undo (button), twice: the last two commits go, the hand-made labels stay
    qtbot.mouseClick(widget.undo_button, Qt.MouseButton.LeftButton)
    assert not (labels.data == 4).any() and widget.object_id == 4
    widget.undo()
    assert not (labels.data == 3).any() and (labels.data == 2).any()
    np.testing.assert_array_equal(labels.data[manual == 1], 1)

    # 8. clear with Shift+C
    click(prompts, image.data_to_world([3, 80, 96]))
    wait_mask(qtbot, widget)
    press(viewer, qtbot, Qt.Key.Key_C, Qt.KeyboardModifier.ShiftModifier)
    assert len(prompts.data) == 0 and widget.annotator.preview_mask is None
    assert not notes.messages("error")


def test_console_session(dock, qtbot, notes):
    """The console example of docs/user-guide.md."""
    make, docked = dock
    viewer = make()
    viewer.add_image(blob_image(200, 240)[..., 0], name="cells")
    widget = docked(viewer)
    files = (widget.encoder_edit.text(), widget.decoder_edit.text())

    w = widget
    w.load_model(encoder=files[0], decoder=files[1], backend="cpu", wait=True)
    assert w.encode(wait=True) is not None
    w.add_point((100.0, 120.0))  # world coordinates (row, column), as a click gives
    w.add_point((20.0, 20.0), positive=False)
    w.add_box((40.0, 40.0), (160.0, 200.0))
    assert w.commit() > 0  # waits for the last decode
    assert w.labels_layer.name == "cells labels" and w.object_id == 2  # named after the image
    assert w.image_layer.name == "cells" and w.prompts_layer.name == "SAM2 prompts"
    assert w.undo() and not w.labels_layer.data.any()
    assert not notes.messages("error") and not notes.messages("warning")


def test_multimask_and_rgb_uint16(dock, qtbot, notes):
    make, docked = dock
    viewer = make()
    rgb = viewer.add_image(blob_image(128, 128), name="rgb", rgb=True)
    widget = docked(viewer)
    assert widget.image_layer is rgb and rgb.rgb
    widget.encode(wait=True)
    widget.add_point((64.0, 64.0))
    wait_mask(qtbot, widget)
    widget.multimask = False
    assert widget.multimask_check.isChecked() is False and widget.multimask is False
    wait_mask(qtbot, widget)
    gray16 = viewer.add_image(blob_image(128, 128)[..., 0].astype(np.uint16) * 100, name="u16")
    assert widget.image_layer is gray16  # follows the selected image layer
    assert widget.image_combo.currentText() == "u16"
    widget.encode(wait=True)
    assert widget.annotator.is_ready and len(widget.cache) == 2


def test_closing_the_dock_unbinds_everything(dock, qtbot, notes):
    from qtpy.QtCore import Qt

    make, docked = dock
    viewer = make()
    image = viewer.add_image(blob_image(96, 96)[..., 0])
    widget = docked(viewer)
    widget.annotator.inline_decode_seconds = 0  # decodes in worker threads too
    widget.load_model(wait=True)
    widget.encode(wait=True)  # a worker that gets the loaded model
    widget.add_point((48.0, 48.0))
    wait_mask(qtbot, widget)
    prompts = widget.prompts_layer
    model = weakref.ref(widget.predictor)
    viewer.window.remove_dock_widget(widget)
    assert widget._closed
    # Nothing keeps the model alive, not even napari's list of finished workers.
    gc.collect()
    assert model() is None
    viewer.layers.selection.active = prompts
    press(viewer, qtbot, Qt.Key.Key_C)  # no longer bound: nothing is committed
    assert widget.labels_layer is None
    assert not [n for n in notes.new if "SAM2" in str(n.message)]
    assert widget.predictor is None and len(widget.cache) == 0  # the model and embeddings go
    image.data = image.data[::-1].copy()  # the annotator no longer listens to the layers


# -- bad input and faults: messages, never a traceback --------------------------------------------


def test_click_before_encoding_and_registry_offline(dock, qtbot, notes):
    make, docked = dock
    viewer = make()
    viewer.add_image(blob_image(96, 96)[..., 0])
    widget = docked(viewer)
    widget.add_point((40.0, 40.0))  # no model loaded
    assert any("No SAM2 model" in m for m in notes.messages("warning"))
    assert len(widget.prompts_layer.data) == 1  # the point is kept

    # The registry is offline in tests: a clear message, nothing loaded, nothing raised.
    assert widget.load_model("tiny", backend="cpu", wait=True) is None
    assert widget.predictor is None and widget.last_error
    assert any("offline" in m.lower() for m in notes.messages("error"))
    with pytest.raises(ValueError, match="size"):
        widget.load_model("huge")
    with pytest.raises(ValueError, match="both"):
        widget.load_model(encoder="a.onnx")

    # Now load the real files: the kept point is decoded once the slice is encoded.
    widget.model_combo.setCurrentText("custom files")
    widget.encode(wait=True)
    wait_mask(qtbot, widget)


def test_bad_images_and_wrong_labels(dock, qtbot, notes):
    make, docked = dock
    viewer = make()
    tiny = viewer.add_image(np.zeros((1, 1), np.uint8), name="one pixel")
    widget = docked(viewer)
    assert widget.encode(wait=True) is None
    assert any("at least" in m for m in notes.messages("error"))

    image = viewer.add_image(blob_image(64, 80)[..., 0], name="ok")
    widget.image_layer = image
    wrong = viewer.add_labels(np.zeros((30, 30), np.uint8), name="wrong shape")
    widget.image_layer = image
    index = widget.labels_combo.findText("wrong shape")
    widget.labels_combo.setCurrentIndex(index)
    widget.labels_combo.activated.emit(index)
    assert widget.labels_layer is None
    assert any("shape" in m for m in notes.messages("warning"))
    assert widget.labels_combo.currentText() == "New Labels layer"
    widget.encode(wait=True)
    widget.add_point((32.0, 40.0))
    widget.add_point((500.0, 40.0))  # outside the image
    assert any("inside the image" in m for m in notes.messages("warning"))
    assert widget.commit() > 0 and not wrong.data.any()
    viewer.dims.ndisplay = 3
    widget.add_point((32.0, 40.0))
    assert widget.commit() == 0  # nothing to commit; said so
    assert any("Nothing to commit" in m for m in notes.messages("warning"))
    viewer.layers.remove(tiny)


def test_remove_layers_and_switch_model_during_encoding(dock, qtbot, notes, tmp_path):
    """Removing layers and switching the model while encodes run; every step waits on a
    condition (the state it expects), never on time."""
    make, docked = dock
    viewer = make()
    first = viewer.add_image(blob_image(128, 128)[..., 0], name="first")
    widget = docked(viewer)
    widget.load_model(
        encoder=widget.encoder_edit.text(),
        decoder=widget.decoder_edit.text(),
        backend="cpu",
        wait=True,
    )
    widget.add_point((64.0, 64.0))
    wait_mask(qtbot, widget)
    widget.commit()
    labels = widget.labels_layer
    committed = labels.data.copy()

    # Remove the image while it is being encoded (a new contrast = a new encode).
    first.contrast_limits = (10, 200)
    widget.encode()
    assert widget.busy
    viewer.layers.remove(first)
    # The helper layers go in a deferred clean-up; the abandoned encode finishes in its thread.
    qtbot.waitUntil(
        lambda: not widget.busy and widget.prompts_layer is None and widget.box_layer is None,
        timeout=TIMEOUT,
    )
    assert widget.image_layer is None
    assert any("was removed" in m for m in notes.messages("warning"))
    np.testing.assert_array_equal(labels.data, committed)  # committed labels are kept

    # Remove the Labels layer during an encode, and switch model in the middle of it.
    second = viewer.add_image(blob_image(128, 128, seed=3)[..., 0], name="second")
    assert widget.image_layer is second
    widget.encode()
    viewer.layers.remove(labels)
    copy = tmp_path / "copy"
    copy.mkdir()
    enc = shutil.copy(widget.encoder_edit.text(), copy / "other.encoder.onnx")
    dec = shutil.copy(widget.decoder_edit.text(), copy / "other.decoder.onnx")
    widget.load_model(encoder=enc, decoder=dec, backend="cpu")
    wait_idle(qtbot, widget)
    assert widget.predictor.encoder_path == Path(enc)
    assert widget.annotator.is_ready  # encoded again with the new model
    assert any("Model switched" in m for m in notes.messages("info"))
    assert widget.labels_layer is None
    widget.add_point((64.0, 64.0))
    assert widget.commit() > 0 and widget.labels_layer is not labels

    # Cancel an encode.
    second.contrast_limits = (0, 100)
    widget.encode()
    widget.cancel()
    assert widget.jobs.current is None and widget.encode_button.text() == "Encode"
    wait_idle(qtbot, widget)


def test_encode_waits_for_a_background_load(dock, qtbot, notes, tmp_path):
    """``load_model`` without ``wait``, then ``encode(wait=True)``: the load and the encode are
    both awaited and the embedding comes back; a failure is never a silent None."""
    make, docked = dock
    viewer = make()
    image = viewer.add_image(blob_image(96, 112)[..., 0], name="cells")
    widget = docked(viewer)
    files = widget.encoder_edit.text(), widget.decoder_edit.text()
    widget.model_combo.setCurrentText("tiny")  # load_model's arguments win over the widget
    widget.load_model(encoder=files[0], decoder=files[1], backend="cpu")
    assert widget.busy and widget.predictor is None
    embedding = widget.encode(wait=True)
    assert embedding is not None and embedding is widget.predictor.embedding
    assert widget.annotator.is_ready and widget.last_error is None

    # A load that fails: encode(wait=True) returns None with the load's error shown and kept.
    missing = tmp_path / "missing.encoder.onnx", tmp_path / "missing.decoder.onnx"
    widget.load_model(encoder=missing[0], decoder=missing[1], backend="cpu")
    assert widget.encode(wait=True) is None
    assert "missing" in widget.last_error and widget.error_label.text() == widget.last_error
    assert widget.last_error in notes.messages("error")
    widget.load_model(encoder=files[0], decoder=files[1], backend="cpu", wait=True)

    # No image: the reason, not a silent None.
    viewer.layers.remove(image)
    qtbot.waitUntil(lambda: widget.image_layer is None, timeout=TIMEOUT)
    assert widget.encode(wait=True) is None
    assert "Open an image" in widget.last_error


def test_errors_in_full_in_the_dock_and_short_lines(dock, qtbot, notes, tmp_path):
    """The last error is in the dock, whole and selectable, until an action succeeds; the
    Device row and the status are short lines, details in tooltips."""
    from qtpy.QtCore import Qt

    make, docked = dock
    viewer = make()
    viewer.add_image(blob_image(96, 112)[..., 0], name="cells")
    widget = docked(viewer)
    label = widget.error_label
    assert label.isHidden() and widget.last_error is None
    assert label.wordWrap()
    assert label.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByMouse

    # The registry is offline in tests: a long message, whole in the dock (a toast cuts it).
    assert widget.load_model("tiny", backend="cpu", wait=True) is None
    message = widget.last_error
    assert len(message) > 200 and "offline" in message.lower()
    assert label.text() == message and not label.isHidden()
    assert widget.status.startswith(message) and message in notes.messages("error")

    # The next success clears it. A model without video components: one line about it.
    for name in ("encoder", "decoder"):
        source = getattr(widget, f"{name}_edit").text()
        shutil.copy(source, tmp_path / f"plain.{name}.onnx")
    widget.load_model(
        encoder=tmp_path / "plain.encoder.onnx",
        decoder=tmp_path / "plain.decoder.onnx",
        backend="cpu",
        wait=True,
    )
    assert widget.last_error is None and label.isHidden() and label.text() == ""
    assert widget.device_label.text() == "CPU"
    tip = widget.device_label.toolTip()
    assert "onnxruntime" in tip and "doctor" in tip
    widget.encode(wait=True)
    status = widget.status_label.text()
    assert "video components" in status and "napari-sam2-webgpu convert" not in status
    assert all(len(line) <= 100 for line in status.splitlines()), status
    assert "napari-sam2-webgpu convert" in widget.propagate_button.toolTip()

    # Problems found by the annotator (a click outside the image) land in the dock too; a
    # decoded mask clears them.
    widget.add_point((500.0, 40.0))
    assert "inside the image" in widget.last_error and label.text() == widget.last_error
    widget.add_point((40.0, 50.0))
    wait_mask(qtbot, widget)
    assert widget.last_error is None and label.isHidden()


def test_object_ids_layer_names_and_console_exceptions(dock, qtbot, notes):
    """Object ids follow the target Labels layer and new ones are named after their image;
    wrong arguments raise ValueError, failures are messages (the user guide's promises)."""
    make, docked = dock
    viewer = make()
    viewer.add_image(blob_image(96, 112)[..., 0], name="cells")
    widget = docked(viewer)
    widget.encode(wait=True)
    widget.object_id = 4
    widget.add_point((40.0, 50.0))
    assert widget.commit() > 0
    assert widget.labels_layer.name == "cells labels" and widget.object_id == 5

    # Another image of another shape: a new Labels layer, ids from 1 (the spin box too).
    other = viewer.add_image(blob_image(64, 80, seed=4)[..., 0], name="other")
    assert widget.image_layer is other
    assert widget.labels_layer is None and widget.object_id == 1 == widget.id_spin.value()
    widget.encode(wait=True)
    widget.add_point((30.0, 40.0))
    assert widget.commit() > 0
    assert widget.labels_layer.name == "other labels" and widget.labels_layer.data.max() == 1
    manual = np.zeros((64, 80), np.uint16)
    manual[:4, :4] = 9
    manual_layer = viewer.add_labels(manual, name="manual")
    index = widget.labels_combo.findText("manual")
    widget.labels_combo.setCurrentIndex(index)
    widget.labels_combo.activated.emit(index)
    assert widget.labels_layer is manual_layer and widget.object_id == 10 == widget.id_spin.value()

    # Wrong arguments: ValueError (AnnotatorError is one).
    cells_labels = viewer.layers["cells labels"]
    with pytest.raises(ValueError, match="shape"):
        widget.labels_layer = cells_labels
    with pytest.raises(ValueError, match="not an image layer"):
        widget.image_layer = "cells"
    with pytest.raises(ValueError, match="not displayed"):
        widget.propagate(axis=0)
    with pytest.raises(ValueError, match="coordinates"):
        widget.add_point((1.0, 2.0, 3.0, 4.0, 5.0))
    with pytest.raises(ValueError):
        widget.object_id = 0
    assert widget.image_layer is other and widget.labels_layer is manual_layer

    # Failures return None or 0 with the reason shown, also unexpected ones.
    manual_layer.data.setflags(write=False)
    widget.add_point((30.0, 40.0))
    assert widget.commit() == 0 and widget.last_error
    assert widget.last_error in notes.messages("error")
    manual_layer.data.setflags(write=True)
    assert widget.propagate() is None and "single 2D image" in widget.last_error


# -- propagation through the stack ----------------------------------------------------------------


def _docked_stack(dock, name="stack"):
    make, docked = dock
    viewer = make()
    image = viewer.add_image(moving_blob_stack(), name=name)
    return viewer, image, docked


def test_widget_propagate_button_progress_undo(dock, qtbot, notes):
    from qtpy.QtCore import Qt

    viewer, image, docked = _docked_stack(dock)
    before = np.zeros(image.data.shape, np.uint16)
    before[:, :, 45:] = OTHER
    labels = viewer.add_labels(before.copy(), name="manual")
    viewer.dims.set_current_step(0, 2)
    widget = docked(viewer)
    widget.labels_layer = labels
    widget.object_id = OBJECT
    assert not widget.propagate_button.isEnabled()  # nothing loaded yet
    assert widget.direction_combo.currentText() == "both"

    widget.encode(wait=True)
    assert not widget.propagate_button.isEnabled()  # no prompts yet
    assert "no prompts" in widget.propagate_button.toolTip()
    click(widget.prompts_layer, image.data_to_world([2, *blob_centre(2)]))
    qtbot.waitUntil(lambda: widget.propagate_button.isEnabled(), timeout=TIMEOUT)

    qtbot.mouseClick(widget.propagate_button, Qt.MouseButton.LeftButton)
    assert widget.busy and widget.propagate_button.text() == "Cancel propagation"
    assert any("propagating object 3" in str(bar.desc) for bar in progress._all_instances)
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert not any("propagating" in str(bar.desc) for bar in progress._all_instances)
    assert widget.propagate_button.text() == "Propagate"
    assert "Propagated object 3 (both): 6 slices" in widget.status
    assert "slices/s" in widget.status

    masks = state_masks(widget.propagation, range(5))
    np.testing.assert_array_equal(labels.data, expected_labels(before, masks, OBJECT))
    assert all((labels.data[f] == OBJECT).any() for f in range(5))
    np.testing.assert_array_equal(labels.data[before == OTHER], OTHER)

    # One undo (the widget's button) takes the whole run back; the object stays current.
    qtbot.mouseClick(widget.undo_button, Qt.MouseButton.LeftButton)
    np.testing.assert_array_equal(labels.data, before)
    assert widget.object_id == OBJECT and len(widget.prompts_layer.data) == 1

    # Propagate again, then C: the object is done (no extra commit), prompts go, next id.
    run = widget.propagate("backward", wait=True)
    assert run.frames_written == [2, 1, 0] and widget.direction_combo.currentText() == "backward"
    written = labels.data.copy()
    widget.commit()
    np.testing.assert_array_equal(labels.data, written)
    assert widget.object_id == OTHER + 1 and len(widget.prompts_layer.data) == 0
    assert any("object 3 was propagated" in m for m in notes.messages("info"))
    assert not widget.propagate_button.isEnabled()
    assert not notes.messages("error") and not notes.messages("warning")


def test_widget_cancel_then_correct(dock, qtbot, notes, monkeypatch, request):
    from qtpy.QtCore import Qt

    from napari_sam2_webgpu._propagation import PropagationRun

    # The worker holds after the first tracked slice until Cancel was clicked: however fast
    # the worker or slow the GUI thread, the run is cancelled in the middle.
    clicked = threading.Event()
    request.addfinalizer(clicked.set)  # never leave the worker held (before dock's teardown)
    steps = PropagationRun.steps

    def held_steps(self):
        for step in steps(self):
            yield step
            if step.frame is not None:
                clicked.wait(TIMEOUT / 1000)

    monkeypatch.setattr(PropagationRun, "steps", held_steps)
    viewer, image, docked = _docked_stack(dock)
    viewer.dims.set_current_step(0, 1)
    widget = docked(viewer)
    widget.encode(wait=True)
    widget.add_point(image.data_to_world([1, *blob_centre(1)]))
    run = widget.propagate("forward")
    assert run is not None and widget.propagation.running
    qtbot.waitUntil(lambda: bool(run.frames_written) or run.finished, timeout=TIMEOUT)
    assert run.frames_written, run.error
    assert widget.propagate_button.text() == "Cancel propagation"
    qtbot.mouseClick(widget.propagate_button, Qt.MouseButton.LeftButton)  # Cancel
    clicked.set()
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert run.cancelled and len(run.frames_written) == 1 and run.total == 4
    labels = widget.labels_layer
    for frame in range(5):
        assert (labels.data[frame] == 1).any() == (frame in run.frames_written), frame
    assert "Cancelled object 1" in widget.status
    assert any("cancelled after" in m for m in notes.messages("info"))

    # The viewer is usable: a correction point on a later slice, then propagate again.
    viewer.dims.set_current_step(0, 3)
    click(widget.prompts_layer, image.data_to_world([3, 5, 5]), modifiers=("Control",))
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    run = widget.propagate("forward", wait=True)
    assert sorted(run.updates) == [3] and run.frames_written == [1, 2, 3, 4]
    mask = widget.propagation._state.masks(3)[1]
    np.testing.assert_array_equal(labels.data[3], np.where(mask, 1, 0))
    assert not notes.messages("error")


def test_widget_without_video_components(dock, qtbot, notes, tmp_path, micro_model_files):
    viewer, image, docked = _docked_stack(dock)
    widget = docked(viewer)
    for name in ("encoder", "decoder"):
        shutil.copy(getattr(micro_model_files[1], name), tmp_path / f"plain.{name}.onnx")
    widget.load_model(
        encoder=tmp_path / "plain.encoder.onnx",
        decoder=tmp_path / "plain.decoder.onnx",
        backend="cpu",
        wait=True,
    )
    widget.encode(wait=True)
    widget.add_point(image.data_to_world([2, *blob_centre(2)]))  # the middle slice is shown
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert len(widget.prompts_layer.data) == 1 and not widget.propagate_button.isEnabled()
    tip = widget.propagate_button.toolTip()
    assert "video components" in tip and "napari-sam2-webgpu convert" in tip
    assert "video components" in widget.status
    assert widget.propagate() is None
    assert any("video components" in m for m in notes.messages("warning"))
    assert widget.labels_layer is None


def test_widget_prefers_an_installed_export(
    dock, qtbot, notes, tmp_path, micro_model_files, monkeypatch
):
    """``export --install`` puts the four files in the cache; choosing the size loads them."""
    from napari_sam2_webgpu.models import ENV_CACHE_DIR

    _, files = micro_model_files
    exported = tmp_path / "cache" / "exported"
    exported.mkdir(parents=True)
    for name in ("encoder", "decoder", "memory_attention", "memory_encoder"):
        source, target = getattr(files, name), exported / f"sam2.1_hiera_tiny.{name}.onnx"
        try:
            os.symlink(source, target)
        except OSError:
            shutil.copy(source, target)
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "cache"))
    viewer, image, docked = _docked_stack(dock)
    widget = docked(viewer)
    assert widget.load_model("tiny", backend="cpu", wait=True) is not None  # offline: no download
    assert widget.predictor.encoder_path.name == "sam2.1_hiera_tiny.encoder.onnx"
    assert widget.propagation.available
    widget.encode(wait=True)
    widget.add_point(image.data_to_world([2, *blob_centre(2)]))  # the middle slice is shown
    qtbot.waitUntil(lambda: widget.propagate_button.isEnabled(), timeout=TIMEOUT)


# -- the user guide's screenshot ------------------------------------------------------------------


def test_screenshot(dock, qtbot, notes, tmp_path):
    """The flow on the 3D nuclei sample, then a screenshot of the whole window."""
    from napari_sam2_webgpu._sample_data import nuclei_3d

    make, docked = dock
    viewer = make(show=True, size=(1500, 950))
    data, kwargs, _ = nuclei_3d()[0]
    image = viewer.add_image(data, **kwargs)
    widget = docked(viewer)
    z = data.shape[0] // 2
    viewer.dims.set_current_step(0, z)
    widget.multimask = False
    widget.encode(wait=True)
    prompts = widget.prompts_layer
    for row, col in ((60, 70), (150, 180)):
        click(prompts, image.data_to_world([z, row, col]))
        wait_mask(qtbot, widget)
        widget.commit()
    widget.add_box(image.data_to_world([z, 170, 60]), image.data_to_world([z, 240, 140]))
    click(prompts, image.data_to_world([z, 200, 90]))
    click(prompts, image.data_to_world([z, 230, 120]), modifiers=("Control",))
    wait_mask(qtbot, widget)
    viewer.layers.selection.active = prompts
    qtbot.wait(200)
    path = tmp_path / "screenshot.png"
    shot = viewer.screenshot(str(path), canvas_only=False)
    assert path.stat().st_size > 10_000 and shot.shape[1] >= 1200
    target = os.environ.get("NAPARI_SAM2_WEBGPU_SCREENSHOT")
    if target:
        shutil.copy(path, target)


def test_use_store_from_the_console(dock, tmp_path):
    """``w.use_store(path)``: encodes go to the store, and a second viewer reads them back."""
    make, docked = dock
    data = np.stack([blob_image(64, 80, seed=z)[..., 0] for z in range(3)])
    path = tmp_path / "stack.sam2.zarr"
    embeddings = []
    for _ in range(2):
        viewer = make()
        viewer.add_image(data, name="stack")
        widget = docked(viewer)
        files = widget.encoder_edit.text(), widget.decoder_edit.text()
        widget.load_model(encoder=files[0], decoder=files[1], backend="cpu", wait=True)
        store = widget.use_store(str(path))
        assert store.path == path and widget.annotator.store is store
        viewer.dims.set_point(0, 1)
        embeddings.append(widget.encode(wait=True))
        assert store.done_frames() == [1]
    np.testing.assert_array_equal(
        embeddings[0].numpy().image_embed, embeddings[1].numpy().image_embed
    )
