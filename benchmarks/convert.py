"""Time and peak memory of building a model from a checkpoint without torch (models/convert.py).

For each size, a random-weight checkpoint in the official layout (``{"model": state_dict}``) is
written with torch (once, in a child process), then built in a fresh child process that cannot
import torch; the child's peak resident memory (``ru_maxrss``) and time are reported against
the checkpoint's size. Run::

    python benchmarks/convert.py tiny large [--work DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

MAKE = textwrap.dedent(
    """
    import sys, torch
    from napari_sam2_webgpu.export import build_sam2_model
    model = build_sam2_model(sys.argv[1], seed=0)
    torch.save({"model": model.state_dict()}, sys.argv[2])
    """
)

BUILD = textwrap.dedent(
    """
    import resource, sys, time
    sys.modules["torch"] = None
    from napari_sam2_webgpu.models.convert import build_model
    size, checkpoint, out = sys.argv[1:4]
    start = time.perf_counter()
    paths, _ = build_model(checkpoint, size, out, stem=size)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(seconds, peak, sum(p.stat().st_size for p in paths.files))
    """
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sizes", nargs="*", default=["tiny", "large"])
    parser.add_argument("--work", type=Path, default=None, help="keep checkpoints here")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="convert-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        checkpoint = work / f"{size}.pt"
        if not checkpoint.is_file():
            subprocess.run([sys.executable, "-c", MAKE, size, str(checkpoint)], check=True)
        out = subprocess.run(
            [sys.executable, "-c", BUILD, size, str(checkpoint), str(work / f"built_{size}")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        seconds, peak, written = float(out[0]), int(out[1]), int(out[2])
        ckpt = checkpoint.stat().st_size
        rows.append((size, ckpt, written, peak, peak / ckpt, seconds))
    print("| size | checkpoint | ONNX files written | peak RSS | peak / checkpoint | time |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size, ckpt, written, peak, ratio, seconds in rows:
        print(
            f"| {size} | {ckpt / 2**20:.0f} MiB | {written / 2**20:.0f} MiB |"
            f" {peak / 2**20:.0f} MiB | {ratio:.2f} | {seconds:.1f} s |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
