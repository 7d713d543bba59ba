"""Convert SAM2 / SAM2.1 PyTorch checkpoints into the ONNX encoder/decoder pair this plugin runs.

Needs the ``export`` extra (``pip install "napari-sam2-webgpu[export]"``: torch, sam2, onnx).
The test models are made by this same code from random weights, so what CI checks is what users
export.

The encoder takes the normalised ``image`` (1, 3, 1024, 1024) and returns ``high_res_feats_0``,
``high_res_feats_1`` and ``image_embed``, exactly like samexporter's models. The decoder takes
samexporter's inputs (``image_embed``, ``high_res_feats_0``, ``high_res_feats_1``,
``point_coords``, ``point_labels``, ``mask_input``, ``has_mask_input``) and returns its outputs
(``masks``: three multimask logits, ``iou_predictions``) plus three more that make
``multimask_output=False`` match the official predictor exactly: ``single_mask`` and
``single_iou`` (the single-mask token, before SAM2's dynamic stability fallback, which
:mod:`napari_sam2_webgpu.postprocess` applies) and ``object_score_logits``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .models import VIDEO_COMPONENTS, component_filename, model_stem
from .predictor import DECODER_INPUTS, ENCODER_INPUT, ENCODER_OUTPUTS

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger("napari_sam2_webgpu")

#: Hydra config (inside the ``sam2`` package) of each model size.
CONFIGS: dict[str, str] = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
    # Same graph as "tiny" with a much thinner, shallower Hiera trunk: fast tests only.
    "micro": "configs/sam2.1/sam2.1_hiera_t.yaml",
}

_MICRO_OVERRIDES = [
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[7,7]",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    # One memory-attention layer instead of four: propagation tests stay fast on two cores.
    "++model.memory_attention.num_layers=1",
]

# With fp16: Resize (Hiera's bicubic position-embedding interpolation) fails in fp16 on the
# WebGPU EP ("Resize ... raw_hash_map::at", measured with onnxruntime 1.32): keep it in fp32.
FP16_KEEP_FP32_OPS: tuple[str, ...] = ("Resize",)

# The interface is the predictor's; only the exporter knows the outputs it adds to samexporter's.
# ``obj_ptrs``: the object pointer of each of the four mask tokens (single first), which
# propagation keeps in its memory bank; image segmentation ignores it.
DECODER_OUTPUTS = [
    "masks",
    "iou_predictions",
    "single_mask",
    "single_iou",
    "object_score_logits",
    "obj_ptrs",
]


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


def _require_export_deps() -> None:
    missing = []
    for module in ("torch", "sam2", "onnx"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(
            f"Exporting needs {', '.join(missing)}: install the export extra with "
            '`pip install "napari-sam2-webgpu[export]"` (sam2 itself with SAM2_BUILD_CUDA=0).'
        )


def build_sam2_model(
    size: str = "tiny",
    checkpoint: str | os.PathLike | None = None,
    *,
    config: str | None = None,
    seed: int | None = None,
) -> Any:
    """Build a SAM2 model on the CPU, from a checkpoint or with random weights.

    Parameters
    ----------
    size : str
        One of ``tiny``, ``small``, ``base_plus``, ``large`` (SAM2.1 configs), or ``micro``, a
        small random network of the same graph used by the tests.
    checkpoint : path, optional
        A ``.pt`` file (official or fine-tuned, ``{"model": state_dict}``). ``None`` keeps the
        random initialisation.
    config : str, optional
        A sam2 Hydra config name to use instead of the size's, e.g.
        ``configs/sam2/sam2_hiera_t.yaml`` for the original SAM2 checkpoints.
    seed : int, optional
        Seed for the random initialisation (reproducible random-weight models).

    Returns
    -------
    sam2.modeling.sam2_base.SAM2Base
        The model in eval mode.
    """
    _require_export_deps()
    import torch
    from sam2.build_sam import build_sam2

    if size not in CONFIGS:
        raise ValueError(f"Unknown model size {size!r}; choose one of {sorted(CONFIGS)}.")
    overrides = list(_MICRO_OVERRIDES) if size == "micro" else []
    if seed is not None:
        torch.manual_seed(seed)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"Checkpoint not found: {checkpoint}")
    model = build_sam2(
        config or CONFIGS[size],
        ckpt_path=str(checkpoint) if checkpoint is not None else None,
        device="cpu",
        mode="eval",
        hydra_overrides_extra=overrides,
    )
    if checkpoint is None:
        _randomise_zero_parameters(model, seed)
    return model


def build_official_video_predictor(
    model: Any, size: str = "tiny", *, device: str = "cpu", config: str | None = None
) -> Any:
    """The official ``SAM2VideoPredictor`` with ``model``'s weights (the parity reference).

    Parameters
    ----------
    model : SAM2Base
        From :func:`build_sam2_model`; its weights are copied.
    size : str
        The size it was built as (selects the config and the micro overrides).
    device : str
        Torch device.
    config : str, optional
        The config, if ``model`` was built with one other than the size's.

    Returns
    -------
    sam2.sam2_video_predictor.SAM2VideoPredictor
    """
    _require_export_deps()
    from sam2.build_sam import build_sam2_video_predictor

    overrides = list(_MICRO_OVERRIDES) if size == "micro" else []
    predictor = build_sam2_video_predictor(
        config or CONFIGS[size], None, device=device, hydra_overrides_extra=overrides
    )
    predictor.load_state_dict(model.state_dict())
    return predictor.to(device).eval()


def _randomise_zero_parameters(model: Any, seed: int | None) -> None:
    """Give zero-initialised embeddings small random values.

    Some SAM2 parameters start at zero (e.g. ``no_mem_embed``), which would leave those paths
    untested by random-weight parity checks.
    """
    import torch

    gen = torch.Generator().manual_seed(0 if seed is None else seed + 1)
    with torch.no_grad():
        for param in model.parameters():
            if param.numel() and not torch.any(param):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)


def _encoder_module(model: Any) -> torch.nn.Module:
    import torch

    class Sam2ImageEncoder(torch.nn.Module):
        """Image -> (high_res_feats_0, high_res_feats_1, image_embed), as SAM2ImagePredictor."""

        def __init__(self, sam: Any) -> None:
            super().__init__()
            self.sam = sam

        def forward(self, image: torch.Tensor):
            # What _prepare_backbone_features + the image predictor compute, kept in NCHW: no
            # flatten/permute round trip, so every output is written by a compute node (Conv,
            # Add). An output that ends in a Reshape is copied into a bound output buffer by the
            # host, outside a captured WebGPU graph, and replays left it stale
            # (benchmarks/graph_capture_probe.py).
            levels = self.sam.forward_image(image)["backbone_fpn"][-self.sam.num_feature_levels :]
            embed = levels[-1]
            if self.sam.directly_add_no_mem_embed:
                embed = embed + self.sam.no_mem_embed.reshape(1, -1, 1, 1)
            return levels[0], levels[1], embed

    return Sam2ImageEncoder(model).eval()


def _decoder_module(model: Any) -> torch.nn.Module:
    import torch

    from .video_export import obj_ptrs_from_tokens

    class Sam2PromptDecoder(torch.nn.Module):
        """Prompts + embeddings -> all mask logits, in samexporter's interface plus extras."""

        def __init__(self, sam: Any) -> None:
            super().__init__()
            self.sam = sam
            self.prompt_encoder = sam.sam_prompt_encoder
            self.mask_decoder = sam.sam_mask_decoder
            self.image_size = float(sam.image_size)

        def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            # SAM2's _embed_points with pad=True, written with arithmetic masks so it exports.
            coords = coords + 0.5
            pad_coord = torch.zeros_like(coords[:, :1, :])
            pad_label = -torch.ones_like(labels[:, :1])
            coords = torch.cat([coords, pad_coord], dim=1) / self.image_size
            labels = torch.cat([labels, pad_label], dim=1).unsqueeze(-1)
            embedding = self.prompt_encoder.pe_layer._pe_encoding(coords)
            embedding = embedding * (labels != -1).to(embedding.dtype)
            pe = self.prompt_encoder
            embedding = embedding + pe.not_a_point_embed.weight * (labels == -1).to(embedding.dtype)
            for i in range(pe.num_point_embeddings):
                embedding = embedding + pe.point_embeddings[i].weight * (labels == i).to(
                    embedding.dtype
                )
            return embedding

        def _embed_masks(self, mask_input: torch.Tensor, has_mask: torch.Tensor) -> torch.Tensor:
            has_mask = has_mask.reshape(-1, 1, 1, 1)
            dense = self.prompt_encoder.mask_downscaling(mask_input) * has_mask
            no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
            return dense + (1.0 - has_mask) * no_mask

        def forward(
            self,
            image_embed: torch.Tensor,
            high_res_feats_0: torch.Tensor,
            high_res_feats_1: torch.Tensor,
            point_coords: torch.Tensor,
            point_labels: torch.Tensor,
            mask_input: torch.Tensor,
            has_mask_input: torch.Tensor,
        ):
            sparse = self._embed_points(point_coords, point_labels)
            dense = self._embed_masks(mask_input, has_mask_input)
            num_prompts = sparse.shape[0]
            # repeat_image=True broadcasts one image embedding over every prompt set.
            masks, iou, tokens, obj_scores = self.mask_decoder.predict_masks(
                image_embeddings=image_embed,
                image_pe=self.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                repeat_image=True,
                high_res_features=[
                    high_res_feats_0.expand(num_prompts, -1, -1, -1),
                    high_res_feats_1.expand(num_prompts, -1, -1, -1),
                ],
            )
            obj_ptrs = obj_ptrs_from_tokens(self.sam, tokens, obj_scores)
            return masks[:, 1:], iou[:, 1:], masks[:, :1], iou[:, :1], obj_scores, obj_ptrs

    return Sam2PromptDecoder(model).eval()


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
    ``<name>.memory_encoder.onnx``, which propagation through stacks needs
    (:mod:`napari_sam2_webgpu.video_export`).

    Parameters
    ----------
    model : SAM2Base
        From :func:`build_sam2_model`.
    out_dir : path
        Folder to write into (created if needed). Files are written under a temporary name and
        moved into place, so an interrupted export never leaves a file that loads.
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
    _require_export_deps()
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder_path = out / component_filename(name, "encoder")
    decoder_path = out / component_filename(name, "decoder")
    encoder = _encoder_module(model)
    decoder = _decoder_module(model)
    image = torch.randn(1, 3, model.image_size, model.image_size)
    with torch.no_grad():
        feats = encoder(image)
    low_res = 4 * (model.image_size // model.backbone_stride)
    prompt_args = (
        feats[2],
        feats[0],
        feats[1],
        torch.tensor([[[200.0, 300.0], [500.0, 600.0]]]),
        torch.tensor([[1.0, 0.0]]),
        torch.zeros(1, 1, low_res, low_res),
        torch.zeros(1),
    )
    metadata = {
        "producer": "napari-sam2-webgpu",
        "model_size": size,
        "image_size": str(model.image_size),
        "mask_threshold": "0.0",
        "dynamic_multimask_via_stability": str(
            model.sam_mask_decoder.dynamic_multimask_via_stability
        ),
        "stability_delta": str(model.sam_mask_decoder.dynamic_multimask_stability_delta),
        "stability_thresh": str(model.sam_mask_decoder.dynamic_multimask_stability_thresh),
        "fp16_weights": str(fp16),
    }
    targets = [encoder_path, decoder_path]
    if video:
        targets += [out / component_filename(name, c) for c in VIDEO_COMPONENTS]
    parts = [p.with_name(p.name + ".part") for p in targets]
    try:
        _export_one(
            encoder,
            (image,),
            parts[0],
            [ENCODER_INPUT],
            list(ENCODER_OUTPUTS),
            None,
            opset,
            fp16,
            metadata,
            fp32_ops,
        )
        dynamic = {
            "point_coords": {0: "num_labels", 1: "num_points"},
            "point_labels": {0: "num_labels", 1: "num_points"},
            "mask_input": {0: "num_labels"},
            "has_mask_input": {0: "num_labels"},
            **{o: {0: "num_labels"} for o in DECODER_OUTPUTS},
        }
        _export_one(
            decoder,
            prompt_args,
            parts[1],
            list(DECODER_INPUTS),
            DECODER_OUTPUTS,
            dynamic,
            opset,
            fp16,
            metadata,
            fp32_ops,
        )
        if video:
            _export_video(
                model,
                feats[2],
                parts[2],
                parts[3],
                opset,
                fp16,
                metadata,
                fp32_ops,
                fused_attention,
            )
        # Moved into place only once all are complete: an export interrupted at the decoder
        # must not leave a new encoder beside no decoder, or beside an older one.
        for part, target in zip(parts, targets, strict=True):
            os.replace(part, target)
    finally:
        for part in parts:
            part.unlink(missing_ok=True)
    logger.info("Exported %s", ", ".join(str(t) for t in targets))
    return ExportResult(
        encoder=encoder_path,
        decoder=decoder_path,
        size=size,
        fp16=fp16,
        memory_attention=targets[2] if video else None,
        memory_encoder=targets[3] if video else None,
    )


def _export_video(
    model: Any,
    image_embed: torch.Tensor,
    attention_path: Path,
    encoder_path: Path,
    opset: int,
    fp16: bool,
    metadata: dict[str, str],
    fp32_ops: tuple[str, ...],
    fused_attention: bool = False,
) -> None:
    import torch

    from . import video_export as vx

    vx.check_supported(model)
    feat_pos, maskmem_pos = vx.positional_encodings(model)
    meta = {**metadata, "video_config": vx.video_config(model)}
    attention = vx.MemoryAttentionExport(model, feat_pos, maskmem_pos, fused_attention).eval()
    size = feat_pos.shape[-1]
    hidden = int(model.hidden_dim)
    args = (
        image_embed,
        torch.randn(2, int(model.mem_dim), size, size),
        torch.tensor([0, 3], dtype=torch.int64),
        torch.randn(3, hidden),
        torch.tensor([0.0, 1 / 15, 2 / 15]),
    )
    dynamic = {
        "memory": {0: "num_memories"},
        "memory_tpos": {0: "num_memories"},
        "obj_ptrs": {0: "num_pointers"},
        "obj_ptr_offsets": {0: "num_pointers"},
    }
    _export_one(
        attention,
        args,
        attention_path,
        vx.MEMORY_ATTENTION_INPUTS,
        vx.MEMORY_ATTENTION_OUTPUTS,
        dynamic,
        opset,
        fp16,
        meta,
        fp32_ops,
    )
    low_res = 4 * (int(model.image_size) // model.backbone_stride)
    args = (
        image_embed,
        torch.randn(1, 1, low_res, low_res),
        torch.tensor([[1.0]]),
        torch.tensor([1.0]),
    )
    _export_one(
        vx.MemoryEncoderExport(model).eval(),
        args,
        encoder_path,
        vx.MEMORY_ENCODER_INPUTS,
        vx.MEMORY_ENCODER_OUTPUTS,
        None,
        opset,
        fp16,
        meta,
        fp32_ops,
    )


def _export_one(
    module: Any,
    args: tuple,
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict | None,
    opset: int,
    fp16: bool,
    metadata: dict[str, str],
    fp32_ops: tuple[str, ...] = (),
) -> None:
    import warnings

    import onnx
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    if fp16:
        from onnxruntime.transformers.float16 import (
            DEFAULT_OP_BLOCK_LIST,
            convert_float_to_float16,
        )

        proto = convert_float_to_float16(
            proto, keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *fp32_ops]
        )
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


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
        Model size (see :data:`CONFIGS`).
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
        File stem; defaults to ``sam2.1_hiera_<size>`` (plus ``.fp16``).
    video : bool
        Also export the memory components used for propagation.

    Returns
    -------
    ExportResult
    """
    model = build_sam2_model(size, checkpoint, config=config, seed=seed)
    stem = name or model_stem(size) + (".fp16" if fp16 else "")
    return export_onnx(model, out_dir, name=stem, size=size, fp16=fp16, video=video)
