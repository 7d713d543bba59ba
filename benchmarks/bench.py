"""Benchmark every inference path on one machine, with identical random weights.

Paths: ONNX Runtime WebGPU EP and CPU EP (this plugin), and as references the official PyTorch
``SAM2ImagePredictor`` on CUDA (fp32 and bf16 autocast) and on the CPU. The SAM2.1 models are
built here with random weights (seeded) and exported with this plugin's own exporter, so every
path computes the same function.

    python benchmarks/bench.py --sizes tiny large --out results.md

Needs the ``export`` extra (torch, sam2). Prints Markdown tables; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_sam2_webgpu.benchmark import (
    PathResult,
    format_parity,
    format_table,
    gpu_memory_used_mb,
    measure_path,
    peak_rss_mb,
    rss_mb,
    test_image,
    time_calls,
)


def _torch_path(model, device: str, bf16: bool, repeats: int, sides, name: str) -> PathResult:
    """Time the official predictor on ``device`` (``cuda`` or ``cpu``)."""
    import torch
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    gpu_before = gpu_memory_used_mb()
    start = time.perf_counter()
    model = model.to(device)
    predictor = SAM2ImagePredictor(model)
    sync()
    session_ms = (time.perf_counter() - start) * 1e3
    autocast = torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    point = {"point_coords": np.array([[300.0, 420.0]]), "point_labels": np.array([1])}

    def encode(image):
        with torch.inference_mode(), autocast:
            predictor.set_image(image)
        sync()

    def predict(prompt):
        with torch.inference_mode(), autocast:
            out = predictor.predict(**prompt)
        sync()
        return out

    image = test_image(1024)
    enc = time_calls(lambda: encode(image), repeats)
    dec = time_calls(lambda: predict(point), repeats)
    first = time_calls(lambda: (encode(image), predict(point)), repeats)
    masks = predict(point)[0].astype(bool)
    embedding = predictor._features["image_embed"].float().cpu().numpy()
    click = {}
    for side in sides:
        big = test_image(side)
        encode(big)
        scale = side / 1024
        prompt = {
            "point_coords": np.array([[300.0 * scale, 420.0 * scale]]),
            "point_labels": np.array([1]),
        }
        click[side] = time_calls(lambda p=prompt: predict(p), max(3, repeats // 2))
    label = f"torch-{device}-{'bf16' if bf16 else 'fp32'}"
    dev_name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    model.to("cpu")
    return PathResult(
        model=name,
        backend=label,
        device=dev_name,
        session_ms=session_ms,
        encode=enc,
        decode=dec,
        first_mask=first,
        click_to_mask=click,
        rss_mb=rss_mb(),
        gpu_mb=gpu_memory_used_mb() - gpu_before,
        masks=masks,
        embedding=embedding,
    )


def _ratios(results: list[PathResult]) -> str:
    lines = []
    for r in results:
        ref = next(
            (x for x in results if x.model == r.model and x.backend == "torch-cuda-fp32"), None
        )
        if ref is None or r is ref:
            continue
        lines.append(
            f"- {r.model} {r.backend}: encode {r.encode.median / ref.encode.median:.2f}x, "
            f"decode {r.decode.median / ref.decode.median:.2f}x of torch-cuda-fp32"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny"])
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["webgpu", "webgpu-plain", "webgpu-fp16", "cpu"],
        help="webgpu (all speed-ups), webgpu-plain (none), webgpu-fp16, cpu",
    )
    parser.add_argument(
        "--torch",
        nargs="*",
        default=["cuda-fp32", "cuda-bf16", "cpu-fp32"],
        help="PyTorch reference paths (skipped when CUDA is absent)",
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--cpu-repeats", type=int, default=3, help="repeats for CPU paths")
    parser.add_argument("--image-sides", type=int, nargs="+", default=[1024, 2048, 8192])
    parser.add_argument("--model-dir", help="keep exported models here (default: temp dir)")
    parser.add_argument("--out", help="also write the tables to this file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    import torchvision.ops  # noqa: F401  (loads Triton before any Mesa LLVM: see tests/conftest.py)

    from napari_sam2_webgpu import __version__
    from napari_sam2_webgpu.export import build_sam2_model, export_onnx
    from napari_sam2_webgpu.runtime import WebGPUUnavailableError, resolve_backend

    results: list[PathResult] = []
    tmp = tempfile.TemporaryDirectory()
    model_dir = Path(args.model_dir or tmp.name)
    for size in args.sizes:
        model = build_sam2_model(size, seed=args.seed)
        t0 = time.perf_counter()
        files = export_onnx(model, model_dir, name=f"sam2.1_hiera_{size}", size=size)
        print(f"exported {size} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        fp16 = None
        if "webgpu-fp16" in args.backends:
            fp16 = export_onnx(
                model, model_dir, name=f"sam2.1_hiera_{size}.fp16", size=size, fp16=True
            )
        for label in args.backends:
            backend, _, variant = label.partition("-")
            try:
                resolve_backend(backend)
            except WebGPUUnavailableError as exc:
                print(f"skipping {label}: {exc}", file=sys.stderr)
                continue
            pair = fp16 if variant == "fp16" else files
            # "webgpu-plain": before the speed-ups (host round trip per click, no graph capture).
            options = (
                {"device_resident": False, "graph_capture": False} if variant == "plain" else {}
            )
            repeats = args.cpu_repeats if backend == "cpu" else args.repeats
            results.append(
                measure_path(
                    pair.encoder,
                    pair.decoder,
                    backend,
                    name=size,
                    repeats=repeats,
                    image_sides=args.image_sides,
                    label=label,
                    **options,
                )
            )
            print(f"measured {size} {label}", file=sys.stderr)
        for path in args.torch:
            device, precision = path.split("-")
            if device == "cuda" and not torch.cuda.is_available():
                continue
            repeats = args.cpu_repeats if device == "cpu" else args.repeats
            results.append(
                _torch_path(model, device, precision == "bf16", repeats, args.image_sides, size)
            )
            print(f"measured {size} torch {path}", file=sys.stderr)
    lines = [
        f"napari-sam2-webgpu {__version__}; auto backend: {resolve_backend('auto').describe()}",
        f"torch {torch.__version__}"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
        f"medians (min–max) in ms; GPU paths {args.repeats} runs, CPU paths "
        f"{args.cpu_repeats} runs, after 2 warm-ups. decode = decoder only (ORT) or "
        "predict() at 1024² (torch); image→mask = set_image + predict at 1024²; "
        "click→mask = predict() incl. upsampling to the image size",
        "",
        format_table(results, args.image_sides),
        "",
        "Agreement with the ONNX Runtime CPU path:",
        format_parity(results) or "(none)",
        "",
        "Ratios to PyTorch CUDA fp32:",
        _ratios(results) or "(no CUDA reference)",
        "",
        f"peak RSS of the process: {peak_rss_mb():.0f} MB",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
