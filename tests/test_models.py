"""Tests of the model registry, cache and download code (``napari_sam2_webgpu.models``).

Downloads go through the real pooch/requests code against a stdlib HTTP server on 127.0.0.1
that serves small random byte strings standing in for ONNX files (the download code never looks
inside them). Nothing here touches the network beyond loopback or the real user cache.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import logging
import os
import re
import select
import socket
import stat
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from napari_sam2_webgpu import models
from napari_sam2_webgpu.models import (
    ENV_ALLOW_UNVERIFIED,
    ENV_BASE_URL,
    ENV_CACHE_DIR,
    ENV_DOWNLOAD_TIMEOUT,
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
    """Serves ``files`` (URL path -> bytes) over HTTP on 127.0.0.1, with misbehaviours.

    Paths in ``truncate`` drop the connection halfway. A path in ``gate`` answers only once its
    event is set. A path in ``trickle`` (burst, delay, count) sends `burst` bytes, then one byte
    every `delay` seconds, `count` times, then drops the connection. A path in ``hold`` sends
    that many bytes, then nothing until the client hangs up (at most 30 s).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.gate: dict[str, threading.Event] = {}
        self.trickle: dict[str, tuple[int, float, int]] = {}
        self.hold: dict[str, int] = {}
        self.stopping = threading.Event()
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                path = self.path.split("?", 1)[0]
                server.requests.append(path)
                if path in server.gate:
                    server.gate[path].wait()
                data = server.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    if path in server.trickle:
                        self._trickle(data, *server.trickle[path])
                        return
                    if path in server.hold:
                        self.wfile.write(data[: server.hold[path]])
                        self.wfile.flush()
                        # Readable means the client hung up (or sent something): then stop.
                        select.select([self.connection], [], [], 30)
                        self.close_connection = True
                        return
                except OSError:  # the client gave up: nothing more to send
                    self.close_connection = True
                    return
                if path in server.truncate:
                    # Promise N bytes, send N/2, then drop the connection like a dead link.
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(data)

            def _trickle(self, data: bytes, burst: int, delay: float, count: int) -> None:
                self.wfile.write(data[:burst])
                self.wfile.flush()
                for i in range(burst, min(burst + count, len(data))):
                    if server.stopping.wait(delay):
                        break
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

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
        self.stopping.set()
        for event in self.gate.values():
            event.set()
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


def wait_for(condition: Callable[[], bool], limit: float = 300.0) -> bool:
    """Poll `condition` until it holds; `limit` only keeps a broken build from hanging."""
    end = time.monotonic() + limit
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


