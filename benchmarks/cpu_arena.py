"""Encode time and host memory of an encoder on the CPU EP with and without ONNX Runtime's arena.

Each setting runs in a fresh process: one session, a warm-up, then --repeats encodes of a
1024 x 1024 input; prints the median and the resident memory after the encodes and at peak.

    python benchmarks/cpu_arena.py path/to/x.encoder.onnx
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import resource, sys, time
    import numpy as np
    from napari_sam2_webgpu.runtime.sessions import create_session
    path, arena, repeats = sys.argv[1], sys.argv[2] == "on", int(sys.argv[3])
    session, _ = create_session(path, "cpu", cpu_memory_arena=arena)
    x = np.random.default_rng(0).standard_normal((1, 3, 1024, 1024)).astype(np.float32)
    feed = {session.get_inputs()[0].name: x}
    session.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(np.median(times), rss // 1024, peak // 1024)
    """
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("encoder")
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    print("| arena | encode (median) | resident after | peak |")
    print("| --- | ---: | ---: | ---: |")
    for arena in ("on", "off"):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, args.encoder, arena, str(args.repeats)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        print(f"| {arena} | {float(out[0]):.2f} s | {out[1]} MB | {out[2]} MB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
