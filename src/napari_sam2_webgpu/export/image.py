"""Torch modules for the image encoder and the prompt decoder, and their ONNX export.

The encoder takes the normalised ``image`` (1, 3, 1024, 1024) and returns ``high_res_feats_0``,
``high_res_feats_1`` and ``image_embed``, as samexporter's models do. The decoder takes
samexporter's inputs and returns its outputs plus those listed in :mod:`.interface`.

Imports torch: import this module only once the ``export`` extra is known to be installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..image import DECODER_INPUTS, ENCODER_INPUT, ENCODER_OUTPUTS
from .interface import DECODER_OUTPUTS
from .onnx_files import OnnxSettings, write_onnx

__all__ = ["ImageEncoderExport", "PromptDecoderExport", "export_image", "obj_ptrs_from_tokens"]


class ImageEncoderExport(nn.Module):
    """Image -> (high_res_feats_0, high_res_feats_1, image_embed), as SAM2ImagePredictor."""

    def __init__(self, sam: Any) -> None:
        super().__init__()
        self.sam = sam

    def forward(self, image: torch.Tensor):
        # What _prepare_backbone_features + the image predictor compute, kept in NCHW: no
        # flatten/permute round trip, so every output is written by a compute node (Conv, Add).
        # An output that ends in a Reshape is copied into a bound output buffer by the host,
        # outside a captured WebGPU graph, and replays would leave it stale.
        levels = self.sam.forward_image(image)["backbone_fpn"][-self.sam.num_feature_levels :]
        embed = levels[-1]
        if self.sam.directly_add_no_mem_embed:
            embed = embed + self.sam.no_mem_embed.reshape(1, -1, 1, 1)
        return levels[0], levels[1], embed


class PromptDecoderExport(nn.Module):
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


def obj_ptrs_from_tokens(
    sam: Any, tokens: torch.Tensor, object_scores: torch.Tensor
) -> torch.Tensor:
    """Object pointers of every mask token, ``(B, T, 256)``, with SAM2's occlusion handling.

    Parameters
    ----------
    sam : SAM2Base
        The model (its ``obj_ptr_proj`` and no-object settings).
    tokens : torch.Tensor
        The mask decoder's output tokens, ``(B, T, 256)``.
    object_scores : torch.Tensor
        Its object score logits, ``(B, 1)``.

    Returns
    -------
    torch.Tensor
    """
    ptrs = sam.obj_ptr_proj(tokens)
    if sam.pred_obj_scores:
        appearing = object_scores[:, :, None]
        weight = torch.sigmoid(appearing) if sam.soft_no_obj_ptr else (appearing > 0).to(ptrs.dtype)
        if sam.fixed_no_obj_ptr:
            ptrs = weight * ptrs
        ptrs = ptrs + (1 - weight) * sam.no_obj_ptr[:, None]
    return ptrs


def export_image(
    model: Any, encoder_path: Path, decoder_path: Path, settings: OnnxSettings
) -> torch.Tensor:
    """Write the encoder and the decoder of ``model`` as ONNX files.

    Parameters
    ----------
    model : SAM2Base
        The model to export.
    encoder_path, decoder_path : Path
        The files to write.
    settings : OnnxSettings
        Opset, float16 conversion and metadata.

    Returns
    -------
    torch.Tensor
        The ``image_embed`` of the random example image, an example input for the video
        components.
    """
    encoder = ImageEncoderExport(model).eval()
    decoder = PromptDecoderExport(model).eval()
    image = torch.randn(1, 3, model.image_size, model.image_size)
    with torch.no_grad():
        feats = encoder(image)
    write_onnx(encoder, (image,), encoder_path, [ENCODER_INPUT], list(ENCODER_OUTPUTS), settings)
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
    dynamic = {
        "point_coords": {0: "num_labels", 1: "num_points"},
        "point_labels": {0: "num_labels", 1: "num_points"},
        "mask_input": {0: "num_labels"},
        "has_mask_input": {0: "num_labels"},
        **{o: {0: "num_labels"} for o in DECODER_OUTPUTS},
    }
    write_onnx(
        decoder, prompt_args, decoder_path, DECODER_INPUTS, DECODER_OUTPUTS, settings, dynamic
    )
    return feats[2]
