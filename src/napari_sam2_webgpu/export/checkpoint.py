"""Building the torch SAM2 model to export, from a checkpoint or with random weights."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .configs import MICRO_MEMORY_OVERRIDE, hydra_config
from .deps import require_export_deps

__all__ = ["build_sam2_model"]


def build_sam2_model(
    size: str = "tiny",
    checkpoint: str | os.PathLike | None = None,
    *,
    config: str | None = None,
    seed: int | None = None,
) -> Any:
    """Build a SAM2 model on the CPU, from a checkpoint or with random weights.

    Parameters
    ----------
    size : str
        One of ``tiny``, ``small``, ``base_plus``, ``large`` (SAM2.1 configs), or ``micro``, a
        small random network of the same graph used by the tests.
    checkpoint : path, optional
        A ``.pt`` file (official or fine-tuned, ``{"model": state_dict}``). ``None`` keeps the
        random initialisation.
    config : str, optional
        A sam2 Hydra config name to use instead of the size's, e.g.
        ``configs/sam2/sam2_hiera_t.yaml`` for the original SAM2 checkpoints.
    seed : int, optional
        Seed for the random initialisation (reproducible random-weight models).

    Returns
    -------
    sam2.modeling.sam2_base.SAM2Base
        The model in eval mode.

    Raises
    ------
    ValueError
        For an unknown size.
    FileNotFoundError
        When ``checkpoint`` is not a file.
    ImportError
        Without the ``export`` extra.
    """
    require_export_deps()
    import torch
    from sam2.build_sam import build_sam2

    config_name, overrides = hydra_config(size, config)
    overrides = list(overrides)
    if seed is not None:
        torch.manual_seed(seed)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"Checkpoint not found: {checkpoint}")

    def build(extra: list[str]) -> Any:
        return build_sam2(
            config_name,
            ckpt_path=str(checkpoint) if checkpoint is not None else None,
            device="cpu",
            mode="eval",
            hydra_overrides_extra=extra,
        )

    if checkpoint is None and MICRO_MEMORY_OVERRIDE in overrides:
        # Random weights drawn as with SAM2's 7 memories (so a seed gives the same network
        # whatever the bank size), then only the bank's temporal encodings kept.
        full = build([o for o in overrides if o != MICRO_MEMORY_OVERRIDE])
        _randomise_zero_parameters(full, seed)
        model = build(overrides)
        state = full.state_dict()
        state["maskmem_tpos_enc"] = state["maskmem_tpos_enc"][: model.num_maskmem]
        model.load_state_dict(state)
        return model
    model = build(overrides)
    if checkpoint is None:
        _randomise_zero_parameters(model, seed)
    return model


def _randomise_zero_parameters(model: Any, seed: int | None) -> None:
    """Give zero-initialised embeddings small random values.

    Some SAM2 parameters start at zero (e.g. ``no_mem_embed``), which would leave those paths
    untested by random-weight parity checks.
    """
    import torch

    gen = torch.Generator().manual_seed(0 if seed is None else seed + 1)
    with torch.no_grad():
        for param in model.parameters():
            if param.numel() and not torch.any(param):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
