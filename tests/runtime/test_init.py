"""Tests of runtime/__init__.py: the package's public names, and that importing it is cheap."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import napari_sam2_webgpu.runtime as runtime

#: Every name ``napari_sam2_webgpu.runtime`` offered when it was one module.
FORMER_PUBLIC_NAMES = (
    "BACKENDS",
    "BUILTIN_PACKAGE",
    "ENV_BACKEND",
    "PLUGIN_PACKAGE",
    "WEBGPU_EP_NAME",
    "AdapterInfo",
    "BackendInfo",
    "WebGPUUnavailableError",
    "clear_backend_cache",
    "create_session",
    "doctor_report",
    "list_adapters",
    "resolve_backend",
    "webgpu_ep_device",
)


def test_public_names_are_reexported():
    assert set(FORMER_PUBLIC_NAMES) <= set(runtime.__all__)
    for name in runtime.__all__:
        assert getattr(runtime, name) is not None, name


def test_import_does_not_load_onnxruntime_or_wgpu():
    src = str(Path(runtime.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    code = (
        "import sys, napari_sam2_webgpu.runtime\n"
        "heavy = [m for m in ('onnxruntime', 'wgpu', 'onnxruntime_ep_webgpu')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
