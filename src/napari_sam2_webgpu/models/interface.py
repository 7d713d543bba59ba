"""Input and output names of the four ONNX graphs: one definition for the exporter, the
templates, the predictor and the propagator (pure Python).

The encoder takes ``image`` ``(1, 3, 1024, 1024)`` float32 and returns ``high_res_feats_0``,
``high_res_feats_1`` and ``image_embed``. The decoder takes those three and the prompts (its
inputs are samexporter's interface, so their pairs load too).

``masks`` and ``iou_predictions`` (three multimask logits and their scores) are samexporter's.
``single_mask`` and ``single_iou`` are the single-mask token before SAM2's dynamic stability
fallback (which :mod:`napari_sam2_webgpu.image.postprocess` applies), so ``multimask_output=False``
matches the official predictor exactly; ``object_score_logits`` says whether the object is
present; ``obj_ptrs`` holds the object pointer of each of the four mask tokens (single first),
which propagation keeps in its memory bank and image segmentation ignores.

The video components:

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
    ``maskmem_features`` ``(1, 64, h, w)``. Models of the original SAM2 (2.0) have no "no
    object" embedding in their memories, so their memory encoder has no
    ``object_score_logits`` input (:data:`MEMORY_ENCODER_OPTIONAL_INPUTS`).
"""

from __future__ import annotations

__all__ = [
    "DECODER_INPUTS",
    "DECODER_OUTPUTS",
    "ENCODER_INPUT",
    "ENCODER_OUTPUTS",
    "MEMORY_ATTENTION_INPUTS",
    "MEMORY_ATTENTION_OUTPUTS",
    "MEMORY_ENCODER_INPUTS",
    "MEMORY_ENCODER_OPTIONAL_INPUTS",
    "MEMORY_ENCODER_OUTPUTS",
]

#: The encoder's input and outputs, in the session's order.
ENCODER_INPUT = "image"
ENCODER_OUTPUTS = ("high_res_feats_0", "high_res_feats_1", "image_embed")
#: The decoder's inputs (samexporter's interface).
DECODER_INPUTS = (
    "image_embed",
    "high_res_feats_0",
    "high_res_feats_1",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
)
#: Outputs of the prompt decoder, in the order it returns them.
DECODER_OUTPUTS = [
    "masks",
    "iou_predictions",
    "single_mask",
    "single_iou",
    "object_score_logits",
    "obj_ptrs",
]
#: Inputs of the memory attention.
MEMORY_ATTENTION_INPUTS = ["image_embed", "memory", "memory_tpos", "obj_ptrs", "obj_ptr_offsets"]
#: Outputs of the memory attention.
MEMORY_ATTENTION_OUTPUTS = ["conditioned_embed"]
#: Inputs of the memory encoder.
MEMORY_ENCODER_INPUTS = ["image_embed", "mask_logits", "object_score_logits", "binarize"]
#: Inputs of :data:`MEMORY_ENCODER_INPUTS` a memory encoder may lack (SAM2.0 models).
MEMORY_ENCODER_OPTIONAL_INPUTS = ("object_score_logits",)
#: Outputs of the memory encoder.
MEMORY_ENCODER_OUTPUTS = ["maskmem_features"]
