"""Coordinates into the model frame and logits back to masks, against PyTorch and sam2."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu.image.postprocess import (
    logits_to_masks,
    select_single_mask,
    stability_scores,
    to_model_coords,
    upsample_logits,
)

# Larger and smaller than the 256 x 256 logits, odd, very elongated, taller than one row block.
TARGETS = [(480, 640), (1100, 700), (256, 256), (100, 37), (9, 300), (2100, 13), (1, 1)]


def _torch_upsample(low_res: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    return F.interpolate(
        torch.from_numpy(low_res), size=hw, mode="bilinear", align_corners=False
    ).numpy()


def _logits(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Smooth structure plus noise, like real logits, with both signs.
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    base = 8 * np.sin(yy / 17.0) * np.cos(xx / 23.0)
    return (base + rng.normal(0, 3, shape)).astype(np.float32)


@pytest.mark.parametrize("hw", TARGETS, ids=[f"{h}x{w}" for h, w in TARGETS])
def test_upsample_logits_matches_torch(hw):
    low_res = _logits((2, 3, 256, 256))
    ours = upsample_logits(low_res, hw)
    ref = _torch_upsample(low_res, hw)
    assert ours.shape == (2, 3, *hw)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("hw", TARGETS, ids=[f"{h}x{w}" for h, w in TARGETS])
def test_logits_to_masks_is_thresholded_upsample(hw):
    low_res = _logits((3, 256, 256), seed=1)
    masks = logits_to_masks(low_res, hw)
    assert masks.shape == (3, *hw) and masks.dtype == bool
    np.testing.assert_array_equal(masks, upsample_logits(low_res, hw) > 0)
    # And with PyTorch, wherever the logit is not within rounding of the threshold.
    ref = _torch_upsample(low_res[None], hw)[0]
    clear = np.abs(ref) > 1e-3
    np.testing.assert_array_equal(masks[clear], ref[clear] > 0)


def test_logits_to_masks_threshold():
    low_res = _logits((1, 256, 256), seed=2)
    up = upsample_logits(low_res, (300, 200))
    np.testing.assert_array_equal(logits_to_masks(low_res, (300, 200), threshold=2.5), up > 2.5)


def test_to_model_coords_matches_sam2_transforms():
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from sam2.utils.transforms import SAM2Transforms

    transforms = SAM2Transforms(resolution=1024, mask_threshold=0.0)
    rng = np.random.default_rng(3)
    for hw in [(480, 640), (301, 1203), (7, 20000)]:
        coords = rng.uniform(-0.5, 1.0, (2, 5, 2)) * np.array([hw[1], hw[0]])
        ours = to_model_coords(coords, hw)
        ref = transforms.transform_coords(
            torch.from_numpy(coords.astype(np.float32)), normalize=True, orig_hw=hw
        ).numpy()
        assert ours.dtype == np.float32 and ours.shape == coords.shape
        np.testing.assert_array_equal(ours, ref)


def test_to_model_coords_known_values():
    coords = np.array([[0.0, 0.0], [640.0, 480.0], [320.0, 120.0]])
    np.testing.assert_allclose(
        to_model_coords(coords, (480, 640)), [[0, 0], [1024, 1024], [512, 256]], atol=1e-4
    )
    original = coords.copy()
    to_model_coords(coords, (480, 640))
    np.testing.assert_array_equal(coords, original)  # input left untouched


# -- single-mask choice ---------------------------------------------------------------------


def _sam2_choice(single, single_iou, multi, multi_iou, delta, thresh):
    """sam2's own ``MaskDecoder._dynamic_multimask_via_stability`` on the same arrays."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from sam2.modeling.sam.mask_decoder import MaskDecoder

    class Settings:
        dynamic_multimask_stability_delta = delta
        dynamic_multimask_stability_thresh = thresh
        _get_stability_scores = MaskDecoder._get_stability_scores

    all_logits = torch.from_numpy(np.concatenate([single, multi], axis=1))
    all_iou = torch.from_numpy(np.concatenate([single_iou, multi_iou], axis=1))
    logits, iou = MaskDecoder._dynamic_multimask_via_stability(Settings(), all_logits, all_iou)
    return logits.numpy(), iou.numpy()


@pytest.mark.parametrize("delta,thresh", [(0.05, 0.98), (0.5, 0.9), (0.01, 0.999)])
def test_select_single_mask_matches_sam2(delta, thresh):
    rng = np.random.default_rng(4)
    batch = 6
    single = rng.normal(0, 1, (batch, 1, 64, 64)).astype(np.float32)
    # Make some single masks stable (no logit near the threshold), keep others unstable.
    single[1] = np.sign(single[1]) * (1.0 + np.abs(single[1]))
    single[3] = -np.abs(single[3]) - 1.0  # empty mask: stability 1 by definition
    single[4] = np.where(rng.random((1, 64, 64)) < 0.995, 4.0, 0.0)  # barely unstable at 0.05
    multi = rng.normal(0, 2, (batch, 3, 64, 64)).astype(np.float32)
    single_iou = rng.random((batch, 1)).astype(np.float32)
    multi_iou = rng.random((batch, 3)).astype(np.float32)

    ref_logits, ref_iou = _sam2_choice(single, single_iou, multi, multi_iou, delta, thresh)
    logits, iou = select_single_mask(
        single, single_iou, multi, multi_iou, delta=delta, thresh=thresh
    )
    assert logits.shape == (batch, 1, 64, 64) and iou.shape == (batch, 1)
    np.testing.assert_array_equal(logits, ref_logits)
    np.testing.assert_array_equal(iou, ref_iou)
    # Both branches were exercised.
    stable = stability_scores(single[:, 0], delta) >= thresh
    assert stable.any() and not stable.all(), stable


def test_stability_scores_known_values():
    logits = np.zeros((2, 4, 4), np.float32)
    logits[0, :2] = 1.0  # 8 pixels > delta, 8 pixels == 0 (> -delta): stability 0.5
    logits[1] = -1.0  # nothing above -delta: 1 by definition
    np.testing.assert_allclose(stability_scores(logits, 0.05), [0.5, 1.0])


@pytest.mark.parametrize("hw", [(1024, 1024), (600, 1400), (37, 5000), (256, 256)])
def test_upsample_window_is_the_full_upsample_where_it_matters(hw):
    """Inside the window: the same values as upsampling everything; outside: nothing above
    the floor. Small objects, edges, and a window touching the border."""
    from napari_sam2_webgpu.image.postprocess import upsample_window

    rng = np.random.default_rng(hw[1])
    low = rng.normal(-6, 1, (256, 256)).astype(np.float32)
    low[100:104, 7:9] = rng.normal(3, 1, (4, 2))  # a small object
    low[250:256, 0:3] = 5.0  # one at the border
    full = upsample_logits(low, hw)
    for floor in (-1.0, 0.0, 1.0):
        y0, x0, values = upsample_window(low, hw, floor)
        h, w = values.shape
        np.testing.assert_array_equal(values, full[y0 : y0 + h, x0 : x0 + w])
        outside = full.copy()
        outside[y0 : y0 + h, x0 : x0 + w] = -np.inf
        assert (outside <= floor).all()
        assert h * w < full.size / 4  # what makes it cheap
    assert upsample_window(np.full((256, 256), -3.0, np.float32), hw, 0.0) is None
