"""The model cache folder: where files live, how they are checked, what state they are in.

Layout
------
``<cache>/<filename>`` plus a sidecar ``<cache>/<filename>.sha256`` (JSON: sha256, size,
mtime_ns, inode, trust) written after a file was verified. A file whose size, mtime and inode
still match its stamp is trusted without re-hashing (files reach ~900 MB); anything else is
re-hashed, in chunks, before use. ``<cache>/exported/`` holds models the user exported with
``napari-sam2-webgpu export --install`` (:func:`exported_dir`).

Trust policy
------------
A file is used only if its SHA-256 matches the registry. A file with no published checksum
(:data:`~napari_sam2_webgpu.models.registry.UNVERIFIED`) is "unverifiable" until the user opts
in; :func:`trust_on_first_use` then records the hash seen, so later corruption is still caught.

Writing here is optional: a cache that already holds verified files is only read (it may be
read-only); a stamp that cannot be written only costs a re-hash next time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .registry import REGISTRY, ModelFile, ModelSpec, as_spec, is_sha256
from .settings import ENV_CACHE_DIR

__all__ = [
    "HASH_CHUNK",
    "FileState",
    "cache_dir",
    "cache_status",
    "check_cached",
    "exported_dir",
    "is_cached",
    "new_hidden_file",
    "remove_stamp",
    "sha256_file",
    "stat_key",
    "trust_on_first_use",
    "verify_file",
    "write_stamp",
]

logger = logging.getLogger(__name__)

#: Bytes per read while hashing; files reach ~900 MB, so never read them whole.
HASH_CHUNK = 4 << 20

_STAMP_SUFFIX = ".sha256"


def cache_dir() -> Path:
    """Return the folder model files are cached in.

    Returns
    -------
    Path
        ``$NAPARI_SAM2_WEBGPU_CACHE_DIR`` if set, else
        ``platformdirs.user_data_dir("napari-sam2-webgpu") / "models"``. The folder is not
        created here; :func:`~napari_sam2_webgpu.models.ensure_model` creates it when it first
        downloads something.
    """
    override = os.environ.get(ENV_CACHE_DIR, "").strip()
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("napari-sam2-webgpu", appauthor=False)) / "models"


def exported_dir(cache: Path | None = None) -> Path:
    """Folder of models exported with ``napari-sam2-webgpu export --install``.

    SAM2's memory components are not published as ONNX, so propagation uses models the user
    exports from an official (or fine-tuned) checkpoint; ``--install`` puts them here, under
    the model cache, where :func:`~napari_sam2_webgpu.models.resolve_model` finds them by size.

    Parameters
    ----------
    cache : Path, optional
        Cache folder; default :func:`cache_dir`.

    Returns
    -------
    Path
    """
    return (cache if cache is not None else cache_dir()) / "exported"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Compute the SHA-256 of a file, reading it in chunks.

    Parameters
    ----------
    path : path-like
        File to hash.

    Returns
    -------
    str
        Lower-case hex digest.
    """
    digest = hashlib.sha256()
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def verify_file(path: Path, sha256: str) -> bool:
    """Check a file against a SHA-256 by hashing it completely.

    Parameters
    ----------
    path : Path
        File to check.
    sha256 : str
        Expected hex digest (case-insensitive).

    Returns
    -------
    bool
        True if the file exists and its digest matches.

    Raises
    ------
    ValueError
        If `sha256` is not 64 hex digits (e.g. ``UNVERIFIED``): there is nothing to check
        against.
    """
    expected = sha256.strip().lower()
    if not is_sha256(expected):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    path = Path(path)
    if not path.is_file():
        return False
    return sha256_file(path) == expected


