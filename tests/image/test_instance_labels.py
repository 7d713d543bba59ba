"""The rule that turns overlapping masks into one label image."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu.image.instance_labels import drawing_order, masks_to_labels
from napari_sam2_webgpu.image.mask_candidates import Candidates, paint_candidates


def test_drawing_order_area_is_largest_first_and_score_most_confident_last():
    areas = np.array([5, 9, 5, 1])
    iou = np.array([0.9, 0.5, 0.9, 0.7])
    stability = np.array([0.8, 0.9, 0.7, 0.9])
    assert drawing_order(areas, iou, stability, "area").tolist() == [1, 0, 2, 3]
    assert drawing_order(areas, iou, stability, "score").tolist() == [1, 3, 2, 0]
    with pytest.raises(ValueError, match="order"):
        drawing_order(areas, iou, stability, "size")


def test_records_and_candidates_are_painted_alike():
    """The generator paints its box-cropped candidates by the same rule as masks_to_labels."""
    hw = (6, 8)
    big = np.zeros(hw, bool)
    big[1:5, 1:7] = True
    small = np.zeros(hw, bool)
    small[2:4, 2:4] = True
    records = [
        {"segmentation": small, "area": 4, "predicted_iou": 0.95, "stability_score": 0.9},
        {"segmentation": big, "area": 24, "predicted_iou": 0.8, "stability_score": 0.9},
    ]
    candidates = Candidates(
        boxes=np.array([[2, 2, 3, 3], [1, 1, 6, 4]]),
        patches=[small[2:4, 2:4], big[1:5, 1:7]],
        iou=np.array([0.95, 0.8], np.float32),
        stability=np.array([0.9, 0.9], np.float32),
        points=np.zeros((2, 2), np.float32),
        crop_boxes=np.array([[0, 0, 8, 6]] * 2),
    )
    for order in ("area", "score"):
        labels = masks_to_labels(records, hw, order=order)
        np.testing.assert_array_equal(paint_candidates(candidates, hw, order), labels)
        assert set(np.unique(labels)) == {0, 1, 2}  # the small mask wins either way
