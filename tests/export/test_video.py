"""Video component export (``napari_sam2_webgpu.export.video``): wrappers against the official
modules, the fused-attention variant, metadata and file size."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sam2")
onnx = pytest.importorskip("onnx")

from napari_sam2_webgpu.export import export_onnx  # noqa: E402
from napari_sam2_webgpu.export import video as vx  # noqa: E402


def test_memory_attention_wrapper_matches_the_official_module(micro_model_files):
    """The exported (real-valued RoPE) memory attention equals SAM2's on the same inputs."""
    import torch
    from sam2.modeling.sam2_utils import get_1d_sine_pe

    model, _ = micro_model_files
    feat_pos, maskmem_pos = vx.positional_encodings(model)
    ours = vx.MemoryAttentionExport(model, feat_pos, maskmem_pos).eval()
    gen = torch.Generator().manual_seed(0)
    embed = torch.randn(1, 256, 64, 64, generator=gen)
    memory = torch.randn(3, 64, 64, 64, generator=gen)
    tpos = torch.tensor([2, 0, 1])  # the micro model keeps 3 memories
    ptrs = torch.randn(5, 256, generator=gen)
    offsets = torch.tensor([2.0, 1, 3, -4, 5]) / 15
    with torch.no_grad():
        got = ours(embed, memory, tpos, ptrs, offsets)
        # The official call, assembled as _prepare_memory_conditioned_features does.
        curr = embed.flatten(2).permute(2, 0, 1) - model.no_mem_embed
        curr_pos = feat_pos.flatten(2).permute(2, 0, 1)
        mem = torch.cat([memory[i : i + 1].flatten(2).permute(2, 0, 1) for i in range(3)])
        base = maskmem_pos.flatten(2).permute(2, 0, 1)
        mem_pos = torch.cat([base + model.maskmem_tpos_enc[int(t)] for t in tpos])
        ptr_pos = model.obj_ptr_tpos_proj(get_1d_sine_pe(offsets, dim=256))[:, None]
        ptr_tokens = ptrs.reshape(-1, 1, 4, 64).permute(0, 2, 1, 3).flatten(0, 1)
        expected = model.memory_attention(
            curr=[curr],
            curr_pos=[curr_pos],
            memory=torch.cat([mem, ptr_tokens]),
            memory_pos=torch.cat([mem_pos, ptr_pos.repeat_interleave(4, dim=0)]),
            num_obj_ptr_tokens=ptr_tokens.shape[0],
        )
    expected = expected.permute(1, 2, 0).reshape(1, 256, 64, 64)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("binarize", [True, False])
def test_memory_encoder_wrapper_matches_the_official_method(micro_model_files, binarize):
    import torch

    model, _ = micro_model_files
    gen = torch.Generator().manual_seed(1)
    embed = torch.randn(1, 256, 64, 64, generator=gen)
    low_res = torch.randn(1, 1, 256, 256, generator=gen) * 5
    score = torch.tensor([[1.5 if binarize else -2.0]])  # absent object: no_obj_embed_spatial
    with torch.no_grad():
        got = vx.MemoryEncoderExport(model).eval()(
            embed, low_res, score, torch.tensor([float(binarize)])
        )
        high_res = torch.nn.functional.interpolate(
            low_res, size=(1024, 1024), mode="bilinear", align_corners=False
        )
        previous = model.binarize_mask_from_pts_for_mem_enc
        model.binarize_mask_from_pts_for_mem_enc = True
        try:
            expected, _ = model._encode_new_memory(
                [embed.flatten(2).permute(2, 0, 1) - model.no_mem_embed],
                [(64, 64)],
                high_res,
                score,
                is_mask_from_pts=binarize,
            )
        finally:
            model.binarize_mask_from_pts_for_mem_enc = previous
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_fused_attention_export_agrees(micro_model_files, tmp_path):
    """ORT's fused MultiHeadAttention variant computes the same memory attention."""
    import onnxruntime as ort

    model, files = micro_model_files
    fused = export_onnx(model, tmp_path, name="fused", size="micro", fused_attention=True)
    ops = {n.op_type for n in onnx.load(str(fused.memory_attention)).graph.node}
    assert "MultiHeadAttention" in ops and "Softmax" not in ops
    rng = np.random.default_rng(0)
    feeds = {
        "image_embed": rng.normal(size=(1, 256, 64, 64)).astype(np.float32),
        "memory": rng.normal(size=(2, 64, 64, 64)).astype(np.float32),
        "memory_tpos": np.array([2, 0]),
        "obj_ptrs": rng.normal(size=(3, 256)).astype(np.float32),
        "obj_ptr_offsets": np.array([0.0, 1 / 15, 2 / 15], dtype=np.float32),
    }
    outs = [
        ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        for f in (files.memory_attention, fused.memory_attention)
    ]
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-4, rtol=1e-4)


def test_video_metadata(micro_model_files):
    import json

    _, files = micro_model_files
    meta = {p.key: p.value for p in onnx.load(str(files.memory_attention)).metadata_props}
    config = json.loads(meta["video_config"])
    assert config["num_maskmem"] == 3 and config["max_obj_ptrs_in_encoder"] == 16  # micro
    assert config["binarize_mask_from_pts_for_mem_enc"] is True


