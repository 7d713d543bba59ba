"""Fixtures for the tests that need a real WebGPU device (``-m webgpu``).

They are skipped wherever ONNX Runtime's WebGPU execution provider finds no GPU (CI, and any
machine without a Vulkan/Metal/D3D12 driver Dawn accepts); ``benchmarks/gpu_tests.sh`` runs them
on a GPU machine. Models: the ``micro`` SAM2 export, from ``NAPARI_SAM2_WEBGPU_TEST_MODELS`` (a
folder with ``micro.{encoder,decoder,memory_attention,memory_encoder}.onnx``, exported where
torch is) or built with torch and sam2 here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV_TEST_MODELS = "NAPARI_SAM2_WEBGPU_TEST_MODELS"
COMPONENTS = ("encoder", "decoder", "memory_attention", "memory_encoder")


@pytest.fixture(scope="session")
def webgpu_info():
    """The resolved WebGPU backend, or a skip saying why there is none."""
    from napari_sam2_webgpu.runtime import WebGPUUnavailableError, resolve_backend

    try:
        info = resolve_backend("webgpu")
    except WebGPUUnavailableError as exc:
        pytest.skip(f"no WebGPU device: {exc}")
    return info


@pytest.fixture(scope="session")
def gpu_model_paths(webgpu_info, tmp_path_factory) -> tuple[Path, ...]:
    """The four micro-model files (encoder, decoder, memory attention, memory encoder)."""
    folder = os.environ.get(ENV_TEST_MODELS)
    if folder:
        paths = tuple(Path(folder) / f"micro.{c}.onnx" for c in COMPONENTS)
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            pytest.fail(f"{ENV_TEST_MODELS}={folder} lacks {', '.join(missing)}")
        return paths
    pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from napari_sam2_webgpu.export import build_sam2_model, export_onnx

    out = tmp_path_factory.mktemp("gpu_micro")
    files = export_onnx(build_sam2_model("micro", seed=1234), out, name="micro", size="micro")
    return files.encoder, files.decoder, files.memory_attention, files.memory_encoder
