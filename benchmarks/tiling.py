"""Tiled embeddings: the halo's cost and reach, the resolution bound on masks, time to first
mask and peak memory on a huge slice, and precomputing a stack of large slices.

1. ``geometry`` (no model): for 1024-pixel tiles and several halos, how many tiles an image
   needs, and which share of objects of a given diameter (random places) a click at their
   centre finds whole in its tile, and segment everything finds whole in some tile (4-pixel
   margin to every cutting edge).
2. ``bound`` (no model): the best masks each scheme can give on a 4096² image of discs. SAM2's
   decoder returns 256 x 256 logits of the encoded window, upsampled to the image; an
   encoder that is perfect can at best give the disc's area fraction per logit pixel. Those
   ideal logits are upsampled and thresholded by the package's own postprocessing, and
   compared with the disc (IoU). Untiled, one logit pixel covers 16 x 16 image pixels of a
   4096² image; tiled at native scale, 4 x 4. (Real weights cannot be downloaded here; with
   random weights any IoU to ground truth is noise, so this bound is what can be measured.)
3. ``first-mask``: a synthetic uint16 slice (``--side``, default 8192), in a fresh process per
   mode: the time from having the slice to the first mask of a click, tiled (one tile
   encoded) and untiled (the slice shrunk to 1024²), and the process's peak resident memory.
4. ``precompute``: a stack of ``--frames`` slices of ``--stack-side`` pixels, stored as zarr
   (read lazily), precomputed into a tiled store: slices and tiles per second.

    python benchmarks/tiling.py geometry bound
    python benchmarks/tiling.py first-mask precompute --backend webgpu --size tiny
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_sam2_webgpu.image.tiling import TileSpec

_FIRST_MASK = r"""
import json, resource, sys, time
import numpy as np
from napari_sam2_webgpu import Sam2Predictor
from napari_sam2_webgpu.image.tiling import TileSpec
encoder, decoder, backend, side, mode = sys.argv[1:6]
side = int(side)
predictor = Sam2Predictor.from_files(encoder, decoder, backend)
predictor.warm_up()
rng = np.random.default_rng(0)
image = rng.integers(800, 1200, (side, side), dtype=np.uint16)
yy, xx = np.mgrid[:64, :64]
blob = (((yy - 32) ** 2 + (xx - 32) ** 2 < 144) * 3000).astype(np.uint16)
for cy, cx in rng.integers(64, side - 128, (400, 2)):
    image[cy:cy + 64, cx:cx + 64] += blob
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
point = [[side * 0.37, side * 0.61]]
if mode == "tiled":
    embedding = predictor.compute_tiled_embedding(image, spec=TileSpec())
else:
    embedding = predictor.compute_embedding(image)
mask, score, _ = predictor.predict_best(point_coords=point, point_labels=[1], embedding=embedding)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mib": peak / 1024, "before_mib": base / 1024,
                  "pixels": int(mask.sum())}))
