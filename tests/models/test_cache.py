"""Tests of the cache folder, stamps and verification (``napari_sam2_webgpu.models.cache``)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from napari_sam2_webgpu.models import (
    ENV_ALLOW_UNVERIFIED,
    ENV_CACHE_DIR,
    REGISTRY,
    UNVERIFIED,
    ModelFile,
    ModelNotAvailableError,
    ModelSpec,
    ModelUnverifiedError,
    cache_dir,
    cache_status,
    ensure_model,
    is_cached,
    verify_file,
)
from napari_sam2_webgpu.models import cache as cache_mod
from napari_sam2_webgpu.models import fetch as fetch_mod

from .helpers import (
    FileServer,
    ReadOnly,
    archive_spec,
    bump_mtime,
    direct_spec,
    leftovers,
    random_bytes,
    sha,
)

# --------------------------------------------------------------------------------------------
# Stamps: a verified file is not hashed again
# --------------------------------------------------------------------------------------------


def test_verified_cache_is_not_rehashed(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = direct_spec(server, random_bytes(50_000), random_bytes(20_000))
    cache = tmp_path / "cache"
    ensure_model(spec, cache=cache)

    def no_hashing(path: object) -> str:
        raise AssertionError("an unchanged, stamped file must not be re-hashed")

    # Patched where it is looked up: the cache checks, and the fetch code (which hashes what it
    # downloads); the package re-export is a separate binding.
    monkeypatch.setattr(cache_mod, "sha256_file", no_hashing)
    monkeypatch.setattr(fetch_mod, "sha256_file", no_hashing)
    assert is_cached(spec, cache=cache)
    ensure_model(spec, cache=cache)


# --------------------------------------------------------------------------------------------
# Corruption in the cache after a good download
# --------------------------------------------------------------------------------------------


def test_corrupted_cache_file_is_redownloaded(server: FileServer, tmp_path: Path) -> None:
    enc, dec = random_bytes(120_000), random_bytes(30_000)
    spec = direct_spec(server, enc, dec)
    cache = tmp_path / "cache"
    paths = ensure_model(spec, cache=cache)

    # Same size, different bytes: only the hash can tell.
    damaged = bytearray(enc)
    damaged[1000:1010] = bytes(10)
    paths.encoder.write_bytes(bytes(damaged))
    bump_mtime(paths.encoder)
    assert not is_cached(spec, cache=cache)
    assert is_cached(spec, cache=cache, verify=False)  # exists with the right size

    before = server.count("files/" + spec.encoder.filename)
    ensure_model(spec, cache=cache)
    assert server.count("files/" + spec.encoder.filename) == before + 1
    assert server.count("files/" + spec.decoder.filename) == 1  # untouched file not refetched
    assert paths.encoder.read_bytes() == enc
    assert is_cached(spec, cache=cache)
    assert leftovers(cache) == []


def test_corrupted_cache_file_offline_is_reported(server: FileServer, tmp_path: Path) -> None:
    enc, dec = random_bytes(120_000), random_bytes(30_000)
    spec = direct_spec(server, enc, dec)
    cache = tmp_path / "cache"
    paths = ensure_model(spec, cache=cache)
    paths.decoder.write_bytes(dec[: len(dec) // 2])  # truncated on disk
    n_requests = len(server.requests)

    with pytest.raises(ModelNotAvailableError) as err:
        ensure_model(spec, cache=cache, offline=True)

    msg = str(err.value)
    assert "corrupt" in msg
    assert spec.decoder.filename in msg
    assert sha(dec) in msg
    assert len(server.requests) == n_requests


def test_corruption_with_unknown_size_found_by_hash(server: FileServer, tmp_path: Path) -> None:
    enc, dec = random_bytes(60_000), random_bytes(6_000)
    spec = direct_spec(server, enc, dec, sizes=False)
    cache = tmp_path / "cache"
    paths = ensure_model(spec, cache=cache)
    paths.encoder.write_bytes(enc + b"tail")
    assert not is_cached(spec, cache=cache)
    with pytest.raises(ModelNotAvailableError, match="corrupt"):
        ensure_model(spec, cache=cache, offline=True)
    ensure_model(spec, cache=cache)
    assert paths.encoder.read_bytes() == enc


def test_hand_placed_verified_file_is_adopted(tmp_path: Path) -> None:
    enc, dec = random_bytes(5_000), random_bytes(4_000)
    cache = tmp_path / "cache"
    cache.mkdir()
    spec = ModelSpec(
        "byhand",
        ModelFile("byhand.encoder.onnx", "https://example.invalid/e", sha(enc), len(enc)),
        ModelFile("byhand.decoder.onnx", "https://example.invalid/d", sha(dec), len(dec)),
        "",
        "",
        "",
    )
    (cache / "byhand.encoder.onnx").write_bytes(enc)
    (cache / "byhand.decoder.onnx").write_bytes(dec)
    assert ensure_model(spec, cache=cache, offline=True).encoder == cache / "byhand.encoder.onnx"
    assert (cache / "byhand.encoder.onnx.sha256").is_file()  # stamp written after hashing


# --------------------------------------------------------------------------------------------
# Cache folder
# --------------------------------------------------------------------------------------------


def test_cache_dir_env_override(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "elsewhere" / "models"
    monkeypatch.setenv(ENV_CACHE_DIR, str(target))
    assert cache_dir() == target
    assert not target.exists()  # created lazily

    spec = direct_spec(server, random_bytes(2000), random_bytes(2000))
    paths = ensure_model(spec)
    assert paths.encoder.parent == target
    assert is_cached(spec)


def test_cache_dir_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_CACHE_DIR, raising=False)
    path = cache_dir()
    assert path.name == "models"
    assert "napari-sam2-webgpu" in str(path)


def test_cache_status(server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    enc, dec = random_bytes(4000), random_bytes(1000)
    local = direct_spec(server, enc, dec, name="tiny")
    monkeypatch.setattr(cache_mod, "REGISTRY", {"tiny": local, "large": REGISTRY["large"]})
    cache = tmp_path / "cache"
    ensure_model(local, cache=cache)

    rows = {row["name"]: row for row in cache_status(cache=cache)}
    assert rows["tiny"]["cached"] is True
    assert rows["tiny"]["size_bytes"] == len(enc) + len(dec)
    assert rows["tiny"]["paths"]["encoder"] == str(cache / local.encoder.filename)
    assert rows["tiny"]["files"] == {"encoder": "ok", "decoder": "ok"}
    assert rows["large"]["cached"] is False
    assert rows["large"]["size_bytes"] == 0
    assert rows["large"]["files"] == {"encoder": "missing", "decoder": "missing"}


# --------------------------------------------------------------------------------------------
# Files without a published checksum: trust on first use
# --------------------------------------------------------------------------------------------


def test_unverified_trust_on_first_use(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enc, dec = random_bytes(3000), random_bytes(3000)
    spec = direct_spec(server, enc, dec, enc_sha=UNVERIFIED, dec_sha=UNVERIFIED, sizes=False)
    cache = tmp_path / "cache"

    monkeypatch.setenv(ENV_ALLOW_UNVERIFIED, "1")
    paths = ensure_model(spec, cache=cache)
    monkeypatch.delenv(ENV_ALLOW_UNVERIFIED)
    assert paths.encoder.read_bytes() == enc
    assert sha(enc) in (cache / (spec.encoder.filename + ".sha256")).read_text()

    # Adopted once: later calls need no opt-in, and the recorded hash is enforced.
    assert ensure_model(spec, cache=cache) == paths
    assert is_cached(spec, cache=cache)
    paths.encoder.write_bytes(random_bytes(3000))
    bump_mtime(paths.encoder)
    assert not is_cached(spec, cache=cache)
    with pytest.raises(ModelUnverifiedError):
        ensure_model(spec, cache=cache)
    assert ensure_model(spec, cache=cache, allow_unverified=True) == paths


def test_unverified_hand_placed_file(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    data = random_bytes(100)
    spec = ModelSpec(
        "manual",
        ModelFile("manual.encoder.onnx", "https://example.invalid/e", UNVERIFIED, 0),
        ModelFile("manual.decoder.onnx", "https://example.invalid/d", sha(data), len(data)),
        "",
        "",
        "",
    )
    (cache / "manual.encoder.onnx").write_bytes(b"placed by hand")
    (cache / "manual.decoder.onnx").write_bytes(data)
    assert not is_cached(spec, cache=cache)
    with pytest.raises(ModelNotAvailableError, match="unverifiable"):
        ensure_model(spec, cache=cache, offline=True)
    assert ensure_model(spec, cache=cache, offline=True, allow_unverified=True).encoder.is_file()
    assert is_cached(spec, cache=cache)


# --------------------------------------------------------------------------------------------
# verify_file
# --------------------------------------------------------------------------------------------


def test_verify_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = random_bytes(9 << 20)  # more than one hashing chunk
    path.write_bytes(data)
    assert verify_file(path, sha(data))
    assert verify_file(path, sha(data).upper())
    assert not verify_file(path, sha(b"other"))
    assert not verify_file(tmp_path / "missing.bin", sha(data))
    with pytest.raises(ValueError):
        verify_file(path, UNVERIFIED)


# --------------------------------------------------------------------------------------------
# Read-only cache
# --------------------------------------------------------------------------------------------


def test_read_only_cache_with_verified_models_is_only_read(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = direct_spec(server, random_bytes(30_000), random_bytes(8_000))
    cache = tmp_path / "cache"
    paths = ensure_model(spec, cache=cache)
    stale = cache / ".old.encoder.onnx.abc123.part"  # cleaning it must not even be tried
    stale.write_bytes(b"x")
    old = time.time() - 2 * fetch_mod.STALE_PART_SECONDS
    os.utime(stale, (old, old))
    n_requests = len(server.requests)

    guard = ReadOnly(cache, monkeypatch)
    assert ensure_model(spec, cache=cache) == paths
    assert is_cached(spec, cache=cache)
    assert guard.attempts == []  # no stamp, part file, lock file or cleaning was needed
    assert len(server.requests) == n_requests


def test_read_only_cache_without_stamps_is_verified_and_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An administrator copied the files in by hand: they are hashed, and the stamp that cannot
    # be written is simply skipped.
    enc, dec = random_bytes(5_000), random_bytes(4_000)
    cache = tmp_path / "shared"
    cache.mkdir()
    spec = ModelSpec(
        "shared",
        ModelFile("shared.encoder.onnx", "https://example.invalid/e", sha(enc), len(enc)),
        ModelFile("shared.decoder.onnx", "https://example.invalid/d", sha(dec), len(dec)),
        "",
        "",
        "",
    )
    (cache / "shared.encoder.onnx").write_bytes(enc)
    (cache / "shared.decoder.onnx").write_bytes(dec)

    guard = ReadOnly(cache, monkeypatch)
    paths = ensure_model(spec, cache=cache)
    assert paths.encoder == cache / "shared.encoder.onnx"
    assert guard.attempts  # the stamp was tried ...
    assert not (cache / "shared.encoder.onnx.sha256").exists()  # ... and refused, harmlessly


# --------------------------------------------------------------------------------------------
# Permissions of cached files follow the umask
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
@pytest.mark.parametrize(
    ("umask", "mode"),
    [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)],
    ids=["umask022", "umask002", "umask077"],
)
def test_cached_files_follow_umask(
    server: FileServer, tmp_path: Path, umask: int, mode: int
) -> None:
    enc, dec = random_bytes(20_000), random_bytes(5_000)
    direct = direct_spec(server, enc, dec)
    zipped, _ = archive_spec(server, random_bytes(7_000), random_bytes(3_000))
    cache = tmp_path / "cache"
    previous = os.umask(umask)
    try:
        found = [ensure_model(spec, cache=cache) for spec in (direct, zipped)]
    finally:
        os.umask(previous)
    files = [p for paths in found for p in (paths.encoder, paths.decoder)]
    files += [p.with_name(p.name + ".sha256") for p in files]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path.name
