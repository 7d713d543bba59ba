"""Tests of the size -> files policy (``napari_sam2_webgpu.models.resolve``).

An installed model wins; otherwise the official checkpoint is built (the default source), or
the samexporter pair downloaded (image only). The library's ``from_pretrained`` constructors
use this one policy.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from napari_sam2_webgpu.models import (
    COMPONENTS,
    ENV_OFFLINE,
    ENV_SOURCE,
    MODEL_SIZES,
    ModelNotAvailableError,
    ModelPaths,
    VideoModelPaths,
    check_size,
    check_source,
    component_filename,
    exported_dir,
    find_video_model,
    installed_export,
    model_stem,
    resolve_model,
)
from napari_sam2_webgpu.models import registry as registry_mod
from napari_sam2_webgpu.models import resolve as resolve_mod

from .helpers import FileServer, direct_spec, random_bytes


def install_export(cache: Path, size: str, components: tuple[str, ...] = COMPONENTS) -> Path:
    """Stand-in for ``export --size SIZE --install``: the files, with dummy bytes."""
    folder = exported_dir(cache)
    folder.mkdir(parents=True, exist_ok=True)
    for component in components:
        (folder / component_filename(model_stem(size), component)).write_bytes(b"onnx")
    return folder


class RecordDownloads:
    """Replaces ``ensure_model`` where resolve looks it up; records each call."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, model: str, **kwargs: Any) -> ModelPaths:
        self.calls.append((model, kwargs))
        stem = model_stem(model)
        return ModelPaths(self.cache / f"{stem}.encoder.onnx", self.cache / f"{stem}.decoder.onnx")


@pytest.fixture
def downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RecordDownloads:
    """The samexporter source's downloads, recorded (these tests are about that source)."""
    recorder = RecordDownloads(tmp_path / "cache")
    monkeypatch.setattr(resolve_mod, "ensure_model", recorder)
    monkeypatch.setenv(ENV_SOURCE, "samexporter")
    return recorder


class RecordBuilds:
    """Replaces ``ensure_built`` (the official source) where resolve looks it up."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, size: str, **kwargs: Any) -> VideoModelPaths:
        self.calls.append((size, kwargs))
        return VideoModelPaths.in_folder(self.cache / "built", model_stem(size))


@pytest.fixture
def builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RecordBuilds:
    recorder = RecordBuilds(tmp_path / "cache")
    monkeypatch.setattr(resolve_mod, "ensure_built", recorder)
    monkeypatch.delenv(ENV_SOURCE, raising=False)
    return recorder


def test_the_official_checkpoint_is_the_default_source(tmp_path: Path, builds: RecordBuilds):
    cache = tmp_path / "cache"
    paths = resolve_model("T", cache=cache, offline=True)
    assert paths == VideoModelPaths.in_folder(cache / "built", "sam2.1_hiera_tiny")
    assert resolve_model("large", video=True, cache=cache).encoder.name.startswith(
        "sam2.1_hiera_large"
    )
    assert [size for size, _ in builds.calls] == ["tiny", "large"]
    assert builds.calls[0][1]["offline"] is True


def test_an_installed_model_wins_over_the_official_build(tmp_path: Path, builds: RecordBuilds):
    cache = tmp_path / "cache"
    folder = install_export(cache, "small")
    assert resolve_model("small", cache=cache).encoder.parent == folder
    assert builds.calls == []


def test_source_from_the_argument_or_the_environment(
    tmp_path: Path, builds: RecordBuilds, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert check_source(None) == "official"
    assert check_source(" SamExporter ") == "samexporter"
    monkeypatch.setenv(ENV_SOURCE, "samexporter")
    assert check_source(None) == "samexporter"
    assert check_source("official") == "official"
    with pytest.raises(ValueError, match="official, samexporter"):
        check_source("huggingface")
    with pytest.raises(ValueError, match="Unknown model source"):
        resolve_model("tiny", cache=tmp_path, source="nope")
    assert builds.calls == []


def test_installed_export_is_preferred_to_the_download(
    tmp_path: Path, downloads: RecordDownloads
) -> None:
    cache = tmp_path / "cache"
    folder = install_export(cache, "tiny")

    paths = resolve_model("tiny", cache=cache)

    assert isinstance(paths, VideoModelPaths)
    assert paths.encoder == folder / "sam2.1_hiera_tiny.encoder.onnx"
    assert paths.memory_encoder == folder / "sam2.1_hiera_tiny.memory_encoder.onnx"
    assert downloads.calls == []  # nothing downloaded, not even checked
    assert resolve_model("tiny", video=True, cache=cache) == paths


def test_download_when_there_is_no_export(tmp_path: Path, downloads: RecordDownloads) -> None:
    cache = tmp_path / "cache"

    def progress(done: int, total: int, name: str) -> None:
        pass

    paths = resolve_model("Tiny", progress=progress, cache=cache, offline=False)

    assert isinstance(paths, ModelPaths) and not isinstance(paths, VideoModelPaths)
    assert downloads.calls == [
        (
            "tiny",
            {
                "progress": progress,
                "cache": cache,
                "offline": False,
                "allow_unverified": None,
                "base_url": None,
            },
        )
    ]


def test_an_export_without_video_components_does_not_count(
    tmp_path: Path, downloads: RecordDownloads
) -> None:
    cache = tmp_path / "cache"
    install_export(cache, "small", components=("encoder", "decoder"))  # export --no-video
    assert installed_export("small", cache) is None
    assert isinstance(resolve_model("small", cache=cache), ModelPaths)
    assert [model for model, _ in downloads.calls] == ["small"]


def test_an_export_of_another_size_does_not_count(
    tmp_path: Path, downloads: RecordDownloads
) -> None:
    cache = tmp_path / "cache"
    install_export(cache, "large")
    assert not isinstance(resolve_model("tiny", cache=cache), VideoModelPaths)
    assert [model for model, _ in downloads.calls] == ["tiny"]


def test_video_without_export_is_a_clear_error(tmp_path: Path, downloads: RecordDownloads) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(ModelNotAvailableError) as err:
        resolve_model("base-plus", video=True, cache=cache)
    msg = str(err.value)
    assert "napari-sam2-webgpu convert sam2.1_hiera_base_plus.pt --size base_plus --install" in msg
    assert "official source" in msg
    assert str(exported_dir(cache)) in msg
    assert "sam2.1_hiera_base_plus.memory_attention.onnx" in msg
    assert downloads.calls == []  # the registry has no video components: never downloaded


def test_short_names_find_the_export(tmp_path: Path, downloads: RecordDownloads) -> None:
    cache = tmp_path / "cache"
    install_export(cache, "base_plus")
    assert isinstance(resolve_model("b+", cache=cache), VideoModelPaths)
    assert find_video_model("B+", cache) == installed_export("base_plus", cache)
    assert downloads.calls == []


def test_sizes_outside_the_registry(tmp_path: Path, downloads: RecordDownloads) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(ValueError) as err:
        resolve_model("micro", cache=cache)
    for name in MODEL_SIZES:
        assert name in str(err.value)
    assert "--install" in str(err.value)
    with pytest.raises(ValueError):
        check_size("micro", cache=cache)

    install_export(cache, "micro")  # a test config the registry does not publish
    assert check_size("micro", cache=cache) == "micro"
    assert isinstance(resolve_model("micro", cache=cache), VideoModelPaths)
    assert check_size("Tiny", cache=cache) == "tiny"
    assert downloads.calls == []


def test_fallback_downloads_the_registry_pair(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # End to end through the real ensure_model, with the registry's tiny served locally.
    enc, dec = random_bytes(5_000), random_bytes(2_000)
    local = direct_spec(server, enc, dec, name=model_stem("tiny"))
    local = dataclasses.replace(local, name="tiny")
    monkeypatch.setattr(registry_mod, "REGISTRY", {**registry_mod.REGISTRY, "tiny": local})
    cache = tmp_path / "cache"

    paths = resolve_model("tiny", cache=cache, source="samexporter")

    assert paths == ModelPaths(cache / local.encoder.filename, cache / local.decoder.filename)
    assert paths.encoder.read_bytes() == enc

    monkeypatch.setenv(ENV_OFFLINE, "1")
    install_export(cache, "tiny")
    assert isinstance(resolve_model("tiny", cache=cache), VideoModelPaths)


# --------------------------------------------------------------------------------------------
# The library uses this policy
# --------------------------------------------------------------------------------------------


class Loaded(Exception):
    """Raised by the stand-in ``from_files``: carries what would have been loaded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.args_ = args
        self.kwargs = kwargs


