"""Test helpers for propagation: a moving-blob stack and what writing its masks must give."""

from __future__ import annotations

import numpy as np

OBJECT = 3
OTHER = 7  # a label that was there before, which propagation must not paint over


def moving_blob_stack(num_frames: int = 5, hw: tuple[int, int] = (64, 80), seed: int = 0):
    """uint8 ``(T, H, W)``: a bright ellipse that moves and changes shape, on noise."""
    h, w = hw
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    frames = []
    for t in range(num_frames):
        img = rng.normal(40, 25, (h, w))
        cy, cx, ry, rx = 20 + 4 * t, 24 + 6 * t, 10 + 1.5 * t, 14 - 1.5 * t
        img[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] += 100
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


def blob_centre(t: int) -> tuple[int, int]:
    return 20 + 4 * t, 24 + 6 * t


def expected_labels(before, masks, value, overwrite=False):
    """What writing ``masks`` (frame -> mask) into ``before`` must give."""
    out = before.copy()
    for frame, mask in masks.items():
        plane = out[frame]
        plane[plane == value] = 0  # the object's earlier pixels on a re-tracked frame go
        free = mask if overwrite else mask & (plane == 0)
        plane[free] = value
    return out


def state_masks(controller, frames, obj=OBJECT):
    return {f: controller._state.masks(f)[obj] for f in frames}
