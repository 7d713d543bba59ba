"""ONNX export: fp16 weights, metadata, atomic writes and argument errors."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import blob_image

pytest.importorskip("torch")
pytest.importorskip("sam2")
onnx = pytest.importorskip("onnx")

from napari_sam2_webgpu.export import (  # noqa: E402
    build_sam2_model,
    export_checkpoint,
    export_onnx,
)
from napari_sam2_webgpu.postprocess import mask_iou  # noqa: E402
from napari_sam2_webgpu.predictor import Sam2Predictor  # noqa: E402


def _weight_bytes(path) -> dict[str, int]:
    """Bytes of initializers and Constant tensors per numpy dtype name."""
    model = onnx.load(str(path))
    tensors = list(model.graph.initializer)
    tensors += [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute]
    out: dict[str, int] = {}
    for t in tensors:
        if t.ByteSize() == 0:
            continue
        name = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name
        out[name] = out.get(name, 0) + t.ByteSize()
    return out


@pytest.fixture(scope="module")
def fp16_files(micro_model_files, tmp_path_factory):
    model, _ = micro_model_files
    return export_onnx(
        model, tmp_path_factory.mktemp("fp16"), name="micro.fp16", size="micro", fp16=True
    )


def test_fp16_files_are_about_half(micro_model_files, fp16_files):
    _, fp32 = micro_model_files
    assert fp16_files.fp16 and not fp32.fp16
    assert fp16_files.encoder.name == "micro.fp16.encoder.onnx"
    for path16, path32 in ((fp16_files.encoder, fp32.encoder), (fp16_files.decoder, fp32.decoder)):
        w16, w32 = _weight_bytes(path16), _weight_bytes(path32)
        # Every float weight became float16 and takes half the bytes, except the few feeding
        # operators kept in float32 (Hiera's position embedding, the input of its Resize).
        kept = w16.get("float32", 0)
        assert kept < 0.01 * w32["float32"], w16
        assert w16["float16"] == pytest.approx((w32["float32"] - kept) / 2, rel=0.01)
    size16 = fp16_files.encoder.stat().st_size + fp16_files.decoder.stat().st_size
    size32 = fp32.encoder.stat().st_size + fp32.decoder.stat().st_size
    # The micro encoder is mostly graph, not weights, so the pair is a little over half.
    assert 0.45 < size16 / size32 < 0.6, (size16, size32)


def test_fp16_keeps_float32_inputs_and_outputs(fp16_files):
    for path in (fp16_files.encoder, fp16_files.decoder):
        graph = onnx.load(str(path)).graph
        for value in [*graph.input, *graph.output]:
            assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT, value.name


def test_fp16_masks_agree_with_fp32_on_cpu(micro_model_files, micro_predictor, fp16_files):
    half = Sam2Predictor.from_files(fp16_files.encoder, fp16_files.decoder, backend="cpu")
    image = blob_image(200, 300, seed=4)
    micro_predictor.set_image(image)
    half.set_image(image)
    emb32, emb16 = micro_predictor.embedding.image_embed, half.embedding.image_embed
    rel = float(np.max(np.abs(emb16 - emb32)) / np.max(np.abs(emb32)))
    assert rel < 0.01, rel  # measured 8e-4 on the micro model
    prompts = [
        dict(point_coords=[[120.0, 90.0]], point_labels=[1]),
        dict(box=[40.0, 30.0, 200.0, 170.0]),
    ]
    for prompt in prompts:
        masks32, scores32, _ = micro_predictor.predict(**prompt)
        masks16, scores16, _ = half.predict(**prompt)
        ious = [mask_iou(masks16[k], masks32[k]) for k in range(3)]
        assert min(ious) >= 0.95, (prompt, ious)  # measured >= 0.996
        np.testing.assert_allclose(scores16, scores32, atol=5e-3)  # measured 2e-4
        # The comparison has teeth: the masks are not empty or full.
        fractions = masks32.reshape(3, -1).mean(axis=1)
        assert np.any((fractions > 0.01) & (fractions < 0.99)), fractions


def test_metadata(micro_model_files, fp16_files):
    _, fp32 = micro_model_files
    for files, fp16 in ((fp32, "False"), (fp16_files, "True")):
        for path in (files.encoder, files.decoder):
            props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
            assert props["producer"] == "napari-sam2-webgpu"
            assert props["model_size"] == "micro"
            assert props["image_size"] == "1024"
            assert float(props["stability_delta"]) == pytest.approx(0.05)
            assert float(props["stability_thresh"]) == pytest.approx(0.98)
            assert props["fp16_weights"] == fp16


def test_metadata_reaches_the_predictor(micro_predictor):
    assert micro_predictor._stability_delta == pytest.approx(0.05)
    assert micro_predictor._stability_thresh == pytest.approx(0.98)


# -- interrupted exports --------------------------------------------------------------------


def _tiny_onnx_bytes() -> bytes:
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _fake_export(fail_on_call: int, error: BaseException):
    """A torch.onnx.export that writes a valid file, and on call ``fail_on_call`` half a file."""
    calls = []

    def export(module, args, f, **kwargs):
        calls.append(f)
        if len(calls) == fail_on_call:
            with open(f, "wb") as fh:
                fh.write(_tiny_onnx_bytes()[:10])
            raise error
        with open(f, "wb") as fh:
            fh.write(_tiny_onnx_bytes())

    return export, calls


def test_interrupted_export_leaves_no_file(micro_model_files, tmp_path, monkeypatch):
    import torch

    model, _ = micro_model_files
    fake, calls = _fake_export(1, RuntimeError("exporter crashed"))
    monkeypatch.setattr(torch.onnx, "export", fake)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_onnx(model, tmp_path, name="broken", size="micro")
    assert len(calls) == 1  # the fake was really used, and wrote half a file
    assert list(tmp_path.iterdir()) == []  # no .onnx, no .part


def test_export_interrupted_at_the_decoder_keeps_the_previous_pair(
    micro_model_files, tmp_path, monkeypatch
):
    # The encoder was complete when the decoder failed: it must not replace the old encoder
    # (that would pair a new encoder with an old decoder), nor be left alone.
    import torch

    model, _ = micro_model_files
    enc, dec = tmp_path / "m.encoder.onnx", tmp_path / "m.decoder.onnx"
    enc.write_bytes(b"old encoder")
    dec.write_bytes(b"old decoder")
    fake, calls = _fake_export(2, KeyboardInterrupt())
    monkeypatch.setattr(torch.onnx, "export", fake)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(model, tmp_path, name="m", size="micro")
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.decoder.onnx", "m.encoder.onnx"]
    assert enc.read_bytes() == b"old encoder"
    assert dec.read_bytes() == b"old decoder"


# -- video components -------------------------------------------------------------------------


def test_memory_attention_wrapper_matches_the_official_module(micro_model_files):
    """The exported (real-valued RoPE) memory attention equals SAM2's on the same inputs."""
    import torch
    from sam2.modeling.sam2_utils import get_1d_sine_pe

    from napari_sam2_webgpu import video_export as vx

    model, _ = micro_model_files
    feat_pos, maskmem_pos = vx.positional_encodings(model)
    ours = vx.MemoryAttentionExport(model, feat_pos, maskmem_pos).eval()
    gen = torch.Generator().manual_seed(0)
    embed = torch.randn(1, 256, 64, 64, generator=gen)
    memory = torch.randn(3, 64, 64, 64, generator=gen)
    tpos = torch.tensor([6, 0, 5])
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

    from napari_sam2_webgpu import video_export as vx

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
        "memory_tpos": np.array([6, 0]),
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
    assert config["num_maskmem"] == 7 and config["max_obj_ptrs_in_encoder"] == 16
    assert config["binarize_mask_from_pts_for_mem_enc"] is True


