"""Helpers of the export tests, and the official sam2 pieces the parity tests use: the video
predictor, and SAM2's CUDA connected-components kernel done on the CPU."""

from __future__ import annotations

from typing import Any

from napari_sam2_webgpu.export import hydra_config, require_export_deps


def build_official_video_predictor(
    model: Any, size: str = "tiny", *, device: str = "cpu", config: str | None = None
) -> Any:
    """The official ``SAM2VideoPredictor`` with ``model``'s weights (the parity reference).

    Parameters
    ----------
    model : SAM2Base
        From :func:`napari_sam2_webgpu.export.build_sam2_model`; its weights are copied.
    size : str
        The size it was built as (selects the config and the micro overrides).
    device : str
        Torch device.
    config : str, optional
        The config, if ``model`` was built with one other than the size's.

    Returns
    -------
    sam2.sam2_video_predictor.SAM2VideoPredictor
    """
    require_export_deps()
    from sam2.build_sam import build_sam2_video_predictor

    config_name, overrides = hydra_config(size, config)
    predictor = build_sam2_video_predictor(
        config_name, None, device=device, hydra_overrides_extra=overrides
    )
    predictor.load_state_dict(model.state_dict())
    return predictor.to(device).eval()


def connected_components_cpu(mask: Any) -> tuple[Any, Any]:
    """SAM2's CUDA ``get_connected_components``, on the CPU (8-connectivity, per-pixel areas).

    Parity tests patch it into ``sam2.utils.misc`` so that hole filling runs without CUDA.
    """
    import numpy as np
    import torch
    from scipy import ndimage

    arr = mask.cpu().numpy().astype(bool)
    labels = np.zeros(arr.shape, dtype=np.int32)
    areas = np.zeros(arr.shape, dtype=np.int32)
    for i in range(arr.shape[0]):
        lab, _ = ndimage.label(arr[i, 0], structure=np.ones((3, 3)))
        counts = np.bincount(lab.ravel())
        counts[0] = 0
        labels[i, 0], areas[i, 0] = lab, counts[lab]
    return torch.from_numpy(labels), torch.from_numpy(areas)
