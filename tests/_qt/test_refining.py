"""GUI test of refining a label from the console (Sam2Widget.refine) under Xvfb."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from ..conftest import blob_image
from . import test_widget
from .test_widget import wait_mask

dock, notes = test_widget.dock, test_widget.notes  # the fixtures of the widget tests

pytestmark = pytest.mark.gui


def test_refine_from_the_console(dock, qtbot, notes):
    """w.refine: the label's refinement previewed, committed over its own pixels only."""
    make, docked = dock
    viewer = make()
    data = blob_image(96, 128, seed=6)[..., 0]
    image = viewer.add_image(data, name="cells")
    before = np.zeros(data.shape, np.uint16)
    before[10:40, 10:50] = 4
    before[50:90, 60:120] = 9
    layer = viewer.add_labels(before.copy(), name="cellpose")
    widget = docked(viewer)
    widget.image_layer = image
    assert not widget.refine(5, layer)  # no such label: said, not raised
    assert "no pixels" in widget.last_error
    assert widget.refine(9, layer)  # decoded once the slice is encoded, as prompts are
    widget.encode(wait=True)
    wait_mask(qtbot, widget)
    assert widget.commit() > 0
    after = np.asarray(layer.data)
    np.testing.assert_array_equal(after[before == 4], 4)
    assert widget.undo()
    np.testing.assert_array_equal(np.asarray(layer.data), before)


def test_refine_button_takes_the_selected_label(dock, qtbot, notes, tmp_path):
    """The Refine label button: the label selected in the active Labels layer. Set
    ``NAPARI_SAM2_WEBGPU_REFINE_SCREENSHOT=docs/refine.png`` to write the user guide's
    screenshot."""
    make, docked = dock
    viewer = make(show=True, size=(1400, 900))
    data = blob_image(96, 128, seed=6)[..., 0]
    viewer.add_image(data, name="cells")
    before = np.zeros(data.shape, np.uint16)
    before[50:90, 60:120] = 9
    layer = viewer.add_labels(before.copy(), name="cellpose")
    widget = docked(viewer)
    widget.encode(wait=True)
    layer.selected_label = 9
    viewer.layers.selection.active = layer
    widget.refine_button.click()
    assert widget.annotator.refinement is not None and widget.object_id == 9
    assert widget.labels_layer is layer
    wait_mask(qtbot, widget)
    qtbot.wait(100)
    path = tmp_path / "refine.png"
    viewer.screenshot(str(path), canvas_only=False)
    target = os.environ.get("NAPARI_SAM2_WEBGPU_REFINE_SCREENSHOT")
    if target:
        shutil.copy(path, target)
    assert widget.commit() > 0
    assert set(np.unique(np.asarray(layer.data))) <= {0, 9}
    layer.selected_label = 4  # no such label on the slice: a message, nothing else
    viewer.layers.selection.active = layer
    widget.refine_button.click()
    assert "no pixels" in widget.last_error
