"""Building the torch model (``napari_sam2_webgpu.export.checkpoint``): argument errors."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("sam2")
pytest.importorskip("onnx")

from napari_sam2_webgpu.export import build_sam2_model, export_checkpoint  # noqa: E402


def test_missing_checkpoint(tmp_path):
    missing = tmp_path / "sam2.1_hiera_tiny.pt"
    with pytest.raises(FileNotFoundError, match="Checkpoint not found: .*sam2.1_hiera_tiny.pt"):
        build_sam2_model("micro", missing)
    with pytest.raises(FileNotFoundError, match="Checkpoint not found"):
        export_checkpoint("tiny", tmp_path / "out", checkpoint=missing)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unknown_size(tmp_path):
    with pytest.raises(ValueError, match="Unknown model size 'huge'.*tiny"):
        build_sam2_model("huge")
    with pytest.raises(ValueError, match="Unknown model size 'huge'"):
        export_checkpoint("huge", tmp_path)
