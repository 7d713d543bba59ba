"""Memory attention attended frame by frame against in one product: time per run, accuracy.

Exports the memory attention of a seeded random-weight model twice with the current exporter,
``rope.BLOCKWISE_MEMORY`` on (frame by frame, the default) and off (one product over all memory
tokens), and runs each as the plugin does (``create_session``) on a full memory bank (7
memories, 16 object pointers) with the inputs and the output in the device's memory. ``runs``
back-to-back runs end with one download, so the time per run is the device's throughput (the
GPU's time where the GPU is the bottleneck). Also reports the largest difference between the
two exports' outputs.

    python benchmarks/attention_blocks.py --sizes tiny large --backends webgpu cpu --runs 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import FULL_BANK, device_io, random_feeds


def _time(path: Path, backend: str, feeds: dict[str, np.ndarray], runs: int, rounds: int):
    from napari_sam2_webgpu.runtime.sessions import create_session

    session, info = create_session(path, backend)
    device = device_io(backend)
    binding = session.io_binding()
    for name, array in feeds.items():
        if array.dtype == np.float32:
            binding.bind_ortvalue_input(name, device.upload(array))
        else:  # the memories' frame positions: a few integers
            binding.bind_cpu_input(name, array)
    output = session.get_outputs()[0]
    result = device.empty([FULL_BANK.get(d, d) if isinstance(d, str) else d for d in output.shape])
    binding.bind_ortvalue_output(output.name, result)
    session.run_with_iobinding(binding)  # warm-up: shaders compiled
    device.download(result)
    per_run = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(runs):
            session.run_with_iobinding(binding)
        device.download(result)  # waits until the device has finished them all
        per_run.append((time.perf_counter() - start) / runs * 1e3)
    return min(per_run), float(np.median(per_run)), device.download(result), info.describe()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny"])
    parser.add_argument("--backends", nargs="+", default=["webgpu"], choices=["webgpu", "cpu"])
    parser.add_argument("--runs", type=int, default=20, help="back-to-back runs per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", help="also write the Markdown here")
    args = parser.parse_args(argv)
    import onnxruntime as ort
    import torchvision.ops  # noqa: F401  (Triton before any Mesa LLVM; see tests/conftest.py)

    from napari_sam2_webgpu.export import build_sam2_model, export_onnx, rope

    lines = [
        "Memory attention, 7 memories and 16 object pointers, device-resident inputs and "
        f"output; ms per run over {args.runs} back-to-back runs (best / median of "
        f"{args.rounds} rounds).",
        "",
        "| size | backend | device | one product (ms) | frame by frame (ms) | speed-up "
        "| largest difference (output max) |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    default = rope.BLOCKWISE_MEMORY
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            model = build_sam2_model(size, seed=0)
            paths = {}
            for blockwise in (False, True):
                rope.BLOCKWISE_MEMORY = blockwise
                folder = Path(tmp) / f"{size}_{blockwise}"
                paths[blockwise] = export_onnx(model, folder, name=size, size=size)
            rope.BLOCKWISE_MEMORY = default
            del model
            probe = ort.InferenceSession(
                str(paths[True].memory_attention), providers=["CPUExecutionProvider"]
            )
            feeds = random_feeds(probe, np.random.default_rng(0), positions=3)
            del probe
            for backend in args.backends:
                timed = {
                    b: _time(paths[b].memory_attention, backend, feeds, args.runs, args.rounds)
                    for b in (False, True, False, True)  # again: the first pays warm-ups
                }
                (one_best, one_med, one_out, device) = timed[False]
                (blk_best, blk_med, blk_out, _) = timed[True]
                diff = float(np.abs(one_out - blk_out).max())
                lines.append(
                    f"| {size} | {backend} | {device} | {one_best:.2f} / {one_med:.2f} | "
                    f"{blk_best:.2f} / {blk_med:.2f} | {one_med / blk_med:.2f}x | "
                    f"{diff:.1e} ({float(np.abs(one_out).max()):.1f}) |"
                )
                print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
