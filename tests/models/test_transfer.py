"""Tests of HTTP streaming and the stall guard (``napari_sam2_webgpu.models.transfer``)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from napari_sam2_webgpu.models import (
    ENV_DOWNLOAD_TIMEOUT,
    ModelDownloadError,
    ensure_model,
)
from napari_sam2_webgpu.models import transfer as transfer_mod

from .helpers import (
    FakeClock,
    FileServer,
    direct_spec,
    leftovers,
    random_bytes,
)

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
    monkeypatch.setattr(transfer_mod, "_clock", FakeClock(1.0))  # each reading: one more second
    monkeypatch.setattr(transfer_mod, "STALL_SECONDS", 5)
    monkeypatch.setattr(transfer_mod, "STALL_MIN_BYTES", 1_000)
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
    assert transfer_mod._download_limits() == (7.5, 7.5, transfer_mod.STALL_MIN_BYTES)
    monkeypatch.setenv(ENV_DOWNLOAD_TIMEOUT, "soon")
    with caplog.at_level(logging.WARNING, logger=transfer_mod.__name__):
        limits = transfer_mod._download_limits()
    assert limits == (
        transfer_mod.DOWNLOAD_TIMEOUT,
        transfer_mod.STALL_SECONDS,
        transfer_mod.STALL_MIN_BYTES,
    )
    assert ENV_DOWNLOAD_TIMEOUT in caplog.text
