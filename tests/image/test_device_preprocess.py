"""The encoder input made in an ONNX graph (image/device_preprocess.py), on the CPU EP.

On WebGPU the same graph runs on the GPU, writing into the captured encoder's input; here the
CPU EP's memory stands in for the device and the result is checked against the host path.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu.image.device_preprocess import DevicePreprocessor, preprocess_model
from napari_sam2_webgpu.image.preprocess import image_window, prepare_image
from napari_sam2_webgpu.runtime.iobinding import BoundEncoder, static_shape

from ..conftest import blob_image


@pytest.fixture(scope="module")
def preprocessor(cpu_device_io):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(preprocess_model(), providers=["CPUExecutionProvider"])
    return DevicePreprocessor(session, cpu_device_io)


def _on_device(preprocessor, image, **window):
    planes, low, high = image_window(image, **window)
    assert preprocessor.accepts(planes, low, high)
    target = preprocessor.device.empty((1, 3, 1024, 1024))
    preprocessor.prepare(planes, low, high, target)
    return preprocessor.device.download(target)


def _images():
    rng = np.random.default_rng(0)
    floats = rng.normal(100, 30, (200, 150)).astype(np.float32)
    floats[5:9, 7:30] = np.nan
    floats[50, 60], floats[51, 60] = np.inf, -np.inf
    return {
        "uint8 gray 1024² (no resize)": (rng.integers(0, 256, (1024, 1024), np.uint8), {}),
        "uint8 RGB 300x517": (blob_image(300, 517, seed=1), {}),
        "uint16 RGBA 2100x1300": (
            rng.integers(0, 60000, (2100, 1300, 4)).astype(np.uint16),
            {"rgb": True},
        ),
        "float with NaN and inf": (floats, {}),
        "contrast limits": (
            rng.integers(0, 4000, (640, 480)).astype(np.uint16),
            {"contrast_limits": (500, 2500)},
        ),
        "float in [0, 1], one channel": (rng.random((96, 1030, 1)), {}),
    }


@pytest.mark.parametrize("name", list(_images()))
def test_equals_the_host_tensor(preprocessor, name):
    image, window = _images()[name]
    got = _on_device(preprocessor, image, **window)
    expected = prepare_image(image, **window)
    assert got.shape == expected.shape == (1, 3, 1024, 1024)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)


def test_large_images_and_flat_windows_stay_on_the_host(preprocessor):
    small = DevicePreprocessor(preprocessor.session, preprocessor.device, max_pixels=100)
    assert not small.accepts(np.zeros((20, 20)), 0.0, 1.0)
    assert preprocessor.accepts(np.zeros((20, 20)), 0.0, 1.0)
    assert not preprocessor.accepts(np.zeros((20, 20)), 5.0, 5.0)  # a constant image


def test_resize_matrices_are_kept_per_size(preprocessor):
    image = blob_image(333, 444, seed=2)
    _on_device(preprocessor, image)
    kept = dict(preprocessor._weights)
    assert ("rows", 333) in kept and ("cols", 444) in kept
    _on_device(preprocessor, image)
    assert preprocessor._weights[("rows", 333)] is kept[("rows", 333)]


def test_encoder_uses_it_and_gives_the_host_embedding(micro_predictor, preprocessor):
    encoder = micro_predictor.encoder
    image = blob_image(250, 310, seed=5)
    host = encoder.encode(image)
    shapes = {o.name: static_shape(o.shape) for o in encoder.session.get_outputs()}
    bound = BoundEncoder(encoder.session, preprocessor.device, shapes)
    calls = []

    class Spy(DevicePreprocessor):
        def prepare(self, *args):
            calls.append(args[0].shape)
            super().prepare(*args)

    encoder.bound = bound
    encoder.preprocessor = Spy(preprocessor.session, preprocessor.device)
    try:
        on_device = encoder.encode(image)
        constant = encoder.encode(np.full((64, 64), 7.5, np.float32))  # flat: the host path
    finally:
        encoder.bound = encoder.preprocessor = None
    assert calls == [(250, 310, 3)]
    assert on_device.on_device and constant.on_device
    assert on_device.image_hw == (250, 310)
    np.testing.assert_allclose(
        on_device.numpy().image_embed, host.image_embed, rtol=1e-4, atol=1e-4
    )
