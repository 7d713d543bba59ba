"""Frames per second of mask propagation: this plugin (WebGPU EP, CPU EP) against the official
PyTorch ``SAM2VideoPredictor`` (CUDA fp32 and bf16 autocast), with identical random weights.

One object is prompted with a point on frame 0 of a synthetic stack (a bright ellipse that moves
and changes shape, 1024 x 1024 frames) and tracked forward through every frame; with
``--objects N``, N objects (one point each, along a row) are tracked together. Two rates are
printed per path:

- *end to end*: ``propagate`` including encoding each frame (what a first run costs);
- *tracking*: the same with every frame already encoded (what a propagate-again after a
  correction costs: the plugin keeps embeddings; the official predictor re-encodes).

The masks of every path are compared with the official fp32 path (per-frame IoU).

    python benchmarks/propagation.py --sizes tiny large --frames 30 --out propagation.md
    python benchmarks/propagation.py --sizes tiny --objects 4 --out multi_object.md
    python benchmarks/propagation.py --sizes tiny --torch --pipelines default host

Needs the ``export`` extra (torch, sam2). Prints Markdown; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from napari_sam2_webgpu.postprocess import mask_iou
from napari_sam2_webgpu.runtime import PROVIDERS


def synthetic_stack(num_frames: int, side: int = 1024, seed: int = 0) -> np.ndarray:
    """uint8 RGB frames: an ellipse moving right and down, growing and flattening."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    frames = np.empty((num_frames, side, side, 3), np.uint8)
    for t in range(num_frames):
        img = rng.normal(40, 8, (side, side))
        frac = t / max(num_frames - 1, 1)
        cy, cx = side * (0.3 + 0.3 * frac), side * (0.25 + 0.4 * frac)
        ry, rx = side * 0.1 * (1 + 0.5 * frac), side * 0.12 * (1 - 0.3 * frac)
        img[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] += 150
        gray = np.clip(img, 0, 255).astype(np.uint8)
        frames[t] = gray[..., None]
    return frames


#: Objects prompted (``--objects``); one point each, on frame 0.
OBJECTS = 1


def _prompts(side: int) -> dict[int, tuple[list[list[float]], list[int]]]:
    """Object id -> its one positive point: the ellipse first, then along the same row."""
    return {k + 1: ([[side * (0.25 + 0.15 * k), side * 0.3]], [1]) for k in range(OBJECTS)}


#: How the plugin's propagation is scheduled (``--pipelines``), and its row label.
PIPELINES = {
    "default": "",
    "host-bank": ", memory bank stacked on the host",
    "host-masks": ", tracked masks upsampled on the host",
    "host": ", memory bank and masks on the host",
}


def _host_masks(state) -> None:
    """Upsample a tracked frame's masks on the host (the variant before issue 13, round four)."""
    from napari_sam2_webgpu.image.postprocess import logits_to_masks

    state.mask_of = lambda result: logits_to_masks(result.low_res[0], state.frame_hw)[0]


def run_ours(files, backend: str, frames: np.ndarray, pipeline: str = "default") -> dict:
    from napari_sam2_webgpu.video import Sam2Propagator

    start = time.perf_counter()
    # No hole filling: the official predictor skips it without its CUDA extension (not built
    # here), and the paths should compute the same thing.
    video = Sam2Propagator.from_files(*files, backend, fill_hole_area=0)
    load_s = time.perf_counter() - start
    if pipeline in ("host-bank", "host"):
        video.tracker.device_bank = None
    prompts = _prompts(frames.shape[1])
    state = video.init_state(frames)
    if pipeline in ("host-masks", "host"):
        _host_masks(state)
    start = time.perf_counter()
    for obj_id, (points, labels) in prompts.items():
        video.add_prompts(state, 0, obj_id, points=points, labels=labels)
    masks = {(f, o): m for f, by_obj in video.propagate(state) for o, m in by_obj.items()}
    first_s = time.perf_counter() - start
    # Again from scratch, but with every frame's embedding cached (a fresh state reading the
    # first one's): only memory attention, decoder and memory encoder run.
    cached = video.init_state(frames, embedding_provider=state.embedding)
    if pipeline in ("host-masks", "host"):
        _host_masks(cached)
    video.reset_timings()
    start = time.perf_counter()
    for obj_id, (points, labels) in prompts.items():
        video.add_prompts(cached, 0, obj_id, points=points, labels=labels)
    again = {(f, o): m for f, by_obj in video.propagate(cached) for o, m in by_obj.items()}
    again_s = time.perf_counter() - start
    assert all(np.array_equal(masks[f], again[f]) for f in masks)
    steps = ", ".join(f"{k} {v / len(frames) * 1e3:.1f}" for k, v in video.stage_seconds.items())
    print(f"per frame while tracking (ms): {steps}", flush=True)
    return {
        "path": f"plugin, {video.backend}{PIPELINES[pipeline]}",
        "device": video.predictor.device,
        "load_s": load_s,
        "e2e_fps": len(frames) / first_s,
        "track_fps": len(frames) / again_s,
        "masks": masks,
    }


