"""The graphs' input and output names, as the exporter uses them: defined once in
:mod:`napari_sam2_webgpu.models.interface` (torch-free) and re-exported here."""

from __future__ import annotations

from ..models.interface import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUT,
    ENCODER_OUTPUTS,
    MEMORY_ATTENTION_INPUTS,
    MEMORY_ATTENTION_OUTPUTS,
    MEMORY_ENCODER_INPUTS,
    MEMORY_ENCODER_OUTPUTS,
)

__all__ = [
    "DECODER_INPUTS",
    "DECODER_OUTPUTS",
    "ENCODER_INPUT",
    "ENCODER_OUTPUTS",
    "MEMORY_ATTENTION_INPUTS",
    "MEMORY_ATTENTION_OUTPUTS",
    "MEMORY_ENCODER_INPUTS",
    "MEMORY_ENCODER_OUTPUTS",
]
