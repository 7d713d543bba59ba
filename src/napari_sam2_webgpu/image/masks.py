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
from .tiling import TiledEmbedding, assemble, decode_tiled, paste

__all__ = ["Prompts", "checked_embedding", "decode_best_mask", "decode_masks", "embedding_to_use"]

#: ``(point_coords, point_labels, box, mask_input)``, as ``Sam2Predictor.predict`` takes them.
Prompts = tuple[Any, Any, Any, Any]


def checked_embedding(embedding: Any) -> ImageEmbedding | TiledEmbedding:
    """``embedding`` itself; TypeError unless it is an :class:`ImageEmbedding` or a
    :class:`~.tiling.TiledEmbedding`."""
    if not isinstance(embedding, ImageEmbedding | TiledEmbedding):
        raise TypeError(
            f"Expected an ImageEmbedding or TiledEmbedding, got {type(embedding).__name__}."
        )
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
    ``return_logits`` gives float logits at image size instead of boolean masks. On a
    :class:`~.tiling.TiledEmbedding` each prompt set is decoded in its tile (the low-res logits
    are that tile's).
    """
    if isinstance(embedding, TiledEmbedding):

        def window(emb: ImageEmbedding, *prompt_set: Any) -> tuple[Any, Any, Any]:
            return decode_masks(decoder, emb, prompt_set, multimask_output, return_logits)

        routed, batched = decode_tiled(window, embedding, *prompts)
        return assemble(routed, batched, embedding.image_hw)
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

    Only that mask is upsampled. PromptError for batched prompts. On a
    :class:`~.tiling.TiledEmbedding` the prompts are decoded in their tile.
    """
    if isinstance(embedding, TiledEmbedding):

        def window(emb: ImageEmbedding, *prompt_set: Any) -> tuple[Any, Any, Any]:
            mask, score, low_res = decode_best_mask(decoder, emb, prompt_set, multimask_output)
            return mask[None], np.array([score], dtype=np.float32), low_res

        routed, _ = decode_tiled(window, embedding, *prompts, single=True)
        found = routed[0]
        return (
            paste(found.masks, found.tile, embedding.image_hw)[0],
            float(found.scores[0]),
            (found.low_res),
        )
    logits, scores, batched = decoder.decode(embedding, *prompts, multimask_output)
    if batched:
        raise PromptError("predict_best() takes one prompt set; use predict() for batches.")
    logits, scores = postprocess.best_of(logits, scores)
    mask = decoder.to_masks(logits[0], embedding.image_hw)[0]
    return mask, float(scores[0, 0]), _clamped(logits[0])
