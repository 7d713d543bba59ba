"""Tests of part files, zip extraction and installation (``napari_sam2_webgpu.models.fetch``)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from napari_sam2_webgpu.models import (
    ModelDownloadError,
    ModelFile,
    ModelSpec,
    ensure_model,
    is_cached,
)
from napari_sam2_webgpu.models import fetch as fetch_mod

from .helpers import (
    FileServer,
    archive_spec,
    direct_spec,
    leftovers,
    random_bytes,
    sha,
)

# --------------------------------------------------------------------------------------------
# Archives
# --------------------------------------------------------------------------------------------


def test_archive_download_extracts_members(server: FileServer, tmp_path: Path) -> None:
    enc, dec = random_bytes(1_500_000), random_bytes(100_000)
    spec, blob = archive_spec(server, enc, dec, member_dir="export/")
    cache = tmp_path / "cache"
    calls: list[tuple[int, int, str]] = []

    paths = ensure_model(spec, cache=cache, progress=lambda *a: calls.append(a))

    assert paths.encoder.read_bytes() == enc
    assert paths.decoder.read_bytes() == dec
    assert server.count(f"archives/{spec.name}.zip") == 1  # one download for both files
    assert calls[-1] == (len(blob), len(blob), f"{spec.name}.zip")
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [
            spec.encoder.filename,
            spec.encoder.filename + ".sha256",
            spec.decoder.filename,
            spec.decoder.filename + ".sha256",
        ]
    )  # no archive, no README, no temporary files


def test_archive_checksum_mismatch(server: FileServer, tmp_path: Path) -> None:
    spec, _ = archive_spec(server, random_bytes(5000), random_bytes(5000), zip_sha=sha(b"x"))
    cache = tmp_path / "cache"
    with pytest.raises(ModelDownloadError, match=re.escape(sha(b"x"))):
        ensure_model(spec, cache=cache)
    assert list(cache.iterdir()) == []


def test_archive_member_checksum_mismatch(server: FileServer, tmp_path: Path) -> None:
    enc, dec = random_bytes(5000), random_bytes(5000)
    spec, blob = archive_spec(server, enc, dec)
    bad_dec = ModelFile(
        spec.decoder.filename, spec.decoder.url, sha(b"y"), len(dec), spec.decoder.archive
    )
    spec = ModelSpec(spec.name, spec.encoder, bad_dec, "", "", "")
    cache = tmp_path / "cache"
    with pytest.raises(ModelDownloadError) as err:
        ensure_model(spec, cache=cache)
    assert sha(b"y") in str(err.value) and sha(dec) in str(err.value)
    assert not (cache / spec.decoder.filename).exists()
    assert leftovers(cache) == []


def test_interrupted_archive_download(server: FileServer, tmp_path: Path) -> None:
    spec, _ = archive_spec(server, random_bytes(800_000), random_bytes(50_000))
    server.truncate.add(f"/archives/{spec.name}.zip")
    cache = tmp_path / "cache"
    with pytest.raises(ModelDownloadError):
        ensure_model(spec, cache=cache)
    assert list(cache.iterdir()) == []
    server.truncate.clear()
    ensure_model(spec, cache=cache)
    assert is_cached(spec, cache=cache)


# --------------------------------------------------------------------------------------------
# Part files
# --------------------------------------------------------------------------------------------


def test_stale_part_files_are_cleaned(server: FileServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = cache / ".old.encoder.onnx.abc123.part"
    fresh = cache / ".busy.encoder.onnx.def456.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    old = time.time() - 2 * fetch_mod.STALE_PART_SECONDS
    os.utime(stale, (old, old))
    ensure_model(direct_spec(server, random_bytes(100), random_bytes(100)), cache=cache)
    assert not stale.exists()
    assert fresh.exists()  # may belong to another process still downloading
