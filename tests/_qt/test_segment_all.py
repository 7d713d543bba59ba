"""GUI tests of the dock's "Segment all" section with a real napari viewer (run under Xvfb).

The micro model (random weights) on the CPU, docked as in test_widget.py; thresholds at 0 and no
box suppression keep every mask, and two points a side keep the runs short. Every wait is on a
condition.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_sam2_webgpu._napari import SegmentAllParams, SegmentAllRun
from napari_sam2_webgpu.image import AutomaticMaskGenerator, masks_to_labels

from .._napari.stacks import moving_blob_stack
from ..conftest import blob_image
from . import test_widget
from .test_widget import TIMEOUT, click, wait_idle, wait_mask

dock, notes = test_widget.dock, test_widget.notes  # the fixtures of the widget tests

pytestmark = pytest.mark.gui

FAST = dict(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)


def expected(predictor, plane, layer):
    records = AutomaticMaskGenerator(predictor, **FAST).generate(
        plane, contrast_limits=layer.contrast_limits, rgb=layer.rgb
    )
    return masks_to_labels(records, plane.shape[:2])


def test_button_on_a_2d_image_then_correct_with_a_click(dock, qtbot, notes):
    from qtpy.QtCore import Qt

    make, docked = dock
    viewer = make()
    data = blob_image(96, 128)[..., 0]
    image = viewer.add_image(data, name="cells", scale=(0.5, 0.5))
    manual = viewer.add_labels(np.full(data.shape, 5, np.uint16), name="manual")
    widget = docked(viewer)
    widget.image_layer = image
    widget.labels_layer = manual
    panel = widget.segment_all_panel
    assert widget.segment_all_params == SegmentAllParams()  # the defaults
    assert panel.points_spin.value() == 32 and not panel.scope_combo.isEnabled()  # 2D
    # The Advanced controls are the parameters.
    panel.points_spin.setValue(2)
    panel.iou_spin.setValue(0.0)
    panel.stability_spin.setValue(0.0)
    panel.nms_spin.setValue(1.0)
    assert widget.segment_all_params == SegmentAllParams().replace(**FAST)

    # One click: the model is loaded first, then the slice segmented in a worker.
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    assert widget.busy and panel.run_button.text() == "Cancel segment all"
    wait_idle(qtbot, widget)
    layer = viewer.layers["cells instances"]
    want = expected(widget.predictor, data, image)
    assert want.any()
    np.testing.assert_array_equal(layer.data, want)
    np.testing.assert_array_equal(layer.scale, image.scale)
    np.testing.assert_array_equal(manual.data, 5)  # an existing layer with labels: untouched
    assert (
        panel.run_button.text() == "Segment all" and "Segmented: 1 / 1" in panel.status_label.text()
    )

    # The new layer is the target: a click (the slice is encoded already) corrects it.
    assert widget.labels_layer is layer and widget.object_id == want.max() + 1
    assert widget.annotator.is_ready and len(widget.cache) == 1
    click(widget.prompts_layer, image.data_to_world([48, 64]), dims_displayed=(0, 1))
    wait_mask(qtbot, widget)
    widget.overwrite = True  # random-weight masks cover every pixel
    mask = widget.annotator.preview_mask.copy()
    assert widget.commit() > 0
    np.testing.assert_array_equal(layer.data == want.max() + 1, mask)

    panel.reset_button.click()
    assert widget.segment_all_params == SegmentAllParams() and panel.points_spin.value() == 32
    assert not notes.messages("error") and not notes.messages("warning")


def test_console_whole_stack_then_one_slice_and_a_constant_image(dock, qtbot, notes):
    make, docked = dock
    viewer = make()
    stack = moving_blob_stack(3)
    image = viewer.add_image(stack, name="stack")
    widget = docked(viewer)
    with pytest.raises(ValueError):
        widget.segment_all("everything")
    with pytest.raises(ValueError):
        widget.segment_all(points=3)
    assert widget.segment_all_panel.scope_combo.isEnabled()

    layer = widget.segment_all("stack", wait=True, **FAST)
    assert layer is viewer.layers["stack instances"] and layer.data.shape == stack.shape
    assert widget.segment_all_panel.scope == "stack"
    offset, ids = 0, []
    for z in range(3):
        want = expected(widget.predictor, stack[z], image)
        np.testing.assert_array_equal(layer.data[z], np.where(want > 0, want + offset, 0))
        offset += int(want.max())
        ids.append(set(np.unique(layer.data[z])) - {0})
    assert ids[0] and not (ids[0] & ids[1]) and not (ids[1] & ids[2])

    # One slice again: the same layer, only that slice changes (its embedding is cached).
    before = layer.data.copy()
    viewer.dims.set_current_step(0, 1)
    assert widget.segment_all("slice", wait=True) is layer
    assert widget.segmentation.last_run.slices_encoded == 0
    np.testing.assert_array_equal(layer.data[[0, 2]], before[[0, 2]])
    assert layer.data[1].max() > before.max()

    # A constant image: an empty layer and a message, not an error.
    flat = viewer.add_image(np.full((40, 48), 9, np.uint8), name="flat")
    widget.image_layer = flat
    empty = widget.segment_all("slice", wait=True)
    assert empty.name == "flat instances" and not empty.data.any()
    assert any("no objects found" in m for m in notes.messages("info"))
    assert widget.last_error is None and not notes.messages("warning")


def test_cancel_keeps_written_slices_and_queues_an_encode(dock, qtbot, notes, monkeypatch, request):
    from qtpy.QtCore import Qt

    # The worker holds after the first slice until Cancel was clicked.
    clicked = threading.Event()
    request.addfinalizer(clicked.set)
    steps = SegmentAllRun.steps

    def held_steps(self, *args, **kwargs):
        for step in steps(self, *args, **kwargs):
            yield step
            clicked.wait(TIMEOUT / 1000)

    monkeypatch.setattr(SegmentAllRun, "steps", held_steps)
    make, docked = dock
    viewer = make()
    viewer.add_image(moving_blob_stack(3), name="stack")
    widget = docked(viewer)
    widget.load_model(
        encoder=widget.encoder_edit.text(), decoder=widget.decoder_edit.text(), backend="cpu"
    )
    layer = widget.segment_all("stack", **FAST)  # waits for the load, then runs
    qtbot.waitUntil(
        lambda: widget.segmentation.run is not None and bool(widget.segmentation.run.written),
        timeout=TIMEOUT,
    )
    run = widget.segmentation.run
    # An encode asked for meanwhile waits for the run (one job at a time).
    viewer.dims.set_current_step(0, 2)
    widget.encode()
    assert widget.jobs.queued and "Segment all is running" in widget.propagate_button.toolTip()
    qtbot.mouseClick(widget.segment_all_panel.run_button, Qt.MouseButton.LeftButton)  # Cancel
    clicked.set()
    wait_idle(qtbot, widget)
    assert run.cancelled and run.written == [0] and run.finished
    assert layer.data[0].any() and not layer.data[1:].any()
    assert any("cancelled" in m for m in notes.messages("info"))
    assert widget.annotator.is_ready  # the queued encode ran after the run
    assert widget.labels_layer is layer
