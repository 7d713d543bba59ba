"""What several benchmark scripts share: the model they time, and how they time it.

:func:`random_model` is a seeded random-weight SAM2 built from the packaged templates, without
torch's exporter, as users' models are (``models.convert.build_model``); the torch model
itself is returned too for scripts that compare with the official code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Median wall time of run() in ms after one untimed call: the package's own timer.
from napari_sam2_webgpu.image.decoder import time_decoder as median_ms

__all__ = ["median_ms", "random_model"]


def random_model(size: str, folder: str | Path, *, seed: int = 0, keep: bool = False):
    """``(torch model or None, ModelPaths)``: SAM2 ``size`` with random weights (``seed``),
    its ONNX files in ``folder``; the torch model is kept only with ``keep``."""
    from napari_sam2_webgpu.export import build_sam2_model
    from napari_sam2_webgpu.models.convert import build_model

    model: Any = build_sam2_model(size, seed=seed)
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    if not keep:
        model = None
    paths, _ = build_model(state, size, Path(folder), stem=size)
    return model, paths
