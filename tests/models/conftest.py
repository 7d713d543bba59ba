"""Fixtures of the model tests: a local file server and an environment without settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from napari_sam2_webgpu.models import (
    ENV_ALLOW_UNVERIFIED,
    ENV_BASE_URL,
    ENV_CACHE_DIR,
    ENV_OFFLINE,
)

from .helpers import FileServer


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
