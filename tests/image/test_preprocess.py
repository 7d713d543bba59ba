"""Image preparation: validation, intensity range, and the resize against PyTorch's own."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu.image.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MODEL_SIZE,
    ImageError,
    check_image,
    intensity_range,
    prepare_image,
    resize_normalised,
    resize_weights,
)

from ..conftest import blob_image

# (input length, output length): down- and up-sampling, odd ratios, identity.
RESIZES = [
    (9, 1024),
    (3000, 1024),
    (2048, 1024),
    (1500, 1024),
    (1023, 1024),
    (1024, 1024),
    (480, 1024),
    (100, 37),
    (37, 100),
    (8, 3),
]


def _torch_weights(in_size: int, out_size: int) -> np.ndarray:
    """The (out, in) matrix of ``F.interpolate(bilinear, antialias=True)`` along one axis."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    # Column j of the identity is the unit vector e_j; only H is resized (W: in -> in is the
    # identity). Not W = 1: PyTorch's antialiased kernel does not resize along H then.
    eye = torch.eye(in_size, dtype=torch.float64)[None, None]
    out = F.interpolate(
        eye, size=(out_size, in_size), mode="bilinear", align_corners=False, antialias=True
    )
    return out[0, 0].numpy()


@pytest.mark.parametrize("in_size,out_size", RESIZES, ids=[f"{a}->{b}" for a, b in RESIZES])
def test_resize_weights_match_torch_antialias(in_size, out_size):
    ref = _torch_weights(in_size, out_size)
    ours = resize_weights(in_size, out_size)
    assert ours.shape == (out_size, in_size)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-5)


def test_resize_matches_torch_on_an_image():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    image = rng.random((37, 1500, 2), dtype=np.float32)
    ours = resize_normalised(image, 0.0, 1.0, size=200)
    ref = F.interpolate(
        torch.from_numpy(image).permute(2, 0, 1)[None],
        size=(200, 200),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )[0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_prepare_image_matches_sam2_transforms():
    """The whole chain equals SAM2ImagePredictor's ToTensor -> Resize -> Normalize."""
    pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from sam2.utils.transforms import SAM2Transforms

    image = blob_image(300, 700, seed=2)
    ref = SAM2Transforms(resolution=MODEL_SIZE, mask_threshold=0.0)(image)[None].numpy()
    ours = prepare_image(image)
    assert ours.shape == (1, 3, MODEL_SIZE, MODEL_SIZE) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_row_blocks_equal_one_dense_resize():
    # Taller than one row block (1024): the blocked resize must equal W_rows @ X @ W_cols^T.
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (2600, 40), dtype=np.uint8)
    ours = resize_normalised(image, 0.0, 255.0, size=64)
    x = image.astype(np.float64) / 255.0
    ref = resize_weights(2600, 64).astype(np.float64) @ x @ resize_weights(40, 64).T
    assert ours.shape == (1, 64, 64)
    np.testing.assert_allclose(ours[0], ref, atol=1e-5)


def test_normalisation_clips_and_maps_nan_to_low():
    image = np.array([[np.nan, -5.0, 0.0, 5.0, 10.0, 20.0, np.inf, -np.inf]] * 8, np.float32)
    out = resize_normalised(image, 0.0, 10.0, size=8)[0]
    np.testing.assert_allclose(out[0], [0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 0.0], atol=1e-6)


def test_gray_is_replicated_to_three_imagenet_channels():
    image = np.full((16, 16), 255, np.uint8)
    tensor = prepare_image(image)
    expected = (1.0 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(tensor[0, :, 5, 5], expected, atol=1e-5)


# -- check_image and intensity_range --------------------------------------------------------


@pytest.mark.parametrize(
    "shape,rgb,channels",
    [((10, 12), None, 1), ((10, 12, 1), None, 1), ((10, 12, 3), None, 3), ((10, 12, 4), True, 4)],
)
def test_check_image_accepts(shape, rgb, channels):
    assert check_image(np.zeros(shape, np.uint8), rgb=rgb) == (10, 12, channels)


def test_check_image_rejects_non_arrays():
    with pytest.raises(ImageError, match="Expected a numpy array, got list"):
        check_image([[1, 2], [3, 4]])


def test_intensity_range_defaults():
    assert intensity_range(np.zeros((8, 8), np.uint8)) == (0.0, 255.0)
    unit = np.linspace(0.1, 0.9, 64, dtype=np.float32).reshape(8, 8)
    assert intensity_range(unit) == (0.0, 1.0)
    wide = np.arange(10_000, dtype=np.uint16).reshape(100, 100)
    low, high = intensity_range(wide)
    assert low == pytest.approx(np.percentile(wide, 0.1))
    assert high == pytest.approx(np.percentile(wide, 99.9))
    flat = np.full((8, 8), 7, np.uint16)
    assert intensity_range(flat) == (7.0, 7.0)
    assert intensity_range(wide, contrast_limits=(3, 4)) == (3.0, 4.0)


def test_intensity_range_ignores_nans():
    image = np.arange(100, dtype=np.float32).reshape(10, 10) + 50
    image[0, :5] = np.nan
    low, high = intensity_range(image)
    assert np.isfinite(low) and np.isfinite(high)
    assert 55 <= low < high <= 149


def test_flat_image_prepares_without_error():
    tensor = prepare_image(np.full((16, 16), 7, np.uint16))
    assert np.all(np.isfinite(tensor))


@pytest.mark.parametrize("limits", [(200, 10), (10, 10)])
def test_reversed_or_empty_contrast_limits_are_refused(limits):
    from napari_sam2_webgpu.image.preprocess import ImageError, intensity_range

    with pytest.raises(ImageError, match="low < high"):
        intensity_range(np.zeros((20, 20), np.uint16), limits)
