"""Exporting a SAM2 model to the ONNX files this plugin runs: :func:`export_onnx`, and
:func:`export_checkpoint` (build + export, the ``napari-sam2-webgpu export`` command).

torch is imported only when an export runs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models import VIDEO_COMPONENTS, component_filename, model_stem
from ..models.convert import default_stem
from .checkpoint import build_sam2_model
from .deps import require_export_deps
from .onnx_files import FP16_KEEP_FP32_OPS, OnnxSettings, replaced_together

__all__ = ["ExportResult", "export_checkpoint", "export_onnx"]

logger = logging.getLogger("napari_sam2_webgpu")


@dataclass(frozen=True)
class ExportResult:
    """Where an export wrote its files.

    Attributes
    ----------
    encoder, decoder : Path
        The ONNX files.
    memory_attention, memory_encoder : Path or None
        The video components used by propagation (``None`` when exported without them).
    size : str
        The model size (config) exported.
    fp16 : bool
        Whether weights were converted to float16.
    """

    encoder: Path
    decoder: Path
    size: str
    fp16: bool
    memory_attention: Path | None = None
    memory_encoder: Path | None = None

    @property
    def files(self) -> list[Path]:
        """Every file written."""
        extra = [p for p in (self.memory_attention, self.memory_encoder) if p is not None]
        return [self.encoder, self.decoder, *extra]


def model_metadata(model: Any, size: str, fp16: bool) -> dict[str, str]:
    """What every exported file records about its model, read back by the predictor.

    Parameters
    ----------
    model : SAM2Base
        The exported model.
    size : str
        The model size.
    fp16 : bool
        Whether weights are float16.

    Returns
    -------
    dict of str to str
    """
    decoder = model.sam_mask_decoder
    return {
        "producer": "napari-sam2-webgpu",
        "model_size": size,
        "image_size": str(model.image_size),
        "mask_threshold": "0.0",
        "dynamic_multimask_via_stability": str(decoder.dynamic_multimask_via_stability),
        "stability_delta": str(decoder.dynamic_multimask_stability_delta),
        "stability_thresh": str(decoder.dynamic_multimask_stability_thresh),
        "fp16_weights": str(fp16),
    }


def export_onnx(
    model: Any,
    out_dir: str | os.PathLike,
    *,
    name: str = model_stem("tiny"),
    size: str = "tiny",
    fp16: bool = False,
    opset: int = 17,
    fp32_ops: tuple[str, ...] = FP16_KEEP_FP32_OPS,
    video: bool = True,
    fused_attention: bool = False,
) -> ExportResult:
    """Export a SAM2 model to ``<name>.encoder.onnx`` and ``<name>.decoder.onnx``.

    With ``video`` (the default) also ``<name>.memory_attention.onnx`` and
    ``<name>.memory_encoder.onnx``, which propagation through stacks needs.

    Parameters
    ----------
    model : SAM2Base
        From :func:`build_sam2_model`.
    out_dir : path
        Folder to write into (created if needed). Files are written under a temporary name and
        moved into place together, so an interrupted export never leaves a file that loads, nor
        a new file beside an older companion.
    name : str
        File name stem.
    size : str
        Recorded in the model metadata.
    fp16 : bool
        Store weights in float16 (inputs and outputs stay float32), halving the files; meant for
        GPUs with ``shader-f16``.
    opset : int
        ONNX opset.
    fp32_ops : tuple of str
        With ``fp16``, operator types kept in float32.
    video : bool
        Also export the memory attention and memory encoder.
    fused_attention : bool
        Write the memory attention's attention steps as ONNX Runtime's fused
        ``com.microsoft.MultiHeadAttention`` (runs only on ONNX Runtime).

    Returns
    -------
    ExportResult
    """
    require_export_deps()
    from .image import export_image
    from .video import export_video

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    components = ["encoder", "decoder", *(VIDEO_COMPONENTS if video else ())]
    targets = [out / component_filename(name, c) for c in components]
    settings = OnnxSettings(
        opset=opset, fp16=fp16, fp32_ops=fp32_ops, metadata=model_metadata(model, size, fp16)
    )
    with replaced_together(targets) as parts:
        image_embed = export_image(model, parts[0], parts[1], settings)
        if video:
            export_video(model, image_embed, parts[2], parts[3], settings, fused_attention)
    logger.info("Exported %s", ", ".join(str(t) for t in targets))
    return ExportResult(
        encoder=targets[0],
        decoder=targets[1],
        size=size,
        fp16=fp16,
        memory_attention=targets[2] if video else None,
        memory_encoder=targets[3] if video else None,
    )


def export_checkpoint(
    size: str,
    out_dir: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    config: str | None = None,
    fp16: bool = False,
    seed: int | None = None,
    name: str | None = None,
    video: bool = True,
) -> ExportResult:
    """Build (from a checkpoint, or random weights when none is given) and export in one call.

    Parameters
    ----------
    size : str
        Model size (see :data:`~.configs.CONFIGS`).
    out_dir : path
        Output folder.
    checkpoint : path, optional
        The ``.pt`` file; ``None`` exports random weights (tests, benchmarks).
    config : str, optional
        A sam2 config name overriding the size's.
    fp16 : bool
        Float16 weights.
    seed : int, optional
        Seed for random weights.
    name : str, optional
        File stem; defaults to Meta's name, ``sam2.1_hiera_<size>`` or ``sam2_hiera_<size>`` for
        the ``sam2.0_<size>`` sizes (plus ``.fp16``).
    video : bool
        Also export the memory components used for propagation.

    Returns
    -------
    ExportResult
    """
    model = build_sam2_model(size, checkpoint, config=config, seed=seed)
    stem = name or default_stem(size) + (".fp16" if fp16 else "")
    return export_onnx(model, out_dir, name=stem, size=size, fp16=fp16, video=video)
