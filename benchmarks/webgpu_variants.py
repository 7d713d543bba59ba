"""Measure WebGPU EP variants one by one: layout, fp16 weights, device-resident embeddings
(IO binding), graph capture, decoder provider, and where the encoder's time goes.

    python benchmarks/webgpu_variants.py --sizes tiny large --out variants.md

Runs on a machine where the WebGPU EP has a device. Each variant prints its median (min–max)
over --repeats runs after 3 warm-ups; fp16 variants also print agreement with the fp32 CPU path.
"""

# ruff: noqa: B023  (every lambda is called inside its own loop iteration)
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import traceback
from collections import defaultdict
from pathlib import Path

import numpy as np
import torchvision.ops  # noqa: F401  (Triton before any Mesa LLVM; see tests/conftest.py)

from napari_sam2_webgpu.benchmark import test_image, time_calls
from napari_sam2_webgpu.export import build_sam2_model, export_onnx
from napari_sam2_webgpu.postprocess import logits_to_masks, mask_iou, to_model_coords
from napari_sam2_webgpu.preprocess import prepare_image

LINES: list[str] = []


def say(text: str) -> None:
    print(text, flush=True)
    LINES.append(text)


def webgpu_session(ort, dev, path, options=None, profile=None):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = profile
    so.add_provider_for_devices([dev], options or {})
    return ort.InferenceSession(str(path), sess_options=so)


