"""Image to first mask on WebGPU: models built from a checkpoint (templates) vs a samexporter-style
encoder, and how long the build takes.

For each size a random-weight checkpoint is made (torch, seeded) and built into the four ONNX
files from the packaged templates without torch (what users get by default). The same files are
timed twice: as built (graph capture on the encoder), and with graph capture off, which is
what happens to samexporter's encoders (their last node is a view, so the stale-replay check
drops capture; the weights here are identical, so only that difference is measured).

    python benchmarks/sources.py --sizes tiny large --out sources.md
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from napari_sam2_webgpu.benchmark import measure_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "large"])
    parser.add_argument("--backend", default="webgpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", help="also write the table here")
    args = parser.parse_args(argv)

    from napari_sam2_webgpu.export import build_sam2_model
    from napari_sam2_webgpu.models.convert import build_model

    lines = [
        "| size | encoder | build s | session ms | encode ms | image→mask ms | click→mask ms |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size in args.sizes:
        model = build_sam2_model(size, seed=0)
        state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        del model
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            paths, _ = build_model(state, size, Path(tmp), stem=size)
            build_s = time.perf_counter() - start
            del state
            variants = (("built from the checkpoint", True), ("samexporter-style", False))
            for label, capture in variants:
                r = measure_path(
                    paths.encoder,
                    paths.decoder,
                    args.backend,
                    name=size,
                    repeats=args.repeats,
                    image_sides=(1024,),
                    graph_capture=capture,
                )
                lines.append(
                    f"| {size} | {label} | {build_s:.1f} | {r.session_ms:.0f} |"
                    f" {r.encode.median:.1f} | {r.first_mask.median:.1f} |"
                    f" {r.click_to_mask[1024].median:.1f} |"
                )
                print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
