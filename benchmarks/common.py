"""What several benchmark scripts share: the model they time, its inputs, how they time it.

:func:`random_model` is a seeded random-weight SAM2 built from the packaged templates, without
torch's exporter, as users' models are (``models.convert.build_model``); the torch model
itself is returned too for scripts that compare with the official code. :func:`random_feeds`
gives any component's session inputs of a tracked frame at a full memory bank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# Median wall time of run() in ms after one untimed call: the package's own timer.
from napari_sam2_webgpu.image.decoder import time_decoder as median_ms

__all__ = ["FULL_BANK", "device_io", "median_ms", "random_feeds", "random_model"]

#: Dynamic sizes of a tracked frame at a full memory bank (7 memories, 16 object pointers) and
#: of a two-point click.
FULL_BANK = {"num_memories": 7, "num_pointers": 16, "num_points": 2, "num_labels": 1}


def device_io(backend: str):
    """A ``DeviceIO`` on ``backend``'s own memory: the GPU's for ``"webgpu"``, and for
    ``"cpu"`` the CPU EP's, which stands in for a device in the same code path."""
    import onnxruntime as ort

    from napari_sam2_webgpu.runtime import webgpu_ep_device
    from napari_sam2_webgpu.runtime.iobinding import DeviceIO

    if backend == "cpu":
        ep = next(d for d in ort.get_ep_devices() if d.ep_name == "CPUExecutionProvider")
    else:
        ep = webgpu_ep_device()
    return DeviceIO.for_ep_device(ep)


def random_feeds(
    session, rng: np.random.Generator, sizes: dict[str, int] | None = None, positions: int = 7
) -> dict[str, np.ndarray]:
    """Random inputs for every input of ``session``, dynamic sizes from ``sizes``
    (:data:`FULL_BANK` by default); integer inputs (memory frame positions) count up modulo
    ``positions``; prompts are positive points without a mask input."""
    sizes = FULL_BANK if sizes is None else sizes
    feeds = {}
    for arg in session.get_inputs():
        shape = [d if isinstance(d, int) else sizes.get(d, 1) for d in arg.shape]
        if arg.type == "tensor(int64)":
            count = int(np.prod(shape))
            feeds[arg.name] = np.arange(count, dtype=np.int64).reshape(shape) % positions
        else:
            feeds[arg.name] = rng.standard_normal(shape).astype(np.float32)
    if "point_labels" in feeds:
        feeds["point_labels"] = np.ones(feeds["point_labels"].shape, np.float32)
    if "has_mask_input" in feeds:
        feeds["has_mask_input"] = np.zeros(feeds["has_mask_input"].shape, np.float32)
    return feeds


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
