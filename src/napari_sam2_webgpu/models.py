"""Model registry, download and cache for the SAM2.1 ONNX encoder/decoder pairs.

One place knows model files: which pair belongs to which size, where it comes from, what its
checksum is, where it lives on disk. Everything here is pure Python; ``requests`` (installed with
``pooch``) and ``filelock`` are imported only when something is actually downloaded.

Where the registry values come from
-----------------------------------
Meta publishes SAM2.1 as PyTorch checkpoints only. The ONNX pairs below are the SAM2.1 exports
made with samexporter by its author, Viet-Anh Nguyen (the exports AnyLabeling uses), published as
one zip per size in https://huggingface.co/vietanhdev/segment-anything-2.1-onnx-models. URLs are
pinned to revision ``6a3ac868340a3196a349050a6efae22a5acc0330`` so the bytes cannot change under
a checksum. Nothing here could be downloaded on the machine that wrote this module; every size
and SHA-256 below was read in public material, never computed here:

* tiny: archive 116,507,723 B / ``c602cb3f…``; encoder 109,471,931 B / ``667384d1…``; decoder
  16,519,561 B / ``c40f5aa7…``. Read in a pinned-model table of a public C# project (GitHub,
  ``SamModels`` record for ``Sam21Tiny``, revision 6a3ac868); the encoder and decoder hashes are
  confirmed independently by ``models/manifest.json`` of github.com/n3o4po11o/simple-automosaic.
* small: archive 142,896,844 B / ``7c232acd…``; encoder 138,018,779 B / ``275013f3…``; decoder
  16,519,569 B / ``d158eb26…``. Read in a public project's model notes ("SAM 2.1 Hiera-S (Object
  Selection)", download URL pinned to revision 6a3ac868).
* large: encoder ``f1853873…`` and decoder ``014ac31e…`` from
  github.com/n3o4po11o/simple-automosaic ``models/manifest.json`` (files it extracts from
  ``sam2.1_hiera_large_20260221.zip``). Exact byte sizes and the archive checksum were not
  published there (only "813.0" and "15.8" MB), so ``size`` is 0 (unknown).
* base_plus: no published checksum found anywhere. Marked :data:`UNVERIFIED`; see below.

docs/models.md has the full table with URLs. Input/output names (encoder ``image`` ->
``high_res_feats_0, high_res_feats_1, image_embed``; decoder ``image_embed, high_res_feats_0,
high_res_feats_1, point_coords, point_labels, mask_input, has_mask_input`` -> ``masks,
iou_predictions``) are samexporter's ``export_sam2.py``.

Trust policy
------------
A file is used only if its SHA-256 matches the registry. For a file with no published checksum
(:data:`UNVERIFIED`), :func:`ensure_model` refuses to download or adopt it unless the user opts in
(``allow_unverified=True`` or ``NAPARI_SAM2_WEBGPU_ALLOW_UNVERIFIED=1``); the hash seen then is
recorded (trust on first use) so later corruption is still caught.

Cache layout
------------
``<cache>/<filename>`` plus a sidecar ``<cache>/<filename>.sha256`` (JSON: sha256, size,
mtime_ns, inode) written after a verified download. A file whose size/mtime/inode still match its
stamp is trusted without re-hashing; anything else is re-hashed (chunked) before use. Downloads go
to a hidden ``.<filename>.<random>.part`` file in the cache folder and are moved into place with
an atomic :func:`os.replace` only after verification, so the final path never holds a partial or
wrong file. Files are created with mode ``0o666`` less the umask (not :func:`tempfile.mkstemp`'s
``0o600``), so a shared cache stays readable by the users the umask allows. While a file is
downloaded its ``.<filename>.lock`` is held (``filelock``), so a second process waits and then
reuses the verified file; lock files are removed when released. A cache that already holds
verified files is only read, so it may be read-only; one that lacks them and cannot be written
raises :class:`ModelNotAvailableError` saying so. A download that stalls (no data for
:data:`DOWNLOAD_TIMEOUT` seconds, or fewer than :data:`STALL_MIN_BYTES` in :data:`STALL_SECONDS`)
is aborted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import secrets
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_ALLOW_UNVERIFIED",
    "ENV_BASE_URL",
    "ENV_CACHE_DIR",
    "ENV_DOWNLOAD_TIMEOUT",
    "ENV_OFFLINE",
    "MODEL_SIZES",
    "REGISTRY",
    "UNVERIFIED",
    "ModelArchive",
    "ModelDownloadError",
    "ModelError",
    "ModelFile",
    "ModelNotAvailableError",
    "VideoModelPaths",
    "companion_video_files",
    "exported_dir",
    "find_video_model",
    "ModelPaths",
    "ModelSpec",
    "ModelUnverifiedError",
    "ProgressCallback",
    "cache_dir",
    "cache_status",
    "ensure_model",
    "get_spec",
    "is_cached",
    "model_paths_from_files",
    "sha256_file",
    "verify_file",
]

logger = logging.getLogger(__name__)

ENV_CACHE_DIR = "NAPARI_SAM2_WEBGPU_CACHE_DIR"
ENV_BASE_URL = "NAPARI_SAM2_WEBGPU_BASE_URL"
ENV_OFFLINE = "NAPARI_SAM2_WEBGPU_OFFLINE"
ENV_ALLOW_UNVERIFIED = "NAPARI_SAM2_WEBGPU_ALLOW_UNVERIFIED"
#: Seconds: overrides both :data:`DOWNLOAD_TIMEOUT` and :data:`STALL_SECONDS`.
ENV_DOWNLOAD_TIMEOUT = "NAPARI_SAM2_WEBGPU_DOWNLOAD_TIMEOUT"

MODEL_SIZES: tuple[str, ...] = ("tiny", "small", "base_plus", "large")

#: Placed in a ``sha256`` field when no checksum was published for that file.
UNVERIFIED = "unverified"

#: Seconds to wait for the server to connect, answer, or send the next bytes (per socket read).
DOWNLOAD_TIMEOUT = 60
#: Minimum throughput: a download is aborted when fewer than STALL_MIN_BYTES arrived during the
#: last STALL_SECONDS. A server trickling a byte now and then never trips the read timeout.
STALL_SECONDS = 120
STALL_MIN_BYTES = 128 << 10
#: Largest network read, and progress is reported after this many bytes (1 MiB keeps GUI updates
#: rare enough) ...
DOWNLOAD_CHUNK = 1 << 20
#: ... or after this many seconds when data arrives slowly.
PROGRESS_SECONDS = 0.5
#: Longest wait for another process that is downloading the same file.
LOCK_TIMEOUT = 3 * 3600
#: Bytes per read while hashing; files reach ~900 MB, so never read them whole.
HASH_CHUNK = 4 << 20
#: A ``.part`` file untouched for this long belongs to a dead process and may be removed.
STALE_PART_SECONDS = 3600

ProgressCallback = Callable[[int, int, str], None]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TRUTHY = {"1", "true", "yes", "on"}
_STAMP_SUFFIX = ".sha256"
_PART_SUFFIX = ".part"
_LOCK_SUFFIX = ".lock"

# The clock of the download watchdog and progress throttle (a module global so tests can swap it).
_clock = time.monotonic


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ModelError(RuntimeError):
    """Base class of every model-file problem raised by this module."""


class ModelDownloadError(ModelError):
    """A download failed: HTTP error, interrupted transfer, wrong size or wrong checksum."""


class ModelNotAvailableError(ModelError):
    """The model is not in the cache and cannot be fetched (offline, or server unreachable)."""


class ModelUnverifiedError(ModelError):
    """A file has no published checksum and the user has not opted in to trusting it."""


# --------------------------------------------------------------------------------------------
# Registry data types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelArchive:
    """A zip archive that holds one or more model files.

    Parameters
    ----------
    filename : str
        Name of the archive file, e.g. ``"sam2.1_hiera_tiny_20260221.zip"``.
    url : str
        Where the archive is downloaded from.
    sha256 : str
        Lower-case hex SHA-256 of the archive, or :data:`UNVERIFIED`.
    size : int
        Size in bytes, or 0 when unknown.
    """

    filename: str
    url: str
    sha256: str = UNVERIFIED
    size: int = 0


@dataclass(frozen=True)
class ModelFile:
    """One ONNX file of a model pair.

    Parameters
    ----------
    filename : str
        File name in the cache folder (and in a zip archive, and on a mirror).
    url : str
        Where the bytes come from: the file itself, or the archive holding it when `archive` is
        set.
    sha256 : str
        Lower-case hex SHA-256 of the file, or :data:`UNVERIFIED` when none was published.
    size : int
        Size in bytes, or 0 when unknown.
    archive : ModelArchive or None
        The zip archive the file is extracted from, if it is not published as a single file.
    """

    filename: str
    url: str
    sha256: str
    size: int
    archive: ModelArchive | None = None

    @property
    def has_checksum(self) -> bool:
        """bool: Whether a published SHA-256 exists for this file."""
        return _is_sha256(self.sha256)


@dataclass(frozen=True)
class ModelSpec:
    """An encoder/decoder ONNX pair and where it comes from.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"tiny"``.
    encoder, decoder : ModelFile
        The image encoder (``image`` -> ``high_res_feats_0, high_res_feats_1, image_embed``) and
        the prompt decoder (-> ``masks, iou_predictions``).
    description : str
        One line for menus and the CLI.
    source : str
        Who exported the ONNX files, from what, and where they are published.
    license : str
        SPDX identifier of the weights' license.
    params_millions : float
        Parameter count of the whole SAM2.1 model (0 when unknown).
    checkpoint_url : str
        The official PyTorch checkpoint the pair can be re-exported from.
    notes : str
        Anything a user should know before trusting the files (e.g. missing checksums).
    """

    name: str
    encoder: ModelFile
    decoder: ModelFile
    description: str
    source: str
    license: str
    params_millions: float = 0.0
    checkpoint_url: str = ""
    notes: str = ""

    @property
    def files(self) -> tuple[ModelFile, ModelFile]:
        """tuple of ModelFile: ``(encoder, decoder)``."""
        return (self.encoder, self.decoder)

    @property
    def fully_verified(self) -> bool:
        """bool: Whether both files have a published checksum."""
        return self.encoder.has_checksum and self.decoder.has_checksum


@dataclass(frozen=True)
class ModelPaths:
    """Local paths of a verified encoder/decoder pair.

    Parameters
    ----------
    encoder, decoder : Path
        Files ready to be opened by ONNX Runtime.
    """

    encoder: Path
    decoder: Path


#: Suffixes of the four files of one exported model (``<stem><suffix>``).
VIDEO_SUFFIXES = (
    ".encoder.onnx",
    ".decoder.onnx",
    ".memory_attention.onnx",
    ".memory_encoder.onnx",
)


@dataclass(frozen=True)
class VideoModelPaths:
    """The four files propagation through stacks needs, all from one export.

    Parameters
    ----------
    encoder, decoder, memory_attention, memory_encoder : Path
    """

    encoder: Path
    decoder: Path
    memory_attention: Path
    memory_encoder: Path

    @property
    def files(self) -> tuple[Path, Path, Path, Path]:
        """The paths in the order :meth:`Sam2Propagator.from_files` takes them."""
        return (self.encoder, self.decoder, self.memory_attention, self.memory_encoder)


def exported_dir(cache: Path | None = None) -> Path:
    """Folder of models exported with ``napari-sam2-webgpu export --install``.

    SAM2's memory components are not published as ONNX, so propagation uses models the user
    exports from an official (or fine-tuned) checkpoint; ``--install`` puts them here, under
    the model cache.
    """
    return (cache if cache is not None else cache_dir()) / "exported"


def companion_video_files(encoder: str | os.PathLike) -> tuple[Path, Path] | None:
    """The memory attention and memory encoder exported with ``encoder``, if both exist.

    They share its stem: ``x.encoder.onnx`` -> ``x.memory_attention.onnx`` and
    ``x.memory_encoder.onnx``.
    """
    path = Path(encoder)
    stem = path.name.removesuffix(".onnx").removesuffix(".encoder")
    found = tuple(path.with_name(stem + suffix) for suffix in VIDEO_SUFFIXES[2:])
    return found if all(p.is_file() for p in found) else None  # type: ignore[return-value]


def find_video_model(size: str, cache: Path | None = None) -> VideoModelPaths:
    """The exported model set of ``size`` in :func:`exported_dir`.

    Raises
    ------
    ModelNotAvailableError
        It has not been exported; the message gives the command that does it.
    """
    folder = exported_dir(cache)
    stem = f"sam2.1_hiera_{size}"
    paths = [folder / (stem + suffix) for suffix in VIDEO_SUFFIXES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ModelNotAvailableError(
            f"Propagation with the {size!r} model needs its video components, which are not "
            f"published as ONNX: export them once from the official checkpoint with\n"
            f"  napari-sam2-webgpu export --size {size} --checkpoint sam2.1_hiera_{size}.pt "
            f"--install\n(missing in {folder}: {', '.join(missing)})."
        )
    return VideoModelPaths(*paths)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

_HF_REPO = "https://huggingface.co/vietanhdev/segment-anything-2.1-onnx-models"
_HF_REVISION = "6a3ac868340a3196a349050a6efae22a5acc0330"
_CHECKPOINT_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"
_SOURCE = (
    "SAM2.1 (Meta FAIR) exported to ONNX with samexporter by Viet-Anh Nguyen (AnyLabeling); "
    f"{_HF_REPO} at revision {_HF_REVISION[:8]}"
)


def _hf_spec(
    size: str,
    *,
    description: str,
    params_millions: float,
    archive_sha256: str = UNVERIFIED,
    archive_size: int = 0,
    encoder_sha256: str = UNVERIFIED,
    encoder_size: int = 0,
    decoder_sha256: str = UNVERIFIED,
    decoder_size: int = 0,
    notes: str = "",
) -> ModelSpec:
    archive_name = f"sam2.1_hiera_{size}_20260221.zip"
    archive = ModelArchive(
        filename=archive_name,
        url=f"{_HF_REPO}/resolve/{_HF_REVISION}/{archive_name}",
        sha256=archive_sha256,
        size=archive_size,
    )
    return ModelSpec(
        name=size,
        encoder=ModelFile(
            f"sam2.1_hiera_{size}.encoder.onnx", archive.url, encoder_sha256, encoder_size, archive
        ),
        decoder=ModelFile(
            f"sam2.1_hiera_{size}.decoder.onnx", archive.url, decoder_sha256, decoder_size, archive
        ),
        description=description,
        source=_SOURCE,
        license="Apache-2.0",
        params_millions=params_millions,
        checkpoint_url=f"{_CHECKPOINT_BASE}/sam2.1_hiera_{size}.pt",
        notes=notes,
    )


REGISTRY: dict[str, ModelSpec] = {
    "tiny": _hf_spec(
        "tiny",
        description="SAM2.1 Hiera-T: fastest, 117 MB download",
        params_millions=38.9,
        archive_sha256="c602cb3f6fd297312a415f885f0df3f0eef9fbb334b069c9d30e828f2ae7c69a",
        archive_size=116_507_723,
        encoder_sha256="667384d1e686de6828b841ac8a24db0fafa2b3452494225f82eeedac56141230",
        encoder_size=109_471_931,
        decoder_sha256="c40f5aa7d37b681cd500481a85d44839fd81c93dce1e86271a2c866470d22105",
        decoder_size=16_519_561,
    ),
    "small": _hf_spec(
        "small",
        description="SAM2.1 Hiera-S: fast, 143 MB download",
        params_millions=46.0,
        archive_sha256="7c232acd0a95053704aa2ae9f9a3e8f9e93899fa51335b14d38e34bb7267973d",
        archive_size=142_896_844,
        encoder_sha256="275013f35a03fcf9d9f32f0490bfb7acd8b8fb86f145ba173123eb3886c8d4b2",
        encoder_size=138_018_779,
        decoder_sha256="d158eb26a43d39eed23ef677d6826d17eb9eda951921f9a252fa5d36d871b57d",
        decoder_size=16_519_569,
    ),
    "base_plus": _hf_spec(
        "base_plus",
        description="SAM2.1 Hiera-B+: balanced, ~272 MB download (no published checksum)",
        params_millions=80.8,
        notes=(
            "No SHA-256 has been published for this pair; it is downloaded only with "
            f"allow_unverified=True or {ENV_ALLOW_UNVERIFIED}=1, and its hash is then recorded."
        ),
    ),
    "large": _hf_spec(
        "large",
        description="SAM2.1 Hiera-L: most accurate, ~805 MB download",
        params_millions=224.4,
        encoder_sha256="f18538735868c076b715d5abbdf1a9d5fb4b0939c00be9db42d6b3808cdd3251",
        decoder_sha256="014ac31e9037238ee027d6399d932dafe80c15ae711aee564976b94383b4ffa1",
        notes="Checksums from a single secondary source; exact byte sizes not published.",
    ),
}

_ALIASES = {
    "t": "tiny",
    "s": "small",
    "b": "base_plus",
    "b+": "base_plus",
    "base": "base_plus",
    "base+": "base_plus",
    "baseplus": "base_plus",
    "l": "large",
}


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _is_sha256(value: str) -> bool:
    return bool(_HEX64.fullmatch(value))


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUTHY


def _fmt_size(n: int) -> str:
    return f"{n:,} bytes" if n > 0 else "size not published"


def _fmt_sha(sha: str) -> str:
    return f"sha256 {sha}" if _is_sha256(sha) else "no published sha256"


def _resolve_spec(model: str | ModelSpec) -> ModelSpec:
    return model if isinstance(model, ModelSpec) else get_spec(model)


def cache_dir() -> Path:
    """Return the folder model files are cached in.

    Returns
    -------
    Path
        ``$NAPARI_SAM2_WEBGPU_CACHE_DIR`` if set, else
        ``platformdirs.user_data_dir("napari-sam2-webgpu") / "models"``. The folder is not
        created here; :func:`ensure_model` creates it when it first downloads something.
    """
    override = os.environ.get(ENV_CACHE_DIR, "").strip()
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("napari-sam2-webgpu", appauthor=False)) / "models"


def get_spec(name: str) -> ModelSpec:
    """Look up a registry model by name.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_SIZES`; case, ``-`` vs ``_`` and short forms such as ``"b+"`` or
        ``"base"`` are accepted.

    Returns
    -------
    ModelSpec

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the valid names.
    """
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    try:
        return REGISTRY[key]
    except KeyError:
        valid = ", ".join(REGISTRY)
        raise ValueError(f"Unknown SAM2.1 model {name!r}; valid names: {valid}.") from None


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
        If `sha256` is not 64 hex digits (e.g. :data:`UNVERIFIED`): there is nothing to check
        against.
    """
    expected = sha256.strip().lower()
    if not _is_sha256(expected):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    path = Path(path)
    if not path.is_file():
        return False
    return sha256_file(path) == expected


def model_paths_from_files(
    encoder: str | os.PathLike[str], decoder: str | os.PathLike[str]
) -> ModelPaths:
    """Use a custom encoder/decoder ONNX pair from disk (e.g. one made by ``export``).

    No checksum is involved: the user chose these files. The pair must follow samexporter's
    SAM2 interface (see the module docstring).

    Parameters
    ----------
    encoder, decoder : path-like
        Paths of the two ONNX files.

    Returns
    -------
    ModelPaths
        Absolute paths.

    Raises
    ------
    FileNotFoundError
        If either file does not exist.
    """
    paths = ModelPaths(Path(encoder).expanduser().resolve(), Path(decoder).expanduser().resolve())
    for role, path in (("encoder", paths.encoder), ("decoder", paths.decoder)):
        if not path.is_file():
            raise FileNotFoundError(f"custom SAM2 {role} ONNX file not found: {path}")
    return paths


# --------------------------------------------------------------------------------------------
# Stamps and cache checks
# --------------------------------------------------------------------------------------------


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + _STAMP_SUFFIX)


def _read_stamp(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_stamp(path: Path, sha256: str, *, trust: str) -> None:
    """Record that `path` was verified; a read-only cache just loses the shortcut."""
    try:
        st = path.stat()
        stamp = {
            "sha256": sha256,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "inode": st.st_ino,
            # "published": matched the registry; "first-use": recorded after an opt-in.
            "trust": trust,
        }
        tmp = _new_hidden_file(path.parent, path.name, ".stamp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(stamp, fh)
            os.replace(tmp, _stamp_path(path))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    except OSError as exc:
        logger.debug("could not write checksum stamp for %s: %s", path, exc)


def _remove_stamp(path: Path) -> None:
    with contextlib.suppress(OSError):
        _stamp_path(path).unlink()


@dataclass(frozen=True)
class _FileState:
    """Outcome of checking one cached file."""

    status: str  # "ok", "missing", "corrupt", "unverifiable"
    detail: str = ""
    got_sha256: str = ""


def _check_cached(path: Path, mf: ModelFile, *, verify: bool = True) -> _FileState:
    if not path.is_file():
        return _FileState("missing")
    st = path.stat()
    if mf.size > 0 and st.st_size != mf.size:
        # A wrong size is already proof; no need to hash ~1 GB to say so.
        return _FileState("corrupt", f"size is {st.st_size:,} bytes, expected {mf.size:,}")
    stamp = _read_stamp(path)
    if mf.has_checksum:
        expected, trust = mf.sha256, "published"
    elif stamp and stamp.get("trust") == "first-use" and _is_sha256(str(stamp.get("sha256"))):
        expected, trust = str(stamp["sha256"]), "first-use"
    else:
        return _FileState("unverifiable", "no published sha256 and no recorded hash")
    if not verify:
        return _FileState("ok")
    if (
        stamp
        and stamp.get("sha256") == expected
        and stamp.get("size") == st.st_size
        and stamp.get("mtime_ns") == st.st_mtime_ns
        and stamp.get("inode") == st.st_ino
    ):
        return _FileState("ok")
    # No stamp, or the file changed since it was verified: hash it.
    got = sha256_file(path)
    if got == expected:
        _write_stamp(path, got, trust=trust)
        return _FileState("ok")
    return _FileState("corrupt", f"sha256 is {got}, expected {expected}", got)


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
    spec = _resolve_spec(model)
    folder = Path(cache) if cache is not None else cache_dir()
    return all(
        _check_cached(folder / mf.filename, mf, verify=verify).status == "ok" for mf in spec.files
    )


def cache_status(*, cache: Path | None = None) -> list[dict[str, Any]]:
    """Describe the cache state of every registry model (for the CLI ``models`` command).

    Parameters
    ----------
    cache : Path, optional
        Cache folder; default :func:`cache_dir`.

    Returns
    -------
    list of dict
        One dict per registry model, in :data:`MODEL_SIZES` order, with keys ``name`` (str),
        ``cached`` (bool: both files present and verified), ``size_bytes`` (int: bytes on disk of
        the files present), ``expected_bytes`` (int: registry sizes, 0 if unknown), ``paths``
        (dict ``{"encoder": str, "decoder": str}``), ``files`` (dict role -> status: ``"ok"``,
        ``"missing"``, ``"corrupt"`` or ``"unverifiable"``), ``checksums`` (``"published"`` or
        ``"incomplete"``), ``description``, ``source`` and ``license``.
    """
    folder = Path(cache) if cache is not None else cache_dir()
    rows: list[dict[str, Any]] = []
    for spec in REGISTRY.values():
        states: dict[str, str] = {}
        paths: dict[str, str] = {}
        on_disk = 0
        for role, mf in (("encoder", spec.encoder), ("decoder", spec.decoder)):
            path = folder / mf.filename
            paths[role] = str(path)
            states[role] = _check_cached(path, mf).status
            if path.is_file():
                on_disk += path.stat().st_size
        rows.append(
            {
                "name": spec.name,
                "cached": all(s == "ok" for s in states.values()),
                "size_bytes": on_disk,
                "expected_bytes": spec.encoder.size + spec.decoder.size
                if spec.encoder.size and spec.decoder.size
                else 0,
                "paths": paths,
                "files": states,
                "checksums": "published" if spec.fully_verified else "incomplete",
                "description": spec.description,
                "source": spec.source,
                "license": spec.license,
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------


class _Unreachable(Exception):
    """The server could not be reached at all (nothing was received)."""


class _CacheNotWritable(Exception):
    """The cache folder cannot be created or written; ``__cause__`` is the OSError."""


def _new_hidden_file(folder: Path, name: str, suffix: str) -> Path:
    """Create an empty hidden ``.<name>.<random><suffix>`` file in `folder`; return its path.

    Unlike :func:`tempfile.mkstemp` (always ``0o600``), the mode is ``0o666`` less the umask (and
    any default ACL of the folder), so a file moved into a shared cache is as readable as any
    other the user creates.
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


class _Progress:
    """Forwards download progress to the callback, throttled to keep GUI updates rare.

    A call is made at most every :data:`DOWNLOAD_CHUNK` bytes or :data:`PROGRESS_SECONDS`,
    whichever comes first, so a slow download still shows movement; ``force`` reports now.
    """

    def __init__(self, callback: ProgressCallback | None, label: str, total: int) -> None:
        self.callback = callback
        self.label = label
        self.total = total
        self._sent = -1
        self._sent_at = _clock()

    def update(self, done: int, *, force: bool = False) -> None:
        if self.callback is None or done == self._sent:
            return
        now = _clock()
        if (
            force
            or done - max(self._sent, 0) >= DOWNLOAD_CHUNK
            or now - self._sent_at >= PROGRESS_SECONDS
        ):
            self._sent, self._sent_at = done, now
            self.callback(done, self.total, self.label)


class _StallGuard:
    """Minimum-throughput rule: too few bytes during the last `window` seconds means stalled."""

    def __init__(self, window: float, min_bytes: int) -> None:
        self.window = window
        self.min_bytes = min_bytes
        self._start = _clock()
        self._start_bytes = 0

    def check(self, done: int) -> int | None:
        """Return the bytes received in a window that ended with too few, else None."""
        now = _clock()
        if now - self._start < self.window:
            return None
        got = done - self._start_bytes
        if got < self.min_bytes:
            return got
        self._start, self._start_bytes = now, done
        return None


def _download_limits() -> tuple[float, float, int]:
    """``(read timeout, stall window, stall minimum bytes)``, with the environment override."""
    timeout, window = float(DOWNLOAD_TIMEOUT), float(STALL_SECONDS)
    raw = os.environ.get(ENV_DOWNLOAD_TIMEOUT, "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if value > 0 and math.isfinite(value):
            timeout = window = value
        else:
            logger.warning(
                "Ignoring %s=%r: expected a number of seconds > 0.", ENV_DOWNLOAD_TIMEOUT, raw
            )
    return timeout, window, int(STALL_MIN_BYTES)


@contextlib.contextmanager
def _part_file(folder: Path, name: str) -> Iterator[Path]:
    """A hidden temporary file next to the final path, removed unless moved away."""
    try:
        tmp = _new_hidden_file(folder, name, _PART_SUFFIX)
    except OSError as exc:
        raise _CacheNotWritable(str(exc)) from exc
    try:
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _clean_stale_parts(folder: Path) -> None:
    """Remove ``.part`` files left by killed processes (not ones still being written)."""
    now = time.time()
    for part in folder.glob(f".*{_PART_SUFFIX}"):
        with contextlib.suppress(OSError):
            if now - part.stat().st_mtime > STALE_PART_SECONDS:
                part.unlink()


@contextlib.contextmanager
def _download_lock(folder: Path, names: list[str]) -> Iterator[None]:
    """Hold ``.<name>.lock`` for each file so that concurrent processes fetch it only once.

    The lock only saves bandwidth: part files and the atomic move keep the cache correct without
    it. So where no lock can be taken (a file system without locks, a lock file owned by another
    user) the download goes ahead unlocked, and whether the folder is writable is left to the
    part file to find out.
    """
    from filelock import FileLock, Timeout

    held: list[tuple[Any, Path]] = []
    try:
        for name in sorted(set(names)):  # one order in every process: no deadlock
            path = folder / f".{name}{_LOCK_SUFFIX}"
            lock = FileLock(str(path))
            try:
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    logger.warning(
                        "Another process is downloading %s into %s; waiting for it to finish.",
                        name,
                        folder,
                    )
                    lock.acquire(timeout=LOCK_TIMEOUT)
            except Timeout as exc:
                raise ModelDownloadError(
                    f"Gave up after waiting {LOCK_TIMEOUT:g} s for another process that is "
                    f"downloading {name} (it holds {path}). Close that napari or "
                    "napari-sam2-webgpu process, or try again later."
                ) from exc
            except (OSError, NotImplementedError) as exc:
                logger.debug("downloading %s without a lock: %s", name, exc)
                continue
            held.append((lock, path))
        yield
    finally:
        for lock, path in reversed(held):
            # Unlinked while still held, so no lock file is left behind; a waiter that then gets
            # the old, unlinked file notices and locks the new one (filelock checks st_nlink).
            with contextlib.suppress(OSError):
                path.unlink()
            with contextlib.suppress(OSError):
                lock.release()


def _fsync(path: Path) -> None:
    # Without this a power cut after os.replace could leave a named but empty file.
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _content_length(headers: Any) -> int:
    try:
        return max(int(headers.get("Content-Length") or 0), 0)
    except ValueError:
        return 0


def _http_download(url: str, dest: Path, progress: ProgressCallback | None, label: str) -> int:
    """Fetch `url` into `dest`; return the number of bytes written.

    Raises ModelDownloadError (HTTP error, interrupted, stalled, too slow, disk write error) or
    _Unreachable (no connection at all).
    """
    import requests
    import urllib3

    timeout, window, min_bytes = _download_limits()
    advice = (
        f"The partial file was discarded; try again later, use a mirror ({ENV_BASE_URL}), or "
        f"allow more time with {ENV_DOWNLOAD_TIMEOUT}=SECONDS."
    )
    try:
        # identity: byte counts, Content-Length and the checksum all refer to the file itself.
        response = requests.get(
            url,
            stream=True,
            timeout=(timeout, timeout),
            headers={"Accept-Encoding": "identity"},
        )
    except requests.ReadTimeout as exc:
        raise ModelDownloadError(
            f"Download of {label} from {url} stalled: the server accepted the connection but "
            f"sent no answer within {timeout:g} s. {advice}"
        ) from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Unreachable(f"could not download {url}: {exc}") from exc
    except requests.RequestException as exc:
        raise ModelDownloadError(
            f"Download of {label} from {url} failed ({exc}). Nothing was saved; check the URL "
            f"(or {ENV_BASE_URL}) and try again."
        ) from exc

    with response:
        if not response.ok:
            raise ModelDownloadError(
                f"Download of {label} failed: HTTP {response.status_code} from {url}. Nothing "
                f"was saved; check the URL (or {ENV_BASE_URL}) and try again."
            )
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        decode = encoding not in ("", "identity")
        # Content-Length counts encoded bytes; with an encoding the file's size is unknown.
        total = 0 if decode else _content_length(response.headers)
        raw = response.raw
        # read1 returns what has arrived instead of blocking until a whole chunk is in, so the
        # progress and the stall rule see a slow server as it is. urllib3 < 2.3 lacks it; its
        # read blocks until n bytes arrive, so n is kept small there.
        read1 = getattr(raw, "read1", None)
        chunk_size = DOWNLOAD_CHUNK if read1 is not None else 16 << 10
        read = read1 if read1 is not None else raw.read
        bar = _Progress(progress, label, total)
        guard = _StallGuard(window, min_bytes)
        if total > 0:
            bar.update(0, force=True)
        done = 0
        with open(dest, "wb") as fh:
            while True:
                try:
                    chunk = read(chunk_size, decode_content=decode)
                except urllib3.exceptions.ReadTimeoutError as exc:
                    raise ModelDownloadError(
                        f"Download of {label} from {url} stalled: no data for {timeout:g} s "
                        f"after {done:,} of {_fmt_total(total)}. {advice}"
                    ) from exc
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    raise ModelDownloadError(
                        f"Download of {label} from {url} was interrupted after {done:,} of "
                        f"{_fmt_total(total)} ({exc}). The partial file was discarded; run again "
                        "to retry."
                    ) from exc
                if not chunk:
                    break
                try:
                    fh.write(chunk)
                except OSError as exc:
                    raise ModelDownloadError(
                        f"Could not write the download of {label} to {dest.parent} ({exc}). "
                        "The partial file was discarded; free some space or choose another cache "
                        f"folder ({ENV_CACHE_DIR}), then try again."
                    ) from exc
                done += len(chunk)
                bar.update(done)
                recent = guard.check(done)
                if recent is not None:
                    raise ModelDownloadError(
                        f"Download of {label} from {url} is too slow (stalled): only {recent:,} "
                        f"bytes arrived in the last {window:g} s (at least {min_bytes:,} "
                        f"expected), {done:,} of {_fmt_total(total)} in all. {advice}"
                    )
    if total > 0 and done != total:
        raise ModelDownloadError(
            f"Download of {label} from {url} is incomplete: got {done:,} of {total:,} "
            "bytes. The partial file was discarded; run again to retry."
        )
    if total == 0:
        bar.total = done  # no size announced: report the end once, as done == total
    bar.update(done, force=True)
    return done


def _fmt_total(total: int) -> str:
    return f"{total:,} bytes" if total > 0 else "an unknown number of bytes"


def _verify_part(part: Path, *, label: str, source: str, sha256: str, size: int) -> str:
    """Check a downloaded temporary file; return its digest or raise ModelDownloadError."""
    written = part.stat().st_size
    if size > 0 and written != size:
        raise ModelDownloadError(
            f"Download of {label} from {source} has the wrong size: {written:,} bytes, expected "
            f"{size:,}. It was discarded."
        )
    got = sha256_file(part)
    if _is_sha256(sha256) and got != sha256:
        raise ModelDownloadError(
            f"Checksum mismatch for {label} downloaded from {source}: expected sha256 {sha256}, "
            f"got {got}. The file was discarded; if this repeats, the server holds different "
            "bytes than the registry expects."
        )
    return got


def _install(part: Path, dest: Path, got: str, mf: ModelFile) -> None:
    try:
        _fsync(part)
        _remove_stamp(dest)  # never leave an old stamp describing new bytes, even for an instant
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
    _write_stamp(dest, got, trust=trust)


def _fetch_direct(url: str, mf: ModelFile, folder: Path, progress: ProgressCallback | None) -> None:
    with _part_file(folder, mf.filename) as part:
        _http_download(url, part, progress, mf.filename)
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


def _fetch_from_archive(
    archive: ModelArchive,
    files: list[ModelFile],
    folder: Path,
    progress: ProgressCallback | None,
) -> None:
    with _part_file(folder, archive.filename) as zpart:
        _http_download(archive.url, zpart, progress, archive.filename)
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
                    got = _verify_part(
                        part, label=mf.filename, source=source, sha256=mf.sha256, size=mf.size
                    )
                    _install(part, folder / mf.filename, got, mf)


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


def _not_available_message(
    spec: ModelSpec,
    folder: Path,
    reason: str,
    states: dict[str, _FileState],
    base_url: str | None,
) -> str:
    lines = [
        f"SAM2.1 model {spec.name!r} is not available: {reason}.",
        "",
        "Needed files and their state in the cache folder",
        f"  {folder}",
    ]
    for mf in spec.files:
        state = states.get(mf.filename, _FileState("missing"))
        extra = f": {state.detail}" if state.detail else ""
        lines.append(
            f"    {mf.filename}  ({_fmt_size(mf.size)}, {_fmt_sha(mf.sha256)}) "
            f"- {state.status}{extra}"
        )
    lines += ["", "To install it by hand, download"]
    if base_url:
        for mf in spec.files:
            lines.append(f"  {base_url}/{mf.filename}")
    archives: dict[str, ModelArchive] = {}
    for mf in spec.files:
        if mf.archive is not None:
            archives.setdefault(mf.archive.url, mf.archive)
        elif not base_url:
            lines.append(f"  {mf.url}")
    for arc in archives.values():
        prefix = "  or " if base_url else "  "
        lines.append(
            f"{prefix}{arc.url}\n      (zip archive, {_fmt_size(arc.size)}, "
            f"{_fmt_sha(arc.sha256)}; extract only the two .onnx files named above)"
        )
    lines.append(
        "and place the files under exactly those names in the folder above, then try again; "
        "they are checked against the sha256 values listed."
    )
    if any(state.status == "corrupt" for state in states.values()):
        lines.append(
            "A corrupted file is never used: delete it (or overwrite it with a good copy from a "
            "machine with internet access) before placing the new one."
        )
    if not spec.fully_verified:
        lines.append(
            f"Files without a published sha256 are accepted only with {ENV_ALLOW_UNVERIFIED}=1 "
            "(or allow_unverified=True); their hash is then recorded and checked from then on."
        )
    if spec.checkpoint_url:
        lines += [
            "Alternatively convert the official PyTorch checkpoint",
            f"  {spec.checkpoint_url}",
            f"with `napari-sam2-webgpu export --checkpoint {spec.checkpoint_url.rsplit('/', 1)[-1]}"
            f" --size {spec.name} --out DIR` and load that pair as a custom model (its bytes "
            "differ from the registry files, so do not copy it into the cache).",
        ]
    lines += [
        "",
        "Settings (environment variables):",
        f"  {ENV_CACHE_DIR}=DIR         cache folder (now {folder})",
        f"  {ENV_BASE_URL}=URL          mirror serving the .onnx files as URL/<filename>",
        f"  {ENV_OFFLINE}=1              never touch the network",
        f"  {ENV_ALLOW_UNVERIFIED}=1     accept files that have no published checksum",
    ]
    return "\n".join(lines)


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest existing path at or above `folder` if it is not a folder, else None."""
    for path in (folder, *folder.parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


def _not_writable_message(
    spec: ModelSpec,
    folder: Path,
    files: list[ModelFile],
    states: dict[str, _FileState],
    exc: BaseException | None,
) -> str:
    blocker = _file_in_the_way(folder)
    if blocker == folder:
        problem = "it is a file, not a folder"
    elif blocker is not None:
        problem = f"{blocker} is a file, not a folder"
    else:
        why = getattr(exc, "strerror", None) or str(exc or "permission denied")
        problem = f"it {'is not writable' if folder.is_dir() else 'cannot be created'} ({why})"
    lines = [
        f"SAM2.1 model {spec.name!r} cannot be downloaded into the cache folder {folder}: "
        f"{problem}. Set {ENV_CACHE_DIR} to a writable folder, or have someone who can write "
        "there place these files (see `napari-sam2-webgpu models` and docs/models.md):"
    ]
    for mf in files:
        state = states.get(mf.filename, _FileState("missing"))
        lines.append(
            f"  {folder / mf.filename}  ({_fmt_size(mf.size)}, {_fmt_sha(mf.sha256)}) "
            f"- {state.status}"
        )
    return "\n".join(lines)


def _corrupt_warning(path: Path, mf: ModelFile, state: _FileState, offline: bool) -> None:
    if not offline:
        logger.warning("Cached %s is corrupted (%s); downloading it again.", path, state.detail)
        return
    logger.warning(
        "Cached %s is corrupted (%s) and cannot be replaced in offline mode. Delete it and "
        "download the model on a machine with internet access, or copy a good file to that "
        "path (expected %s).",
        path,
        state.detail,
        _fmt_sha(mf.sha256),
    )


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _unverified_message(spec: ModelSpec, files: list[ModelFile], folder: Path) -> str:
    names = ", ".join(mf.filename for mf in files)
    return (
        f"SAM2.1 model {spec.name!r}: no SHA-256 checksum has been published for {names}, so a "
        "download could not be told apart from a corrupted or tampered file, and it is refused "
        "by default.\n"
        f"To accept it anyway, pass allow_unverified=True or set {ENV_ALLOW_UNVERIFIED}=1; the "
        f"hash seen on that first use is recorded in {folder} and checked from then on.\n"
        "Safer alternatives: use a model size with published checksums "
        f"({', '.join(s.name for s in REGISTRY.values() if s.fully_verified)}), or convert the "
        f"official checkpoint {spec.checkpoint_url} with `napari-sam2-webgpu export` and load "
        "that pair as a custom model."
    )


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def _download(
    todo: list[ModelFile], folder: Path, base_url: str | None, progress: ProgressCallback | None
) -> None:
    if base_url:
        for mf in todo:
            _fetch_direct(f"{base_url}/{mf.filename}", mf, folder, progress)
        return
    by_archive: dict[ModelArchive, list[ModelFile]] = {}
    for mf in todo:
        if mf.archive is None:
            _fetch_direct(mf.url, mf, folder, progress)
        else:
            by_archive.setdefault(mf.archive, []).append(mf)
    for archive, files in by_archive.items():
        _fetch_from_archive(archive, files, folder, progress)


def ensure_model(
    model: str | ModelSpec,
    *,
    progress: ProgressCallback | None = None,
    cache: Path | None = None,
    base_url: str | None = None,
    offline: bool | None = None,
    allow_unverified: bool | None = None,
) -> ModelPaths:
    """Return verified local paths of a model's encoder and decoder, downloading what is missing.

    Parameters
    ----------
    model : str or ModelSpec
        Registry name (see :func:`get_spec`) or any spec, including one not in the registry.
    progress : callable, optional
        ``progress(bytes_done, bytes_total, filename)``, called repeatedly during each download
        (from the calling thread; `filename` is the archive's name while an archive is being
        fetched); ``bytes_total`` is 0 if the server does not send a size. The last call of a
        completed download has ``bytes_done == bytes_total``. An exception raised by the
        callback aborts the download (use it to cancel); nothing is kept and the exception
        propagates.
    cache : Path, optional
        Cache folder; default :func:`cache_dir`.
    base_url : str, optional
        Mirror to fetch from instead of the registry URLs: each file is fetched as
        ``f"{base_url}/{filename}"`` (the .onnx files themselves, never archives). Default
        ``$NAPARI_SAM2_WEBGPU_BASE_URL``.
    offline : bool, optional
        Never touch the network. Default: ``$NAPARI_SAM2_WEBGPU_OFFLINE`` is ``1``.
    allow_unverified : bool, optional
        Accept files that have no published checksum (their hash is recorded on first use).
        Default: ``$NAPARI_SAM2_WEBGPU_ALLOW_UNVERIFIED`` is ``1``.

    Returns
    -------
    ModelPaths

    Raises
    ------
    ModelNotAvailableError
        Offline or server unreachable while a file is missing or corrupted in the cache. The
        message says what to download from where, the cache folder and file names, and the
        environment variables. Also raised when a file is needed but the cache folder cannot be
        written (read-only, or a file where the folder should be); the message names the paths
        the files belong at and :data:`ENV_CACHE_DIR`.
    ModelDownloadError
        HTTP error, interrupted or stalled transfer (see :data:`DOWNLOAD_TIMEOUT`,
        :data:`STALL_SECONDS`, :data:`STALL_MIN_BYTES` and :data:`ENV_DOWNLOAD_TIMEOUT`), wrong
        size or checksum. Nothing is left at the final path; run again to retry.

    ModelUnverifiedError
        A needed file has no published checksum and `allow_unverified` is off.
    ValueError
        Unknown model name.

    Notes
    -----
    A cache that already holds verified files is only read (it may be read-only). While a file
    is downloaded its lock file is held, so another process asking for the same file waits and
    then uses it instead of downloading it again.
    """
    spec = _resolve_spec(model)
    folder = Path(cache) if cache is not None else cache_dir()
    if base_url is None:
        base_url = os.environ.get(ENV_BASE_URL, "").strip() or None
    base_url = base_url.rstrip("/") if base_url else None
    if offline is None:
        offline = _env_flag(ENV_OFFLINE)
    if allow_unverified is None:
        allow_unverified = _env_flag(ENV_ALLOW_UNVERIFIED)

    states: dict[str, _FileState] = {}
    seen: dict[str, tuple[int, int, int] | None] = {}
    todo: list[ModelFile] = []
    for mf in spec.files:
        path = folder / mf.filename
        state = _check_cached(path, mf)
        if state.status == "unverifiable" and allow_unverified:
            # The user placed (or kept) a file we cannot check and said to trust it.
            got = sha256_file(path)
            logger.warning("Trusting %s on first use (sha256 %s).", path, got)
            _write_stamp(path, got, trust="first-use")  # a read-only cache just asks again
            state = _FileState("ok")
        if state.status == "corrupt":
            _corrupt_warning(path, mf, state, offline)
        states[mf.filename] = state
        seen[mf.filename] = _stat_key(path)
        if state.status != "ok":
            todo.append(mf)

    paths = ModelPaths(folder / spec.encoder.filename, folder / spec.decoder.filename)
    if not todo:
        return paths  # nothing is written: a read-only cache with verified files is enough
    if offline:
        raise ModelNotAvailableError(
            _not_available_message(
                spec, folder, f"offline mode ({ENV_OFFLINE}=1 or offline=True)", states, base_url
            )
        )
    unchecked = [mf for mf in todo if not mf.has_checksum]
    if unchecked and not allow_unverified:
        raise ModelUnverifiedError(_unverified_message(spec, unchecked, folder))

    try:
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelNotAvailableError(
            _not_writable_message(spec, folder, todo, states, exc)
        ) from exc
    try:
        with _download_lock(folder, [mf.filename for mf in todo]):
            # Another process may have installed a file while this one checked or waited.
            for mf in todo:
                path = folder / mf.filename
                if _stat_key(path) != seen[mf.filename]:
                    states[mf.filename] = _check_cached(path, mf)
            todo = [mf for mf in todo if states[mf.filename].status != "ok"]
            if todo:
                _clean_stale_parts(folder)
                _download(todo, folder, base_url, progress)
    except _CacheNotWritable as exc:
        raise ModelNotAvailableError(
            _not_writable_message(spec, folder, todo, states, exc.__cause__)
        ) from exc
    except _Unreachable as exc:
        for mf in todo:  # report what is still missing after the partial success, if any
            states[mf.filename] = _check_cached(folder / mf.filename, mf)
        reason = f"the server is unreachable ({exc})"
        raise ModelNotAvailableError(
            _not_available_message(spec, folder, reason, states, base_url)
        ) from exc
    return paths
