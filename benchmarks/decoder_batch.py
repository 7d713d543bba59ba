"""Decoder time per batch of point prompts (what segment-everything runs), per backend.

A seeded random-weight model (``--size``) is built from the packaged templates; one image is
encoded, then the decoder runs ``B`` single-point prompts at once for each ``B`` of
``--batches``. Prints the median ms per run and per point.

    python benchmarks/decoder_batch.py --backends webgpu cpu --batches 1 8 16 32 64
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
from common import median_ms, random_model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--backends", nargs="+", default=["webgpu"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 16, 32, 64])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from napari_sam2_webgpu import Sam2Predictor
    from napari_sam2_webgpu.image.postprocess import to_model_coords

    tmp = tempfile.TemporaryDirectory()
    _, paths = random_model(args.size, tmp.name)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (1024, 1024), dtype=np.uint8)
    print("| backend | batch | ms per run | ms per point |")
    print("| --- | --- | --- | --- |")
    for backend in args.backends:
        predictor = Sam2Predictor.from_files(paths.encoder, paths.decoder, backend)
        embedding = predictor.compute_embedding(image)
        decoder = predictor.decoder
        for batch in args.batches:
            points = rng.uniform(0, 1024, (batch, 1, 2))
            coords = to_model_coords(points, (1024, 1024))
            labels = np.ones(coords.shape[:2], dtype=np.float32)
            feeds = decoder.model_feeds(embedding, coords, labels, None)
            ms = median_ms(lambda feeds=feeds, run=decoder.run: run(feeds), args.repeats)
            print(f"| {backend} | {batch} | {ms:.1f} | {ms / batch:.2f} |", flush=True)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
