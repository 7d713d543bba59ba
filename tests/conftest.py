"""Shared fixtures: small SAM2-architecture models with random weights, exported by our own code."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest

# Triton (imported lazily by torch and torchvision) and Mesa's llvmpipe/lavapipe (loaded by wgpu's
# adapter discovery and by Qt's GL under Xvfb) carry different LLVMs: when Mesa's loads first,
# importing Triton segfaults. Loading Triton first is safe.
with contextlib.suppress(ImportError):
    import triton  # noqa: F401

# Tests must never touch the user's real model cache or the network model hubs.
os.environ.setdefault("NAPARI_SAM2_WEBGPU_OFFLINE", "1")

MODEL_SEED = 1234

#: Fixtures that open a real Qt viewer or widget.
QT_GUI_FIXTURES = {"make_napari_viewer", "qtbot"}


def pytest_collection_modifyitems(config, items):
    """Run the tests with a real Qt GUI last, each group in its own order.

    Under Xvfb, wgpu's adapter enumeration (tests/runtime) can abort the process once a Qt GUI
    test has run, and tests/_qt sorts before tests/runtime. Tests marked ``large_memory`` or
    ``slow_export`` are skipped unless ``NAPARI_SAM2_WEBGPU_LARGE_TESTS=1``.
    """
    if os.environ.get("NAPARI_SAM2_WEBGPU_LARGE_TESTS") != "1":
        reasons = {
            "large_memory": "needs > 4 GB",
            "slow_export": "a full-size export the template generator verifies",
        }
        for item in items:
            for marker, reason in reasons.items():
                if marker in item.keywords:
                    why = f"{reason}; set NAPARI_SAM2_WEBGPU_LARGE_TESTS=1"
                    item.add_marker(pytest.mark.skip(reason=why))
    gui = [item for item in items if QT_GUI_FIXTURES & set(getattr(item, "fixturenames", ()))]
    if gui:
        chosen = set(map(id, gui))
        items[:] = [item for item in items if id(item) not in chosen] + gui


#: A test that leaves the process this much larger than after the last full collection
#: triggers the next one.
MEMORY_SLACK_BYTES = 128 << 20


@pytest.fixture(autouse=True, scope="module")
def _give_memory_back_per_module():
    """After each test module (its fixtures gone), free cycles and return freed heap pages.

    ONNX Runtime and torch free large buffers into glibc's per-thread arenas, which keep them:
    without this the suite's resident memory creeps up module after module (the suite must
    stay under 4 GB on CI's machines).
    """
    yield
    _full_collection()


@pytest.fixture(autouse=True)
def _give_memory_back():
    """After a test that left the process larger by :data:`MEMORY_SLACK_BYTES`, the same.

    Not after every test: a full collection scans every live object (about 0.25 s a test
    once napari, torch and ONNX Runtime are loaded: a third of the core tests' time, about 4
    minutes of the suite).
    """
    yield
    resident = _resident_bytes()
    if resident is None or resident > _after_collection[0] + MEMORY_SLACK_BYTES:
        _full_collection()


def _full_collection() -> None:
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
    _after_collection[0] = _resident_bytes() or 0


def _resident_bytes() -> int | None:
    """Resident memory of this process (``None`` where unknown: then collect every time)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


_after_collection = [0]


def _find_malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to trim
        return None


_malloc_trim = _find_malloc_trim()


@pytest.fixture(scope="session")
def micro_model_files(tmp_path_factory):
    """ONNX encoder/decoder pair of the ``micro`` config (same graph as SAM2.1, thin trunk)."""
    pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from napari_sam2_webgpu.export import build_sam2_model, export_onnx

    out = tmp_path_factory.mktemp("micro_model")
    model = build_sam2_model("micro", seed=MODEL_SEED)
    files = export_onnx(model, out, name="micro", size="micro")
    return model, files


@pytest.fixture(scope="session")
def micro_predictor(micro_model_files):
    """A CPU ``Sam2Predictor`` on the micro model."""
    from napari_sam2_webgpu.predictor import Sam2Predictor

    _, files = micro_model_files
    return Sam2Predictor.from_files(files.encoder, files.decoder, backend="cpu")


@pytest.fixture(scope="session")
def cpu_device_io():
    """A ``DeviceIO`` on the CPU EP's own memory: stands in for GPU memory in device-path tests."""
    ort = pytest.importorskip("onnxruntime")
    from napari_sam2_webgpu.runtime.iobinding import DeviceIO

    cpu = next(d for d in ort.get_ep_devices() if d.ep_name == "CPUExecutionProvider")
    device = DeviceIO.for_ep_device(cpu)
    if device is None:
        pytest.skip("this onnxruntime cannot bind tensors to an EP device's memory")
    return device


def blob_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A uint8 RGB image with a few bright blobs on a textured background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    img = rng.normal(40, 10, (height, width))
    for _ in range(4):
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        r = rng.uniform(0.08, 0.2) * min(height, width)
        img += 150 * np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2)))
    gray = np.clip(img, 0, 255).astype(np.uint8)
    return np.stack([gray, np.roll(gray, 3, axis=1), gray // 2 + 60], axis=-1)


@dataclass
class MouseEvent:
    """The fields napari's mouse callbacks read from a vispy event (tests drive the real
    callback path with it, wrapped in napari's ``ReadOnlyWrapper``)."""

    type: str
    position: tuple
    pos: np.ndarray = field(default_factory=lambda: np.zeros(2))
    button: int = 1
    modifiers: tuple = ()
    is_dragging: bool = False
    view_direction: tuple | None = None
    up_direction: tuple | None = None
    dims_displayed: tuple = (0, 1)
    handled: bool = False
