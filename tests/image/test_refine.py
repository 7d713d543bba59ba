"""Refining masks (image/refine.py): the mask prompt, parity with the official predictor given
the same mask input, and refining a label image without touching other labels."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu.image.postprocess import mask_iou
from napari_sam2_webgpu.image.prompts import LOW_RES
from napari_sam2_webgpu.image.refine import MASK_EPS, mask_prompt, refine_labels, refine_mask

from ..conftest import blob_image


def test_mask_prompt_box_and_logits():
    mask = np.zeros((100, 300), bool)
    mask[20:60, 30:150] = True
    box, logits = mask_prompt(mask)
    assert box.tolist() == [30.0, 20.0, 149.0, 59.0]
    assert logits.shape == (1, LOW_RES, LOW_RES) and logits.dtype == np.float32
    top = np.log((1 - MASK_EPS) / MASK_EPS)
    # The model frame is the image resized to a square: rows 20-60 of 100 -> 51-154 of 256.
    assert logits[0, 100, 70] == pytest.approx(top, rel=1e-5)
    assert logits[0, 10, 10] == pytest.approx(-top, rel=1e-5)
    assert logits[0, 100, 200] < 0 and logits[0, 30, 70] < 0
    with pytest.raises(ValueError, match="empty"):
        mask_prompt(np.zeros((10, 10), bool))
    with pytest.raises(ValueError, match="2D"):
        mask_prompt(np.ones((2, 10, 10), bool))


@pytest.fixture(scope="module")
def scene():
    image = blob_image(120, 160, seed=2)
    labels = np.zeros((120, 160), np.uint16)
    labels[20:50, 20:70] = 3
    labels[60:100, 90:140] = 8
    labels[70:90, 20:40] = 12
    return image, labels


@pytest.mark.parity
def test_refinement_equals_the_official_predictor_with_the_same_mask_input(
    micro_model_files, micro_predictor, scene
):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    image, labels = scene
    model, _ = micro_model_files
    official = SAM2ImagePredictor(model)
    official.set_image(image)
    micro_predictor.set_image(image)
    for label in (3, 8):
        box, mask_input = mask_prompt(labels == label)
        ref, ref_scores, _ = official.predict(
            box=box, mask_input=mask_input, multimask_output=False
        )
        ours, score, _ = refine_mask(micro_predictor, labels == label)
        assert mask_iou(ours, ref[0].astype(bool)) >= 0.999
        assert score == pytest.approx(float(ref_scores[0]), abs=1e-3)
    # With a correction point too.
    point = dict(point_coords=[[40.0, 30.0]], point_labels=[0])
    box, mask_input = mask_prompt(labels == 3)
    ref, _, _ = official.predict(**point, box=box, mask_input=mask_input, multimask_output=False)
    ours, _, _ = refine_mask(micro_predictor, labels == 3, **point)
    assert mask_iou(ours, ref[0].astype(bool)) >= 0.999


def test_refine_labels_replaces_only_the_labels_asked_for(micro_predictor, scene):
    image, labels = scene
    embedding = micro_predictor.compute_embedding(image)
    seen = []
    every = refine_labels(
        micro_predictor, image, labels, embedding=embedding, progress=lambda d, t: seen.append(d)
    )
    assert every.dtype == labels.dtype and set(np.unique(every)) <= {0, 3, 8, 12}
    assert seen == [3]
    for label in (3, 8, 12):  # each label is its own refinement, one by one
        alone, _, _ = refine_mask(micro_predictor, labels == label, embedding=embedding)
        assert np.all(every[alone & (every != 0)] != 0)
    only = refine_labels(micro_predictor, image, labels, ids=[8], embedding=embedding)
    np.testing.assert_array_equal(only[labels == 3], 3)  # not refined: untouched
    np.testing.assert_array_equal(only[labels == 12], 12)
    refined8, _, _ = refine_mask(micro_predictor, labels == 8, embedding=embedding)
    free = (labels == 0) | (labels == 8)
    np.testing.assert_array_equal(only == 8, refined8 & free)
    with pytest.raises(ValueError, match="not in the label image"):
        refine_labels(micro_predictor, image, labels, ids=[5], embedding=embedding)
    with pytest.raises(ValueError, match="must match"):
        refine_labels(micro_predictor, image, labels[:50], embedding=embedding)
    with pytest.raises(ValueError, match="integers"):
        refine_labels(micro_predictor, image, labels.astype(float), embedding=embedding)
