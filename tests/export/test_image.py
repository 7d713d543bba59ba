"""Encoder and decoder export (``napari_sam2_webgpu.export.image``): fp16 parity and metadata."""

from __future__ import annotations

import numpy as np
import pytest

from ..conftest import blob_image

pytest.importorskip("torch")
pytest.importorskip("sam2")
onnx = pytest.importorskip("onnx")

from napari_sam2_webgpu.image import Sam2Predictor  # noqa: E402
from napari_sam2_webgpu.image.postprocess import mask_iou  # noqa: E402


def test_fp16_masks_agree_with_fp32_on_cpu(micro_model_files, micro_predictor, fp16_files):
    half = Sam2Predictor.from_files(fp16_files.encoder, fp16_files.decoder, backend="cpu")
    image = blob_image(200, 300, seed=4)
    micro_predictor.set_image(image)
    half.set_image(image)
    emb32, emb16 = micro_predictor.embedding.image_embed, half.embedding.image_embed
    rel = float(np.max(np.abs(emb16 - emb32)) / np.max(np.abs(emb32)))
    assert rel < 0.01, rel  # measured 8e-4 on the micro model
    prompts = [
        dict(point_coords=[[120.0, 90.0]], point_labels=[1]),
        dict(box=[40.0, 30.0, 200.0, 170.0]),
    ]
    for prompt in prompts:
        masks32, scores32, _ = micro_predictor.predict(**prompt)
        masks16, scores16, _ = half.predict(**prompt)
        ious = [mask_iou(masks16[k], masks32[k]) for k in range(3)]
        assert min(ious) >= 0.95, (prompt, ious)  # measured >= 0.996
        np.testing.assert_allclose(scores16, scores32, atol=5e-3)  # measured 2e-4
        # The comparison has teeth: the masks are not empty or full.
        fractions = masks32.reshape(3, -1).mean(axis=1)
        assert np.any((fractions > 0.01) & (fractions < 0.99)), fractions


def test_metadata(micro_model_files, fp16_files):
    _, fp32 = micro_model_files
    for files, fp16 in ((fp32, "False"), (fp16_files, "True")):
        for path in (files.encoder, files.decoder):
            props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
            assert props["producer"] == "napari-sam2-webgpu"
            assert props["model_size"] == "micro"
            assert props["image_size"] == "1024"
            assert float(props["stability_delta"]) == pytest.approx(0.05)
            assert float(props["stability_thresh"]) == pytest.approx(0.98)
            assert props["fp16_weights"] == fp16


def test_metadata_reaches_the_predictor(micro_predictor):
    assert micro_predictor.decoder.stability_delta == pytest.approx(0.05)
    assert micro_predictor.decoder.stability_thresh == pytest.approx(0.98)