def test_memory_attention_stores_each_constant_once(micro_model_files):
    """The rotary tables are shared initializers, not a constant copied at every use."""
    model, files = micro_model_files
    attention = model.memory_attention.layers[0].self_attn
    table = [64 * 64, attention.internal_dim // attention.num_heads // 2]  # tokens x angles
    graph = onnx.load(str(files.memory_attention)).graph
    shapes = [list(i.dims) for i in graph.initializer]
    shapes += [list(a.t.dims) for n in graph.node if n.op_type == "Constant" for a in n.attribute]
    tables = [s for s in shapes if s == table]
    assert len(tables) == 2, f"rotary cos/sin tables stored {len(tables)} times"
    assert files.memory_attention.stat().st_size < 20 * 2**20


@pytest.mark.parametrize("chunk", [None, 1, 3, 4, 7])
def test_chunked_attention_equals_one_call(chunk):
    import torch

    from napari_sam2_webgpu.export.rope import attend

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, n, 16, generator=gen) for n in (10, 23, 23))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(attend(q, k, v, chunk), want, atol=1e-6, rtol=1e-5)


def test_memory_attention_scores_are_chunked(micro_model_files):
    """No score matrix sees all 4,096 image tokens against a frame's keys at once: scores stay
    a quarter of the size (the pointers' small softmax takes every query)."""
    from napari_sam2_webgpu.export.rope import QUERY_CHUNK

    _, files = micro_model_files
    model = onnx.shape_inference.infer_shapes(onnx.load(str(files.memory_attention)))
    shapes = {
        v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
        for v in model.graph.value_info
    }
    scores = [shapes.get(n.input[0]) for n in model.graph.node if n.op_type in ("Softmax", "Exp")]
    frame_scores = [s for s in scores if s and isinstance(s[-1], int) and s[-1] >= 64 * 64]
    assert frame_scores, "no attention found"
    assert all(s[-2] == QUERY_CHUNK for s in frame_scores), frame_scores


@pytest.mark.parametrize(("frames", "pointers", "chunk"), [(1, 0, 1024), (3, 5, 7), (2, 1, None)])
def test_blockwise_memory_attention_equals_one_softmax(frames, pointers, chunk):
    """Frame by frame, combined by log-sum-exp, equals one softmax over all memory tokens,
    with or without object pointers (and with scores far from 0, where a plain exp overflows)."""
    import torch

    from napari_sam2_webgpu.export.rope import attend_memory_blocks

    gen = torch.Generator().manual_seed(frames)
    block, dim = 16, 8
    q = 4 * torch.randn(1, 1, 100, dim, generator=gen)
    k, v = (4 * torch.randn(1, 1, frames * block, dim, generator=gen) for _ in range(2))
    pk, pv = (4 * torch.randn(1, 1, pointers, dim, generator=gen) for _ in range(2))
    k[..., 0, :] = 60 * q[0, 0, :1] / q[0, 0, :1].norm()  # query 0 scores ~240 on it
    want = torch.nn.functional.scaled_dot_product_attention(
        q, torch.cat([k, pk], dim=2), torch.cat([v, pv], dim=2)
    )
    got = attend_memory_blocks(q, k, v, pk, pv, block, chunk)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def blockwise_export(micro_model_files, tmp_path_factory):
    """The micro memory attention exported frame by frame (``rope.BLOCKWISE_MEMORY``)."""
    from napari_sam2_webgpu.export import rope

    model, _ = micro_model_files
    rope.BLOCKWISE_MEMORY = True
    try:
        out = tmp_path_factory.mktemp("blockwise")
        return export_onnx(model, out, name="blocks", size="micro").memory_attention
    finally:
        rope.BLOCKWISE_MEMORY = False


@pytest.mark.parametrize(("memories", "pointers"), [(1, 0), (3, 4)])
def test_blockwise_export_agrees_with_one_product(
    micro_model_files, blockwise_export, memories, pointers
):
    """The graph exported frame by frame computes what one product (the default) does on
    ONNX Runtime, also for a frame without object pointers."""
    import onnxruntime as ort

    _, files = micro_model_files
    ops = {n.op_type for n in onnx.load(str(blockwise_export)).graph.node}
    assert {"ReduceMax", "Exp"} <= ops
    rng = np.random.default_rng(memories)
    feeds = {
        "image_embed": rng.normal(size=(1, 256, 64, 64)).astype(np.float32),
        "memory": rng.normal(size=(memories, 64, 64, 64)).astype(np.float32),
        "memory_tpos": np.arange(memories) % 3,
        "obj_ptrs": rng.normal(size=(pointers, 256)).astype(np.float32),
        "obj_ptr_offsets": (np.arange(pointers) / 15).astype(np.float32),
    }
    outs = [
        ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        for f in (files.memory_attention, blockwise_export)
    ]
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-4, rtol=1e-4)
