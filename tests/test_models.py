"""Tests of the model registry, cache and download code (``napari_sam2_webgpu.models``).

Downloads go through the real pooch/requests code against a stdlib HTTP server on 127.0.0.1
that serves small random byte strings standing in for ONNX files (the download code never looks
inside them). Nothing here touches the network beyond loopback or the real user cache.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from napari_sam2_webgpu import models
from napari_sam2_webgpu.models import (
    ENV_ALLOW_UNVERIFIED,
    ENV_BASE_URL,
    ENV_CACHE_DIR,
    ENV_OFFLINE,
    MODEL_SIZES,
    REGISTRY,
    UNVERIFIED,
    ModelArchive,
    ModelDownloadError,
    ModelError,
    ModelFile,
    ModelNotAvailableError,
    ModelPaths,
    ModelSpec,
    ModelUnverifiedError,
    cache_dir,
    cache_status,
    ensure_model,
    get_spec,
    is_cached,
    model_paths_from_files,
    verify_file,
)

# --------------------------------------------------------------------------------------------
# Local HTTP server
# --------------------------------------------------------------------------------------------


class FileServer:
    """Serves ``files`` (URL path -> bytes); paths in ``truncate`` drop the connection halfway."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                path = self.path.split("?", 1)[0]
                server.requests.append(path)
                data = server.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if path in server.truncate:
                    # Promise N bytes, send N/2, then drop the connection like a dead link.
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def add(self, path: str, data: bytes) -> str:
        self.files["/" + path.lstrip("/")] = data
        return self.url(path)

    def count(self, path: str) -> int:
        return self.requests.count("/" + path.lstrip("/"))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FileServer]:
    srv = FileServer()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Never the real user cache, never a proxy for loopback, no settings leaking in.
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "default-cache"))
    for name in (ENV_BASE_URL, ENV_OFFLINE, ENV_ALLOW_UNVERIFIED):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

_rng = np.random.default_rng(20240929)


def random_bytes(n: int) -> bytes:
    return _rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def direct_spec(
    server: FileServer,
    enc: bytes,
    dec: bytes,
    *,
    name: str = "testmodel",
    prefix: str = "files",
    enc_sha: str | None = None,
    dec_sha: str | None = None,
    sizes: bool = True,
) -> ModelSpec:
    """A spec of two single files served by `server` (not in the registry)."""
    enc_name, dec_name = f"{name}.encoder.onnx", f"{name}.decoder.onnx"
    server.add(f"{prefix}/{enc_name}", enc)
    server.add(f"{prefix}/{dec_name}", dec)
    return ModelSpec(
        name=name,
        encoder=ModelFile(
            enc_name,
            server.url(f"{prefix}/{enc_name}"),
            enc_sha if enc_sha is not None else sha(enc),
            len(enc) if sizes else 0,
        ),
        decoder=ModelFile(
            dec_name,
            server.url(f"{prefix}/{dec_name}"),
            dec_sha if dec_sha is not None else sha(dec),
            len(dec) if sizes else 0,
        ),
        description="test pair",
        source="tests",
        license="BSD-3-Clause",
    )


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def archive_spec(
    server: FileServer,
    enc: bytes,
    dec: bytes,
    *,
    name: str = "zipped",
    zip_sha: str | None = None,
    member_dir: str = "",
) -> tuple[ModelSpec, bytes]:
    enc_name, dec_name = f"{name}.encoder.onnx", f"{name}.decoder.onnx"
    blob = make_zip(
        {member_dir + enc_name: enc, member_dir + dec_name: dec, "README.txt": b"not a model"}
    )
    url = server.add(f"archives/{name}.zip", blob)
    arc = ModelArchive(f"{name}.zip", url, zip_sha if zip_sha is not None else sha(blob), len(blob))
    spec = ModelSpec(
        name=name,
        encoder=ModelFile(enc_name, url, sha(enc), len(enc), arc),
        decoder=ModelFile(dec_name, url, sha(dec), len(dec), arc),
        description="zipped test pair",
        source="tests",
        license="BSD-3-Clause",
    )
    return spec, blob


