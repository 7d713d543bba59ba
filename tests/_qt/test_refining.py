"""GUI test of refining a label from the console (Sam2Widget.refine) under Xvfb."""

from __future__ import annotations

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
