"""Tests of _napari/labels.py: writing rules and undo steps, on real napari Labels layers."""

from __future__ import annotations

import numpy as np
from napari.layers import Labels

from napari_sam2_webgpu._napari.labels import (
    UndoGroup,
    paint_mask,
    paused_undo_group,
    separate_undo_step,
    write_frame,
)
from napari_sam2_webgpu._napari.slices import SliceInfo

# -- undo steps through Labels.block_history() ----------------------------------------------------

SHAPE = (4, 12, 16)


def frame(index: int) -> SliceInfo:
    """Slice ``index`` along axis 0 of a ``SHAPE`` stack."""
    return SliceInfo(SHAPE, 1, 2, ((0, index),))


def blob(row: int, col: int, size: int = 4) -> np.ndarray:
    mask = np.zeros(SHAPE[1:], bool)
    mask[row : row + size, col : col + size] = True
    return mask


def labels_layer() -> Labels:
    data = np.zeros(SHAPE, np.uint16)
    data[:, :, 12:] = 9  # a hand-made label in the way
    return Labels(data)


def test_separate_undo_step_makes_a_commit_one_step():
    labels = labels_layer()
    before = labels.data.copy()
    with separate_undo_step(labels):
        paint_mask(labels, frame(1), blob(2, 2), 3)
        paint_mask(labels, frame(1), blob(6, 6), 3)  # two writes, one step
    first = labels.data.copy()
    with separate_undo_step(labels):
        paint_mask(labels, frame(2), blob(0, 10), 4, overwrite=True)
    assert (labels.data[2, :4, 12:14] == 4).all()  # it painted over the 9s
    labels.undo()
    np.testing.assert_array_equal(labels.data, first)
    labels.undo()
    np.testing.assert_array_equal(labels.data, before)


def test_an_undo_group_spans_several_events_and_closes_once():
    labels = labels_layer()
    before = labels.data.copy()
    painted = []
    labels.events.paint.connect(lambda event: painted.append(event.value))
    group = UndoGroup(labels)
    assert not group.is_open and group.item is None
    for index in range(3):  # one frame per GUI event
        write_frame(group, frame(index), blob(2 + index, 2 + 2 * index), 5, overwrite=False)
        assert group.is_open
    assert painted == []  # nothing committed while the run writes
    write_frame(group, frame(0), blob(6, 6), 5, overwrite=False)  # re-tracked: old pixels go
    assert not (labels.data[0, 2:6, 2:6] == 5).any() and (labels.data[0, 6:10, 6:10] == 5).all()
    group.close()
    assert not group.is_open and painted == [group.item] and group.item
    group.close()  # closing twice is harmless
    labels.undo()
    np.testing.assert_array_equal(labels.data, before)


def test_an_empty_group_adds_no_undo_step():
    labels = labels_layer()
    group = UndoGroup(labels)
    group.open()
    group.close()
    assert group.item is None
    write_frame(group, frame(0), np.zeros(SHAPE[1:], bool), 5, overwrite=False)
    group.close()
    assert group.item is None


def test_a_commit_during_a_run_keeps_its_own_step():
    labels = labels_layer()
    before = labels.data.copy()
    group = UndoGroup(labels)
    write_frame(group, frame(0), blob(0, 0), 5, overwrite=False)
    after_frame_0 = labels.data.copy()
    with separate_undo_step(labels):  # the user commits another object meanwhile
        paint_mask(labels, frame(3), blob(4, 4), 8)
    after_commit = labels.data.copy()
    assert group.is_open  # the run goes on grouping
    write_frame(group, frame(1), blob(1, 1), 5, overwrite=False)
    group.close()
    labels.undo()  # the run's frames after the commit
    np.testing.assert_array_equal(labels.data, after_commit)
    labels.undo()  # the commit
    np.testing.assert_array_equal(labels.data, after_frame_0)
    labels.undo()  # the run's frames before it
    np.testing.assert_array_equal(labels.data, before)


def test_an_undo_during_a_run_takes_back_its_frames_so_far():
    labels = labels_layer()
    original = labels.data.copy()
    with separate_undo_step(labels):
        paint_mask(labels, frame(3), blob(4, 4), 8)  # an earlier commit
    committed = labels.data.copy()
    group = UndoGroup(labels)
    write_frame(group, frame(0), blob(0, 0), 5, overwrite=False)
    with paused_undo_group(labels):
        labels.undo()
    np.testing.assert_array_equal(labels.data, committed)  # not the earlier commit
    write_frame(group, frame(1), blob(1, 1), 5, overwrite=False)
    group.close()
    labels.undo()
    np.testing.assert_array_equal(labels.data, committed)
    with paused_undo_group(labels):  # no run: nothing to pause
        labels.undo()
    np.testing.assert_array_equal(labels.data, original)


def test_another_grouped_edit_during_a_run_starts_a_new_step():
    """A napari brush drag is a ``block_history()`` of its own: when it ends, napari commits
    what was staged (the run's frames so far with it); the run goes on in a new step."""
    labels = labels_layer()
    before = labels.data.copy()
    group = UndoGroup(labels)
    write_frame(group, frame(0), blob(0, 0), 5, overwrite=False)
    with labels.block_history():  # the user's brush drag
        labels.data_setitem(frame(2).fancy_index(np.array([11]), np.array([0])), 7)
    shared = group.item
    assert shared is not None
    after_drag = labels.data.copy()
    write_frame(group, frame(1), blob(1, 1), 5, overwrite=False)
    group.close()
    assert group.item is not shared  # the frames after the drag: a step of their own
    labels.undo()
    np.testing.assert_array_equal(labels.data, after_drag)
    labels.undo()
    np.testing.assert_array_equal(labels.data, before)
