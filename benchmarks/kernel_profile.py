"""Which operators take the time of memory attention, decoder and memory encoder on a device?

ONNX Runtime's own profiler (``SessionOptions.enable_profiling``) on each video component of a
seeded random-weight model, with the inputs of a tracked frame at a full memory bank (7
memories, 16 object pointers), run ``--runs`` times after a warm-up; the events of its JSON
trace are summed by category and operator type. On the WebGPU EP, kernel events carry GPU
times where the adapter supports timestamp queries.

    python benchmarks/kernel_profile.py --size tiny --backend webgpu --runs 10 --top 25
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time

import numpy as np
from common import random_feeds, random_model


def _session(path, backend: str, folder: str):
    import onnxruntime as ort

    from napari_sam2_webgpu.runtime import webgpu_ep_device

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.log_severity_level = 3  # not the EP's placement notices, one per node
    options.profile_file_prefix = f"{folder}/profile"
    if backend == "webgpu":
        options.add_provider_for_devices([webgpu_ep_device()], {})
        return ort.InferenceSession(str(path), sess_options=options)
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _summary(trace: list[dict], runs: int, top: int) -> list[str]:
    totals: dict[tuple[str, str], float] = collections.defaultdict(float)
    counts: dict[tuple[str, str], int] = collections.defaultdict(int)
    for event in trace:
        if event.get("ph") != "X":
            continue
        args = event.get("args", {})
        what = args.get("op_name") or event.get("name", "?").split("_kernel_time")[0]
        key = (event.get("cat", "?"), what)
        totals[key] += event.get("dur", 0) / 1e3
        counts[key] += 1
    lines = ["| category | operator | ms per run | events per run |", "| --- | --- | ---: | ---: |"]
    for (cat, what), ms in sorted(totals.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(
            f"| {cat} | {what} | {ms / (runs + 1):.2f} | {counts[(cat, what)] / (runs + 1):.0f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--backend", default="webgpu", choices=["webgpu", "cpu"])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    _, paths = random_model(args.size, tmp.name)
    rng = np.random.default_rng(0)
    for name in ("memory_attention", "decoder", "memory_encoder"):
        session = _session(getattr(paths, name), args.backend, tmp.name)
        feeds = random_feeds(session, rng)
        session.run(None, feeds)  # warm-up (shaders compiled)
        start = time.perf_counter()
        for _ in range(args.runs):
            session.run(None, feeds)
        wall = (time.perf_counter() - start) / args.runs * 1e3
        with open(session.end_profiling()) as file:
            trace = json.load(file)
        print(f"\n### {name} ({args.size}, {args.backend}): {wall:.1f} ms per run, wall\n")
        print("\n".join(_summary(trace, args.runs, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
