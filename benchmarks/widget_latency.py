"""Click-to-mask latency of the napari widget, and whether its worker threads slow napari down.

Runs the real widget in a real viewer (under Xvfb on a headless machine)::

    xvfb-run -a python benchmarks/widget_latency.py --side 2048 --model micro

What it measures, on whatever CPU/GPU the machine has (the CPU backend unless --backend):

1. Click to mask on a ``side`` x ``side`` image: a click through the Points layer's mouse
   callbacks, until the preview layer holds the mask and the canvas has been redrawn. Split into
   the decoder alone (ONNX Runtime), ``predict`` (decoder + upsampling to full size), and the
   whole path, with multimask on and off, with the decode on the GUI thread (what the widget
   does when a decode is fast) and in the worker thread (what it does when it is slow).
2. GUI responsiveness while encoding: a 10 ms QTimer on the GUI thread records the gaps between
   its ticks, idle, while the encode runs in the widget's worker thread, and (for comparison)
   while the same encode runs on the GUI thread. It also compares the encode's own duration in
   the worker and on the GUI thread (micro-sam saw computations slow down in napari >= 0.5
   thread workers, their issue 740).

Models: ``micro`` (the tests' random-weight model: full-size SAM2.1 decoder, thin encoder) or
``tiny`` (random-weight SAM2.1 hiera tiny, realistic encoder cost); both need the ``export``
extra (torch, sam2). Prints Markdown; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NAPARI_SAM2_WEBGPU_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import MouseEvent  # noqa: E402  (the GUI tests' fake vispy event)


def percentile(values, q):
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def blobs(side: int, seed: int = 0) -> np.ndarray:
    """A uint8 image with bright blobs on a noisy background (like nuclei)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(40, 10, (side, side)).astype(np.float32)
    yy, xx = np.ogrid[:side, :side]
    for _ in range(40):
        cy, cx = rng.uniform(0, side, 2)
        r = rng.uniform(0.01, 0.04) * side
        img += 150 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return np.clip(img, 0, 255).astype(np.uint8)


def export_model(name: str, folder: Path) -> tuple[Path, Path]:
    """Export in a subprocess, so that torch's threads and memory stay out of the measured
    process."""
    code = (
        "import sys; from napari_sam2_webgpu.export import build_sam2_model, export_onnx; "
        f"export_onnx(build_sam2_model({name!r}, seed=1234), sys.argv[1], name={name!r}, "
        f"size={name!r})"
    )
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True)
    return folder / f"{name}.encoder.onnx", folder / f"{name}.decoder.onnx"


class OtherLoad:
    """CPU time used by *other* processes meanwhile (Linux), in cores: a shared machine's noise."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
            busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
            mine = sum(os.times()[:4])
            return busy / os.sysconf("SC_CLK_TCK"), mine, time.perf_counter()
        except (OSError, ValueError):
            return None

    def cores(self) -> float:
        end = self._sample()
        if self.start is None or end is None:
            return float("nan")
        busy = end[0] - self.start[0]
        mine = end[1] - self.start[1]
        return max(0.0, busy - mine) / (end[2] - self.start[2])


class TickMonitor:
    """Gaps between the ticks of a 10 ms QTimer: how long the GUI thread was unavailable."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.gaps: list[float] = []
        self._last = None
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)

    def _tick(self):
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append((now - self._last) * 1e3)
        self._last = now

    def start(self):
        self.gaps.clear()
        self._last = None
        self.timer.start()

    def stop(self):
        self.timer.stop()
        return list(self.gaps)


