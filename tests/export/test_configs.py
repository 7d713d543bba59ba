"""Model sizes -> sam2 configs (``napari_sam2_webgpu.export.configs``); no torch needed."""

from __future__ import annotations

import pytest

from napari_sam2_webgpu.export import CONFIGS, MICRO_OVERRIDES, hydra_config


def test_sizes_use_their_config_without_overrides() -> None:
    assert hydra_config("large") == ("configs/sam2.1/sam2.1_hiera_l.yaml", [])


def test_micro_is_tiny_with_overrides() -> None:
    name, overrides = hydra_config("micro")
    assert name == CONFIGS["tiny"]
    assert overrides == list(MICRO_OVERRIDES) and overrides


def test_config_replaces_the_sizes_but_keeps_its_overrides() -> None:
    name, overrides = hydra_config("micro", "configs/sam2/sam2_hiera_t.yaml")
    assert name == "configs/sam2/sam2_hiera_t.yaml"
    assert overrides == list(MICRO_OVERRIDES)


def test_unknown_size_names_the_choices() -> None:
    with pytest.raises(ValueError, match="Unknown model size 'huge'.*tiny"):
        hydra_config("huge")