def leftovers(folder: Path) -> list[str]:
    """Anything in the cache folder that is not a finished model file or its stamp."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bump_mtime(path: Path) -> None:
    # Coarse file timestamps can make an in-place rewrite keep its mtime; make it explicit.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


# --------------------------------------------------------------------------------------------
# (1) Success with progress
# --------------------------------------------------------------------------------------------


def test_download_success_reports_progress(server: FileServer, tmp_path: Path) -> None:
    enc, dec = random_bytes(3_500_000), random_bytes(200_000)  # > 1 MiB: several chunks
    spec = direct_spec(server, enc, dec)
    cache = tmp_path / "cache"
    calls: list[tuple[int, int, str]] = []

    paths = ensure_model(spec, cache=cache, progress=lambda d, t, f: calls.append((d, t, f)))

    assert paths == ModelPaths(cache / spec.encoder.filename, cache / spec.decoder.filename)
    assert paths.encoder.read_bytes() == enc
    assert paths.decoder.read_bytes() == dec
    for mf, data in ((spec.encoder, enc), (spec.decoder, dec)):
        mine = [(d, t) for d, t, f in calls if f == mf.filename]
        assert len(mine) >= 2
        assert all(t == len(data) for _, t in mine)
        assert [d for d, _ in mine] == sorted(d for d, _ in mine)  # never goes backwards
        assert mine[-1] == (len(data), len(data))  # final bytes == total
        assert (cache / (mf.filename + ".sha256")).is_file()
    assert leftovers(cache) == []
    assert is_cached(spec, cache=cache)

    # Second call: served from the cache, no request, no progress.
    calls.clear()
    n_requests = len(server.requests)
    assert ensure_model(spec, cache=cache, progress=lambda *a: calls.append(a)) == paths
    assert len(server.requests) == n_requests
    assert calls == []


def test_verified_cache_is_not_rehashed(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = direct_spec(server, random_bytes(50_000), random_bytes(20_000))
    cache = tmp_path / "cache"
    ensure_model(spec, cache=cache)

    def no_hashing(path: object) -> str:
        raise AssertionError("an unchanged, stamped file must not be re-hashed")

    monkeypatch.setattr(models, "sha256_file", no_hashing)
    assert is_cached(spec, cache=cache)
    ensure_model(spec, cache=cache)


# --------------------------------------------------------------------------------------------
# (2) Wrong checksum
# --------------------------------------------------------------------------------------------


def test_wrong_checksum_leaves_nothing(server: FileServer, tmp_path: Path) -> None:
    enc, dec = random_bytes(40_000), random_bytes(10_000)
    wrong = sha(b"something else")
    spec = direct_spec(server, enc, dec, enc_sha=wrong)
    cache = tmp_path / "cache"

    with pytest.raises(ModelDownloadError) as err:
        ensure_model(spec, cache=cache)

    msg = str(err.value)
    assert spec.encoder.filename in msg
    assert wrong in msg  # expected
    assert sha(enc) in msg  # got
    assert not (cache / spec.encoder.filename).exists()
    assert not (cache / (spec.encoder.filename + ".sha256")).exists()
    assert leftovers(cache) == []
    assert not is_cached(spec, cache=cache)


def test_http_error_is_a_download_error(server: FileServer, tmp_path: Path) -> None:
    spec = direct_spec(server, random_bytes(1000), random_bytes(1000))
    del server.files["/files/" + spec.decoder.filename]
    cache = tmp_path / "cache"
    with pytest.raises(ModelDownloadError, match="HTTP 404"):
        ensure_model(spec, cache=cache)
    assert not (cache / spec.decoder.filename).exists()
    assert leftovers(cache) == []


# --------------------------------------------------------------------------------------------
# (3) Connection dropped halfway, then retry
# --------------------------------------------------------------------------------------------


def test_interrupted_download_then_retry(server: FileServer, tmp_path: Path) -> None:
    enc, dec = random_bytes(2_500_000), random_bytes(300_000)
    spec = direct_spec(server, enc, dec)
    cache = tmp_path / "cache"
    enc_path = "/files/" + spec.encoder.filename
    server.truncate.add(enc_path)
    calls: list[tuple[int, int, str]] = []

    with pytest.raises(ModelError) as err:
        ensure_model(spec, cache=cache, progress=lambda *a: calls.append(a))

    assert isinstance(err.value, ModelDownloadError)
    assert spec.encoder.filename in str(err.value)
    assert not (cache / spec.encoder.filename).exists()
    assert not (cache / (spec.encoder.filename + ".sha256")).exists()
    assert leftovers(cache) == []
    assert not is_cached(spec, cache=cache)
    assert all(d < len(enc) for d, _, f in calls if f == spec.encoder.filename)

    server.truncate.clear()  # the server is fixed
    paths = ensure_model(spec, cache=cache)
    assert paths.encoder.read_bytes() == enc
    assert paths.decoder.read_bytes() == dec
    assert leftovers(cache) == []


def test_interrupted_second_file_keeps_first_and_retries_only_second(
    server: FileServer, tmp_path: Path
) -> None:
    enc, dec = random_bytes(300_000), random_bytes(300_000)
    spec = direct_spec(server, enc, dec)
    cache = tmp_path / "cache"
    server.truncate.add("/files/" + spec.decoder.filename)

    with pytest.raises(ModelDownloadError):
        ensure_model(spec, cache=cache)
    assert (cache / spec.encoder.filename).read_bytes() == enc  # complete and verified
    assert not (cache / spec.decoder.filename).exists()
    assert leftovers(cache) == []

    server.truncate.clear()
    ensure_model(spec, cache=cache)
    assert server.count("files/" + spec.encoder.filename) == 1
    assert server.count("files/" + spec.decoder.filename) == 2


class Cancelled(Exception):
    pass


def test_cancel_from_progress_callback(server: FileServer, tmp_path: Path) -> None:
    spec = direct_spec(server, random_bytes(3_000_000), random_bytes(1000))
    cache = tmp_path / "cache"

    def cancel(done: int, total: int, filename: str) -> None:
        if done >= 1 << 20:
            raise Cancelled

    with pytest.raises(Cancelled):
        ensure_model(spec, cache=cache, progress=cancel)
    assert not (cache / spec.encoder.filename).exists()
    assert leftovers(cache) == []


# --------------------------------------------------------------------------------------------
# (4) Corruption in the cache after a good download
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
# (5) Offline / unreachable with nothing cached
# --------------------------------------------------------------------------------------------


def test_offline_nothing_cached_message(server: FileServer, tmp_path: Path) -> None:
    spec = direct_spec(server, random_bytes(1000), random_bytes(1000))
    cache = tmp_path / "cache"

    with pytest.raises(ModelNotAvailableError) as err:
        ensure_model(spec, cache=cache, offline=True)

    msg = str(err.value)
    for needle in (
        spec.encoder.url,
        spec.decoder.url,
        str(cache),
        spec.encoder.filename,
        spec.decoder.filename,
        spec.encoder.sha256,
        ENV_CACHE_DIR,
        ENV_BASE_URL,
        ENV_OFFLINE,
    ):
        assert needle in msg
    assert server.requests == []
    assert not cache.exists()  # nothing created


def test_offline_from_env(server: FileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = direct_spec(server, random_bytes(1000), random_bytes(1000))
    monkeypatch.setenv(ENV_OFFLINE, "1")
    with pytest.raises(ModelNotAvailableError, match="offline"):
        ensure_model(spec)
    assert server.requests == []


def test_registry_offline_message_names_archive_and_checkpoint(tmp_path: Path) -> None:
    tiny = get_spec("tiny")
    with pytest.raises(ModelNotAvailableError) as err:
        ensure_model("tiny", cache=tmp_path, offline=True)
    msg = str(err.value)
    assert tiny.encoder.archive is not None
    assert tiny.encoder.archive.url in msg
    assert tiny.checkpoint_url in msg
    assert "napari-sam2-webgpu export" in msg
    assert tiny.encoder.filename in msg and tiny.decoder.filename in msg


def test_unreachable_server_is_not_available(tmp_path: Path) -> None:
    port = closed_port()
    spec = ModelSpec(
        "gone",
        ModelFile("gone.encoder.onnx", f"http://127.0.0.1:{port}/e.onnx", sha(b"e"), 1),
        ModelFile("gone.decoder.onnx", f"http://127.0.0.1:{port}/d.onnx", sha(b"d"), 1),
        "",
        "",
        "",
    )
    cache = tmp_path / "cache"
    with pytest.raises(ModelNotAvailableError) as err:
        ensure_model(spec, cache=cache)
    msg = str(err.value)
    assert "unreachable" in msg
    assert f"http://127.0.0.1:{port}/e.onnx" in msg
    assert str(cache) in msg
    assert leftovers(cache) == []


# --------------------------------------------------------------------------------------------
# (6) Cache dir and base URL overrides
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


def test_base_url_argument_and_env(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enc, dec = random_bytes(9000), random_bytes(3000)
    spec = direct_spec(server, enc, dec, prefix="upstream")
    server.files.clear()  # the registry location is dead ...
    server.add("mirror/" + spec.encoder.filename, enc)  # ... but the mirror has the files
    server.add("mirror/" + spec.decoder.filename, dec)

    paths = ensure_model(spec, cache=tmp_path / "a", base_url=server.url("mirror") + "/")
    assert paths.encoder.read_bytes() == enc

    monkeypatch.setenv(ENV_BASE_URL, server.url("mirror"))
    paths = ensure_model(spec, cache=tmp_path / "b")
    assert paths.decoder.read_bytes() == dec
    assert server.count("mirror/" + spec.encoder.filename) == 2
    assert not any(r.startswith("/upstream/") for r in server.requests)


def test_base_url_fetches_onnx_files_not_archives(server: FileServer, tmp_path: Path) -> None:
    enc, dec = random_bytes(7000), random_bytes(2000)
    spec, _ = archive_spec(server, enc, dec)
    server.add("mirror/" + spec.encoder.filename, enc)
    server.add("mirror/" + spec.decoder.filename, dec)
    paths = ensure_model(spec, cache=tmp_path / "c", base_url=server.url("mirror"))
    assert paths.encoder.read_bytes() == enc
    assert server.count(f"archives/{spec.name}.zip") == 0


def test_base_url_checksum_still_enforced(server: FileServer, tmp_path: Path) -> None:
    enc, dec = random_bytes(9000), random_bytes(3000)
    spec = direct_spec(server, enc, dec)
    server.add("mirror/" + spec.encoder.filename, random_bytes(9000))  # wrong bytes on mirror
    server.add("mirror/" + spec.decoder.filename, dec)
    cache = tmp_path / "cache"
    with pytest.raises(ModelDownloadError, match="Checksum mismatch"):
        ensure_model(spec, cache=cache, base_url=server.url("mirror"))
    assert not (cache / spec.encoder.filename).exists()
    assert leftovers(cache) == []


# --------------------------------------------------------------------------------------------
# (7) get_spec
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
# (8) Registry sanity
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


def test_cache_status(server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    enc, dec = random_bytes(4000), random_bytes(1000)
    local = direct_spec(server, enc, dec, name="tiny")
    monkeypatch.setattr(models, "REGISTRY", {"tiny": local, "large": REGISTRY["large"]})
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
# Files without a published checksum
# --------------------------------------------------------------------------------------------


def test_unverified_refused_without_opt_in(server: FileServer, tmp_path: Path) -> None:
    spec = direct_spec(
        server, random_bytes(3000), random_bytes(3000), enc_sha=UNVERIFIED, sizes=False
    )
    with pytest.raises(ModelUnverifiedError) as err:
        ensure_model(spec, cache=tmp_path / "cache")
    assert ENV_ALLOW_UNVERIFIED in str(err.value)
    assert spec.encoder.filename in str(err.value)
    assert server.requests == []  # refused before downloading anything


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
# Small helpers
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


def test_model_paths_from_files(tmp_path: Path) -> None:
    enc, dec = tmp_path / "my.encoder.onnx", tmp_path / "my.decoder.onnx"
    enc.write_bytes(b"e")
    dec.write_bytes(b"d")
    assert model_paths_from_files(enc, str(dec)) == ModelPaths(enc.resolve(), dec.resolve())
    with pytest.raises(FileNotFoundError, match="decoder"):
        model_paths_from_files(enc, tmp_path / "nope.onnx")


def test_stale_part_files_are_cleaned(server: FileServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = cache / ".old.encoder.onnx.abc123.part"
    fresh = cache / ".busy.encoder.onnx.def456.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    old = time.time() - 2 * models.STALE_PART_SECONDS
    os.utime(stale, (old, old))
    ensure_model(direct_spec(server, random_bytes(100), random_bytes(100)), cache=cache)
    assert not stale.exists()
    assert fresh.exists()  # may belong to another process still downloading


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, napari_sam2_webgpu.models as m; m.get_spec('tiny'); m.cache_dir();"
        "bad = [n for n in ('onnxruntime', 'pooch', 'requests', 'qtpy', 'napari')"
        " if n in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
