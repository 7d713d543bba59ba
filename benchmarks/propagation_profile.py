"""Where a tracked frame's time goes on the host: cProfile of propagation with cached embeddings.

The per-step wall times of ``FrameTracker.stage_seconds`` include waiting for GPU work queued
by earlier steps; this profile shows which calls block (ONNX Runtime runs, device copies,
output synchronisation) and what the host itself computes between them.

    python benchmarks/propagation_profile.py --size tiny --frames 30 --backend webgpu --top 30
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time

from common import random_model
from propagation import synthetic_stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--backend", default="webgpu")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)

    from napari_sam2_webgpu.video import Sam2Propagator

    tmp = tempfile.TemporaryDirectory()
    _, paths = random_model(args.size, tmp.name)
    video = Sam2Propagator.from_files(*paths.files, args.backend, fill_hole_area=0)
    frames = synthetic_stack(args.frames)
    state = video.init_state(frames)
    video.add_prompts(state, 0, 1, points=[[256, 307]], labels=[1])
    for _ in video.propagate(state):  # encodes every frame (and warms every shape up)
        pass
    cached = video.init_state(frames, embedding_provider=state.embedding)
    video.add_prompts(cached, 0, 1, points=[[256, 307]], labels=[1])
    video.reset_timings()
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    for _ in video.propagate(cached):
        pass
    profile.disable()
    seconds = time.perf_counter() - start
    print(f"{video.backend}: {args.frames / seconds:.2f} fps tracking, {seconds:.2f} s")
    steps = ", ".join(f"{k} {v / args.frames * 1e3:.1f}" for k, v in video.stage_seconds.items())
    print(f"per frame (ms): {steps}")
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(key).print_stats(args.top)
        print(f"\n## by {key}\n")
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
