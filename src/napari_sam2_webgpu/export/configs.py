"""Which sam2 Hydra config builds each model size, including the test-only ``micro`` size.

Pure Python: the names are resolved by sam2 only when a model is built.
"""

from __future__ import annotations

from ..models.templates import SAM2_0_PREFIX

__all__ = ["CONFIGS", "MICRO_MEMORY_OVERRIDE", "MICRO_OVERRIDES", "SAM2_0_PREFIX", "hydra_config"]

#: Hydra config (inside the ``sam2`` package) of each model size.
CONFIGS: dict[str, str] = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
    # Same graph as "tiny" with a much thinner, shallower Hiera trunk: fast tests only.
    "micro": "configs/sam2.1/sam2.1_hiera_t.yaml",
    # The original SAM2 (July 2024) checkpoints: same image graphs, but no temporal encoding of
    # object pointers and no "no object" spatial embedding in memories.
    SAM2_0_PREFIX + "tiny": "configs/sam2/sam2_hiera_t.yaml",
    SAM2_0_PREFIX + "small": "configs/sam2/sam2_hiera_s.yaml",
    SAM2_0_PREFIX + "base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    SAM2_0_PREFIX + "large": "configs/sam2/sam2_hiera_l.yaml",
    SAM2_0_PREFIX + "micro": "configs/sam2/sam2_hiera_t.yaml",
}


#: Frames of memory of the ``micro`` models (build_sam2_model draws their random weights as for
#: SAM2's 7 and keeps the first 3 temporal encodings, so the other weights do not change).
MICRO_MEMORY_OVERRIDE = "++model.num_maskmem=3"

#: Hydra overrides that turn the ``tiny`` config into ``micro``.
MICRO_OVERRIDES: tuple[str, ...] = (
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    # Windowed attention only: a global block at the 64 x 64 stage held half of an encode's
    # time on the CPU (4 heads x 4,096 x 4,096 scores). Full-size configs keep theirs, and the
    # tests that run tiny cover them.
    "++model.image_encoder.trunk.global_att_blocks=[]",
    "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[7,7]",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    # One memory-attention layer instead of four, memories of 3 frames instead of 7 (the
    # attention's keys), attention on 64 channels instead of 256 (downsample_rate 4), a
    # narrower feed-forward and one fuser block in the memory encoder: propagation tests stay
    # fast on two cores. Full banks, their eviction and every graph are the same (the inputs
    # and outputs too); the full-size configs keep theirs.
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.self_attention.downsample_rate=4",
    "++model.memory_attention.layer.cross_attention.downsample_rate=4",
    "++model.memory_attention.layer.dim_feedforward=512",
    "++model.memory_encoder.fuser.num_layers=1",
    MICRO_MEMORY_OVERRIDE,
)


def hydra_config(size: str, config: str | None = None) -> tuple[str, list[str]]:
    """The sam2 config name and Hydra overrides that build a model size.

    Parameters
    ----------
    size : str
        A key of :data:`CONFIGS`.
    config : str, optional
        A sam2 config name to use instead of the size's (e.g.
        ``configs/sam2/sam2_hiera_t.yaml`` for the original SAM2 checkpoints); the size still
        selects the overrides.

    Returns
    -------
    config : str
        What ``sam2.build_sam.build_sam2`` (or ``build_sam2_video_predictor``) takes as
        ``config_file``.
    overrides : list of str
        What they take as ``hydra_overrides_extra``.

    Raises
    ------
    ValueError
        For an unknown size.
    """
    if size not in CONFIGS:
        raise ValueError(f"Unknown model size {size!r}; choose one of {sorted(CONFIGS)}.")
    overrides = list(MICRO_OVERRIDES) if size.endswith("micro") else []
    return config or CONFIGS[size], overrides
