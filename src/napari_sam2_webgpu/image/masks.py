"""Prompts on an embedding to what ``predict`` returns: decode, then masks at image size.

:class:`~napari_sam2_webgpu.image.predictor.Sam2Predictor` times these functions and keeps the
current image; :class:`~.decoder.PromptDecoder` runs the model and :mod:`.postprocess` resizes
its logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import postprocess
from .decoder import PromptDecoder
from .encoder import ImageEmbedding
from .prompts import PromptError

__all__ = ["Prompts", "checked_embedding", "decode_best_mask", "decode_masks", "embedding_to_use"]

#: ``(point_coords, point_labels, box, mask_input)``, as ``Sam2Predictor.predict`` takes them.
Prompts = tuple[Any, Any, Any, Any]


def checked_embedding(embedding: Any) -> ImageEmbedding:
    """``embedding`` itself; TypeError unless it is an :class:`ImageEmbedding`."""
    if not isinstance(embedding, ImageEmbedding):
        raise TypeError(f"Expected an ImageEmbedding, got {type(embedding).__name__}.")
    return embedding


def embedding_to_use(
    given: ImageEmbedding | None, current: ImageEmbedding | None
) -> ImageEmbedding:
    """The embedding given to a decode, checked, else the current image's.

    The caller reads its current embedding once and passes it here: another thread may set a
    new image meanwhile. RuntimeError when there is neither.
    """
    if given is not None:
        return checked_embedding(given)
    if current is None:
        raise RuntimeError("An image must be set with set_image(...) before predict().")
    return current


def _clamped(logits: np.ndarray) -> np.ndarray:
    return np.clip(logits, -postprocess.LOGIT_CLAMP, postprocess.LOGIT_CLAMP)


def decode_masks(
    decoder: PromptDecoder,
    embedding: ImageEmbedding,
    prompts: Prompts | Sequence[Any],
    multimask_output: bool,
    return_logits: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every mask of a decode at image size, its scores and its clamped low-res logits.

    As ``Sam2Predictor.predict`` returns them: unbatched prompts lose the batch axis;
    ``return_logits`` gives float logits at image size instead of boolean masks.
    """
    logits, scores, batched = decoder.decode(embedding, *prompts, multimask_output)
    if return_logits:
        masks = postprocess.upsample_logits(logits, embedding.image_hw)
    else:
        masks = decoder.to_masks(logits, embedding.image_hw)
    low_res = _clamped(logits)
    if not batched:
        return masks[0], scores[0], low_res[0]
    return masks, scores, low_res


def decode_best_mask(
    decoder: PromptDecoder,
    embedding: ImageEmbedding,
    prompts: Prompts | Sequence[Any],
    multimask_output: bool,
) -> tuple[np.ndarray, float, np.ndarray]:
    """The best-scoring mask of one prompt set at image size, its score and low-res logits.

    Only that mask is upsampled. PromptError for batched prompts.
    """
    logits, scores, batched = decoder.decode(embedding, *prompts, multimask_output)
    if batched:
        raise PromptError("predict_best() takes one prompt set; use predict() for batches.")
    logits, scores = postprocess.best_of(logits, scores)
    mask = decoder.to_masks(logits[0], embedding.image_hw)[0]
    return mask, float(scores[0, 0]), _clamped(logits[0])