def cpu_session(ort, path):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def decoder_feeds(embed, f0, f1, hw):
    coords = to_model_coords(np.array([[[0.3 * hw[1], 0.4 * hw[0]]]]), hw)
    return {
        "image_embed": embed,
        "high_res_feats_0": f0,
        "high_res_feats_1": f1,
        "point_coords": coords.astype(np.float32),
        "point_labels": np.ones((1, 1), np.float32),
        "mask_input": np.zeros((1, 1, 256, 256), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
    }


def try_variant(name, fn):
    try:
        result = fn()
        say(f"| {name} | {result} |")
    except Exception as exc:  # a variant that does not work is a finding, not a crash
        say(f"| {name} | FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:200]} |")
        traceback.print_exc()


def profile_summary(path: str, runs: int, top: int = 12) -> list[str]:
    events = json.loads(Path(path).read_text())
    by_op: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for ev in events:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            op = ev.get("args", {}).get("op_name", "?")
            provider = ev.get("args", {}).get("provider", "?").replace("ExecutionProvider", "")
            by_op[f"{op} ({provider})"] += ev["dur"] / 1e3
            count[f"{op} ({provider})"] += 1
    total = sum(by_op.values())
    rows = sorted(by_op.items(), key=lambda kv: -kv[1])[:top]
    return [
        f"| {op} | {ms / runs:.2f} | {100 * ms / total:.1f}% | {count[op] // runs} |"
        for op, ms in rows
    ]


def fp16_variants(ort, dev, fp32, variants, args) -> None:
    """Speed and agreement with the fp32 CPU path of fp16 encoders, each in a fresh session."""
    image = test_image(1024)
    tensor = prepare_image(image)
    hw = image.shape[:2]
    cpu_enc, cpu_dec = cpu_session(ort, fp32.encoder), cpu_session(ort, fp32.decoder)
    ref = cpu_enc.run(None, {"image": tensor})
    prompts = [(0.3, 0.4), (0.6, 0.7), (0.5, 0.2), (0.8, 0.8), (0.2, 0.6)]
    enc32 = webgpu_session(ort, dev, fp32.encoder)
    try_variant(
        "encoder fp32",
        lambda: time_calls(lambda: enc32.run(None, {"image": tensor}), args.repeats, 3),
    )
    for label, files in variants.items():
        enc = webgpu_session(ort, dev, files.encoder)
        try_variant(
            f"encoder fp16 ({label} in fp32)",
            lambda enc=enc: time_calls(lambda: enc.run(None, {"image": tensor}), args.repeats, 3),
        )

        def parity(enc=enc):
            out = enc.run(None, {"image": tensor})
            rel = max(
                float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))
                for a, b in zip(out, ref, strict=True)
            )
            ious = []
            for fx, fy in prompts:
                feeds = decoder_feeds(ref[2], ref[0], ref[1], hw)
                coords = to_model_coords(np.array([[[fx * hw[1], fy * hw[0]]]]), hw)
                feeds["point_coords"] = coords.astype(np.float32)
                want = logits_to_masks(cpu_dec.run(None, feeds)[0][0], hw)
                feeds.update(image_embed=out[2], high_res_feats_0=out[0], high_res_feats_1=out[1])
                got = logits_to_masks(cpu_dec.run(None, feeds)[0][0], hw)
                ious += [mask_iou(g, w) for g, w in zip(got, want, strict=True)]
            return (
                f"features max rel err {rel:.2e}; mask IoU over {len(ious)} masks: "
                f"min {min(ious):.4f}, median {np.median(ious):.4f}"
            )

        try_variant(f"fp16 ({label} in fp32) vs CPU fp32", parity)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", default=["tiny"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out")
    parser.add_argument(
        "--fp16-only",
        action="store_true",
        help="only the fp16 variants (Resize kept in fp32; and also LayerNorm/Softmax)",
    )
    parser.add_argument(
        "--smoke-cpu", action="store_true", help="use the CPU EP device (checks the script only)"
    )
    args = parser.parse_args(argv)

    import onnxruntime as ort

    from napari_sam2_webgpu.runtime import webgpu_ep_device

    dev = (
        next(d for d in ort.get_ep_devices() if d.ep_name == "CPUExecutionProvider")
        if args.smoke_cpu
        else webgpu_ep_device()
    )
    mem = None
    try:
        mem = dev.memory_info(ort.OrtDeviceMemoryType.DEFAULT)
    except Exception as exc:
        say(f"no device memory info: {exc}")
    say(f"onnxruntime {ort.__version__}; device memory info: {mem}")
    tmp = Path(tempfile.mkdtemp())
    image = test_image(1024)
    tensor = prepare_image(image)
    hw = image.shape[:2]

    for size in args.sizes:
        model = build_sam2_model(size, seed=0)
        fp32 = export_onnx(model, tmp, name=f"{size}", size=size)
        fp16 = export_onnx(model, tmp, name=f"{size}.fp16", size=size, fp16=True)
        say(f"\n### {size}\n\n| variant | median ms (min–max) / result |\n| --- | --- |")
        if args.fp16_only:
            keep = ("Resize", "LayerNormalization", "Softmax")
            fp16b = export_onnx(
                model, tmp, name=f"{size}.fp16b", size=size, fp16=True, fp32_ops=keep
            )
            fp16_variants(ort, dev, fp32, {"Resize": fp16, "+LayerNorm,Softmax": fp16b}, args)
            continue
        del model

        cpu_enc, cpu_dec = cpu_session(ort, fp32.encoder), cpu_session(ort, fp32.decoder)
        ref = cpu_enc.run(None, {"image": tensor})
        ref_feeds = decoder_feeds(ref[2], ref[0], ref[1], hw)
        ref_out = cpu_dec.run(None, ref_feeds)
        ref_masks = logits_to_masks(ref_out[0][0], hw)

        enc = webgpu_session(ort, dev, fp32.encoder)
        try_variant(
            "encoder fp32 (default options)",
            lambda: time_calls(lambda: enc.run(None, {"image": tensor}), args.repeats, 3),
        )
        for layout in ("NCHW", "NHWC"):
            s = webgpu_session(ort, dev, fp32.encoder, {"preferredLayout": layout})
            try_variant(
                f"encoder fp32 preferredLayout={layout}",
                lambda s=s: time_calls(lambda: s.run(None, {"image": tensor}), args.repeats, 3),
            )
            del s

        fp16_variants(ort, dev, fp32, {"Resize": fp16}, args)

        # Embeddings kept on the GPU: encoder outputs bound to device memory, decoder reads them.
        def device_resident():
            if mem is None:
                raise RuntimeError("no device memory info")
            outs = {
                "high_res_feats_0": (1, 32, 256, 256),
                "high_res_feats_1": (1, 64, 128, 128),
                "image_embed": (1, 256, 64, 64),
            }
            values = {
                k: ort.OrtValue.ortvalue_from_shape_and_type(list(v), np.float32, memory_info=mem)
                for k, v in outs.items()
            }
            io = enc.io_binding()
            io.bind_cpu_input("image", tensor)
            for k, v in values.items():
                io.bind_ortvalue_output(k, v)
            enc_t = time_calls(
                lambda: (enc.run_with_iobinding(io), io.synchronize_outputs()), args.repeats, 3
            )
            dec = webgpu_session(ort, dev, fp32.decoder)
            dio = dec.io_binding()
            feeds = decoder_feeds(None, None, None, hw)
            for k, v in values.items():
                dio.bind_ortvalue_input(k, v)
            for k in ("point_coords", "point_labels", "mask_input", "has_mask_input"):
                dio.bind_cpu_input(k, feeds[k])
            for o in dec.get_outputs():
                dio.bind_output(o.name, "cpu")

            def run_dec():
                dec.run_with_iobinding(dio)
                return dio.copy_outputs_to_cpu()

            dec_t = time_calls(run_dec, args.repeats, 3)
            got = run_dec()
            masks = logits_to_masks(got[0][0], hw)
            worst = min(mask_iou(m, r) for m, r in zip(masks, ref_masks, strict=True))
            return (
                f"encode (outputs stay on GPU) {enc_t}; decode reading GPU embeddings {dec_t}; "
                f"masks IoU vs CPU min {worst:.5f}"
            )

        try_variant("device-resident embeddings (IO binding)", device_resident)

        def graph_capture():
            if mem is None:
                raise RuntimeError("no device memory info")
            s = webgpu_session(ort, dev, fp32.encoder, {"enableGraphCapture": "1"})
            x = ort.OrtValue.ortvalue_from_shape_and_type(
                [1, 3, 1024, 1024], np.float32, memory_info=mem
            )
            ort.copy_tensors([ort.OrtValue.ortvalue_from_numpy(tensor)], [x], None)
            io = s.io_binding()
            io.bind_ortvalue_input("image", x)
            for o, shape in zip(
                ("high_res_feats_0", "high_res_feats_1", "image_embed"),
                ((1, 32, 256, 256), (1, 64, 128, 128), (1, 256, 64, 64)),
                strict=True,
            ):
                io.bind_ortvalue_output(
                    o,
                    ort.OrtValue.ortvalue_from_shape_and_type(
                        list(shape), np.float32, memory_info=mem
                    ),
                )
            return time_calls(
                lambda: (s.run_with_iobinding(io), io.synchronize_outputs()), args.repeats, 3
            )

        try_variant("encoder fp32 graph capture (IO bound, on device)", graph_capture)

        dec_gpu = webgpu_session(ort, dev, fp32.decoder)
        try_variant(
            "decoder fp32 WebGPU (numpy in/out)",
            lambda: time_calls(lambda: dec_gpu.run(None, ref_feeds), args.repeats, 3),
        )
        try_variant(
            "decoder fp32 CPU EP",
            lambda: time_calls(lambda: cpu_dec.run(None, ref_feeds), args.repeats, 3),
        )
        dec16 = webgpu_session(ort, dev, fp16.decoder)
        try_variant(
            "decoder fp16 WebGPU",
            lambda: time_calls(lambda: dec16.run(None, ref_feeds), args.repeats, 3),
        )
        try_variant(
            "postprocess 3 masks to 2048² (numpy)",
            lambda: time_calls(
                lambda: logits_to_masks(ref_out[0][0], (2048, 2048)), args.repeats, 1
            ),
        )
        try_variant(
            "postprocess best mask to 2048² (numpy)",
            lambda: time_calls(
                lambda: logits_to_masks(ref_out[0][0][:1], (2048, 2048)), args.repeats, 1
            ),
        )

        prof = webgpu_session(ort, dev, fp32.encoder, profile=str(tmp / f"prof_{size}"))
        for _ in range(4):
            prof.run(None, {"image": tensor})
        path = prof.end_profiling()
        say(
            f"\nencoder {size} fp32 on WebGPU, host-side time per op type per run (ORT profiler):\n"
        )
        say("| op (provider) | ms/run | share | nodes |\n| --- | --- | --- | --- |")
        for row in profile_summary(path, runs=4):
            say(row)

    if args.out:
        Path(args.out).write_text("\n".join(LINES) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
