"""The video predictor's steps on a stack state, below the propagator's API.

Runs on the CPU with the ``micro`` model (random weights, SAM2.1 graph).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_sam2_webgpu.image.prompts import PromptError
from napari_sam2_webgpu.video.propagator import Sam2Propagator
from napari_sam2_webgpu.video.steps import (
    commit_prompts,
    model_prompts,
    prompt_frame,
    track_frame,
)

from .test_propagator import HW, moving_blob_stack


@pytest.fixture(scope="module")
def video(micro_model_files):
    _, files = micro_model_files
    return Sam2Propagator.from_files(
        files.encoder, files.decoder, files.memory_attention, files.memory_encoder, "cpu"
    )


def test_model_prompts_are_one_object_in_the_model_frame():
    state = SimpleNamespace(frame_hw=(100, 200))
    coords, labels = model_prompts(state, [[100.0, 50.0]], [1], [0.0, 0.0, 200.0, 100.0])
    assert coords.shape == (1, 3, 2) and labels.dtype == np.float32
    np.testing.assert_allclose(coords[0, 2], [512.0, 512.0])  # the centre stays the centre
    np.testing.assert_array_equal(labels, [[2, 3, 1]])  # box corners first, then the point
    with pytest.raises(PromptError, match="one object's prompts"):
        model_prompts(state, None, None, [[0, 0, 10, 10], [5, 5, 20, 20]])


def test_commit_prompts_needs_an_object():
    with pytest.raises(RuntimeError, match="No prompts yet"):
        commit_prompts(None, SimpleNamespace(objects={}))


def test_a_prompt_starts_then_a_pass_tracks_the_object(video):
    state = video.init_state(moving_blob_stack(4))
    prompts = model_prompts(state, [[60.0, 50.0]], [1], None)
    result = prompt_frame(video.tracker, state, 1, 7, prompts, corrections_as_cond=True)
    track = state.track(7)
    assert track.pending == {1: (result, True)} and not track.tracked
    commit_prompts(video.tracker, state)
    assert track.cond == {1: result} and result.maskmem is not None
    on_prompt = track_frame(video.tracker, state, 1, reverse=False)
    np.testing.assert_array_equal(on_prompt[7], state.mask_of(result))  # kept, not re-tracked
    after = track_frame(video.tracker, state, 2, reverse=False)
    assert after[7].shape == HW and after[7].dtype == bool
    assert set(track.non_cond) == {2} and track.tracked == {1: False, 2: False}


@pytest.mark.parametrize("as_cond", [True, False])
def test_a_correction_on_a_tracked_frame_is_conditioning_only_if_asked(video, as_cond):
    state = video.init_state(moving_blob_stack(4))
    start = model_prompts(state, [[60.0, 50.0]], [1], None)
    prompt_frame(video.tracker, state, 0, 1, start, corrections_as_cond=as_cond)
    commit_prompts(video.tracker, state)
    track_frame(video.tracker, state, 0, reverse=False)
    track_frame(video.tracker, state, 1, reverse=False)
    fix = model_prompts(state, [[70.0, 60.0]], [0], None)
    prompt_frame(video.tracker, state, 1, 1, fix, corrections_as_cond=as_cond)
    assert state.track(1).pending[1][1] is as_cond
