"""Embedding stores on disk: float16's effect on masks, and reopening a stack's store.

A seeded random-weight model (``--size``) is built from the packaged templates.

1. float16 against float32: ``--images`` synthetic 1024² images are encoded, stored in both
   precisions and read back; ``--clicks`` random single-point prompts per image are decoded on
   each, and the best masks compared (IoU), with the embeddings' largest relative error.
2. Reopening: a store of ``--frames`` frames of 1024² (every frame holds one real embedding:
   the timing does not depend on the values) is opened in a fresh process, which then reads one
   frame and decodes a click: the time to the first mask, model already loaded (as in napari
   when an image is opened again).

    python benchmarks/store.py --size tiny --frames 100
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
from common import random_model

_REOPEN = r"""
import json, sys, time
import numpy as np
from napari_sam2_webgpu import Sam2Predictor
from napari_sam2_webgpu.store import EmbeddingStore, StoreIdentity
encoder, decoder, store_path, identity = sys.argv[1:5]
predictor = Sam2Predictor.from_files(encoder, decoder, "cpu")
start = time.perf_counter()
store = EmbeddingStore.open(store_path, StoreIdentity.from_json(json.loads(identity)), mode="r")
opened = time.perf_counter()
embedding = store.get(store.num_frames // 2)
read = time.perf_counter()
mask, score, _ = predictor.predict_best(
    point_coords=[[500.0, 400.0]], point_labels=[1], embedding=embedding
)
done = time.perf_counter()
print(json.dumps({"open": opened - start, "read": read - opened, "decode": done - read,
                  "total": done - start}))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--folder", help="where the stores go (default: a temporary folder)")
    args = parser.parse_args(argv)

    from napari_sam2_webgpu import Sam2Predictor
    from napari_sam2_webgpu.benchmark import test_image
    from napari_sam2_webgpu.image.postprocess import mask_iou
    from napari_sam2_webgpu.store import EmbeddingStore, StoreIdentity, encoder_checksum

    tmp = tempfile.TemporaryDirectory(dir=args.folder)
    folder = Path(tmp.name)
    _, paths = random_model(args.size, folder / "model")
    predictor = Sam2Predictor.from_files(paths.encoder, paths.decoder, "cpu")
    checksum = encoder_checksum(paths.encoder)

    # -- 1. float16 against float32 ----------------------------------------------------------
    ious, errors = [], []
    rng = np.random.default_rng(0)
    for index in range(args.images):
        image = np.asarray(test_image(1024, seed=index))
        identity = StoreIdentity(predictor.name, checksum, (), (1024, 1024), rgb=image.ndim == 3)
        embedding = predictor.compute_embedding(image)
        read = {}
        for dtype in ("float32", "float16"):
            store = EmbeddingStore.open(folder / f"{dtype}-{index}.zarr", identity, dtype=dtype)
            store.put(0, embedding)
            read[dtype] = store.get(0)
        for a, b in zip(read["float16"].tensors, read["float32"].tensors, strict=True):
            errors.append(float(np.abs(a - b).max() / np.abs(b).max()))
        for _ in range(args.clicks):
            point = [rng.uniform(0, 1024, 2).tolist()]
            masks = [
                predictor.predict_best(point_coords=point, point_labels=[1], embedding=read[d])[0]
                for d in ("float32", "float16")
            ]
            if masks[0].any() or masks[1].any():
                ious.append(mask_iou(masks[0], masks[1]))
    print(f"{args.size}, random weights, {args.images} images of 1024², {len(ious)} clicks")
    print()
    print(
        "| stored as | largest relative error of the embedding | mask IoU to float32: min |"
        " median | clicks with IoU < 0.99 |"
    )
    print("| --- | --- | --- | --- | --- |")
    ious_array = np.array(ious)
    print(
        f"| float16 | {max(errors):.1e} | {ious_array.min():.4f} | "
        f"{np.median(ious_array):.4f} | {int((ious_array < 0.99).sum())} |"
    )

    # -- 2. reopening a stack's store ---------------------------------------------------------
    identity = StoreIdentity(predictor.name, checksum, (args.frames,), (1024, 1024), rgb=True)
    store = EmbeddingStore.open(folder / "stack.sam2.zarr", identity)
    start = time.perf_counter()
    for frame in range(args.frames):
        store.put(frame, embedding)
    write_s = time.perf_counter() - start
    size = sum(f.stat().st_size for f in store.path.rglob("*") if f.is_file())
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _REOPEN,
            str(paths.encoder),
            str(paths.decoder),
            str(store.path),
            json.dumps(identity.to_json()),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    times = json.loads(result.stdout.strip().splitlines()[-1])
    print()
    print(
        f"A store of {args.frames} frames of 1024² (float32, {size / 2**30:.2f} GiB, written in "
        f"{write_s:.1f} s), opened again in a new process with the model loaded:"
    )
    print()
    print("| open the store | read one frame | decode a click | time to the first mask |")
    print("| --- | --- | --- | --- |")
    print(
        f"| {1e3 * times['open']:.0f} ms | {1e3 * times['read']:.0f} ms | "
        f"{1e3 * times['decode']:.0f} ms | **{1e3 * times['total']:.0f} ms** |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
