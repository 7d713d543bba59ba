"""Loading a model for the dock (``_qt.loading``): what the progress bar says while the files
are downloaded and built, and that the files come from the one policy (``resolve_model``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_sam2_webgpu._qt import loading
from napari_sam2_webgpu.models import ModelPaths


class Loaded(Exception):
    """Raised by the stand-in ``from_files``: the files that would have been loaded."""


def test_progress_says_downloading_then_building(monkeypatch: pytest.MonkeyPatch) -> None:
    import napari_sam2_webgpu.image as image
    import napari_sam2_webgpu.models as models

    def resolve(size: str, progress) -> ModelPaths:
        progress(1 << 20, 4 << 20, "sam2.1_hiera_tiny.pt")
        progress(2 << 20, 8 << 20, "Building sam2.1_hiera_tiny.encoder.onnx")
        return ModelPaths(Path("e.onnx"), Path("d.onnx"))

    def from_files(encoder, decoder, backend, name=None):
        raise Loaded(encoder, decoder, backend, name)

    monkeypatch.setattr(models, "resolve_model", resolve)
    monkeypatch.setattr(image.Sam2Predictor, "from_files", staticmethod(from_files))
    reports = []
    with pytest.raises(Loaded) as info:
        loading.load_predictor(
            loading.ModelChoice("tiny", None, None, "cpu"), lambda *a: reports.append(a)
        )
    assert info.value.args[:3] == (Path("e.onnx"), Path("d.onnx"), "cpu")
    texts = [r[0] for r in reports]
    assert "SAM2: downloading sam2.1_hiera_tiny.pt" in texts
    assert "SAM2: building sam2.1_hiera_tiny.encoder.onnx" in texts
    assert (texts[-1], reports[-1][1]) == ("SAM2: creating ONNX Runtime sessions", 1)
    assert reports[1][1:] == (1024, 4096)  # KiB