# -- argument errors ------------------------------------------------------------------------


def test_missing_checkpoint(tmp_path):
    missing = tmp_path / "sam2.1_hiera_tiny.pt"
    with pytest.raises(FileNotFoundError, match="Checkpoint not found: .*sam2.1_hiera_tiny.pt"):
        build_sam2_model("micro", missing)
    with pytest.raises(FileNotFoundError, match="Checkpoint not found"):
        export_checkpoint("tiny", tmp_path / "out", checkpoint=missing)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unknown_size(tmp_path):
    with pytest.raises(ValueError, match="Unknown model size 'huge'.*tiny"):
        build_sam2_model("huge")
    with pytest.raises(ValueError, match="Unknown model size 'huge'"):
        export_checkpoint("huge", tmp_path)


def test_fp16_keeps_resize_in_float32(fp16_files):
    # Hiera's bicubic Resize fails in fp16 on the WebGPU EP: it must stay in float32.
    graph = onnx.load(str(fp16_files.encoder)).graph
    producers = {out: node for node in graph.node for out in node.output}
    initializers = {init.name: init for init in graph.initializer}
    resizes = [node for node in graph.node if node.op_type == "Resize"]
    assert resizes, "the encoder has no Resize node any more: revisit FP16_KEEP_FP32_OPS"
    for node in resizes:
        data = node.input[0]
        if data in initializers:
            assert initializers[data].data_type == onnx.TensorProto.FLOAT, node.name
            continue
        feeder = producers[data]
        assert feeder.op_type == "Cast", node.name
        to = next(a.i for a in feeder.attribute if a.name == "to")
        assert to == onnx.TensorProto.FLOAT, node.name


def test_memory_attention_stores_each_constant_once(micro_model_files):
    """The rotary tables are shared initializers, not a constant copied at every use."""
    _, files = micro_model_files
    graph = onnx.load(str(files.memory_attention)).graph
    big = [i.dims for i in graph.initializer if np.prod(i.dims) >= 4096 * 128]
    big += [
        a.t.dims
        for n in graph.node
        if n.op_type == "Constant"
        for a in n.attribute
        if np.prod(a.t.dims) >= 4096 * 128
    ]
    tables = [d for d in big if list(d) == [4096, 128]]
    assert len(tables) == 2, f"rotary cos/sin tables stored {len(tables)} times"
    assert files.memory_attention.stat().st_size < 20 * 2**20
