"""Helpers of the model tests: a misbehaving local HTTP server, test specs, a read-only guard.

Downloads go through the real requests code against a stdlib HTTP server on 127.0.0.1 that
serves small random byte strings standing in for ONNX files (the download code never looks
inside them). Nothing here touches the network beyond loopback or the real user cache.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import os
import select
import socket
import threading
import time
import zipfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from napari_sam2_webgpu.models import (
    ModelArchive,
    ModelFile,
    ModelSpec,
)


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


def safetensors_bytes(state: dict[str, np.ndarray]) -> bytes:
    """A safetensors file of float32/int64 arrays (the reader takes it whatever its name)."""
    header, blobs, offset = {}, [], 0
    for key, value in state.items():
        data = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes()
        kind = {"float32": "F32", "int64": "I64"}[value.dtype.name]
        span = [offset, offset + len(data)]
        header[key] = {"dtype": kind, "shape": list(value.shape), "data_offsets": span}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(blobs)
