"""Segment one image: encoder, prompt decoder, prompt checks, pre- and postprocessing.

The modules, each using only the public names of the ones above it in this list:

========================  ==================================================================
:mod:`.preprocess`        any napari image -> SAM2's 1024 x 1024 input tensor; ImageError
:mod:`.postprocess`       prompt coordinates into the model frame, logits back to masks
:mod:`.prompts`           prompt and mask-input validation (:class:`PromptError`), no model
:mod:`.encoder`           :class:`ImageEncoder` -> :class:`ImageEmbedding` (device memory,
                          graph capture and its stale-replay check)
:mod:`.decoder`           :class:`PromptDecoder`: feeds, run, mask choice, object pointers
:mod:`.embedding_cache`   :class:`EmbeddingCache`, a memory-bounded LRU of embeddings
:mod:`.loading`           the steps of ``Sam2Predictor.from_files``: check files, sessions,
                          device memory, warm-up, where clicks decode
:mod:`.tiling`            large images as overlapping tiles at full resolution:
                          :class:`TileSpec`, :class:`TileLayout`, :class:`TiledEmbedding`
:mod:`.masks`             decoder outputs -> masks, scores and logits; embedding checks
:mod:`.predictor`         :class:`Sam2Predictor`, the ``SAM2ImagePredictor``-shaped facade
:mod:`.mask_geometry`     point grids, crop boxes, box NMS, small-region filling (numpy)
:mod:`.automatic`         segment everything: :class:`AutomaticMaskGenerator` (SAM2's
                          automatic mask generator), :func:`masks_to_labels`,
                          :func:`segment_all`
:mod:`.refine`            refining existing masks: :func:`mask_prompt`, :func:`refine_mask`,
                          :func:`refine_labels`
========================  ==================================================================

Nothing here imports napari, Qt or ``onnxruntime`` at import time; sessions come from
:mod:`napari_sam2_webgpu.runtime`.
"""

from __future__ import annotations

from .automatic import (
    AutomaticMaskGenerator,
    SegmentationCancelled,
    masks_to_labels,
    segment_all,
)
from .decoder import DECODER_INPUTS, PromptDecoder, TrackedMask
from .embedding_cache import EmbeddingCache, EmbeddingKey
from .encoder import ENCODER_INPUT, ENCODER_OUTPUTS, ImageEmbedding, ImageEncoder
from .predictor import Sam2Predictor
from .preprocess import MODEL_SIZE, ImageError, check_image, prepare_image
from .prompts import LOW_RES, PromptError, check_prompts
from .refine import mask_prompt, refine_labels, refine_mask
from .tiling import TiledEmbedding, TileLayout, TileSpec

__all__ = [
    "DECODER_INPUTS",
    "ENCODER_INPUT",
    "ENCODER_OUTPUTS",
    "LOW_RES",
    "MODEL_SIZE",
    "AutomaticMaskGenerator",
    "EmbeddingCache",
    "EmbeddingKey",
    "ImageEmbedding",
    "ImageEncoder",
    "ImageError",
    "PromptDecoder",
    "PromptError",
    "Sam2Predictor",
    "SegmentationCancelled",
    "TileLayout",
    "TileSpec",
    "TiledEmbedding",
    "TrackedMask",
    "check_image",
    "check_prompts",
    "mask_prompt",
    "masks_to_labels",
    "prepare_image",
    "refine_labels",
    "refine_mask",
    "segment_all",
]