def run_official(model, size: str, frames: np.ndarray, device: str, bf16: bool) -> dict:
    import sam2.sam2_video_predictor as svp
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    from napari_sam2_webgpu.export import hydra_config
    from napari_sam2_webgpu.preprocess import prepare_image

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    start = time.perf_counter()
    config, overrides = hydra_config(size)
    ref = build_sam2_video_predictor(config, None, device=device, hydra_overrides_extra=overrides)
    ref.load_state_dict(model.state_dict())
    ref = ref.to(device).eval()
    sync()
    load_s = time.perf_counter() - start
    images = torch.from_numpy(np.concatenate([prepare_image(f) for f in frames]))

    def load_frames(video_path, image_size, offload_video_to_cpu, async_loading_frames, **kw):
        return images.to(device), frames.shape[1], frames.shape[2]

    svp.load_video_frames = load_frames  # the same pixels as ours, no JPEG round trip
    autocast = torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    prompts = _prompts(frames.shape[1])
    rates = []
    with torch.inference_mode(), autocast, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2):  # the first run includes CUDA warm-up; report the second
            state = ref.init_state("frames from load_frames")
            sync()
            start = time.perf_counter()
            for obj_id, (points, labels) in prompts.items():
                ref.add_new_points_or_box(state, 0, obj_id, points=points, labels=labels)
            masks = {
                (f, o): (logits[k, 0] > 0).float().cpu().numpy().astype(bool)
                for f, ids, logits in ref.propagate_in_video(state)
                for k, o in enumerate(ids)
            }
            sync()
            rates.append(len(frames) / (time.perf_counter() - start))
    return {
        "path": f"official PyTorch, {device} {'bf16' if bf16 else 'fp32'}",
        "device": torch.cuda.get_device_name() if device == "cuda" else "CPU",
        "load_s": load_s,
        "e2e_fps": rates[-1],
        "track_fps": float("nan"),
        "masks": masks,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny"])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--backends", nargs="+", default=["webgpu"], choices=PROVIDERS)
    parser.add_argument(
        "--torch",
        nargs="*",
        default=["cuda-fp32", "cuda-bf16"],
        choices=["cuda-fp32", "cuda-bf16", "cpu-fp32"],
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["fp32"],
        choices=["fp32", "blocks", "unchunked", "chunk512", "chunk2048", "fused", "fp16"],
        help="exports to time: fp32 (default), fp32 attending to the memory frame by frame "
        "(blocks: rope.attend_memory_blocks), fp32 attending all queries at once "
        "instead of 1,024 at a time (or 512, 2,048 at a time), fp32 with ORT's fused "
        "MultiHeadAttention in the memory attention, float16 weights",
    )
    parser.add_argument(
        "--pipelines",
        nargs="+",
        default=["default"],
        choices=list(PIPELINES),
        help="how the plugin runs a frame on a GPU: default (memory bank kept in device memory, "
        "tracked masks upsampled on the device), host-bank (the bank stacked and uploaded by "
        "the host every frame), host-masks (masks upsampled on the host), host (both)",
    )
    parser.add_argument("--objects", type=int, default=1, help="objects tracked together")
    parser.add_argument("--out", help="also write the Markdown here")
    args = parser.parse_args(argv)
    global OBJECTS
    OBJECTS = max(1, args.objects)

    import torchvision.ops  # noqa: F401  (Triton before any Mesa LLVM; see tests/conftest.py)

    from napari_sam2_webgpu.export import build_sam2_model, export_onnx, rope

    chunk, blockwise = rope.QUERY_CHUNK, rope.BLOCKWISE_MEMORY
    frames = synthetic_stack(args.frames, args.side)
    lines = [
        f"Propagation of {OBJECTS} object{'s' if OBJECTS > 1 else ''} together through "
        f"{args.frames} frames of {args.side} x {args.side} (prompt: one point per object on "
        "frame 0), random weights, identical on every path; fps counts frames (all objects).",
        "",
    ]
    for size in args.sizes:
        model = build_sam2_model(size, seed=args.seed)
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for variant in args.variants:
                rope.QUERY_CHUNK = {"unchunked": None, "chunk512": 512, "chunk2048": 2048}.get(
                    variant, chunk
                )
                rope.BLOCKWISE_MEMORY = blockwise or variant == "blocks"
                exported = export_onnx(
                    model,
                    Path(tmp) / variant,
                    name=size,
                    size=size,
                    fused_attention=variant == "fused",
                    fp16=variant == "fp16",
                )
                for backend, pipeline in itertools.product(args.backends, args.pipelines):
                    rows.append(run_ours(exported.files, backend, frames, pipeline))
                    rows[-1]["path"] += {
                        "fp32": "",
                        "blocks": ", memory attended frame by frame",
                        "unchunked": ", unchunked attention",
                        "chunk512": ", attention 512 queries at a time",
                        "chunk2048": ", attention 2,048 queries at a time",
                        "fused": ", fused attention",
                    }.get(variant, ", fp16")
                    print(f"{size} {rows[-1]['path']}: {rows[-1]['e2e_fps']:.2f} fps", flush=True)
        for spec in args.torch:
            device, precision = spec.split("-")
            rows.append(run_official(model, size, frames, device, precision == "bf16"))
            print(f"{size} {rows[-1]['path']}: {rows[-1]['e2e_fps']:.2f} fps", flush=True)
        # The official fp32 predictor, or without PyTorch references the plugin's first path.
        reference = next((r for r in rows if r["path"].endswith("fp32")), rows[0])
        lines += [
            f"### {size}",
            "",
            "| path | device | load (s) | fps end to end | fps tracking (frames encoded) "
            "| IoU vs official fp32 per frame and object (min / median) |",
            "| --- | --- | ---: | ---: | ---: | --- |",
        ]
        for row in rows:
            if reference is None or row is reference:
                parity = "reference" if row is reference else "-"
            else:
                ious = [mask_iou(row["masks"][f], reference["masks"][f]) for f in row["masks"]]
                parity = f"{min(ious):.4f} / {float(np.median(ious)):.4f}"
            track = "-" if np.isnan(row["track_fps"]) else f"{row['track_fps']:.2f}"
            lines.append(
                f"| {row['path']} | {row['device']} | {row['load_s']:.1f} | "
                f"{row['e2e_fps']:.2f} | {track} | {parity} |"
            )
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
