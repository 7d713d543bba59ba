"""Tests of the file-name convention and path records (``napari_sam2_webgpu.models.files``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_sam2_webgpu.models import (
    COMPONENTS,
    IMAGE_COMPONENTS,
    REGISTRY,
    VIDEO_COMPONENTS,
    VIDEO_SUFFIXES,
    ModelPaths,
    VideoModelPaths,
    companion_video_files,
    component_filename,
    model_paths_from_files,
    model_stem,
    stem_of,
)


def test_model_paths_from_files(tmp_path: Path) -> None:
    enc, dec = tmp_path / "my.encoder.onnx", tmp_path / "my.decoder.onnx"
    enc.write_bytes(b"e")
    dec.write_bytes(b"d")
    assert model_paths_from_files(enc, str(dec)) == ModelPaths(enc.resolve(), dec.resolve())
    with pytest.raises(FileNotFoundError, match="decoder"):
        model_paths_from_files(enc, tmp_path / "nope.onnx")


def test_file_name_convention() -> None:
    stem = model_stem("base_plus")
    assert stem == "sam2.1_hiera_base_plus"
    names = [component_filename(stem, c) for c in COMPONENTS]
    assert names == [
        "sam2.1_hiera_base_plus.encoder.onnx",
        "sam2.1_hiera_base_plus.decoder.onnx",
        "sam2.1_hiera_base_plus.memory_attention.onnx",
        "sam2.1_hiera_base_plus.memory_encoder.onnx",
    ]
    assert tuple(n.removeprefix(stem) for n in names) == VIDEO_SUFFIXES
    assert IMAGE_COMPONENTS + VIDEO_COMPONENTS == COMPONENTS
    with pytest.raises(ValueError, match="component"):
        component_filename(stem, "mask_decoder")


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("dir/x.encoder.onnx", "x"),
        ("x.decoder.onnx", "x"),
        ("sam2.1_hiera_tiny.fp16.memory_encoder.onnx", "sam2.1_hiera_tiny.fp16"),
        ("x.memory_attention.onnx", "x"),
        ("plain.onnx", "plain"),
        ("x.encoder", "x"),
    ],
)
def test_stem_of(name: str, stem: str) -> None:
    assert stem_of(name) == stem


def test_registry_files_follow_the_convention() -> None:
    for size, spec in REGISTRY.items():
        stem = model_stem(size)
        assert spec.encoder.filename == component_filename(stem, "encoder")
        assert spec.decoder.filename == component_filename(stem, "decoder")
        assert stem_of(spec.encoder.filename) == stem


def test_video_model_paths_in_folder(tmp_path: Path) -> None:
    paths = VideoModelPaths.in_folder(tmp_path, "m")
    assert paths.files == tuple(tmp_path / f"m{suffix}" for suffix in VIDEO_SUFFIXES)
    assert (paths.encoder, paths.memory_encoder) == (paths.files[0], paths.files[3])


def test_companion_video_files(tmp_path: Path) -> None:
    encoder = tmp_path / "mine.encoder.onnx"
    encoder.write_bytes(b"e")
    assert companion_video_files(encoder) is None
    (tmp_path / "mine.memory_attention.onnx").write_bytes(b"a")
    assert companion_video_files(encoder) is None  # both are needed
    (tmp_path / "mine.memory_encoder.onnx").write_bytes(b"m")
    assert companion_video_files(str(encoder)) == (
        tmp_path / "mine.memory_attention.onnx",
        tmp_path / "mine.memory_encoder.onnx",
    )
