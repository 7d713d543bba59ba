"""Fixtures of the export tests: the session's micro model (tests/conftest.py), also in fp16."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package")
def fp16_files(micro_model_files, tmp_path_factory):
    """The micro model exported with float16 weights."""
    pytest.importorskip("onnx")
    from napari_sam2_webgpu.export import export_onnx

    model, _ = micro_model_files
    return export_onnx(
        model, tmp_path_factory.mktemp("fp16"), name="micro.fp16", size="micro", fp16=True
    )