class FakeClock:
    """Advances `step` seconds on every reading, whatever the real time."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class ReadOnly:
    """Makes every write under `folder` fail with EACCES, like a read-only mount.

    Tests run as root, where a chmod would not stop writes, so the os-level calls that create,
    change or remove files (and ``open`` for writing) are guarded; `attempts` records each
    refused call, so a test can check that nothing was even tried.
    """

    _PATH_FUNCS = ("mkdir", "rmdir", "unlink", "remove", "utime", "chmod", "truncate")
    _PAIR_FUNCS = ("replace", "rename", "link", "symlink")

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = os.path.abspath(folder)
        self.attempts: list[tuple[str, str]] = []
        real_os_open, real_open = os.open, builtins.open
        write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

        def os_open(path: object, flags: int, *args: object, **kwargs: object) -> int:
            if flags & write_flags:
                self._deny("open", path)
            return real_os_open(path, flags, *args, **kwargs)

        def open_(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
            if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+"):
                self._deny("open", file)
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(os, "open", os_open)
        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)
        for name in self._PATH_FUNCS + self._PAIR_FUNCS:
            monkeypatch.setattr(os, name, self._guard(name, getattr(os, name)))

    def _inside(self, path: object) -> bool:
        full = os.path.abspath(os.fspath(path))  # type: ignore[arg-type]
        return full == self.folder or full.startswith(self.folder + os.sep)

    def _deny(self, op: str, *paths: object) -> None:
        for path in paths:
            if isinstance(path, (str, bytes, os.PathLike)) and self._inside(path):
                self.attempts.append((op, str(path)))
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    def _guard(self, name: str, func: Callable[..., object]) -> Callable[..., object]:
        pair = name in self._PAIR_FUNCS

        def guarded(*args: object, **kwargs: object) -> object:
            self._deny(name, *(args[:2] if pair else args[:1]))
            return func(*args, **kwargs)

        return guarded


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


# --------------------------------------------------------------------------------------------
# Read-only cache, or a file where the cache folder should be
# --------------------------------------------------------------------------------------------


def test_read_only_cache_with_verified_models_is_only_read(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = direct_spec(server, random_bytes(30_000), random_bytes(8_000))
    cache = tmp_path / "cache"
    paths = ensure_model(spec, cache=cache)
    stale = cache / ".old.encoder.onnx.abc123.part"  # cleaning it must not even be tried
    stale.write_bytes(b"x")
    old = time.time() - 2 * models.STALE_PART_SECONDS
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


def test_read_only_cache_missing_model_is_a_clear_error(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enc, dec = random_bytes(30_000), random_bytes(8_000)
    spec = direct_spec(server, enc, dec)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / spec.encoder.filename).write_bytes(enc)  # one file there, the other missing

    guard = ReadOnly(cache, monkeypatch)
    with pytest.raises(ModelNotAvailableError) as err:
        ensure_model(spec, cache=cache)

    msg = str(err.value)
    assert guard.attempts  # the read-only path was really taken
    assert "not writable" in msg
    assert str(cache / spec.decoder.filename) in msg  # where the missing file belongs
    assert spec.decoder.sha256 in msg
    assert str(cache / spec.encoder.filename) not in msg  # the good file is not asked for
    assert ENV_CACHE_DIR in msg
    assert len(msg.splitlines()) <= 3
    assert server.requests == []  # nothing downloaded only to be thrown away
    assert leftovers(cache) == []


@pytest.mark.parametrize("below", [False, True], ids=["cache-is-a-file", "parent-is-a-file"])
def test_file_where_cache_folder_should_be(server: FileServer, tmp_path: Path, below: bool) -> None:
    spec = direct_spec(server, random_bytes(3_000), random_bytes(1_000))
    blocker = tmp_path / "cache"
    blocker.write_bytes(b"not a folder")
    cache = blocker / "models" if below else blocker

    with pytest.raises(ModelNotAvailableError) as err:
        ensure_model(spec, cache=cache)

    msg = str(err.value)
    assert "not a folder" in msg
    assert str(blocker) in msg
    assert str(cache / spec.encoder.filename) in msg
    assert ENV_CACHE_DIR in msg
    assert blocker.read_bytes() == b"not a folder"  # never touched
    assert not is_cached(spec, cache=cache)
    assert server.requests == []


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


# --------------------------------------------------------------------------------------------
# A stalled or trickling server
# --------------------------------------------------------------------------------------------


def test_trickling_server_is_aborted_as_too_slow(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enc, dec = random_bytes(200_000), random_bytes(1_000)
    spec = direct_spec(server, enc, dec)
    # 100 bytes, then a byte every 10 ms, 500 times: fewer bytes than the rule asks for in any
    # window, however slow this machine is; then the server hangs up.
    server.trickle["/files/" + spec.encoder.filename] = (100, 0.01, 500)
    monkeypatch.setattr(models, "_clock", FakeClock(1.0))  # each reading: one more second
    monkeypatch.setattr(models, "STALL_SECONDS", 5)
    monkeypatch.setattr(models, "STALL_MIN_BYTES", 1_000)
    cache = tmp_path / "cache"
    calls: list[tuple[int, int, str]] = []

    with pytest.raises(ModelDownloadError) as err:
        ensure_model(spec, cache=cache, progress=lambda *a: calls.append(a))

    msg = str(err.value)
    assert "too slow" in msg and "stalled" in msg
    assert spec.encoder.url in msg
    assert ENV_DOWNLOAD_TIMEOUT in msg
    assert not (cache / spec.encoder.filename).exists()
    assert leftovers(cache) == []  # the part file is gone
    mine = [d for d, t, f in calls if f == spec.encoder.filename]
    assert any(0 < d < len(enc) for d in mine)  # progress was shown while it trickled


def test_silent_server_times_out_per_read(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enc, dec = random_bytes(50_000), random_bytes(1_000)
    spec = direct_spec(server, enc, dec)
    server.hold["/files/" + spec.encoder.filename] = 1_000  # then silence until we hang up
    monkeypatch.setenv(ENV_DOWNLOAD_TIMEOUT, "0.5")
    cache = tmp_path / "cache"

    with pytest.raises(ModelDownloadError) as err:
        ensure_model(spec, cache=cache)

    msg = str(err.value)
    assert "stalled" in msg and "no data for 0.5 s" in msg
    assert spec.encoder.url in msg
    assert not (cache / spec.encoder.filename).exists()
    assert leftovers(cache) == []


def test_server_that_never_answers_is_a_download_error(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = direct_spec(server, random_bytes(5_000), random_bytes(1_000))
    server.gate["/files/" + spec.encoder.filename] = threading.Event()  # never opened
    monkeypatch.setenv(ENV_DOWNLOAD_TIMEOUT, "0.5")
    cache = tmp_path / "cache"
    with pytest.raises(ModelDownloadError, match="stalled") as err:
        ensure_model(spec, cache=cache)
    assert spec.encoder.url in str(err.value)
    assert leftovers(cache) == []


def test_download_timeout_env_is_validated(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENV_DOWNLOAD_TIMEOUT, "7.5")
    assert models._download_limits() == (7.5, 7.5, models.STALL_MIN_BYTES)
    monkeypatch.setenv(ENV_DOWNLOAD_TIMEOUT, "soon")
    with caplog.at_level(logging.WARNING, logger=models.__name__):
        limits = models._download_limits()
    assert limits == (models.DOWNLOAD_TIMEOUT, models.STALL_SECONDS, models.STALL_MIN_BYTES)
    assert ENV_DOWNLOAD_TIMEOUT in caplog.text


# --------------------------------------------------------------------------------------------
# Concurrent downloads of the same file
# --------------------------------------------------------------------------------------------


class _Flag(logging.Handler):
    def __init__(self, needle: str) -> None:
        super().__init__(logging.DEBUG)
        self.needle = needle
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.event.set()


def test_second_downloader_waits_and_reuses_the_file(server: FileServer, tmp_path: Path) -> None:
    enc, dec = random_bytes(300_000), random_bytes(20_000)
    spec = direct_spec(server, enc, dec)
    cache = tmp_path / "cache"
    enc_url_path = "/files/" + spec.encoder.filename
    gate = server.gate[enc_url_path] = threading.Event()  # holds the first download
    waiting = _Flag("waiting for it to finish")
    log = logging.getLogger(models.__name__)
    log.addHandler(waiting)
    results: dict[str, ModelPaths] = {}
    errors: list[BaseException] = []

    def run(key: str) -> None:
        try:
            results[key] = ensure_model(spec, cache=cache)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    first = threading.Thread(target=run, args=("first",))
    second = threading.Thread(target=run, args=("second",))
    try:
        first.start()
        assert wait_for(lambda: server.count(enc_url_path) >= 1 or not first.is_alive())
        second.start()
        # Fixed: the second one waits for the lock. Unfixed: it sends its own request.
        assert wait_for(
            lambda: (
                waiting.event.is_set() or server.count(enc_url_path) >= 2 or not second.is_alive()
            )
        )
    finally:
        gate.set()
        first.join(300)
        second.join(300)
        log.removeHandler(waiting)

    assert errors == []
    assert results["first"] == results["second"]
    assert results["second"].encoder.read_bytes() == enc
    assert server.count(enc_url_path) == 1
    assert server.count("files/" + spec.decoder.filename) == 1
    assert leftovers(cache) == []  # no lock files left behind
    assert is_cached(spec, cache=cache)


def test_download_goes_ahead_when_no_lock_can_be_taken(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import filelock

    def no_locks(self: object, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("this file system has no locks")

    monkeypatch.setattr(filelock.FileLock, "acquire", no_locks)
    enc, dec = random_bytes(9_000), random_bytes(1_000)
    spec = direct_spec(server, enc, dec)
    cache = tmp_path / "cache"
    assert ensure_model(spec, cache=cache).encoder.read_bytes() == enc
    assert leftovers(cache) == []


def test_lock_files_are_not_models(server: FileServer, tmp_path: Path) -> None:
    # A lock file left by a killed process neither counts as a model nor blocks a download.
    enc, dec = random_bytes(4_000), random_bytes(1_000)
    spec = direct_spec(server, enc, dec)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f".{spec.encoder.filename}.lock").write_bytes(b"")
    assert not is_cached(spec, cache=cache)
    ensure_model(spec, cache=cache)
    assert leftovers(cache) == []
    assert server.count("files/" + spec.encoder.filename) == 1


# --------------------------------------------------------------------------------------------
# A corrupted file while offline
# --------------------------------------------------------------------------------------------


def test_corrupted_file_offline_warning_says_what_to_do(
    server: FileServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    enc, dec = random_bytes(40_000), random_bytes(10_000)
    spec = direct_spec(server, enc, dec)
    cache = tmp_path / "cache"
    paths = ensure_model(spec, cache=cache)
    paths.decoder.write_bytes(dec[: len(dec) // 2])

    with caplog.at_level(logging.WARNING, logger=models.__name__):
        with pytest.raises(ModelNotAvailableError) as err:
            ensure_model(spec, cache=cache, offline=True)

    text = "\n".join(r.getMessage() for r in caplog.records if r.name == models.__name__)
    assert "will be replaced" not in text  # untrue offline
    assert str(paths.decoder) in text
    assert sha(dec) in text
    assert "offline" in text and "Delete it" in text
    assert "delete" in str(err.value)
    assert paths.decoder.exists()  # reported, not deleted behind the user's back
