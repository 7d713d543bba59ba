"""Upsampling and thresholding masks in an ONNX graph (image/device_masks.py), on the CPU EP.

On WebGPU the same graph runs on the GPU; here the CPU EP checks it against the host path.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu.image import postprocess
from napari_sam2_webgpu.image.device_masks import DeviceMaskUpsampler, mask_upsample_model


@pytest.fixture(scope="module")
def upsampler():
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(mask_upsample_model(), providers=["CPUExecutionProvider"])
    return DeviceMaskUpsampler(session)


@pytest.mark.parametrize("image_hw", [(1024, 1024), (300, 517), (100, 60), (1500, 2048)])
def test_masks_equal_the_host_path(upsampler, image_hw):
    """Pixels may differ only where the upsampled logit is within rounding of the threshold."""
    logits = np.random.default_rng(sum(image_hw)).normal(0, 5, (1, 3, 256, 256))
    logits = logits.astype(np.float32)
    got = upsampler(logits, image_hw)
    expected = postprocess.logits_to_masks(logits, image_hw)
    assert got.dtype == bool and got.shape == expected.shape == (1, 3, *image_hw)
    differ = got != expected
    assert differ.sum() <= 1e-5 * got.size
    values = postprocess.upsample_logits(logits, image_hw)
    assert np.all(np.abs(values[differ]) < 1e-3)


def test_any_leading_axes_and_threshold(upsampler):
    logits = np.random.default_rng(1).normal(0, 5, (256, 256)).astype(np.float32)
    mask = upsampler(logits, (512, 512), threshold=2.0)
    assert mask.shape == (512, 512)
    np.testing.assert_array_equal(
        mask, postprocess.logits_to_masks(logits, (512, 512), threshold=2.0)
    )
    stack = upsampler(np.stack([logits, -logits])[:, None], (64, 80))
    assert stack.shape == (2, 1, 64, 80)
    assert not np.any(stack[0, 0] & stack[1, 0])


def test_too_large_requests_go_back_to_the_host(upsampler):
    small = DeviceMaskUpsampler(upsampler.session, max_elements=1000)
    logits = np.zeros((1, 3, 256, 256), np.float32)
    assert small(logits, (20, 20)) is None  # 3 x 400 > 1000
    assert small(logits[:, :1], (20, 20)).shape == (1, 1, 20, 20)


def test_decoder_masks_use_the_upsampler(micro_predictor, upsampler):
    decoder = micro_predictor.decoder
    calls = []

    def spy(logits, image_hw, threshold=postprocess.MASK_THRESHOLD):
        calls.append(image_hw)
        return upsampler(logits, image_hw, threshold)

    embedding = micro_predictor.compute_embedding(np.full((90, 120), 128, np.uint8))
    prompt = dict(point_coords=[[40.0, 30.0]], point_labels=[1], embedding=embedding)
    expected = micro_predictor.predict(**prompt)
    decoder.upsampler = spy
    try:
        got = micro_predictor.predict(**prompt)
        best = micro_predictor.predict_best(**prompt)
    finally:
        decoder.upsampler = None
    assert calls == [(90, 120), (90, 120)]
    assert (got[0] != expected[0]).sum() <= 2
    assert best[0].shape == (90, 120)


def test_no_upsampler_off_webgpu():
    from napari_sam2_webgpu.runtime import resolve_backend

    assert DeviceMaskUpsampler.on_backend(resolve_backend("cpu")) is None