def new_hidden_file(folder: Path, name: str, suffix: str) -> Path:
    """Create an empty hidden ``.<name>.<random><suffix>`` file in `folder`; return its path.

    Unlike :func:`tempfile.mkstemp` (always ``0o600``), the mode is ``0o666`` less the umask (and
    any default ACL of the folder), so a file moved into a shared cache is as readable as any
    other the user creates.

    Raises
    ------
    OSError
        The folder cannot be written.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = folder / f".{name}.{secrets.token_hex(6)}{suffix}"
        try:
            fd = os.open(path, flags, 0o666)
        except FileExistsError:
            continue  # 48 random bits: practically never
        os.close(fd)
        return path
    raise FileExistsError(f"could not create a temporary file for {name} in {folder}")


# --------------------------------------------------------------------------------------------
# Stamps
# --------------------------------------------------------------------------------------------


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + _STAMP_SUFFIX)


def _read_stamp(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_stamp(path: Path, sha256: str, *, trust: str) -> None:
    """Record that `path` was verified, so an unchanged file is not hashed again.

    Parameters
    ----------
    path : Path
        The verified file.
    sha256 : str
        Its digest.
    trust : {"published", "first-use"}
        Whether it matched the registry, or was accepted after an opt-in.

    Notes
    -----
    A cache that cannot be written (read-only) just loses the shortcut; nothing is raised.
    """
    try:
        st = path.stat()
        stamp = {
            "sha256": sha256,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "inode": st.st_ino,
            "trust": trust,
        }
        tmp = new_hidden_file(path.parent, path.name, ".stamp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(stamp, fh)
            os.replace(tmp, _stamp_path(path))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    except OSError as exc:
        logger.debug("could not write checksum stamp for %s: %s", path, exc)


def remove_stamp(path: Path) -> None:
    """Forget that `path` was verified (before its bytes are replaced); errors are ignored."""
    with contextlib.suppress(OSError):
        _stamp_path(path).unlink()


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileState:
    """Outcome of checking one cached file.

    Parameters
    ----------
    status : {"ok", "missing", "corrupt", "unverifiable"}
        ``"unverifiable"``: present, but there is no published checksum and no recorded hash.
    detail : str
        Why, for messages (e.g. the expected and the actual SHA-256).
    got_sha256 : str
        The digest found, when the file was hashed and did not match.
    """

    status: str
    detail: str = ""
    got_sha256: str = ""


def stat_key(path: Path) -> tuple[int, int, int] | None:
    """``(size, mtime_ns, inode)`` of `path`, or None if it cannot be read.

    A change of this key means another process replaced the file.
    """
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def check_cached(path: Path, mf: ModelFile, *, verify: bool = True) -> FileState:
    """Check the cached copy of `mf` at `path`.

    Parameters
    ----------
    path : Path
        Where the file belongs in the cache.
    mf : ModelFile
        What it should be (size and SHA-256, or ``UNVERIFIED``).
    verify : bool
        If False, only existence, size and the availability of a checksum are checked.

    Returns
    -------
    FileState
        A file that verifies by hashing gets a fresh stamp.
    """
    if not path.is_file():
        return FileState("missing")
    st = path.stat()
    if mf.size > 0 and st.st_size != mf.size:
        # A wrong size is already proof; no need to hash ~1 GB to say so.
        return FileState("corrupt", f"size is {st.st_size:,} bytes, expected {mf.size:,}")
    stamp = _read_stamp(path)
    if mf.has_checksum:
        expected, trust = mf.sha256, "published"
    elif stamp and stamp.get("trust") == "first-use" and is_sha256(str(stamp.get("sha256"))):
        expected, trust = str(stamp["sha256"]), "first-use"
    else:
        return FileState("unverifiable", "no published sha256 and no recorded hash")
    if not verify:
        return FileState("ok")
    if (
        stamp
        and stamp.get("sha256") == expected
        and stamp.get("size") == st.st_size
        and stamp.get("mtime_ns") == st.st_mtime_ns
        and stamp.get("inode") == st.st_ino
    ):
        return FileState("ok")
    # No stamp, or the file changed since it was verified: hash it.
    got = sha256_file(path)
    if got == expected:
        write_stamp(path, got, trust=trust)
        return FileState("ok")
    return FileState("corrupt", f"sha256 is {got}, expected {expected}", got)


def trust_on_first_use(path: Path) -> FileState:
    """Accept an unverifiable file the user said to trust, recording the hash seen now.

    From then on :func:`check_cached` enforces that hash. In a read-only cache nothing can be
    recorded, so the same question comes up at the next use.
    """
    got = sha256_file(path)
    logger.warning("Trusting %s on first use (sha256 %s).", path, got)
    write_stamp(path, got, trust="first-use")
    return FileState("ok")


def is_cached(model: str | ModelSpec, *, cache: Path | None = None, verify: bool = True) -> bool:
    """Tell whether both files of a model are in the cache and trustworthy.

    Parameters
    ----------
    model : str or ModelSpec
        Registry name or a spec.
    cache : Path, optional
        Cache folder; default :func:`cache_dir`.
    verify : bool
        If True (default), check checksums: cheaply through the sidecar stamp when the file is
        unchanged since it was verified, else by hashing it. If False, only check that the files
        exist with the expected size.

    Returns
    -------
    bool
        False for a file without a published checksum that was never adopted with
        ``allow_unverified``.
    """
    spec = as_spec(model)
    folder = Path(cache) if cache is not None else cache_dir()
    return all(
        check_cached(folder / mf.filename, mf, verify=verify).status == "ok" for mf in spec.files
    )


def _status_row(spec: ModelSpec, folder: Path) -> dict[str, Any]:
    states: dict[str, str] = {}
    paths: dict[str, str] = {}
    on_disk = 0
    for role, mf in (("encoder", spec.encoder), ("decoder", spec.decoder)):
        path = folder / mf.filename
        paths[role] = str(path)
        states[role] = check_cached(path, mf).status
        if path.is_file():
            on_disk += path.stat().st_size
    known = spec.encoder.size and spec.decoder.size
    return {
        "name": spec.name,
        "cached": all(s == "ok" for s in states.values()),
        "size_bytes": on_disk,
        "expected_bytes": spec.encoder.size + spec.decoder.size if known else 0,
        "paths": paths,
        "files": states,
        "checksums": "published" if spec.fully_verified else "incomplete",
        "description": spec.description,
        "source": spec.source,
        "license": spec.license,
    }


def cache_status(*, cache: Path | None = None) -> list[dict[str, Any]]:
    """Describe the cache state of every registry model (for the CLI ``models`` command).

    Parameters
    ----------
    cache : Path, optional
        Cache folder; default :func:`cache_dir`.

    Returns
    -------
    list of dict
        One dict per registry model, in ``MODEL_SIZES`` order, with keys ``name`` (str),
        ``cached`` (bool: both files present and verified), ``size_bytes`` (int: bytes on disk of
        the files present), ``expected_bytes`` (int: registry sizes, 0 if unknown), ``paths``
        (dict ``{"encoder": str, "decoder": str}``), ``files`` (dict role -> status: ``"ok"``,
        ``"missing"``, ``"corrupt"`` or ``"unverifiable"``), ``checksums`` (``"published"`` or
        ``"incomplete"``), ``description``, ``source`` and ``license``.
    """
    folder = Path(cache) if cache is not None else cache_dir()
    return [_status_row(spec, folder) for spec in REGISTRY.values()]
