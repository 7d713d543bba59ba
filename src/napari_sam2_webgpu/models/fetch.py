"""Putting downloaded files into the cache without ever exposing a partial or wrong one.

Bytes go to a hidden ``.<filename>.<random>.part`` file in the cache folder, are checked (size,
SHA-256), flushed to disk and moved to the final path with an atomic :func:`os.replace`; an
interrupted, cancelled, stalled or corrupted download only ever leaves a part file, which is
removed. Registry models come as one zip per size: it is downloaded once for both files, only
the named ``.onnx`` members are extracted (never arbitrary paths), each is checked, and the zip
is deleted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

from .cache import new_hidden_file, remove_stamp, sha256_file, write_stamp
from .errors import CacheNotWritableError, ModelDownloadError
from .registry import ModelArchive, ModelFile, is_sha256
from .transfer import DOWNLOAD_CHUNK, ProgressCallback, http_download

__all__ = [
    "PART_SUFFIX",
    "STALE_PART_SECONDS",
    "clean_stale_parts",
    "fetch_direct",
    "fetch_from_archive",
]

logger = logging.getLogger(__name__)

#: Downloads in progress are ``.<filename>.<random><PART_SUFFIX>`` in the cache folder.
PART_SUFFIX = ".part"
#: A ``.part`` file untouched for this long belongs to a dead process and may be removed.
STALE_PART_SECONDS = 3600


@contextlib.contextmanager
def _part_file(folder: Path, name: str) -> Iterator[Path]:
    """A hidden temporary file next to the final path, removed unless moved away."""
    try:
        tmp = new_hidden_file(folder, name, PART_SUFFIX)
    except OSError as exc:
        raise CacheNotWritableError(str(exc)) from exc
    try:
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def clean_stale_parts(folder: Path) -> None:
    """Remove ``.part`` files left by killed processes (not ones still being written).

    Parameters
    ----------
    folder : Path
        The cache folder.
    """
    now = time.time()
    for part in folder.glob(f".*{PART_SUFFIX}"):
        with contextlib.suppress(OSError):
            if now - part.stat().st_mtime > STALE_PART_SECONDS:
                part.unlink()


def _fsync(path: Path) -> None:
    # Without this a power cut after os.replace could leave a named but empty file.
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _verify_part(part: Path, *, label: str, source: str, sha256: str, size: int) -> str:
    """Check a downloaded temporary file; return its digest or raise ModelDownloadError."""
    written = part.stat().st_size
    if size > 0 and written != size:
        raise ModelDownloadError(
            f"Download of {label} from {source} has the wrong size: {written:,} bytes, expected "
            f"{size:,}. It was discarded."
        )
    got = sha256_file(part)
    if is_sha256(sha256) and got != sha256:
        raise ModelDownloadError(
            f"Checksum mismatch for {label} downloaded from {source}: expected sha256 {sha256}, "
            f"got {got}. The file was discarded; if this repeats, the server holds different "
            "bytes than the registry expects."
        )
    return got


def _install(part: Path, dest: Path, got: str, mf: ModelFile) -> None:
    try:
        _fsync(part)
        remove_stamp(dest)  # never leave an old stamp describing new bytes, even for an instant
        os.replace(part, dest)
    except OSError as exc:
        raise ModelDownloadError(
            f"Could not move the verified download of {mf.filename} into place at {dest} "
            f"({exc}); it was discarded. Check that the cache folder is writable and has free "
            "space, then try again."
        ) from exc
    trust = "published" if mf.has_checksum else "first-use"
    if trust == "first-use":
        logger.warning(
            "%s has no published checksum; trusting it on first use (sha256 %s).", dest.name, got
        )
    write_stamp(dest, got, trust=trust)


def fetch_direct(url: str, mf: ModelFile, folder: Path, progress: ProgressCallback | None) -> None:
    """Download `mf` from `url` (the file itself) into `folder`, verified.

    Raises
    ------
    ModelDownloadError, ServerUnreachableError, CacheNotWritableError
    """
    with _part_file(folder, mf.filename) as part:
        http_download(url, part, progress, mf.filename)
        got = _verify_part(part, label=mf.filename, source=url, sha256=mf.sha256, size=mf.size)
        _install(part, folder / mf.filename, got, mf)


def _find_member(zf: zipfile.ZipFile, filename: str) -> zipfile.ZipInfo | None:
    infos = [i for i in zf.infolist() if not i.is_dir()]
    for info in infos:
        if info.filename == filename:
            return info
    # Some archives put the files in a folder; match by base name, never extract paths.
    matches = [i for i in infos if i.filename.replace("\\", "/").rsplit("/", 1)[-1] == filename]
    return matches[0] if len(matches) == 1 else None


def _extract(zf: zipfile.ZipFile, archive: ModelArchive, mf: ModelFile, folder: Path) -> None:
    """Extract one member into the cache through a part file, verified."""
    info = _find_member(zf, mf.filename)
    if info is None:
        names = ", ".join(i.filename for i in zf.infolist())
        raise ModelDownloadError(
            f"{archive.filename} from {archive.url} does not contain {mf.filename} "
            f"(it holds: {names})."
        )
    if mf.size > 0 and info.file_size != mf.size:
        raise ModelDownloadError(
            f"{mf.filename} in {archive.filename} is {info.file_size:,} bytes, "
            f"expected {mf.size:,}; the archive was discarded."
        )
    with _part_file(folder, mf.filename) as part:
        try:
            with zf.open(info) as src, open(part, "wb") as dst:
                while chunk := src.read(DOWNLOAD_CHUNK):
                    dst.write(chunk)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ModelDownloadError(
                f"Could not extract {mf.filename} from {archive.filename}: {exc}"
            ) from exc
        source = f"{archive.url} (member {info.filename})"
        got = _verify_part(part, label=mf.filename, source=source, sha256=mf.sha256, size=mf.size)
        _install(part, folder / mf.filename, got, mf)


def fetch_from_archive(
    archive: ModelArchive,
    files: list[ModelFile],
    folder: Path,
    progress: ProgressCallback | None,
) -> None:
    """Download `archive` once and extract `files` from it into `folder`, each verified.

    The archive itself is a part file, removed afterwards.

    Raises
    ------
    ModelDownloadError, ServerUnreachableError, CacheNotWritableError
    """
    with _part_file(folder, archive.filename) as zpart:
        http_download(archive.url, zpart, progress, archive.filename)
        _verify_part(
            zpart,
            label=archive.filename,
            source=archive.url,
            sha256=archive.sha256,
            size=archive.size,
        )
        try:
            zf = zipfile.ZipFile(zpart)
        except zipfile.BadZipFile as exc:
            raise ModelDownloadError(
                f"{archive.filename} from {archive.url} is not a valid zip archive ({exc}); it "
                "was discarded."
            ) from exc
        with zf:
            for mf in files:
                _extract(zf, archive, mf, folder)
