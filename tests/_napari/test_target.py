"""Tests of _napari/target.py: the target Labels layer and the object id (no model, no Qt)."""

from __future__ import annotations

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_sam2_webgpu._napari.errors import AnnotatorError
from napari_sam2_webgpu._napari.slices import SliceInfo, displayed_slice
from napari_sam2_webgpu._napari.target import LabelsTarget


@pytest.fixture
def scene():
    """A viewer with a (3, 20, 30) image, a LabelsTarget and what it reported."""
    viewer = ViewerModel()
    image = viewer.add_image(np.zeros((3, 20, 30), np.uint8), scale=(2.0, 1.0, 1.0), name="cells")
    ids, created = [], []
    target = LabelsTarget(
        viewer, on_object_id=lambda value: ids.append(value), on_created=lambda: created.append(1)
    )
    return viewer, image, target, ids, created


def square(row, col, size=5, shape=(20, 30)):
    mask = np.zeros(shape, bool)
    mask[row : row + size, col : col + size] = True
    return mask


def test_choose_checks_the_layer_and_moves_the_id(scene):
    viewer, image, target, ids, _ = scene
    data = np.zeros((3, 20, 30), np.uint16)
    data[0, :2, :2] = 6
    labels = viewer.add_labels(data, name="manual")
    target.choose(labels, image, preview=None)
    assert target.layer is labels and target.object_id == 7 and ids == [7]
    wrong = viewer.add_labels(np.zeros((3, 5, 5), np.uint8), name="wrong")
    with pytest.raises(AnnotatorError, match="shape"):
        target.choose(wrong, image, preview=None)
    with pytest.raises(AnnotatorError, match="Labels layer"):
        target.choose(image, image, preview=None)
    with pytest.raises(AnnotatorError, match="Labels layer"):
        target.choose(labels, image, preview=labels)  # the preview never receives labels
    assert target.layer is labels  # refused choices change nothing
    target.choose(None, image, preview=None)
    assert target.layer is None and target.object_id == 1


def test_ensure_creates_a_layer_beside_the_image(scene):
    viewer, image, target, _, created = scene
    other = viewer.add_points(name="other")
    viewer.layers.selection.active = other
    labels = target.ensure(image)
    assert created == [1] and target.layer is labels
    assert viewer.layers.index(labels) == viewer.layers.index(image) + 1
    assert labels.data.shape == image.data.shape and labels.name == "cells labels"
    np.testing.assert_allclose(labels.scale, image.scale)
    assert viewer.layers.selection.active is other  # it does not steal the active layer
    assert target.ensure(image) is labels and created == [1]
    viewer.layers.remove(labels)
    assert target.in_viewer() is None
    assert target.ensure(image) is not labels  # a removed layer is never written again


def test_release_forget_and_object_ids(scene):
    viewer, image, target, ids, _ = scene
    labels = target.ensure(image)
    target.object_id = 4
    assert ids[-1] == 4
    with pytest.raises(ValueError):
        target.object_id = 0
    target.release_if_unfit(image)  # same shape: kept
    assert target.layer is labels and target.object_id == 4
    small = viewer.add_image(np.zeros((5, 6), np.uint8))
    target.release_if_unfit(small)
    assert target.layer is None and target.object_id == 1
    target.layer = labels
    assert not target.forget(small) and target.forget(labels)
    assert target.layer is None and ids[-1] == 1
    assert target.next_free_id() == 1 and target.next_object() == 1


def test_commit_is_one_undo_step(scene):
    """One ``labels.undo()`` takes back exactly the last commit; the next one the commit before."""
    viewer, image, target, _, _ = scene
    data = np.zeros((3, 20, 30), np.uint16)
    data[1, 10:20, 25:] = 9  # hand-made labels, also in the way of the second commit
    labels = viewer.add_labels(data.copy())
    target.choose(labels, image, preview=None)
    assert target.object_id == 10
    sl = SliceInfo((3, 20, 30), 1, 2, ((0, 1),))  # the middle slice
    first = target.commit(square(2, 2), sl, image, overwrite=False)
    assert first == 25
    after_first = labels.data.copy()
    target.next_object()
    second = target.commit(square(8, 20, size=8), sl, image, overwrite=True)
    assert second == 64 and (labels.data[1, 10:16, 25:28] == 11).all()
    labels.undo()
    np.testing.assert_array_equal(labels.data, after_first)
    labels.undo()
    np.testing.assert_array_equal(labels.data, data)


def test_commit_refusals_write_nothing(scene):
    viewer, image, target, _, created = scene
    sl = displayed_slice(image, viewer.dims)
    with pytest.raises(AnnotatorError, match="Nothing to commit"):
        target.commit(None, sl, image, overwrite=False)
    with pytest.raises(AnnotatorError, match="Nothing to commit"):
        target.commit(np.zeros((20, 30), bool), sl, image, overwrite=False)
    with pytest.raises(AnnotatorError, match="Open an image"):
        target.commit(square(0, 0), sl, None, overwrite=False)
    assert created == []  # no layer was made for nothing
    labels = viewer.add_labels(np.full((3, 20, 30), 5, np.uint8))
    target.choose(labels, image, preview=None)
    with pytest.raises(AnnotatorError, match="Overwrite"):
        target.commit(square(0, 0), sl, image, overwrite=False)
    target.object_id = 300
    with pytest.raises(AnnotatorError, match="does not fit"):
        target.commit(square(0, 0), sl, image, overwrite=True)
    assert (labels.data == 5).all()
    assert not target.undo()  # nothing was written: nothing to undo


def test_undo_moves_the_id_to_the_next_free_one(scene):
    viewer, image, target, _, _ = scene
    assert not target.undo()  # no layer yet
    sl = displayed_slice(image, viewer.dims)
    target.object_id = 3
    target.commit(square(0, 0), sl, image, overwrite=False)
    target.object_id = 12
    assert target.undo()
    assert not target.layer.data.any() and target.object_id == 1
    assert not target.undo()
