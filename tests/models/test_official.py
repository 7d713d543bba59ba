"""The official source (``models.official``): Meta's checkpoint served from 127.0.0.1 through the
real download code, built once into the cache, rebuilt from the cached checkpoint when a file
changed or the templates did, never left half-built."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_sam2_webgpu.models import (
    ModelDownloadError,
    ModelFile,
    ModelNotAvailableError,
    VideoModelPaths,
    official,
    resolve_model,
)
from napari_sam2_webgpu.models import convert as convert_mod
from napari_sam2_webgpu.models.templates import load_index

from .helpers import FileServer, leftovers, safetensors_bytes, sha

STEM = "sam2.1_hiera_tiny"


@pytest.fixture(scope="module")
def tiny_checkpoint() -> bytes:
    """A random-weight tiny state dict with the official keys and shapes."""
    rng = np.random.default_rng(0)
    state = {
        key: (0.02 * rng.standard_normal(shape)).astype(dtype)
        for key, (shape, dtype) in load_index("tiny").keys.items()
    }
    return safetensors_bytes(state)


@pytest.fixture
def served(server: FileServer, tiny_checkpoint: bytes, monkeypatch: pytest.MonkeyPatch) -> str:
    """The tiny checkpoint on a local mirror, registered under its published name."""
    server.add(f"/{STEM}.pt", tiny_checkpoint)
    entry = ModelFile(f"{STEM}.pt", "unused", sha(tiny_checkpoint), len(tiny_checkpoint))
    monkeypatch.setitem(official.CHECKPOINTS, "tiny", entry)
    return server.url("")


def test_first_use_downloads_and_builds_then_reuses(
    served: str, server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    reports: list[tuple[int, int, str]] = []
    paths = resolve_model(
        "tiny", cache=cache, base_url=served, progress=lambda *a: reports.append(a)
    )
    assert paths == VideoModelPaths.in_folder(cache / "built", STEM)
    assert all(p.is_file() for p in paths.files)
    assert (cache / "checkpoints" / f"{STEM}.pt").is_file()
    names = {name for _, _, name in reports}
    assert f"{STEM}.pt" in names  # the download ...
    assert f"Building {STEM}.encoder.onnx" in names  # ... then the build
    manifest = json.loads((cache / "built" / f"{STEM}.build.json").read_text())
    assert manifest["checkpoint_sha256"] == official.CHECKPOINTS["tiny"].sha256
    assert set(manifest["files"]) == {p.name for p in paths.files}

    def no_build(*args, **kwargs):
        raise AssertionError("built again")

    monkeypatch.setattr(convert_mod, "build_model", no_build)
    assert resolve_model("tiny", cache=cache, video=True, offline=True) == paths
    assert server.count(f"/{STEM}.pt") == 1
    assert leftovers(cache / "built") == []


def test_a_changed_file_is_rebuilt_from_the_cached_checkpoint(
    served: str, server: FileServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    paths = official.ensure_built("tiny", cache=cache, base_url=served)
    good = paths.decoder.read_bytes()
    paths.decoder.write_bytes(good[:-10] + b"x" * 10)
    assert official.built_model("tiny", cache) is None
    again = official.ensure_built("tiny", cache=cache, offline=True)  # no download needed
    assert again.decoder.read_bytes() == good
    assert server.count(f"/{STEM}.pt") == 1


def test_new_templates_rebuild(
    served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    official.ensure_built("tiny", cache=cache, base_url=served)
    assert official.built_model("tiny", cache) is not None
    monkeypatch.setattr(official, "templates_digest", lambda size, templates=None: "other")
    assert official.built_model("tiny", cache) is None  # made from other templates: stale
    official.ensure_built("tiny", cache=cache, offline=True)
    assert official.built_model("tiny", cache) is not None


def test_offline_without_the_checkpoint_says_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError) as info:
        official.ensure_built("small", cache=tmp_path, offline=True)
    message = str(info.value)
    assert official.CHECKPOINTS["small"].url in message
    assert official.CHECKPOINTS["small"].sha256 in message
    assert not (tmp_path / "built").exists()


def test_a_corrupted_download_builds_nothing(
    server: FileServer, tiny_checkpoint: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.add(f"/{STEM}.pt", tiny_checkpoint[:-1] + b"!")
    entry = ModelFile(f"{STEM}.pt", "unused", sha(tiny_checkpoint), len(tiny_checkpoint))
    monkeypatch.setitem(official.CHECKPOINTS, "tiny", entry)
    with pytest.raises(ModelDownloadError, match="sha256"):
        official.ensure_built("tiny", cache=tmp_path, base_url=server.url(""))
    assert not (tmp_path / "built").exists() or not any((tmp_path / "built").iterdir())
    assert not (tmp_path / "checkpoints" / f"{STEM}.pt").exists()


def test_published_checkpoints_are_pinned() -> None:
    for size, entry in official.CHECKPOINTS.items():
        assert entry.url == (
            f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_{size}.pt"
        )
        assert entry.has_checksum and entry.size > 100_000_000
    with pytest.raises(ValueError, match="tiny, small, base_plus, large"):
        official.checkpoint_spec("micro")


def test_a_cache_that_cannot_be_written_gets_a_clear_error(
    served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    official.ensure_checkpoint("tiny", cache=cache, base_url=served)
    (cache / "built").write_text("a file where the folder should be")
    with pytest.raises(ModelNotAvailableError, match="cannot be built into") as info:
        official.ensure_built("tiny", cache=cache, offline=True)
    assert "NAPARI_SAM2_WEBGPU_CACHE_DIR" in str(info.value)
