"""The automatic mask generator's masks between its steps, and the geometry it applies to them.

:class:`Candidates` keeps each mask cropped to its box (memory grows with the objects found,
not with the image); :func:`near_crop_edge` finds the masks a crop or tile cut;
:func:`paint_candidates` draws them as labels by :func:`.instance_labels.drawing_order`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .instance_labels import drawing_order

__all__ = ["CROP_EDGE_TOLERANCE", "Candidates", "near_crop_edge", "paint_candidates", "xywh"]

#: Masks whose box comes this close (pixels) to a crop's inner edge are dropped (official).
CROP_EDGE_TOLERANCE = 20.0


@dataclass
class Candidates:
    """Masks between the steps: boxes in the image frame, each mask cropped to its box."""

    boxes: np.ndarray  # (N, 4) int64, x0, y0, x1, y1 inclusive, image frame
    patches: list[np.ndarray]  # N boolean arrays, each the mask inside its box
    iou: np.ndarray  # (N,) float32
    stability: np.ndarray  # (N,) float32
    points: np.ndarray  # (N, 2) float32, image frame
    crop_boxes: np.ndarray  # (N, 4) int64, x0, y0, x1, y1 exclusive

    @classmethod
    def empty(cls) -> Candidates:
        return cls(
            np.zeros((0, 4), np.int64),
            [],
            np.zeros(0, np.float32),
            np.zeros(0, np.float32),
            np.zeros((0, 2), np.float32),
            np.zeros((0, 4), np.int64),
        )

    def __len__(self) -> int:
        return len(self.patches)

    def take(self, index: np.ndarray) -> Candidates:
        index = np.asarray(index, dtype=np.intp)
        return Candidates(
            self.boxes[index],
            [self.patches[i] for i in index],
            self.iou[index],
            self.stability[index],
            self.points[index],
            self.crop_boxes[index],
        )

    @classmethod
    def concat(cls, parts: Sequence[Candidates]) -> Candidates:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.boxes for p in parts]),
            [patch for p in parts for patch in p.patches],
            np.concatenate([p.iou for p in parts]),
            np.concatenate([p.stability for p in parts]),
            np.concatenate([p.points for p in parts]),
            np.concatenate([p.crop_boxes for p in parts]),
        )

    def full_mask(self, i: int, image_hw: tuple[int, int]) -> np.ndarray:
        x0, y0, x1, y1 = (int(v) for v in self.boxes[i])
        mask = np.zeros(image_hw, dtype=bool)
        mask[y0 : y1 + 1, x0 : x1 + 1] = self.patches[i]
        return mask


def xywh(box: Sequence[float]) -> list[float]:
    # As the official box_xyxy_to_xywh: width and height are x1 - x0, y1 - y0 (so a mask box,
    # whose x1, y1 are inclusive, is one pixel narrower than the mask).
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def near_crop_edge(
    boxes: np.ndarray,
    crop_box: list[int],
    hw: tuple[int, int],
    tolerance: float = CROP_EDGE_TOLERANCE,
) -> np.ndarray:
    """Masks touching an edge of the crop (crop frame boxes) that is not an edge of the image."""
    x0, y0 = crop_box[:2]
    image_box = np.array([0, 0, hw[1], hw[0]], dtype=np.float32)
    uncropped = (boxes + np.array([x0, y0, x0, y0])).astype(np.float32)
    near_crop = np.abs(uncropped - np.asarray(crop_box, np.float32)) <= tolerance
    near_image = np.abs(uncropped - image_box) <= tolerance
    return np.any(near_crop & ~near_image, axis=1)


def paint_candidates(data: Candidates, hw: tuple[int, int], order: str) -> np.ndarray:
    """:func:`~.instance_labels.masks_to_labels` of candidates, from their box-sized patches."""
    areas = [np.count_nonzero(p) for p in data.patches] if order == "area" else [0] * len(data)
    sequence = drawing_order(np.array(areas), data.iou, data.stability, order)
    labels = np.zeros(hw, dtype=np.int32)
    for i in sequence:
        x0, y0, x1, y1 = (int(v) for v in data.boxes[i])
        labels[y0 : y1 + 1, x0 : x1 + 1][data.patches[i]] = i + 1
    return labels
