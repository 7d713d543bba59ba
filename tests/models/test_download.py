"""Tests of ``ensure_model`` (``napari_sam2_webgpu.models.download``) and its messages."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from napari_sam2_webgpu.models import (
    ENV_ALLOW_UNVERIFIED,
    ENV_BASE_URL,
    ENV_CACHE_DIR,
    ENV_OFFLINE,
    UNVERIFIED,
    ModelDownloadError,
    ModelError,
    ModelFile,
    ModelNotAvailableError,
    ModelPaths,
    ModelSpec,
    ModelUnverifiedError,
    ensure_model,
    get_spec,
    is_cached,
)
from napari_sam2_webgpu.models import download as download_mod

from .helpers import (
    FileServer,
    ReadOnly,
    archive_spec,
    closed_port,
    direct_spec,
    leftovers,
    random_bytes,
    sha,
)

# --------------------------------------------------------------------------------------------
# Success with progress
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


# --------------------------------------------------------------------------------------------
# Wrong checksum, HTTP error
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
# Connection dropped halfway, then retry; cancel
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
# Offline / unreachable with nothing cached
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
    assert "napari-sam2-webgpu convert sam2.1_hiera_tiny.pt --size tiny --install" in msg
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
# Base URL override
# --------------------------------------------------------------------------------------------


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
# Files without a published checksum are refused
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


# --------------------------------------------------------------------------------------------
# A cache folder that cannot be written
# --------------------------------------------------------------------------------------------


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

    with caplog.at_level(logging.WARNING, logger=download_mod.__name__):
        with pytest.raises(ModelNotAvailableError) as err:
            ensure_model(spec, cache=cache, offline=True)

    text = "\n".join(r.getMessage() for r in caplog.records if r.name == download_mod.__name__)
    assert "will be replaced" not in text  # untrue offline
    assert str(paths.decoder) in text
    assert sha(dec) in text
    assert "offline" in text and "Delete it" in text
    assert "delete" in str(err.value)
    assert paths.decoder.exists()  # reported, not deleted behind the user's back
