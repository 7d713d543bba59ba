"""From prompts on an embedding to masks at image size, without a current image.

Runs on the CPU with the ``micro`` model (random weights, SAM2.1 graph).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu.image.masks import (
    checked_embedding,
    decode_best_mask,
    decode_masks,
    embedding_to_use,
)
from napari_sam2_webgpu.image.postprocess import LOGIT_CLAMP
from napari_sam2_webgpu.image.prompts import PromptError

from ..conftest import blob_image

POINT = ([[30.0, 22.0]], [1], None, None)


@pytest.fixture(scope="module")
def decoder_and_embedding(micro_predictor):
    return micro_predictor.decoder, micro_predictor.compute_embedding(blob_image(48, 64, seed=5))


def test_checked_embedding_accepts_only_embeddings(decoder_and_embedding):
    _, embedding = decoder_and_embedding
    assert checked_embedding(embedding) is embedding
    with pytest.raises(
        TypeError, match="Expected an ImageEmbedding or TiledEmbedding, got ndarray"
    ):
        checked_embedding(embedding.image_embed)


def test_the_given_embedding_wins_over_the_current_one(decoder_and_embedding):
    _, embedding = decoder_and_embedding
    other = object()
    assert embedding_to_use(embedding, None) is embedding
    assert embedding_to_use(None, embedding) is embedding
    with pytest.raises(TypeError):
        embedding_to_use(other, embedding)
    with pytest.raises(RuntimeError, match=r"set_image\(\.\.\.\) before predict"):
        embedding_to_use(None, None)


@pytest.mark.parametrize("multimask", [True, False])
def test_decode_masks_at_image_size_with_clamped_logits(decoder_and_embedding, multimask):
    decoder, embedding = decoder_and_embedding
    masks, scores, low_res = decode_masks(decoder, embedding, POINT, multimask, False)
    count = 3 if multimask else 1
    assert masks.shape == (count, 48, 64) and masks.dtype == bool
    assert scores.shape == (count,) and low_res.shape == (count, 256, 256)
    assert np.abs(low_res).max() <= LOGIT_CLAMP
    logits, _, _ = decode_masks(decoder, embedding, POINT, multimask, True)
    assert logits.dtype == np.float32 and logits.shape == masks.shape
    np.testing.assert_array_equal(logits > 0, masks)


def test_decode_masks_keeps_the_batch_axis_of_batched_prompts(decoder_and_embedding):
    decoder, embedding = decoder_and_embedding
    boxes = (None, None, [[10.0, 8.0, 50.0, 40.0], [0.0, 0.0, 20.0, 20.0]], None)
    masks, scores, low_res = decode_masks(decoder, embedding, boxes, False, False)
    assert masks.shape == (2, 1, 48, 64) and scores.shape == (2, 1)
    assert low_res.shape == (2, 1, 256, 256)


def test_decode_best_mask_is_the_best_of_decode_masks(decoder_and_embedding):
    decoder, embedding = decoder_and_embedding
    masks, scores, low_res = decode_masks(decoder, embedding, POINT, True, False)
    mask, score, best_low_res = decode_best_mask(decoder, embedding, POINT, True)
    best = int(np.argmax(scores))
    np.testing.assert_array_equal(mask, masks[best])
    assert score == pytest.approx(float(scores[best]))
    np.testing.assert_allclose(best_low_res[0], low_res[best])
    boxes = (None, None, [[10.0, 8.0, 50.0, 40.0], [0.0, 0.0, 20.0, 20.0]], None)
    with pytest.raises(PromptError, match="one prompt set"):
        decode_best_mask(decoder, embedding, boxes, True)
