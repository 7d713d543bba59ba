"""Torch modules for SAM2's video (memory) components, and their ONNX export.

The official modules cannot be traced as they are: rotary position encoding uses complex
tensors (:mod:`.rope` rewrites it), and the number of memory frames and object pointers changes
from frame to frame. These wrappers compute the same thing from the same parameters and take the
variable parts as inputs whose first dimension is dynamic (:mod:`.interface` lists them).
Positional encodings that depend only on the image size are computed once here and stored as
constants. Imports torch; tests check each wrapper against the official module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .interface import (
    MEMORY_ATTENTION_INPUTS,
    MEMORY_ATTENTION_OUTPUTS,
    MEMORY_ENCODER_INPUTS,
    MEMORY_ENCODER_OUTPUTS,
)
from .onnx_files import OnnxSettings, write_onnx
from .rope import RopeAttention, rope_tables

__all__ = [
    "MemoryAttentionExport",
    "MemoryEncoderExport",
    "check_supported",
    "export_video",
    "positional_encodings",
    "video_config",
]


class MemoryAttentionExport(nn.Module):
    """SAM2's ``_prepare_memory_conditioned_features`` for a non-initial frame, batch 1.

    Parameters
    ----------
    sam : SAM2Base
        The model.
    feat_pos, maskmem_pos : torch.Tensor
        From :func:`positional_encodings`.
    fused_attention : bool
        Write the attention steps as ONNX Runtime's fused ``com.microsoft.MultiHeadAttention``.
    """

    def __init__(
        self,
        sam: Any,
        feat_pos: torch.Tensor,
        maskmem_pos: torch.Tensor,
        fused_attention: bool = False,
    ) -> None:
        super().__init__()
        attention = sam.memory_attention
        self.layers = attention.layers
        self.norm = attention.norm
        self.pos_enc_at_input = attention.pos_enc_at_input
        self.hidden_dim = sam.hidden_dim
        self.mem_dim = sam.mem_dim
        self.no_mem_embed = sam.no_mem_embed
        self.maskmem_tpos_enc = sam.maskmem_tpos_enc
        self.add_tpos = bool(sam.add_tpos_enc_to_obj_ptrs)
        self.tpos_dim = self.hidden_dim if sam.proj_tpos_enc_in_obj_ptrs else self.mem_dim
        self.obj_ptr_tpos_proj = sam.obj_ptr_tpos_proj
        # (HW, C) tokens, as the official code flattens them. Persistent buffers become one
        # initializer each; non-persistent ones were inlined as a constant at every use (the
        # rotary tables 16 times per layer, tens of MB).
        self.register_buffer("feat_pos", feat_pos.flatten(2)[0].T.contiguous())
        self.register_buffer("maskmem_pos", maskmem_pos.flatten(2)[0].T.contiguous())
        self.self_attn, self.cross_attn = nn.ModuleList(), nn.ModuleList()
        _, _, height, width = feat_pos.shape
        for layer in self.layers:
            self.self_attn.append(self._wrap(layer.self_attn, height, width, fused_attention))
            self.cross_attn.append(
                self._wrap(layer.cross_attn_image, height, width, fused_attention)
            )

    def _wrap(self, attn: Any, height: int, width: int, fused: bool) -> RopeAttention:
        """The traceable twin of ``attn``, registering its rotary tables on first use."""
        if not hasattr(attn, "compute_cis"):
            raise NotImplementedError(
                f"Memory attention layers without rotary encoding ({type(attn).__name__})"
                " are not supported by the exporter."
            )
        head_dim = attn.internal_dim // attn.num_heads
        theta = attn.compute_cis.keywords.get("theta", 10000.0)
        # One table per (head size, theta), shared by every layer that uses it.
        table = f"rope_{head_dim}_{int(theta)}"
        if not hasattr(self, table + "_cos"):
            cos, sin = rope_tables(head_dim, height, width, theta)
            self.register_buffer(table + "_cos", cos)
            self.register_buffer(table + "_sin", sin)
        return RopeAttention(attn, table, fused)

    def _rope(self, attention: RopeAttention) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, attention.table + "_cos"), getattr(self, attention.table + "_sin")

    def _pointer_pos(self, offsets: torch.Tensor) -> torch.Tensor:
        if not self.add_tpos:
            return offsets[:, None] * torch.zeros(1, self.mem_dim)
        half = self.tpos_dim // 2
        dim_t = torch.arange(half, dtype=torch.float32)
        dim_t = 10000.0 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / half)
        angles = offsets[:, None] / dim_t
        return self.obj_ptr_tpos_proj(torch.cat([angles.sin(), angles.cos()], dim=-1))

    def _memory_tokens(
        self, memory: torch.Tensor, memory_tpos: torch.Tensor, height: int, width: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Spatial memories ``(N, mem_dim, h, w)`` -> ``(1, N*h*w, mem_dim)`` and positions.

        ``height`` and ``width`` are the image embedding's (the same sizes): reading them there
        keeps the traced graph free of extra shape look-ups.
        """
        mem = memory.flatten(2).transpose(1, 2)
        mem_pos = self.maskmem_pos[None] + self.maskmem_tpos_enc[:, 0].index_select(0, memory_tpos)
        tokens = memory.shape[0] * height * width
        return mem.reshape(1, tokens, self.mem_dim), mem_pos.reshape(1, tokens, self.mem_dim)

    def _pointer_tokens(
        self, obj_ptrs: torch.Tensor, offsets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each ``(hidden_dim,)`` pointer as ``hidden_dim // mem_dim`` tokens, and positions.

        Built without reshaping to a leading 1: ONNX Reshape reads a 0 in the target shape as
        "keep this dimension", which would break frames with no pointers.
        """
        split = self.hidden_dim // self.mem_dim
        tokens = obj_ptrs.shape[0] * split
        ptr = obj_ptrs.reshape(tokens, self.mem_dim)[None]
        ptr_pos = self._pointer_pos(offsets)[:, None].expand(-1, split, -1)
        return ptr, ptr_pos.reshape(tokens, self.mem_dim)[None]

    def forward(
        self,
        image_embed: torch.Tensor,
        memory: torch.Tensor,
        memory_tpos: torch.Tensor,
        obj_ptrs: torch.Tensor,
        obj_ptr_offsets: torch.Tensor,
    ) -> torch.Tensor:
        _, channels, height, width = image_embed.shape
        # The encoder added no_mem_embed for the image decoder; memory attention wants the raw
        # features.
        curr = image_embed.flatten(2)[0].T - self.no_mem_embed[0]
        mem, mem_pos = self._memory_tokens(memory, memory_tpos, height, width)
        ptr, ptr_pos = self._pointer_tokens(obj_ptrs, obj_ptr_offsets)
        output = curr[None]
        query_pos = self.feat_pos[None]
        if self.pos_enc_at_input:
            output = output + 0.1 * query_pos
        for layer, self_attn, cross_attn in zip(
            self.layers, self.self_attn, self.cross_attn, strict=True
        ):
            normed = layer.norm1(output)
            q = normed + query_pos if layer.pos_enc_at_attn else normed
            output = output + self_attn(q, q, normed, None, self._rope(self_attn))
            normed = layer.norm2(output)
            q = normed + query_pos if layer.pos_enc_at_cross_attn_queries else normed
            keys = mem + mem_pos if layer.pos_enc_at_cross_attn_keys else mem
            ptr_keys = ptr + ptr_pos if layer.pos_enc_at_cross_attn_keys else ptr
            output = output + cross_attn(q, keys, mem, (ptr_keys, ptr), self._rope(cross_attn))
            normed = layer.norm3(output)
            output = output + layer.linear2(layer.activation(layer.linear1(normed)))
        output = self.norm(output)
        return output[0].T.reshape(1, channels, height, width)


class MemoryEncoderExport(nn.Module):
    """SAM2's ``_encode_new_memory`` from low-resolution mask logits, batch 1.

    Parameters
    ----------
    sam : SAM2Base
        The model.
    """

    def __init__(self, sam: Any) -> None:
        super().__init__()
        self.memory_encoder = sam.memory_encoder
        self.no_mem_embed = sam.no_mem_embed
        self.no_obj_embed_spatial = sam.no_obj_embed_spatial
        self.image_size = int(sam.image_size)
        self.scale = float(sam.sigmoid_scale_for_mem_enc)
        self.bias = float(sam.sigmoid_bias_for_mem_enc)

    def forward(
        self,
        image_embed: torch.Tensor,
        mask_logits: torch.Tensor,
        object_score_logits: torch.Tensor,
        binarize: torch.Tensor,
    ) -> torch.Tensor:
        pix_feat = image_embed - self.no_mem_embed[0, 0][None, :, None, None]
        high_res = nn.functional.interpolate(
            mask_logits,
            size=(self.image_size, self.image_size),
            mode="bilinear",
            align_corners=False,
        )
        hard = (high_res > 0).to(high_res.dtype)
        flag = binarize.reshape(1, 1, 1, 1)
        mask = hard * flag + torch.sigmoid(high_res) * (1.0 - flag)
        mask = mask * self.scale + self.bias
        features = self.memory_encoder(pix_feat, mask, skip_mask_sigmoid=True)["vision_features"]
        if self.no_obj_embed_spatial is not None:
            absent = 1.0 - (object_score_logits > 0).to(features.dtype)
            features = (
                features + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
            )
        return features


def positional_encodings(sam: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The image features' and the memories' positional encodings at the model's image size.

    Parameters
    ----------
    sam : SAM2Base
        The model.

    Returns
    -------
    feat_pos, maskmem_pos : torch.Tensor
        ``(1, C, h, w)`` each.
    """
    size = int(sam.image_size)
    with torch.no_grad():
        backbone = sam.forward_image(torch.zeros(1, 3, size, size))
        feat_pos = backbone["vision_pos_enc"][-1]
        top = backbone["backbone_fpn"][-1]
        mem = sam.memory_encoder(top, torch.zeros(1, 1, size, size), skip_mask_sigmoid=True)
        maskmem_pos = mem["vision_pos_enc"][-1]
    return feat_pos, maskmem_pos


def video_config(sam: Any) -> str:
    """The tracking settings the propagator needs, as JSON for the model metadata.

    ``binarize_mask_from_pts_for_mem_enc`` is what ``build_sam2_video_predictor`` sets (it is
    off in the bare configs).

    Parameters
    ----------
    sam : SAM2Base
        The model.

    Returns
    -------
    str
    """
    ints = (
        "image_size",
        "num_maskmem",
        "max_obj_ptrs_in_encoder",
        "memory_temporal_stride_for_eval",
        "max_cond_frames_in_attn",
        "multimask_min_pt_num",
        "multimask_max_pt_num",
    )
    flags = (
        "use_obj_ptrs_in_encoder",
        "use_signed_tpos_enc_to_obj_ptrs",
        "only_obj_ptrs_in_the_past_for_eval",
        "multimask_output_in_sam",
        "multimask_output_for_tracking",
        "use_multimask_token_for_obj_ptr",
        "directly_add_no_mem_embed",
        "pred_obj_scores",
    )
    config: dict[str, Any] = {name: int(getattr(sam, name)) for name in ints}
    config.update({name: bool(getattr(sam, name)) for name in flags})
    config["add_all_frames_to_correct_as_cond"] = bool(
        getattr(sam, "add_all_frames_to_correct_as_cond", False)
    )
    config["binarize_mask_from_pts_for_mem_enc"] = True
    return json.dumps(config, sort_keys=True)


def check_supported(sam: Any) -> None:
    """Raise for model variants the video export does not cover.

    Parameters
    ----------
    sam : SAM2Base
        The model.

    Raises
    ------
    NotImplementedError
        Naming each unsupported setting.
    """
    problems = []
    if not sam.directly_add_no_mem_embed:
        problems.append("directly_add_no_mem_embed=False")
    if not sam.use_obj_ptrs_in_encoder:
        problems.append("use_obj_ptrs_in_encoder=False")
    if sam.num_maskmem <= 0:
        problems.append("num_maskmem=0")
    if getattr(sam, "non_overlap_masks_for_mem_enc", False):
        problems.append("non_overlap_masks_for_mem_enc=True")
    if problems:
        raise NotImplementedError(
            "This SAM2 variant cannot be exported for propagation: " + ", ".join(problems) + "."
        )


def export_video(
    model: Any,
    image_embed: torch.Tensor,
    attention_path: Path,
    encoder_path: Path,
    settings: OnnxSettings,
    fused_attention: bool = False,
) -> None:
    """Write the memory attention and the memory encoder of ``model`` as ONNX files.

    Parameters
    ----------
    model : SAM2Base
        The model to export.
    image_embed : torch.Tensor
        An example encoder output (from :func:`.image.export_image`).
    attention_path, encoder_path : Path
        The files to write.
    settings : OnnxSettings
        Opset, float16 conversion and metadata; the :func:`video_config` is added to it.
    fused_attention : bool
        Write the attention steps as ONNX Runtime's fused ``com.microsoft.MultiHeadAttention``
        (runs only on ONNX Runtime).

    Raises
    ------
    NotImplementedError
        For a model variant :func:`check_supported` rejects.
    """
    check_supported(model)
    settings = settings.with_metadata(video_config=video_config(model))
    _write_memory_attention(model, image_embed, attention_path, settings, fused_attention)
    _write_memory_encoder(model, image_embed, encoder_path, settings)


def _write_memory_attention(
    model: Any, image_embed: torch.Tensor, path: Path, settings: OnnxSettings, fused: bool
) -> None:
    """Trace :class:`MemoryAttentionExport` with two memories and three pointers as examples."""
    feat_pos, maskmem_pos = positional_encodings(model)
    attention = MemoryAttentionExport(model, feat_pos, maskmem_pos, fused).eval()
    size = feat_pos.shape[-1]
    args = (
        image_embed,
        torch.randn(2, int(model.mem_dim), size, size),
        # Temporal slots of the example memories (any two the model has).
        torch.tensor([0, min(3, int(model.num_maskmem) - 1)], dtype=torch.int64),
        torch.randn(3, int(model.hidden_dim)),
        torch.tensor([0.0, 1 / 15, 2 / 15]),
    )
    dynamic = {
        "memory": {0: "num_memories"},
        "memory_tpos": {0: "num_memories"},
        "obj_ptrs": {0: "num_pointers"},
        "obj_ptr_offsets": {0: "num_pointers"},
    }
    write_onnx(
        attention, args, path, MEMORY_ATTENTION_INPUTS, MEMORY_ATTENTION_OUTPUTS, settings, dynamic
    )


def _write_memory_encoder(
    model: Any, image_embed: torch.Tensor, path: Path, settings: OnnxSettings
) -> None:
    """Trace :class:`MemoryEncoderExport` on a random low-resolution mask."""
    low_res = 4 * (int(model.image_size) // model.backbone_stride)
    args = (
        image_embed,
        torch.randn(1, 1, low_res, low_res),
        torch.tensor([[1.0]]),
        torch.tensor([1.0]),
    )
    encoder = MemoryEncoderExport(model).eval()
    write_onnx(encoder, args, path, MEMORY_ENCODER_INPUTS, MEMORY_ENCODER_OUTPUTS, settings)
