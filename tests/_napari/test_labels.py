"""Tests of _napari/labels.py: undo grouping of propagation runs."""

from __future__ import annotations

from collections import deque

from napari_sam2_webgpu._napari.labels import merge_history


def test_merge_history_makes_one_undo_step():
    history = deque([["user"]])
    item = None
    for frame in range(3):  # three frames arrive in three events: one item each
        last = history[-1]
        history.append([("frame", frame)])
        item = merge_history(history, last, item)
    assert list(history) == [["user"], [("frame", 0), ("frame", 1), ("frame", 2)]]
    history.append(["user paints meanwhile"])
    last = history[-1]
    history.append([("frame", 3)])
    item = merge_history(history, last, item)
    assert len(history) == 4 and item == [("frame", 3)]  # a new step after the user's
