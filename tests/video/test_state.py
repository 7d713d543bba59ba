"""``StackState`` and ``ObjectTrack``: the named transitions of a stack's segmentation."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu.image.embedding_cache import EmbeddingCache
from napari_sam2_webgpu.image.prompts import PromptError
from napari_sam2_webgpu.video.state import (
    DIRECTIONS,
    FrameResult,
    ObjectTrack,
    StackState,
    direction_passes,
)


def _result(value: float = 1.0) -> FrameResult:
    return FrameResult(np.full((1, 1, 256, 256), value, np.float32), np.zeros(256), value)


def _state(num_frames: int = 6, **options) -> StackState:
    return StackState(
        np.zeros((num_frames, 20, 30), np.uint8),
        contrast_limits=None,
        embed=lambda frame: pytest.fail("no embedding needed"),
        embedding_provider=None,
        cache=EmbeddingCache(),
        model_name="test",
        **options,
    )


def test_directions_are_passes():
    assert DIRECTIONS == ("forward", "backward", "both")
    assert direction_passes("forward") == [False]
    assert direction_passes("backward") == [True]
    assert direction_passes("both") == [False, True]
    with pytest.raises(ValueError, match="direction"):
        direction_passes("sideways")


def test_prompts_wait_for_commit_then_enter_the_bank():
    track = ObjectTrack()
    points = (np.zeros((1, 1, 2)), np.ones((1, 1)))
    prompted, tracked = _result(1.0), _result(2.0)
    track.record(3, False, tracked)
    track.set_prompts(3, points, prompted, is_cond=True)
    assert track.latest(3) is prompted and track.previous(3, True) is prompted
    assert track.previous(3, False) is tracked
    assert track.start_frames() == [3]
    track.commit(lambda frame, result: np.full(2, frame, np.uint16))
    assert track.cond == {3: prompted} and 3 not in track.non_cond and not track.pending
    assert prompted.maskmem.tolist() == [3, 3]
    assert track.tracked == {3: False}
    assert track.clear_frame(3) is False
    assert not track.cond and not track.tracked


def test_stack_state_transitions_and_frame_order():
    state = _state()
    with pytest.raises(RuntimeError, match="No prompts"):
        state.frame_order(False)
    track = state.track(7)
    assert state.track(7) is track and state.obj_ids == [7]
    track.set_prompts(2, (np.zeros((1, 1, 2)), np.ones((1, 1))), _result(), is_cond=True)
    assert state.prompted_frames(7) == [2]
    assert state.frame_order(False) == [2, 3, 4, 5]
    assert state.frame_order(True, max_frames=1) == [2, 1]
    assert state.frame_order(False, start_frame=4) == [4, 5]
    assert set(state.masks(2)) == {7} and state.masks(2)[7].shape == (20, 30)
    with pytest.raises(PromptError, match="outside the stack"):
        state.check_frame(6)
    state.clear_prompts(2, 7)
    assert state.obj_ids == []
    state.track(1)
    state.track(2)
    state.remove_object(1)
    assert state.obj_ids == [2]
    state.reset()
    assert state.obj_ids == []


def test_masks_are_upsampled_by_the_given_function():
    """The propagator passes its decoder's ``to_masks`` (the device upsampler on WebGPU)."""
    state = _state()
    host = state.mask_of(_result(1.0))
    assert host.shape == (20, 30) and host.all()
    calls = []

    def to_masks(logits, image_hw):
        calls.append((logits.shape, image_hw))
        return np.zeros((1, *image_hw), bool)

    state = _state(to_masks=to_masks)
    assert not state.mask_of(_result(1.0)).any()
    assert calls == [((1, 256, 256), (20, 30))]
