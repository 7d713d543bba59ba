"""Tests of the SAM2.1 registry (``napari_sam2_webgpu.models.registry``)."""

from __future__ import annotations

import re

import pytest

from napari_sam2_webgpu.models import (
    MODEL_SIZES,
    REGISTRY,
    UNVERIFIED,
    ensure_model,
    get_spec,
)

# --------------------------------------------------------------------------------------------
# get_spec
# --------------------------------------------------------------------------------------------


def test_get_spec_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError) as err:
        get_spec("huge")
    for name in MODEL_SIZES:
        assert name in str(err.value)
    with pytest.raises(ValueError):
        ensure_model("huge")


@pytest.mark.parametrize(
    ("name", "key"),
    [("tiny", "tiny"), ("Small", "small"), ("base-plus", "base_plus"), ("b+", "base_plus")],
)
def test_get_spec_known_names(name: str, key: str) -> None:
    assert get_spec(name) is REGISTRY[key]


# --------------------------------------------------------------------------------------------
# Registry sanity
# --------------------------------------------------------------------------------------------


def test_registry_sanity() -> None:
    assert tuple(REGISTRY) == MODEL_SIZES
    seen: set[str] = set()
    for key, spec in REGISTRY.items():
        assert spec.name == key
        assert spec.license and spec.source and spec.description
        assert spec.checkpoint_url.startswith("https://dl.fbaipublicfiles.com/")
        assert spec.checkpoint_url.endswith(f"sam2.1_hiera_{key}.pt")
        for mf in spec.files:
            assert mf.url.startswith("https://")
            assert mf.sha256 == UNVERIFIED or re.fullmatch(r"[0-9a-f]{64}", mf.sha256)
            assert mf.size >= 0
            assert mf.filename.endswith(".onnx") and "/" not in mf.filename
            assert mf.filename not in seen
            seen.add(mf.filename)
            if mf.archive is not None:
                arc = mf.archive
                assert arc.url == mf.url and arc.url.startswith("https://")
                assert arc.sha256 == UNVERIFIED or re.fullmatch(r"[0-9a-f]{64}", arc.sha256)
                # Pinned to a revision, never a moving branch.
                assert "/resolve/main/" not in arc.url
        assert spec.encoder.filename.endswith(".encoder.onnx")
        assert spec.decoder.filename.endswith(".decoder.onnx")
    # The default model must be fully verifiable, with exact sizes.
    tiny = REGISTRY["tiny"]
    assert tiny.fully_verified and tiny.encoder.size > 0 and tiny.decoder.size > 0
    # An entry without checksums says so.
    for spec in REGISTRY.values():
        if not spec.fully_verified:
            assert spec.notes


def test_every_registry_size_can_be_exported() -> None:
    # The exporter's configs are keyed by the registry's sizes (plus the test-only "micro"), so
    # `export --size SIZE --install` can replace any registry model.
    from napari_sam2_webgpu.export import CONFIGS

    assert set(MODEL_SIZES) <= set(CONFIGS)


def test_registry_key_normalises_or_says_none() -> None:
    from napari_sam2_webgpu.models.registry import registry_key

    assert registry_key(" B+ ") == "base_plus"
    assert registry_key("Large") == "large"
    assert registry_key("micro") is None
