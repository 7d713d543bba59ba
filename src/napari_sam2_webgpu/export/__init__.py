"""Convert SAM2 / SAM2.1 PyTorch checkpoints into the ONNX files this plugin runs.

Everything in the plugin that needs torch is here. Needs the ``export`` extra
(``pip install "napari-sam2-webgpu[export]"``: torch, sam2, onnx); importing this package does
not import torch, so the CLI and the tests can import it and check for the extra first. The test
models are made by this same code from random weights, so what CI checks is what users export.

========================  ==================================================================
:mod:`.api`               :func:`export_onnx`, :func:`export_checkpoint`, :class:`ExportResult`
:mod:`.checkpoint`        :func:`build_sam2_model`: checkpoint or random weights -> torch model
:mod:`.configs`           sizes -> sam2 Hydra configs (:data:`CONFIGS`), the test ``micro`` size
:mod:`.deps`              :func:`require_export_deps`: is the ``export`` extra installed
:mod:`.interface`         the graphs' input and output names (from models.interface)
:mod:`.onnx_files`        tracing to ONNX, float16 weights, metadata, replacing files together
:mod:`.image`             encoder and prompt-decoder wrappers and their export (imports torch)
:mod:`.video`             memory attention and memory encoder wrappers and their export
                          (imports torch)
:mod:`.rope`              SAM2's rotary attention in real arithmetic (imports torch)
========================  ==================================================================

File names come from :mod:`napari_sam2_webgpu.models` (:func:`~napari_sam2_webgpu.models.
component_filename`), the one definition of the convention. The names below are re-exported
from the submodules; code that patches a module attribute must patch the submodule that uses it.
"""

from __future__ import annotations

from .api import ExportResult, export_checkpoint, export_onnx, model_metadata
from .checkpoint import build_sam2_model
from .configs import CONFIGS, MICRO_OVERRIDES, hydra_config
from .deps import EXPORT_MODULES, require_export_deps
from .interface import (
    DECODER_OUTPUTS,
    MEMORY_ATTENTION_INPUTS,
    MEMORY_ATTENTION_OUTPUTS,
    MEMORY_ENCODER_INPUTS,
    MEMORY_ENCODER_OUTPUTS,
)
from .onnx_files import FP16_KEEP_FP32_OPS, OnnxSettings, replaced_together, write_onnx

__all__ = [
    "CONFIGS",
    "DECODER_OUTPUTS",
    "EXPORT_MODULES",
    "FP16_KEEP_FP32_OPS",
    "MEMORY_ATTENTION_INPUTS",
    "MEMORY_ATTENTION_OUTPUTS",
    "MEMORY_ENCODER_INPUTS",
    "MEMORY_ENCODER_OUTPUTS",
    "MICRO_OVERRIDES",
    "ExportResult",
    "OnnxSettings",
    "build_sam2_model",
    "export_checkpoint",
    "export_onnx",
    "hydra_config",
    "model_metadata",
    "replaced_together",
    "require_export_deps",
    "write_onnx",
]
