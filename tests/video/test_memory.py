"""The memory bank's pieces: bfloat16 storage, hole filling, frame and pointer selection."""

from __future__ import annotations

import numpy as np

from napari_sam2_webgpu.video.memory import (
    VideoConfig,
    closest_cond_frames,
    fill_holes,
    from_bfloat16,
    memory_inputs,
    to_bfloat16,
)
from napari_sam2_webgpu.video.state import FrameResult, ObjectTrack


def test_bfloat16_round_trip_matches_torch():
    import torch

    values = np.random.default_rng(0).normal(size=1000).astype(np.float32) * 100
    ours = from_bfloat16(to_bfloat16(values))
    ref = torch.from_numpy(values).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(ours, ref)


def test_fill_holes_fills_only_small_holes():
    logits = np.full((1, 1, 40, 40), 5.0, dtype=np.float32)
    logits[..., 5:7, 5:9] = -3  # 8 px hole: filled
    logits[..., 20:23, 20:23] = -3  # 9 px hole: kept
    logits[..., :, 35:] = -3  # background touching the edge, large: kept
    out = fill_holes(logits, 8)
    assert np.all(out[..., 5:7, 5:9] == np.float32(0.1))
    assert np.all(out[..., 20:23, 20:23] == -3)
    assert np.all(out[..., :, 35:] == -3)
    assert fill_holes(logits, 0) is logits


def _result(value: float) -> FrameResult:
    return FrameResult(
        low_res=np.zeros((1, 1, 4, 4), np.float32),
        obj_ptr=np.full(256, value, np.float32),
        object_score=1.0,
        maskmem=to_bfloat16(np.full((2, 3, 3), value, np.float32)),
    )


def test_closest_cond_frames_keeps_the_nearest_before_and_after():
    cond = {t: _result(t) for t in (0, 4, 8, 12)}
    selected, rest = closest_cond_frames(5, cond, 2)
    assert set(selected) == {4, 8} and set(rest) == {0, 12}
    assert closest_cond_frames(5, cond, -1) == (cond, {})


def test_memory_inputs_take_conditioning_then_recent_frames():
    config = VideoConfig(num_maskmem=3, max_obj_ptrs_in_encoder=4)
    track = ObjectTrack(cond={0: _result(1.0)}, non_cond={1: _result(2.0), 2: _result(3.0)})
    feeds = memory_inputs(track, 3, False, num_frames=10, config=config)
    # Conditioning frame 0 (tpos 2), then frames 2 and 1 (the two most recent).
    assert feeds["memory"][:, 0, 0, 0].tolist() == [1.0, 2.0, 3.0]
    assert feeds["memory_tpos"].tolist() == [2, 1, 0]
    # Pointers: the conditioning frame's (3 frames back), then frames 2 and 1.
    assert feeds["obj_ptrs"][:, 0].tolist() == [1.0, 3.0, 2.0]
    np.testing.assert_allclose(feeds["obj_ptr_offsets"], [1.0, 1 / 3, 2 / 3])
    no_pointers = VideoConfig(num_maskmem=3, use_obj_ptrs_in_encoder=False)
    assert memory_inputs(track, 3, False, 10, no_pointers)["obj_ptrs"].shape == (0, 256)
