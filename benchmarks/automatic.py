"""Segment everything: our AutomaticMaskGenerator against the official SAM2AutomaticMaskGenerator.

Both run on identical random weights (a seeded ``tiny`` model built with torch, its checkpoint
built into ONNX from the packaged templates without torch) on the same synthetic image of many
small bright objects, with the same parameters. Ours runs on ``--backend`` (webgpu on the GPU
machine, cpu here), the official one on ``--torch`` (cuda or cpu, fp32). Each row is the median
of ``--repeats`` runs after one warm-up run, image encoding included (the whole job a user
waits for). Peak memory is the resident set of a fresh process that segments one image of
``--memory-side`` with ours (``VmHWM``, Linux).

    python benchmarks/automatic.py --sides 1024 2048 --backend webgpu --torch cuda
    python benchmarks/automatic.py --sides 1024 --backend cpu --torch cpu --points-per-side 16

Prints a Markdown table (and writes it to ``--out``); nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import random_model


def objects_image(side: int, seed: int = 0) -> np.ndarray:
    """uint8 ``side`` x ``side``: a textured background with ~side/16 small bright discs."""
    rng = np.random.default_rng(seed)
    image = rng.normal(30, 6, (side, side))
    yy, xx = np.mgrid[:side, :side]
    for _ in range(side // 16):
        cy, cx = rng.uniform(0, side, 2)
        r = rng.uniform(0.006, 0.02) * side
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] += rng.uniform(80, 180)
    return np.clip(image, 0, 255).astype(np.uint8)


def _median_ms(run, repeats: int) -> tuple[float, int]:
    run()  # warm-up: shader compilation, allocator growth
    times, count = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = len(run())
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times), count


def _params(args: argparse.Namespace) -> dict:
    return dict(
        points_per_side=args.points_per_side,
        points_per_batch=args.points_per_batch,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
    )


MEMORY_CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[4])
from automatic import objects_image
from napari_sam2_webgpu import Sam2Predictor
from napari_sam2_webgpu.image.automatic import segment_all
encoder, decoder, backend, _, side, params = sys.argv[1:7]
predictor = Sam2Predictor.from_files(encoder, decoder, backend)
image = objects_image(int(side))

def high_water_mb():
    # VmHWM belongs to this process image (ru_maxrss would carry the parent's peak over exec).
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024

before = high_water_mb()
labels, records = segment_all(predictor, image, **json.loads(params))
print(json.dumps({"before_mb": before, "peak_mb": high_water_mb(), "masks": len(records)}))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--sides", nargs="+", type=int, default=[1024, 2048])
    parser.add_argument("--backend", default="webgpu", help="ours: webgpu, cpu or auto")
    parser.add_argument("--torch", default="cuda", help="the official generator's device")
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--points-per-batch", type=int, default=64)
    parser.add_argument("--pred-iou-thresh", type=float, default=0.8)
    parser.add_argument("--stability-score-thresh", type=float, default=0.95)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decoder-batch", type=int, help="ours: points per decoder run")
    parser.add_argument("--memory-side", type=int, default=4096, help="0: skip")
    parser.add_argument("--out", help="also write the table here")
    args = parser.parse_args(argv)

    import torch
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from napari_sam2_webgpu import Sam2Predictor
    from napari_sam2_webgpu.image.automatic import AutomaticMaskGenerator

    params = _params(args)
    tmp = tempfile.TemporaryDirectory()
    model, paths = random_model(args.size, tmp.name, keep=True)
    ours = AutomaticMaskGenerator(
        Sam2Predictor.from_files(paths.encoder, paths.decoder, args.backend),
        decoder_batch=args.decoder_batch,
        **params,
    )
    backend = ours.predictor.backend_info.describe()
    model = model.to(args.torch).eval()
    official = SAM2AutomaticMaskGenerator(model, **params)

    lines = [
        f"`python benchmarks/automatic.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        f"{args.size}, points_per_side {args.points_per_side}, points_per_batch "
        f"{args.points_per_batch}; ours on {backend}, official on torch {args.torch} fp32 "
        f"(torch {torch.__version__}).",
        "",
        "| image | ours ms | masks | official ms | masks | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for side in args.sides:
        image = objects_image(side)
        rgb = np.repeat(image[..., None], 3, axis=-1)
        ours_ms, ours_n = _median_ms(lambda image=image: ours.generate(image), args.repeats)

        def run_official(rgb=rgb):
            with torch.inference_mode():
                out = official.generate(rgb)
            if args.torch == "cuda":
                torch.cuda.synchronize()
            return out

        ref_ms, ref_n = _median_ms(run_official, args.repeats)
        lines.append(
            f"| {side}² | {ours_ms:.0f} | {ours_n} | {ref_ms:.0f} | {ref_n} |"
            f" {ours_ms / ref_ms:.2f}x |"
        )
        print(lines[-1], flush=True)
    if args.memory_side:
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                MEMORY_CHILD,
                str(paths.encoder),
                str(paths.decoder),
                args.backend,
                str(Path(__file__).parent),
                str(args.memory_side),
                json.dumps(params),
            ],
            capture_output=True,
            text=True,
        )
        if child.returncode == 0:
            mem = json.loads(child.stdout.strip().splitlines()[-1])
            lines += [
                "",
                f"Peak memory, ours, one {args.memory_side}² image: {mem['peak_mb']:.0f} MB "
                f"resident ({mem['before_mb']:.0f} MB after loading the model; "
                f"{mem['masks']} masks).",
            ]
        else:
            lines += ["", f"Memory run failed: {child.stderr.strip().splitlines()[-1:]}"]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        Path(args.out).write_text(table, encoding="utf-8")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
