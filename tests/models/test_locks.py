"""Tests of concurrent downloads of the same file (``napari_sam2_webgpu.models.locks``)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from napari_sam2_webgpu.models import (
    ModelPaths,
    ensure_model,
    is_cached,
)
from napari_sam2_webgpu.models import locks as locks_mod

from .helpers import (
    FileServer,
    direct_spec,
    leftovers,
    random_bytes,
    wait_for,
)


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
    log = logging.getLogger(locks_mod.__name__)
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
