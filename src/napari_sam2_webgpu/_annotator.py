"""Compatibility module: the annotator now lives in :mod:`napari_sam2_webgpu._napari`.

Re-exports the names this module used to define (the Qt widget imports some of them).
"""

from __future__ import annotations

from ._napari.annotator import Annotator
from ._napari.decoding import (
    INLINE_DECODE_PIXELS,
    INLINE_DECODE_SECONDS,
    DecodeRequest,
    DecodeResult,
)
from ._napari.embeddings import EncodeRequest
from ._napari.errors import AnnotatorError
from ._napari.labels import check_label_value
from ._napari.prompt_layers import (
    BOX_COLOR,
    BOX_NAME,
    LABELS_NAME,
    NEGATIVE_COLOR,
    POSITIVE_COLOR,
    PREVIEW_COLOR,
    PREVIEW_NAME,
    PROMPTS_NAME,
)
from ._napari.prompt_layers import describe as _describe
from ._napari.slices import LARGE_IMAGE_PIXELS, SliceInfo, displayed_slice

__all__ = [
    "BOX_COLOR",
    "BOX_NAME",
    "INLINE_DECODE_PIXELS",
    "INLINE_DECODE_SECONDS",
    "LABELS_NAME",
    "LARGE_IMAGE_PIXELS",
    "NEGATIVE_COLOR",
    "POSITIVE_COLOR",
    "PREVIEW_COLOR",
    "PREVIEW_NAME",
    "PROMPTS_NAME",
    "Annotator",
    "AnnotatorError",
    "DecodeRequest",
    "DecodeResult",
    "EncodeRequest",
    "SliceInfo",
    "_describe",
    "check_label_value",
    "displayed_slice",
]
