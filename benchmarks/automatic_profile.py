"""Where segment-everything's time goes: cProfile of one warm generate() call, ours only.

A seeded random-weight model (``--size``) is built from the packaged templates; one
``--side``² image is segmented once to warm up (graph capture, shader compilation), then once
under cProfile. Prints the wall time and the functions with the most time of their own.

    python benchmarks/automatic_profile.py --backend webgpu --side 1024
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time

import numpy as np
from common import random_model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--backend", default="webgpu")
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--decoder-batch", type=int)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)

    from napari_sam2_webgpu import Sam2Predictor
    from napari_sam2_webgpu.benchmark import test_image
    from napari_sam2_webgpu.image.automatic import AutomaticMaskGenerator

    tmp = tempfile.TemporaryDirectory()
    _, paths = random_model(args.size, tmp.name)
    predictor = Sam2Predictor.from_files(paths.encoder, paths.decoder, args.backend)
    generator = AutomaticMaskGenerator(
        predictor,
        points_per_side=32,
        points_per_batch=64,
        pred_iou_thresh=0.8,
        stability_score_thresh=0.95,
        decoder_batch=args.decoder_batch,
    )
    image = np.asarray(test_image(args.side))
    generator.generate(image)
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    records = generator.generate(image)
    profile.disable()
    print(
        f"{args.size} {predictor.backend} {args.side}²: {len(records)} masks in "
        f"{1e3 * (time.perf_counter() - start):.0f} ms (under cProfile)"
    )
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
