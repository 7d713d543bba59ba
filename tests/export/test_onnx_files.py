"""Writing ONNX files (``napari_sam2_webgpu.export.onnx_files``): fp16 weights and atomic writes."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("sam2")
onnx = pytest.importorskip("onnx")

from napari_sam2_webgpu.export import export_onnx  # noqa: E402
from napari_sam2_webgpu.export.onnx_files import replaced_together  # noqa: E402

# -- replacing files together (no torch needed) ----------------------------------------------


def test_replaced_together_moves_every_part_into_place(tmp_path):
    targets = [tmp_path / "a.onnx", tmp_path / "b.onnx"]
    targets[0].write_bytes(b"old a")
    with replaced_together(targets) as parts:
        assert [p.name for p in parts] == ["a.onnx.part", "b.onnx.part"]
        for part in parts:
            part.write_bytes(b"new " + part.name.encode())
    assert [t.read_bytes() for t in targets] == [b"new a.onnx.part", b"new b.onnx.part"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx"]


def test_replaced_together_keeps_the_old_files_on_error(tmp_path):
    targets = [tmp_path / "a.onnx", tmp_path / "b.onnx"]
    targets[0].write_bytes(b"old a")
    with pytest.raises(RuntimeError), replaced_together(targets) as parts:
        parts[0].write_bytes(b"new a")
        raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]
    assert targets[0].read_bytes() == b"old a"


# -- float16 weights ---------------------------------------------------------------------------


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


# -- interrupted exports -------------------------------------------------------------------


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
