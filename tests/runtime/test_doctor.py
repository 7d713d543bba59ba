"""Tests of runtime/doctor.py: the report behind ``napari-sam2-webgpu doctor``."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from napari_sam2_webgpu.runtime import adapters, backend, discovery
from napari_sam2_webgpu.runtime.backend import ENV_BACKEND
from napari_sam2_webgpu.runtime.doctor import doctor_report

from .conftest import LOGGER, warnings_logged

ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.usefixtures("fresh_backend")

SECTIONS = (
    "napari-sam2-webgpu doctor",
    "Python:",
    "onnxruntime:",
    "onnxruntime-ep-webgpu (WebGPU execution provider):",
    "Vulkan loader:",
    "wgpu (GPU adapters):",
    "Backend:",
    '"auto" would use:',
    "why:",
)


def test_doctor_report_sections(caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    report = doctor_report()
    for key in SECTIONS:
        assert key in report
    assert ort.__version__ in report
    assert not warnings_logged(caplog)  # the report explains; it does not also warn


def test_doctor_report_without_wgpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "wgpu", None)
    report = doctor_report()
    for key in SECTIONS:
        assert key in report
    assert (
        "adapters: none (ImportError" in report or "adapters: none (ModuleNotFoundError" in report
    )


def test_doctor_report_never_raises(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("everything is broken")

    for module, name in (
        (discovery, "register_plugin_ep"),
        (adapters, "vulkan_loader"),
        (adapters, "enumerate_adapters"),
        (backend, "resolve_request"),
    ):
        monkeypatch.setattr(module, name, boom)
    monkeypatch.setattr(ort, "get_available_providers", boom)
    report = doctor_report()
    assert report.count("error: RuntimeError: everything is broken") >= 4
    assert "Backend:" in report


def test_doctor_report_invalid_env(monkeypatch):
    monkeypatch.setenv(ENV_BACKEND, "tpu")
    assert f"error: invalid {ENV_BACKEND}='tpu'" in doctor_report()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_RUNTIME_DIR is Linux's")
def test_doctor_without_runtime_dir_prints_no_driver_noise(tmp_path):
    # Mesa/libwayland print "XDG_RUNTIME_DIR is invalid or not set" for every Vulkan instance.
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    result = subprocess.run(
        [sys.executable, "-m", "napari_sam2_webgpu.cli", "doctor"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "XDG_RUNTIME_DIR is invalid" not in result.stdout + result.stderr
    assert result.stdout.count("XDG_RUNTIME_DIR") <= 1  # explained once, when a GPU probe ran
