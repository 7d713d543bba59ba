"""Is it safe to run WebGPU sessions from several threads at once, with and without our lock?

ONNX Runtime's WebGPU EP is reported to crash when two sessions run at the same time on
different threads (onnxruntime#32561). The widget does that (encode in a worker, decode on the
GUI thread), so every GPU call holds ``runtime.gpu_lock``. This probe runs, in a fresh process
per case, one thread encoding images while others decode clicks on an image encoded before
(each decode checked against the same decode made alone), with the lock off
(``NAPARI_SAM2_WEBGPU_GPU_LOCK=0``) and on, and prints how each process ended.

    python benchmarks/concurrency_probe.py --size tiny --backend webgpu --encodes 40 --decodes 400
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np


def _worker(args: argparse.Namespace) -> int:
    from napari_sam2_webgpu.image import Sam2Predictor

    encoder, decoder = args.model_files.split(",")
    predictor = Sam2Predictor.from_files(encoder, decoder, backend=args.backend)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (1024, 1024, 3), dtype=np.uint8) for _ in range(4)]
    embedding = predictor.compute_embedding(images[0])
    clicks = rng.uniform(50, 970, (8, 1, 2))
    labels = np.ones(1)

    def decode(index: int) -> np.ndarray:
        masks, _, _ = predictor.predict(
            clicks[index % len(clicks)], labels, multimask_output=False, embedding=embedding
        )
        return masks

    expected = [decode(i) for i in range(len(clicks))]  # alone, before any thread starts
    errors: list[str] = []
    mismatches = [0]

    def encoder() -> None:
        try:
            for i in range(args.encodes):
                predictor.compute_embedding(images[i % len(images)])
        except Exception as exc:  # noqa: BLE001 - reported
            errors.append(f"encode: {type(exc).__name__}: {exc}")

    def decoder(first: int) -> None:
        try:
            for i in range(first, first + args.decodes):
                if not np.array_equal(decode(i), expected[i % len(clicks)]):
                    mismatches[0] += 1
        except Exception as exc:  # noqa: BLE001 - reported
            errors.append(f"decode: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=encoder)]
    threads += [threading.Thread(target=decoder, args=(k,)) for k in range(args.decoder_threads)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    print(
        f"RESULT device={predictor.backend_info.describe()!r} seconds={seconds:.2f} "
        f"mismatches={mismatches[0]} errors={len(errors)}"
    )
    for line in errors[:5]:
        print("ERROR", line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--backend", default="webgpu")
    parser.add_argument("--encodes", type=int, default=40)
    parser.add_argument("--decodes", type=int, default=400, help="per decoding thread")
    parser.add_argument("--decoder-threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="processes per case")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-files", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)
    from common import random_model

    here = os.path.dirname(os.path.abspath(__file__))
    tmp = tempfile.TemporaryDirectory()
    _, paths = random_model(args.size, tmp.name)  # one model for every process
    args.model_files = f"{paths.encoder},{paths.decoder}"
    rows = []
    for lock in ("0", "1"):
        for attempt in range(args.repeats):
            env = {**os.environ, "NAPARI_SAM2_WEBGPU_GPU_LOCK": lock}
            command = [sys.executable, os.path.join(here, "concurrency_probe.py"), "--worker"]
            command += [
                f"--{k.replace('_', '-')}={v}"
                for k, v in vars(args).items()
                if k not in ("worker", "repeats")
            ]
            done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=here)
            result = next(
                (line for line in done.stdout.splitlines() if line.startswith("RESULT")), ""
            )
            how = "ok" if done.returncode == 0 else f"exit {done.returncode}"
            if done.returncode < 0:
                how = f"killed by signal {-done.returncode}"
            rows.append((lock, attempt, how, result.removeprefix("RESULT ")))
            if done.returncode != 0:
                print(done.stderr[-2000:], file=sys.stderr)
    print("| GPU lock | run | process | result |")
    print("| --- | ---: | --- | --- |")
    for lock, attempt, how, result in rows:
        print(f"| {'on' if lock == '1' else 'off'} | {attempt + 1} | {how} | {result} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
