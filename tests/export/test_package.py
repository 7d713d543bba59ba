"""The export package's public names, and that importing it leaves torch optional."""

from __future__ import annotations

import subprocess
import sys

import pytest

import napari_sam2_webgpu.export as export


def test_public_names_are_re_exported() -> None:
    for name in export.__all__:
        assert getattr(export, name) is not None, name
    for name in ("build_sam2_model", "export_onnx", "export_checkpoint", "ExportResult"):
        assert name in export.__all__


def test_import_does_not_import_torch() -> None:
    # The CLI and the widget import the package before knowing whether the export extra is
    # installed; torch, sam2 and onnx load only when an export runs.
    code = (
        "import sys, napari_sam2_webgpu.export; "
        "print(sorted(m for m in ('torch', 'sam2', 'onnx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        export.no_such_name  # noqa: B018