"""


def geometry(halos: list[int]) -> None:
    print("## Halo: tiles per image, and objects found whole (1024-pixel tiles)\n")
    sides = (4096, 8192, 10000)
    diameters = (32, 64, 128, 192, 256, 320)
    header = ["halo"] + [f"tiles {s}²" for s in sides] + [f"d={d}" for d in diameters]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    rng = np.random.default_rng(0)
    side = 8192
    for halo in halos:
        spec = TileSpec(1024, halo)
        counts = [len(spec.layout((s, s))) for s in sides]
        layout = spec.layout((side, side))
        cells = []
        for d in diameters:
            centres = rng.uniform(d, side - d, size=(300, 2))
            click = whole = 0
            for x, y in centres:
                extent = (x - d / 2, y - d / 2, x + d / 2, y + d / 2)
                margins = layout.margins(extent)
                tile = layout.choose((x, y, x, y))
                click += margins[tile.index] >= 0
                whole += margins.max() >= 4
            cells.append(f"{click / len(centres):.0%} / {whole / len(centres):.0%}")
        print("| " + " | ".join([str(halo), *map(str, counts), *cells]) + " |")
    print(
        "\nEach d= cell: the share of 300 objects of that diameter (8192² image) whole in the "
        "tile chosen for a click at their centre / whole (4-pixel margin) in some tile, which "
        "segment everything needs.\n"
    )


def bound(side: int = 4096) -> None:
    from skimage.transform import resize

    from napari_sam2_webgpu.image.postprocess import logits_to_masks

    print(f"## Resolution bound: ideal logits, {side}² image of discs (IoU to the disc)\n")
    print("| disc radius | untiled | tiled 1024 | tiled 2048 |")
    print("| --- | --- | --- | --- |")
    rng = np.random.default_rng(1)
    for radius in (4, 8, 16, 32, 64):
        row = []
        for window in (side, 1024, 2048):
            ious = []
            for _ in range(20):
                # A disc somewhere inside a window (tiles are encoded window by window; only
                # the window matters for the bound).
                cy, cx = rng.uniform(radius + 2, window - radius - 2, size=2)
                yy, xx = np.mgrid[:window, :window]
                disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
                area = resize(disc.astype(np.float32), (256, 256), order=1, anti_aliasing=True)
                logits = ((area - 0.5) * 40.0).astype(np.float32)[None, None]
                mask = logits_to_masks(logits, (window, window))[0, 0]
                union = np.count_nonzero(mask | disc)
                ious.append(np.count_nonzero(mask & disc) / union if union else 0.0)
            row.append(f"{np.mean(ious):.3f}")
        print(f"| {radius} | " + " | ".join(row) + " |")
    print("\nThe mean IoU of 20 discs per cell; untiled, the whole image is one window.\n")


def first_mask(encoder: str, decoder: str, backend: str, side: int) -> None:
    print(f"## Time to first mask and peak memory, {side}² uint16 slice ({backend})\n")
    print("| mode | first mask | peak RSS | before (model + image) |")
    print("| --- | --- | --- | --- |")
    for mode in ("tiled", "untiled"):
        out = subprocess.run(
            [sys.executable, "-c", _FIRST_MASK, encoder, decoder, backend, str(side), mode],
            capture_output=True,
            text=True,
        )
        if out.returncode:
            raise RuntimeError(f"{mode} failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {mode} | {result['seconds'] * 1e3:,.0f} ms | {result['peak_mib']:,.0f} MiB | "
            f"{result['before_mib']:,.0f} MiB |"
        )
    print()


def precompute(encoder: str, decoder: str, backend: str, frames: int, side: int) -> None:
    import zarr

    from napari_sam2_webgpu import Sam2Predictor
    from napari_sam2_webgpu.store import open_stack_store, precompute_embeddings

    predictor = Sam2Predictor.from_files(encoder, decoder, backend)
    predictor.warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        stack = zarr.open_array(
            f"{tmp}/stack.zarr",
            mode="w",
            shape=(frames, side, side),
            chunks=(1, 1024, 1024),
            dtype="uint16",
        )
        rng = np.random.default_rng(0)
        for f in range(frames):
            stack[f] = rng.integers(0, 4000, (side, side), dtype=np.uint16)
        store = open_stack_store(f"{tmp}/s.sam2.zarr", predictor, stack, tiles=TileSpec())
        layout = store.identity.tile_layout
        start = time.perf_counter()
        report = precompute_embeddings(predictor, stack, store, contrast_limits=None)
        seconds = time.perf_counter() - start
    tiles = frames * (len(layout) + 1)
    print(f"## Precomputing {frames} slices of {side}² into a tiled store ({backend})\n")
    print("| slices | tiles a slice | seconds | slices/s | tiles/s |")
    print("| --- | --- | --- | --- | --- |")
    print(
        f"| {len(report.computed)} | {len(layout)} + overview | {seconds:.1f} | "
        f"{frames / seconds:.2f} | {tiles / seconds:.1f} |\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "parts", nargs="+", choices=("geometry", "bound", "first-mask", "precompute")
    )
    parser.add_argument("--halos", type=int, nargs="+", default=[64, 128, 192, 256])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--side", type=int, default=8192)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--stack-side", type=int, default=4096)
    parser.add_argument("--models", help="folder with <size>.encoder.onnx/.decoder.onnx")
    args = parser.parse_args(argv)
    if "geometry" in args.parts:
        geometry(args.halos)
    if "bound" in args.parts:
        bound()
    if {"first-mask", "precompute"} & set(args.parts):
        folder = Path(args.models or tempfile.mkdtemp())
        encoder, decoder = (
            folder / f"{args.size}.encoder.onnx",
            folder / f"{args.size}.decoder.onnx",
        )
        if not encoder.exists():
            from common import random_model

            _, paths = random_model(args.size, folder)
            encoder, decoder = paths.encoder, paths.decoder
        if "first-mask" in args.parts:
            first_mask(str(encoder), str(decoder), args.backend, args.side)
        if "precompute" in args.parts:
            precompute(str(encoder), str(decoder), args.backend, args.frames, args.stack_side)
    return 0


if __name__ == "__main__":
    sys.exit(main())
