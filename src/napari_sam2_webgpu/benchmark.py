"""Timing of the ONNX Runtime paths: session creation, encode, decode and click-to-mask.

Used by ``napari-sam2-webgpu bench`` and ``benchmarks/bench.py`` (which adds the PyTorch
references). Everything is measured, nothing is asserted: the output is a Markdown table.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from .image.postprocess import mask_iou
from .runtime.backend import PROVIDERS


@dataclass
class Timing:
    """Median and spread of repeated runs, in milliseconds."""

    runs_ms: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs_ms) if self.runs_ms else float("nan")

    def __str__(self) -> str:
        if not self.runs_ms:
            return "—"
        low, high = min(self.runs_ms), max(self.runs_ms)
        return f"{self.median:.1f} ({low:.1f}–{high:.1f})"


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 2) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed."""
    for _ in range(warmup):
        fn()
    timing = Timing()
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        timing.runs_ms.append((time.perf_counter() - start) * 1e3)
    return timing


def rss_mb() -> float:
    """Current resident memory of this process in MB (Linux; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError):
        return float("nan")


def gpu_memory_used_mb() -> float:
    """Memory in use on the first NVIDIA GPU in MB, from ``nvidia-smi`` (NaN without one).

    The whole device's figure: WebGPU (Vulkan) allocations are not attributed to processes the
    way CUDA contexts are, so the benchmark reports the change against its own start.
    """
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return float("nan")
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return float(out.splitlines()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return float("nan")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak / 1e3


def test_image(side: int, seed: int = 0) -> np.ndarray:
    """A reproducible uint8 RGB image with bright blobs (cells) on a noisy background."""
    rng = np.random.default_rng(seed)
    small = 256
    yy, xx = np.mgrid[:small, :small]
    img = rng.normal(30, 8, (small, small))
    for _ in range(12):
        cy, cx, r = rng.uniform(20, small - 20), rng.uniform(20, small - 20), rng.uniform(6, 20)
        img += 160 * np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2)))
    gray = np.clip(img, 0, 255).astype(np.uint8)
    reps = -(-side // small)
    gray = np.tile(gray, (reps, reps))[:side, :side]
    return np.repeat(gray[..., None], 3, axis=-1)


@dataclass
class PathResult:
    """What one model x backend path measured."""

    model: str
    backend: str
    device: str
    session_ms: float
    encode: Timing
    decode: Timing
    first_mask: Timing
    click_to_mask: dict[int, Timing]
    rss_mb: float
    gpu_mb: float = float("nan")
    masks: np.ndarray | None = None
    embedding: np.ndarray | None = None


def _model_files(size: str, model_dir: str | None) -> tuple[Path, Path]:
    from .models import IMAGE_COMPONENTS, component_filename, ensure_model, model_stem

    if model_dir:
        folder = Path(model_dir)
        for stem in (model_stem(size), size):
            enc, dec = (folder / component_filename(stem, c) for c in IMAGE_COMPONENTS)
            if enc.is_file() and dec.is_file():
                return enc, dec
        raise FileNotFoundError(f"No {size} encoder/decoder pair in {folder}")
    # The published pair, not resolve_model's choice: a size names the same bytes on every
    # machine, so tables from different machines compare.
    paths = ensure_model(size)
    return paths.encoder, paths.decoder


def measure_path(
    encoder: Path,
    decoder: Path,
    backend: str,
    *,
    name: str,
    repeats: int = 10,
    image_sides: Sequence[int] = (1024, 2048, 8192),
    label: str | None = None,
    **options: object,
) -> PathResult:
    """Measure one model on one backend.

    Parameters
    ----------
    encoder, decoder : Path
        The ONNX pair.
    backend : str
        ``"webgpu"`` or ``"cpu"`` (``"auto"`` also works).
    name : str
        Model name for the table.
    repeats : int
        Timed runs after warm-up for encode and decode.
    image_sides : sequence of int
        Square image sizes for click-to-mask latency (decode + upsampling to image size).
    label : str, optional
        Backend label for the table (default: the provider used).
    **options
        Passed to :meth:`Sam2Predictor.from_files` (``device_resident``, ``graph_capture``...).

    Returns
    -------
    PathResult
    """
    from .image.predictor import Sam2Predictor

    gpu_before = gpu_memory_used_mb()
    start = time.perf_counter()
    predictor = Sam2Predictor.from_files(encoder, decoder, backend, name=name, **options)
    session_ms = (time.perf_counter() - start) * 1e3

    image = test_image(1024)
    encode = time_calls(lambda: predictor.set_image(image), repeats)
    point = {"point_coords": [[300.0, 420.0]], "point_labels": [1]}
    feeds, _ = predictor.decoder.feeds(predictor.embedding, **point)
    decode = time_calls(lambda: predictor.decoder.run(feeds), repeats)
    # New image to first mask: the honest figure when GPU work is queued asynchronously.
    first_mask = time_calls(
        lambda: (predictor.set_image(image), predictor.predict(**point)), repeats
    )
    masks, _, _ = predictor.predict(**point)
    embedding = np.array(predictor.embedding.numpy().image_embed)

    click: dict[int, Timing] = {}
    for side in image_sides:
        big = test_image(side)
        predictor.set_image(big)
        scale = side / 1024
        prompt = {"point_coords": [[300.0 * scale, 420.0 * scale]], "point_labels": [1]}
        click[side] = time_calls(lambda p=prompt: predictor.predict(**p), max(3, repeats // 2))
        del big
    return PathResult(
        model=name,
        backend=label or predictor.backend,
        device=predictor.device
        + (f"; clicks on {predictor.decoder_provider}" if predictor.backend == "webgpu" else ""),
        session_ms=session_ms,
        encode=encode,
        decode=decode,
        first_mask=first_mask,
        click_to_mask=click,
        rss_mb=rss_mb(),
        gpu_mb=gpu_memory_used_mb() - gpu_before,
        masks=masks,
        embedding=embedding,
    )


def format_table(results: Sequence[PathResult], image_sides: Sequence[int]) -> str:
    """Markdown table of :class:`PathResult` rows, medians (min–max) in ms."""
    head = ["model", "backend", "device", "session ms", "encode ms", "decode ms", "image→mask ms"]
    head += [f"click→mask {s}² ms" for s in image_sides] + ["RSS MB", "GPU MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in results:
        row = [r.model, r.backend, r.device, f"{r.session_ms:.0f}", str(r.encode), str(r.decode)]
        row.append(str(r.first_mask))
        row += [str(r.click_to_mask.get(s, Timing())) for s in image_sides]
        row.append(f"{r.rss_mb:.0f}")
        row.append("—" if np.isnan(r.gpu_mb) else f"{r.gpu_mb:+.0f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def format_parity(results: Sequence[PathResult]) -> str:
    """Agreement of every non-CPU path with the CPU path of the same model."""
    lines = []
    by_model: dict[str, dict[str, PathResult]] = {}
    for r in results:
        by_model.setdefault(r.model, {})[r.backend] = r
    for model, paths in by_model.items():
        cpu = paths.get("cpu")
        for backend, r in paths.items():
            if cpu is None or backend == "cpu":
                continue
            rel = float(
                np.max(np.abs(r.embedding - cpu.embedding))
                / (np.max(np.abs(cpu.embedding)) + 1e-12)
            )
            ious = [mask_iou(a, b) for a, b in zip(r.masks, cpu.masks, strict=True)]
            lines.append(
                f"- {model}: {backend} vs cpu: embedding max relative error {rel:.2e}, "
                f"mask IoU min {min(ious):.5f}"
            )
    return "\n".join(lines)


def run_benchmark(
    sizes: Sequence[str] = ("tiny",),
    backends: Sequence[str] = PROVIDERS,
    *,
    model_dir: str | None = None,
    encoder: str | None = None,
    decoder: str | None = None,
    repeats: int = 10,
    image_sides: Sequence[int] = (1024, 2048, 8192),
    out: TextIO = sys.stdout,
) -> list[PathResult]:
    """Measure every model x backend path and print the tables.

    Parameters
    ----------
    sizes : sequence of str
        Model sizes, looked up in ``model_dir`` or the model cache.
    backends : sequence of str
        Backends to time; one that is unavailable is reported and skipped.
    model_dir : str, optional
        Folder of ONNX pairs named ``sam2.1_hiera_<size>.{encoder,decoder}.onnx``.
    encoder, decoder : str, optional
        A custom pair instead of ``sizes``.
    repeats : int
        Timed runs per measurement.
    image_sides : sequence of int
        Square image sides for click-to-mask latency.
    out : file
        Where to print.

    Returns
    -------
    list of PathResult
    """
    from . import __version__
    from .runtime import WebGPUUnavailableError, resolve_backend

    pairs = (
        [("custom", Path(encoder), Path(decoder))]
        if encoder and decoder
        else [(s, *_model_files(s, model_dir)) for s in sizes]
    )
    results: list[PathResult] = []
    for name, enc, dec in pairs:
        for backend in backends:
            try:
                resolve_backend(backend)
            except WebGPUUnavailableError as exc:
                print(f"skipping {name} on {backend}: {exc}", file=out)
                continue
            results.append(
                measure_path(enc, dec, backend, name=name, repeats=repeats, image_sides=image_sides)
            )
            print(f"measured {name} on {backend}", file=sys.stderr)
    info = resolve_backend("auto")
    print(f"\nnapari-sam2-webgpu {__version__}; {info.describe()}", file=out)
    print(f"medians (min–max) of {repeats} runs after 2 warm-ups\n", file=out)
    print(format_table(results, image_sides), file=out)
    parity = format_parity(results)
    if parity:
        print("\nAgreement with the CPU path (same image, same point):\n" + parity, file=out)
    print(f"\npeak RSS of the process: {peak_rss_mb():.0f} MB", file=out)
    return results
