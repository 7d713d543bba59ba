"""Per-kernel GPU times of each SAM2 component on the WebGPU EP, from Dawn's timestamp queries.

The WebGPU EP plugin (``onnxruntime-ep-webgpu``) the package uses reports no GPU times to ONNX
Runtime's profiler (``benchmarks/kernel_profile.py`` sees host times only). The all-in-one
``onnxruntime-webgpu`` wheel, whose built-in EP has the profiler wired to timestamp queries,
does: this script runs each component of a seeded random-weight model there, without graph
capture (captured replays record nothing), and sums the GPU time of every dispatched program
by operator and by program with its shapes. Run it with that wheel's ``onnxruntime`` first on
the path (it shadows stock ``onnxruntime``; never install it beside the package for real use):

    PYTHONPATH=/tmp/ortwg:$PYTHONPATH python benchmarks/gpu_kernel_times.py --size tiny --runs 5

The figures are that older EP's kernels (``onnxruntime-webgpu`` 1.27), which the plugin largely
shares; the wall time per run is printed beside them for comparison with the plugin's.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time

import numpy as np
from common import FULL_BANK, random_feeds, random_model


def _session(path, folder: str, *, profile: bool):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = profile
    options.log_severity_level = 3
    options.profile_file_prefix = f"{folder}/profile"
    return ort.InferenceSession(
        str(path), sess_options=options, providers=["WebGpuExecutionProvider"]
    )


def _kernel_events(trace: list[dict]) -> list[dict]:
    """The GPU-timed events: the WebGPU EP files them under the ``Api`` category."""
    return [e for e in trace if e.get("ph") == "X" and e.get("cat") == "Api"]


def _parts(event: dict) -> tuple[str, str]:
    """``(operator, program)`` of one kernel event (its name joins node, op and program)."""
    name = event.get("name", "?")
    pieces = name.split("&")
    if len(pieces) >= 3:
        return pieces[1], pieces[2]
    return name, name


def _tables(events: list[dict], runs: int, top: int) -> list[str]:
    by_op: dict[str, float] = collections.defaultdict(float)
    op_count: dict[str, int] = collections.defaultdict(int)
    by_program: dict[tuple[str, str, str], float] = collections.defaultdict(float)
    program_count: dict[tuple[str, str, str], int] = collections.defaultdict(int)
    for event in events:
        op, program = _parts(event)
        ms = event.get("dur", 0) / 1e3
        by_op[op] += ms
        op_count[op] += 1
        key = (op, program, event.get("args", {}).get("shapes", "").strip())
        by_program[key] += ms
        program_count[key] += 1
    total = sum(by_op.values()) / runs
    lines = [
        f"GPU time summed over kernels: **{total:.2f} ms per run** "
        f"({len(events) / runs:.0f} dispatches)",
        "",
        "| operator | GPU ms per run | share | dispatches per run |",
        "| --- | ---: | ---: | ---: |",
    ]
    for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])[:top]:
        share = ms / runs / total if total else 0.0
        lines.append(f"| {op} | {ms / runs:.2f} | {share:.0%} | {op_count[op] / runs:.0f} |")
    lines += [
        "",
        "| operator | program | shapes | GPU ms per run | dispatches per run |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for (op, program, shapes), ms in sorted(by_program.items(), key=lambda kv: -kv[1])[:top]:
        count = program_count[(op, program, shapes)] / runs
        lines.append(f"| {op} | {program} | {shapes[:160]} | {ms / runs:.3f} | {count:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--components",
        nargs="+",
        default=["encoder", "memory_attention", "decoder", "memory_encoder"],
    )
    parser.add_argument(
        "--prompts",
        type=int,
        default=1,
        help="prompt sets per decoder run, one point each when above 1 (segment everything "
        "decodes 16 at a time); 1: one click of two points",
    )
    parser.add_argument("--dump", help="folder for each component's raw kernel events (JSON)")
    parser.add_argument(
        "--torch-export",
        action="store_true",
        help="export with torch (the current exporter) instead of filling the packaged templates",
    )
    args = parser.parse_args(argv)
    import onnxruntime as ort

    sizes = dict(FULL_BANK)
    if args.prompts > 1:
        sizes.update(num_labels=args.prompts, num_points=1)
    if "WebGpuExecutionProvider" not in ort.get_available_providers():
        print("no built-in WebGPU EP in this onnxruntime: put onnxruntime-webgpu first on the path")
        return 2
    print(f"onnxruntime {ort.__version__} ({ort.__file__}), size {args.size}, {args.runs} runs")
    tmp = tempfile.TemporaryDirectory()
    if args.torch_export:
        from napari_sam2_webgpu.export import build_sam2_model, export_onnx

        model = build_sam2_model(args.size, seed=0)
        paths = export_onnx(model, tmp.name, name=args.size, size=args.size)
    else:
        _, paths = random_model(args.size, tmp.name)
    rng = np.random.default_rng(0)
    for name in args.components:
        path = getattr(paths, name)
        plain = _session(path, tmp.name, profile=False)
        feeds = random_feeds(plain, rng, sizes)
        plain.run(None, feeds)
        start = time.perf_counter()
        for _ in range(args.runs):
            plain.run(None, feeds)
        wall = (time.perf_counter() - start) / args.runs * 1e3
        del plain
        # How many kernel events one run records, so that the measured session's first run
        # (its warm-up) can be dropped from its events.
        session = _session(path, tmp.name, profile=True)
        session.run(None, feeds)
        with open(session.end_profiling()) as file:
            warmup = len(_kernel_events(json.load(file)))
        session = _session(path, tmp.name, profile=True)
        session.run(None, feeds)
        for _ in range(args.runs):
            session.run(None, feeds)
        with open(session.end_profiling()) as file:
            events = _kernel_events(json.load(file))
        events = events[warmup:] if len(events) > warmup else events
        prompts = f", {args.prompts} prompts" if name == "decoder" and args.prompts > 1 else ""
        print(f"\n### {name} ({args.size}{prompts}): {wall:.1f} ms per run wall (unprofiled)\n")
        if not events:
            print("no GPU-timed kernel events (the adapter lacks timestamp queries?)")
            continue
        print("\n".join(_tables(events, args.runs, args.top)))
        if args.dump:
            with open(f"{args.dump}/{name}_kernels.json", "w") as file:
                json.dump(events, file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
