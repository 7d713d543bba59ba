"""GUI test of many objects through a stack and the propagation review, under Xvfb.

Driven through the layers' own callbacks (clicks in the prompts layer), the keyboard (N for
the next object, P to propagate) and the review table's rows. Set
``NAPARI_SAM2_WEBGPU_REVIEW_SCREENSHOT=docs/multi_object_review.png`` to write the user guide's
screenshot.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from .._napari.stacks import OBJECT, OTHER, blob_centre, moving_blob_stack
from . import test_widget
from .test_widget import TIMEOUT, click, press

dock, notes = test_widget.dock, test_widget.notes  # the fixtures of the widget tests

pytestmark = pytest.mark.gui


def test_two_objects_one_propagate_and_the_review_table(dock, qtbot, notes, tmp_path):
    from qtpy.QtCore import Qt

    from napari_sam2_webgpu.video import FrameScore

    make, docked = dock
    viewer = make(show=True, size=(1400, 900))
    image = viewer.add_image(moving_blob_stack(), name="stack")
    before = np.zeros(image.data.shape, np.uint16)
    before[:, :, 45:] = OTHER
    labels = viewer.add_labels(before.copy(), name="manual")
    viewer.dims.set_current_step(0, 2)
    widget = docked(viewer)
    widget.labels_layer = labels
    widget.object_id = OBJECT
    widget.encode(wait=True)
    prompts = widget.prompts_layer
    click(prompts, image.data_to_world([2, *blob_centre(2)]))
    press(viewer, qtbot, Qt.Key.Key_N)  # another object; the first one's prompt stays
    second = widget.object_id
    assert second == OTHER + 1 and len(prompts.data) == 1
    click(prompts, image.data_to_world([2, 50, 12]))
    assert sorted(prompts.features["object"]) == [OBJECT, second]
    qtbot.waitUntil(lambda: widget.propagate_button.isEnabled(), timeout=TIMEOUT)

    press(viewer, qtbot, Qt.Key.Key_P)  # Propagate
    assert widget.propagation.running or widget.propagation.last_run is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    run = widget.propagation.last_run
    assert run.object_ids == (OBJECT, second) and run.error is None
    assert "Propagated objects 3, 8 (both)" in widget.status
    assert all((labels.data[f] == OBJECT).any() for f in range(5))
    for f in range(5):  # each object's slice mask, written by the rule (checked in _napari)
        masks = widget.propagation._state.masks(f)
        assert set(masks) == {OBJECT, second}
        assert not ((labels.data[f] == second) & ~masks[second]).any()
    np.testing.assert_array_equal(labels.data[before == OTHER], OTHER)

    # The review: as if object 3 had been lost on slices 3 and 4.
    panel = widget.review_panel
    scores = widget.propagation.scores[OBJECT]
    for frame in (3, 4):
        scores[frame] = FrameScore(-1.0, 0.1, 0)
    widget.propagation.scores[second] = {f: FrameScore(3.0, 0.9, 50) for f in range(5)}
    widget._refresh_status()
    assert [(f.object_id, f.frame, f.kind) for f in widget.review()] == [(OBJECT, 3, "lost")]
    table = panel.table
    assert table.rowCount() == 1
    assert [table.item(0, c).text() for c in range(3)] == ["3", "3-4", "lost: not on slices 3-4"]
    assert "1 to check" in panel.summary_label.text()
    panel.expand(animate=False)
    qtbot.wait(100)
    path = tmp_path / "review.png"
    viewer.screenshot(str(path), canvas_only=False)
    assert path.stat().st_size > 10_000
    target = os.environ.get("NAPARI_SAM2_WEBGPU_REVIEW_SCREENSHOT")
    if target:
        shutil.copy(path, target)
    table.cellClicked.emit(0, 0)  # a click on the row: slice 3, object 3 current
    assert viewer.dims.current_step[0] == 3 and widget.object_id == OBJECT

    # A correction there propagates from it, both ways.
    widget.encode(wait=True)
    click(prompts, image.data_to_world([3, *blob_centre(3)]))
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    widget.direction_combo.setCurrentText("forward")
    run = widget.propagate(wait=True)
    assert run.start_frame == 3 and run.frames_written == [3, 4, 3, 2, 1, 0]

    # Stop when lost: the spin box is the controller's setting.
    widget.stop_after_lost = 2
    assert panel.stop_spin.value() == 2 and widget.propagation.stop_after_lost == 2
    widget.stop_after_lost = None
    assert panel.stop_spin.text() == "never" and widget.propagation.stop_after_lost is None
    with pytest.raises(ValueError):
        widget.go_to(5)

    # Tracks: the button adds the Tracks layer; the console writes the CSV (never over a file).
    panel.tracks_button.click()
    tracks = viewer.layers["manual tracks"]
    assert {OBJECT, OTHER} <= set(tracks.data[:, 0])
    path = widget.export_tracks(tmp_path / "tracks.csv", ids=[OBJECT])
    assert path.read_text().startswith("track_id,frame,y,x,area")
    with pytest.raises(ValueError, match="exists"):
        widget.export_tracks(path)
    assert widget.review_table.export(str(path), [OBJECT]) == path  # the dialog's path

    # The session's prompts are recorded with the labels and saved beside them.
    saved = widget.save_labels(tmp_path / "manual.tif")
    assert [p.rsplit("/", 1)[-1] for p in saved] == ["manual.tif", "manual.prompts.json"]
    with pytest.raises(ValueError, match="exists"):
        widget.save_labels(tmp_path / "manual.tif")
    assert not notes.messages("error")
