"""Kept for compatibility: the image predictor now lives in :mod:`napari_sam2_webgpu.image`.

:class:`Sam2Predictor` is in :mod:`.image.predictor`, :class:`ImageEmbedding` in
:mod:`.image.encoder`, prompt validation in :mod:`.image.prompts`.
"""

from __future__ import annotations

from .image.decoder import DECODER_INPUTS, PromptDecoder
from .image.encoder import (
    ENCODER_INPUT,
    ENCODER_OUTPUTS,
    ImageEmbedding,
    ImageEncoder,
    StaleReplayError,
)
from .image.predictor import Sam2Predictor
from .image.prompts import LOW_RES, PromptError, check_prompts

__all__ = [
    "DECODER_INPUTS",
    "ENCODER_INPUT",
    "ENCODER_OUTPUTS",
    "LOW_RES",
    "ImageEmbedding",
    "ImageEncoder",
    "PromptDecoder",
    "PromptError",
    "Sam2Predictor",
    "StaleReplayError",
    "check_prompts",
]