def process_until(app, condition, timeout=120.0):
    """Run the Qt event loop (idle like napari's, no busy polling) until ``condition()``."""
    from qtpy.QtCore import QEventLoop, QTimer

    if condition():
        return
    loop = QEventLoop()
    check = QTimer()
    check.setInterval(10)
    check.timeout.connect(lambda: condition() and loop.quit())
    QTimer.singleShot(int(timeout * 1000), loop.quit)
    check.start()
    loop.exec()
    check.stop()
    if not condition():
        raise TimeoutError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--model", choices=["micro", "tiny"], default="micro")
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--clicks", type=int, default=15)
    parser.add_argument("--encodes", type=int, default=3)
    args = parser.parse_args(argv)

    import napari
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks
    from qtpy.QtWidgets import QApplication, QLabel

    tmp = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    encoder, decoder = export_model(args.model, tmp)
    print(f"exported {args.model} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    app = QApplication.instance()
    image = viewer.add_image(blobs(args.side), name="blobs")
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam2-webgpu", "Segment Anything 2")
    widget.load_model(encoder=encoder, decoder=decoder, backend=args.backend, wait=True)
    predictor = widget.predictor
    widget.encode(wait=True)
    prompts = widget.prompts_layer
    rng = np.random.default_rng(1)

    def click(row, col, **kw):
        pos = image.data_to_world([row, col])
        for kind, run in (
            ("mouse_press", mouse_press_callbacks),
            ("mouse_release", mouse_release_callbacks),
        ):
            ev = MouseEvent(kind, tuple(pos), dims_displayed=(0, 1), **kw)
            run(prompts, ReadOnlyWrapper(ev, exceptions=("handled",)))

    out = [
        f"## Widget latency: {args.side} x {args.side} uint8, model `{args.model}`, "
        f"{predictor.device} ({os.cpu_count()} logical CPUs), napari {napari.__version__}",
        "",
    ]

    load = OtherLoad()

    # -- 1. click to mask -------------------------------------------------------------------
    emb = predictor.embedding
    feeds = {
        "image_embed": emb.image_embed,
        "high_res_feats_0": emb.high_res_feats_0,
        "high_res_feats_1": emb.high_res_feats_1,
        "point_coords": np.array([[[512.0, 512.0]]], np.float32),
        "point_labels": np.array([[1.0]], np.float32),
        "mask_input": np.zeros((1, 1, 256, 256), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
    }
    decoder = predictor.decoder
    for _ in range(3):
        decoder.run(feeds)
    dec = []
    for _ in range(args.clicks):
        t = time.perf_counter()
        decoder.run(feeds)
        dec.append((time.perf_counter() - t) * 1e3)

    rows = [
        "| multimask | decoder alone (ms) | predict: decoder + upsampling (ms) | decode runs on | "
        "click to mask shown (ms), median | p90 | GUI thread blocked per click (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    annotator = widget.annotator
    default_inline = annotator.inline_decode_seconds
    for multimask in (True, False):
        widget.multimask = multimask
        widget.wait()
        pred = []
        for _ in range(args.clicks):
            t = time.perf_counter()
            predictor.predict(
                point_coords=[[args.side / 2, args.side / 2]],
                point_labels=[1],
                multimask_output=multimask,
            )
            pred.append((time.perf_counter() - t) * 1e3)
        for mode in ("GUI thread", "worker thread"):
            annotator.inline_decode_seconds = default_inline if mode == "GUI thread" else 0.0
            e2e, blocked = [], []
            for _ in range(args.clicks):
                widget.clear()
                app.processEvents()
                row, col = rng.uniform(0.1, 0.9, 2) * args.side
                t = time.perf_counter()
                click(row, col)  # returns once the GUI thread is free again
                blocked.append((time.perf_counter() - t) * 1e3)
                process_until(app, lambda: not widget.busy and annotator.preview_mask is not None)
                app.processEvents()  # the canvas redraw
                e2e.append((time.perf_counter() - t) * 1e3)
            rows.append(
                f"| {'on' if multimask else 'off'} | {statistics.median(dec):.0f} | "
                f"{statistics.median(pred):.0f} | {mode} | {statistics.median(e2e):.0f} | "
                f"{percentile(e2e, 90):.0f} | {statistics.median(blocked):.0f} |"
            )
    annotator.inline_decode_seconds = default_inline
    out += rows + [""]
    out.append(f"Other processes used {load.cores():.2f} CPU cores on average meanwhile.\n")
    load = OtherLoad()

    # -- 2. responsiveness while encoding ----------------------------------------------------------
    monitor = TickMonitor()
    monitor.start()
    t_end = time.perf_counter() + 2.0
    process_until(app, lambda: time.perf_counter() > t_end)
    idle = monitor.stop()

    def worker_encodes(pause_indicator: bool):
        gaps, times = [], []
        for _ in range(args.encodes):
            widget.cache.clear()  # so that encode() really encodes
            app.processEvents()
            monitor.start()
            t = time.perf_counter()
            widget.encode()
            if pause_indicator:
                # napari's animated "in progress" GIF in the status bar (shown while any
                # progress bar exists) repaints the main window ~30 times a second.
                for label in viewer.window._qt_window.findChildren(QLabel):
                    if label.movie() is not None:
                        label.movie().setPaused(True)
            process_until(app, lambda: not widget.busy)
            times.append(time.perf_counter() - t)
            gaps += monitor.stop()
        return gaps, times

    worker_gaps, worker_times = worker_encodes(False)
    paused_gaps, paused_times = worker_encodes(True)

    gui_gaps, gui_times = [], []
    request = widget.annotator.encode_request()
    for _ in range(args.encodes):
        monitor.start()
        settle = time.perf_counter() + 0.05
        process_until(app, lambda s=settle: time.perf_counter() > s)
        t = time.perf_counter()
        request.compute(predictor)  # blocks the GUI thread: what the worker avoids
        gui_times.append(time.perf_counter() - t)
        settle = time.perf_counter() + 0.05
        process_until(app, lambda s=settle: time.perf_counter() > s)
        gui_gaps += monitor.stop()

    def gap_row(name, gaps, times=None):
        dur = f"{statistics.median(times):.2f}" if times else "-"
        return (
            f"| {name} | {dur} | {percentile(gaps, 50):.0f} | {percentile(gaps, 95):.0f} | "
            f"{max(gaps) if gaps else float('nan'):.0f} |"
        )

    out += [
        "GUI thread availability: gaps between ticks of a 10 ms QTimer (ideal: 10 ms).",
        "",
        "| GUI thread | encode wall time (s) | tick gap median (ms) | p95 (ms) | max (ms) |",
        "| --- | --- | --- | --- | --- |",
        gap_row("idle", idle),
        gap_row("encode in the widget's worker thread", worker_gaps, worker_times),
        gap_row("same, napari's 'in progress' animation paused", paused_gaps, paused_times),
        gap_row("encode on the GUI thread (for comparison)", gui_gaps, gui_times),
        "",
        f"Other processes used {load.cores():.2f} CPU cores on average meanwhile.",
        "",
    ]
    print("\n".join(out))
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
