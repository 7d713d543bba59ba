"""Torch modules that export SAM2's video (memory) components to ONNX.

The official modules cannot be traced as they are: rotary position encoding uses complex
tensors, and the number of memory frames and object pointers changes from frame to frame.
These wrappers compute the same thing from the same parameters with real arithmetic, and take
the variable parts as inputs whose first dimension is dynamic:

``memory_attention``
    ``image_embed`` (the encoder's output, ``no_mem_embed`` included, as the image decoder
    takes it), ``memory`` ``(N, 64, h, w)`` spatial memories of N frames, ``memory_tpos``
    ``(N,)`` their temporal slots (``num_maskmem - t_pos - 1``), ``obj_ptrs`` ``(P, 256)``
    object pointers and ``obj_ptr_offsets`` ``(P,)`` their signed frame distances divided by
    the largest distance -> ``conditioned_embed`` ``(1, 256, h, w)``, which the decoder takes in
    place of ``image_embed``.
``memory_encoder``
    ``image_embed``, ``mask_logits`` ``(1, 1, 256, 256)``, ``object_score_logits`` ``(1, 1)``
    and ``binarize`` ``(1,)`` (1: threshold the mask, as for clicked frames; 0: sigmoid) ->
    ``maskmem_features`` ``(1, 64, h, w)``.

Positional encodings that depend only on the image size are computed once here and stored as
constants. Needs the ``export`` extra; tests check each wrapper against the official module.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

MEMORY_ATTENTION_INPUTS = ["image_embed", "memory", "memory_tpos", "obj_ptrs", "obj_ptr_offsets"]
MEMORY_ATTENTION_OUTPUTS = ["conditioned_embed"]
MEMORY_ENCODER_INPUTS = ["image_embed", "mask_logits", "object_score_logits", "binarize"]
MEMORY_ENCODER_OUTPUTS = ["maskmem_features"]


def _rope_tables(dim: int, height: int, width: int, theta: float) -> tuple[torch.Tensor, ...]:
    """cos and sin of SAM2's axial rotary encoding, ``(h * w, dim // 2)`` each."""
    exponents = torch.arange(0, dim, 4)[: dim // 4].float() / dim
    freqs = 1.0 / (theta**exponents)
    t = torch.arange(height * width, dtype=torch.float32)
    t_x, t_y = t % width, torch.div(t, width, rounding_mode="floor")
    angles = torch.cat([torch.outer(t_x, freqs), torch.outer(t_y, freqs)], dim=-1)
    return torch.cos(angles), torch.sin(angles)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of ``x`` (..., tokens, dim) by the angles of ``cos``/``sin``.

    ``x``'s token count is a multiple of the table's: memories of several frames reuse the
    table of one frame, as the official ``rope_k_repeat`` does.
    """
    *lead, tokens, dim = x.shape
    per_frame = cos.shape[0]
    pairs = x.reshape(-1, per_frame, dim // 2, 2)
    real, imag = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([real * cos - imag * sin, real * sin + imag * cos], dim=-1)
    return rotated.reshape(x.shape)


class _FusedAttention(torch.autograd.Function):
    """One-head attention exported as ONNX Runtime's ``com.microsoft.MultiHeadAttention``.

    ORT's CPU and WebGPU providers both implement it as one kernel, instead of a score matrix
    of every query against every memory token written out between MatMul, Softmax and MatMul.
    """

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = nn.functional.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])
        return out[:, 0]

    @staticmethod
    def symbolic(g: Any, q: Any, k: Any, v: Any) -> Any:
        out = g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=1)
        out.setType(q.type())
        return out


class _RopeAttention(nn.Module):
    """``RoPEAttention`` with real-valued rotation; keys past ``rope_tokens`` are not rotated."""

    def __init__(self, attn: Any, table: str, fused: bool = False) -> None:
        super().__init__()
        self.attn = attn
        self.table = table  # name of its cos/sin buffers in MemoryAttentionExport
        self.fused = fused and attn.num_heads == 1

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        # (1, n, c) -> (1, heads, n, c / heads) with explicit sizes (no -1: n may be 0).
        heads = self.attn.num_heads
        if heads == 1:  # every SAM2 config; an unsqueeze also survives n == 0
            return x[:, None]
        return x.reshape(1, x.shape[1], heads, x.shape[2] // heads).transpose(1, 2)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        k_plain: tuple | None,
        rope: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        a = self.attn
        q = _rotate(self._heads(a.q_proj(q)), *rope)
        keys = _rotate(self._heads(a.k_proj(k)), *rope)
        values = self._heads(a.v_proj(v))
        if k_plain is not None:  # object-pointer tokens: no rotary encoding
            keys = torch.cat([keys, self._heads(a.k_proj(k_plain[0]))], dim=2)
            values = torch.cat([values, self._heads(a.v_proj(k_plain[1]))], dim=2)
        if self.fused:
            out = _FusedAttention.apply(q[:, 0], keys[:, 0], values[:, 0])
            return a.out_proj(out)
        out = nn.functional.scaled_dot_product_attention(q, keys, values)
        return a.out_proj(a._recombine_heads(out))


class MemoryAttentionExport(nn.Module):
    """SAM2's ``_prepare_memory_conditioned_features`` for a non-initial frame, batch 1."""

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
        _, _, height, width = feat_pos.shape
        # (HW, C) tokens, as the official code flattens them. Persistent buffers become one
        # initializer each; non-persistent ones were inlined as a constant at every use (the
        # rotary tables 16 times per layer, tens of MB).
        self.register_buffer("feat_pos", feat_pos.flatten(2)[0].T.contiguous())
        self.register_buffer("maskmem_pos", maskmem_pos.flatten(2)[0].T.contiguous())
        self.self_attn, self.cross_attn = nn.ModuleList(), nn.ModuleList()
        for layer in self.layers:
            for name, target in (
                ("self_attn", self.self_attn),
                ("cross_attn_image", self.cross_attn),
            ):
                attn = getattr(layer, name)
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
                    cos, sin = _rope_tables(head_dim, height, width, theta)
                    self.register_buffer(table + "_cos", cos)
                    self.register_buffer(table + "_sin", sin)
                target.append(_RopeAttention(attn, table, fused_attention))

    def _rope(self, attention: _RopeAttention) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, attention.table + "_cos"), getattr(self, attention.table + "_sin")

    def _pointer_pos(self, offsets: torch.Tensor) -> torch.Tensor:
        if not self.add_tpos:
            return offsets[:, None] * torch.zeros(1, self.mem_dim)
        half = self.tpos_dim // 2
        dim_t = torch.arange(half, dtype=torch.float32)
        dim_t = 10000.0 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / half)
        angles = offsets[:, None] / dim_t
        return self.obj_ptr_tpos_proj(torch.cat([angles.sin(), angles.cos()], dim=-1))

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
        # Spatial memories: (N, mem_dim, h, w) -> (N*h*w, mem_dim), plus their positions.
        mem = memory.flatten(2).transpose(1, 2)
        mem_pos = self.maskmem_pos[None] + self.maskmem_tpos_enc[:, 0].index_select(0, memory_tpos)
        mem_tokens = memory.shape[0] * height * width
        mem = mem.reshape(1, mem_tokens, self.mem_dim)
        mem_pos = mem_pos.reshape(1, mem_tokens, self.mem_dim)
        # Object pointers: each (hidden_dim,) pointer is split into hidden_dim // mem_dim tokens.
        # Built without reshaping to a leading 1: ONNX Reshape reads a 0 in the target shape as
        # "keep this dimension", which would break frames with no pointers.
        split = self.hidden_dim // self.mem_dim
        ptr_tokens = obj_ptrs.shape[0] * split
        ptr = obj_ptrs.reshape(ptr_tokens, self.mem_dim)[None]
        ptr_pos = self._pointer_pos(obj_ptr_offsets)[:, None].expand(-1, split, -1)
        ptr_pos = ptr_pos.reshape(ptr_tokens, self.mem_dim)[None]

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
    """SAM2's ``_encode_new_memory`` from low-resolution mask logits, batch 1."""

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
    """The image features' and the memories' positional encodings at the model's image size."""
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
    """
    config = {
        "image_size": int(sam.image_size),
        "num_maskmem": int(sam.num_maskmem),
        "max_obj_ptrs_in_encoder": int(sam.max_obj_ptrs_in_encoder),
        "memory_temporal_stride_for_eval": int(sam.memory_temporal_stride_for_eval),
        "max_cond_frames_in_attn": int(sam.max_cond_frames_in_attn),
        "use_obj_ptrs_in_encoder": bool(sam.use_obj_ptrs_in_encoder),
        "use_signed_tpos_enc_to_obj_ptrs": bool(sam.use_signed_tpos_enc_to_obj_ptrs),
        "only_obj_ptrs_in_the_past_for_eval": bool(sam.only_obj_ptrs_in_the_past_for_eval),
        "multimask_output_in_sam": bool(sam.multimask_output_in_sam),
        "multimask_output_for_tracking": bool(sam.multimask_output_for_tracking),
        "multimask_min_pt_num": int(sam.multimask_min_pt_num),
        "multimask_max_pt_num": int(sam.multimask_max_pt_num),
        "use_multimask_token_for_obj_ptr": bool(sam.use_multimask_token_for_obj_ptr),
        "add_all_frames_to_correct_as_cond": bool(
            getattr(sam, "add_all_frames_to_correct_as_cond", False)
        ),
        "directly_add_no_mem_embed": bool(sam.directly_add_no_mem_embed),
        "binarize_mask_from_pts_for_mem_enc": True,
        "pred_obj_scores": bool(sam.pred_obj_scores),
    }
    return json.dumps(config, sort_keys=True)


def check_supported(sam: Any) -> None:
    """Raise for model variants the video export does not cover."""
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


def obj_ptrs_from_tokens(
    sam: Any, tokens: torch.Tensor, object_scores: torch.Tensor
) -> torch.Tensor:
    """Object pointers of every mask token, ``(B, T, 256)``, with SAM2's occlusion handling."""
    ptrs = sam.obj_ptr_proj(tokens)
    if sam.pred_obj_scores:
        appearing = object_scores[:, :, None]
        weight = torch.sigmoid(appearing) if sam.soft_no_obj_ptr else (appearing > 0).to(ptrs.dtype)
        if sam.fixed_no_obj_ptr:
            ptrs = weight * ptrs
        ptrs = ptrs + (1 - weight) * sam.no_obj_ptr[:, None]
    return ptrs