def _stop(cls: type, *args: Any, **kwargs: Any) -> None:
    raise Loaded(*args, **kwargs)


def test_predictor_from_pretrained_loads_the_installed_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, downloads: RecordDownloads
) -> None:
    from napari_sam2_webgpu.predictor import Sam2Predictor

    cache = tmp_path / "cache"
    folder = install_export(cache, "tiny")
    monkeypatch.setattr(Sam2Predictor, "from_files", classmethod(_stop))

    with pytest.raises(Loaded) as loaded:
        Sam2Predictor.from_pretrained("tiny", "cpu", cache=cache)

    encoder, decoder, backend = loaded.value.args_
    assert (encoder, decoder) == (
        folder / "sam2.1_hiera_tiny.encoder.onnx",
        folder / "sam2.1_hiera_tiny.decoder.onnx",
    )
    assert backend == "cpu"
    assert downloads.calls == []

    with pytest.raises(Loaded) as loaded:
        Sam2Predictor.from_pretrained("small", "cpu", cache=cache)  # not exported: download
    assert loaded.value.args_[0] == cache / "sam2.1_hiera_small.encoder.onnx"
    assert [model for model, _ in downloads.calls] == ["small"]


def test_propagator_from_pretrained_needs_the_installed_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, downloads: RecordDownloads
) -> None:
    pytest.importorskip("scipy")
    from napari_sam2_webgpu.video import Sam2Propagator

    cache = tmp_path / "cache"
    with pytest.raises(ModelNotAvailableError, match="--install"):
        Sam2Propagator.from_pretrained("tiny", "cpu", cache=cache)

    folder = install_export(cache, "tiny")
    monkeypatch.setattr(Sam2Propagator, "from_files", classmethod(_stop))
    with pytest.raises(Loaded) as loaded:
        Sam2Propagator.from_pretrained("tiny", "cpu", cache=cache)
    assert loaded.value.args_[:4] == VideoModelPaths.in_folder(folder, "sam2.1_hiera_tiny").files
    assert downloads.calls == []
