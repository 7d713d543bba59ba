"""Model registry, download and cache for the SAM2.1 ONNX encoder/decoder pairs.

One place knows model files: which pair belongs to which size, where it comes from, what its
checksum is, where it lives on disk. Everything here is pure Python; ``pooch`` (and through it
``requests``) is imported only when something is actually downloaded.

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
wrong file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
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

MODEL_SIZES: tuple[str, ...] = ("tiny", "small", "base_plus", "large")

#: Placed in a ``sha256`` field when no checksum was published for that file.
UNVERIFIED = "unverified"

#: Seconds to wait for the server to connect or send the next bytes.
DOWNLOAD_TIMEOUT = 60
#: Bytes per network read and per progress callback (1 MiB keeps GUI updates rare enough).
DOWNLOAD_CHUNK = 1 << 20
#: Bytes per read while hashing; files reach ~900 MB, so never read them whole.
HASH_CHUNK = 4 << 20
#: A ``.part`` file untouched for this long belongs to a dead process and may be removed.
STALE_PART_SECONDS = 3600

ProgressCallback = Callable[[int, int, str], None]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TRUTHY = {"1", "true", "yes", "on"}
_STAMP_SUFFIX = ".sha256"
_PART_SUFFIX = ".part"


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
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".stamp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(stamp, fh)
            os.replace(tmp, _stamp_path(path))
        finally:
            with contextlib.suppress(FileNotFoundError):
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


class _PoochProgress:
    """Progress object for ``pooch.HTTPDownloader(progressbar=...)`` forwarding to a callback.

    pooch sets ``total``, calls ``update(chunk_size)`` per chunk (the last chunk may be short, so
    the running sum is clamped), then ``reset()``, ``update(total)`` and ``close()`` on success.
    """

    def __init__(self, callback: ProgressCallback | None, label: str) -> None:
        self.callback = callback
        self.label = label
        self.total = 0
        self.done = 0
        self.finished = False

    def update(self, n: int) -> None:
        self.done += int(n)
        if self.total > 0:
            self.done = min(self.done, self.total)
        self._emit()

    def reset(self) -> None:
        # Not forwarded: a GUI bar must not jump back to 0 right before it completes.
        self.done = 0

    def close(self) -> None:
        self.finished = True

    def _emit(self) -> None:
        if self.callback is not None:
            self.callback(self.done, self.total, self.label)


@contextlib.contextmanager
def _part_file(folder: Path, name: str) -> Iterator[Path]:
    """A hidden temporary file next to the final path, removed unless moved away."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=_PART_SUFFIX, dir=folder)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _clean_stale_parts(folder: Path) -> None:
    """Remove ``.part`` files left by killed processes (not ones still being written)."""
    now = time.time()
    for part in folder.glob(f".*{_PART_SUFFIX}"):
        with contextlib.suppress(OSError):
            if now - part.stat().st_mtime > STALE_PART_SECONDS:
                part.unlink()


def _fsync(path: Path) -> None:
    # Without this a power cut after os.replace could leave a named but empty file.
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _http_download(url: str, dest: Path, progress: ProgressCallback | None, label: str) -> int:
    """Fetch `url` into `dest` with pooch; return the number of bytes written."""
    import pooch
    import requests

    bar = _PoochProgress(progress, label)
    downloader = pooch.HTTPDownloader(
        progressbar=bar, chunk_size=DOWNLOAD_CHUNK, timeout=DOWNLOAD_TIMEOUT
    )
    try:
        downloader(url, str(dest), None)
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise ModelDownloadError(
            f"Download of {label} failed: HTTP {status} from {url}. Nothing was saved; check the "
            f"URL (or {ENV_BASE_URL}) and try again."
        ) from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        received = dest.stat().st_size if dest.exists() else 0
        if received == 0:
            raise _Unreachable(f"could not download {url}: {exc}") from exc
        raise ModelDownloadError(
            f"Download of {label} from {url} was interrupted after {received:,} of "
            f"{bar.total:,} bytes ({exc}). The partial file was discarded; run again to retry."
        ) from exc
    except requests.RequestException as exc:
        received = dest.stat().st_size if dest.exists() else 0
        raise ModelDownloadError(
            f"Download of {label} from {url} failed after {received:,} of {bar.total:,} bytes "
            f"({exc}). The partial file was discarded; run again to retry."
        ) from exc
    written = dest.stat().st_size
    if bar.total > 0 and written != bar.total:
        raise ModelDownloadError(
            f"Download of {label} from {url} is incomplete: got {written:,} of {bar.total:,} "
            "bytes. The partial file was discarded; run again to retry."
        )
    if bar.total == 0 and progress is not None:
        progress(written, written, label)  # no Content-Length: report the end once
    return written


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
    _fsync(part)
    _remove_stamp(dest)  # never leave an old stamp describing new bytes, even for an instant
    os.replace(part, dest)
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
        environment variables.
    ModelDownloadError
        HTTP error, interrupted transfer, wrong size or checksum. Nothing is left at the final
        path; run again to retry.
    ModelUnverifiedError
        A needed file has no published checksum and `allow_unverified` is off.
    ValueError
        Unknown model name.
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
    todo: list[ModelFile] = []
    for mf in spec.files:
        path = folder / mf.filename
        state = _check_cached(path, mf)
        if state.status == "unverifiable" and allow_unverified:
            # The user placed (or kept) a file we cannot check and said to trust it.
            got = sha256_file(path)
            logger.warning("Trusting %s on first use (sha256 %s).", path, got)
            _write_stamp(path, got, trust="first-use")
            state = _FileState("ok")
        if state.status == "corrupt":
            logger.warning("Cached %s is corrupted (%s); it will be replaced.", path, state.detail)
        states[mf.filename] = state
        if state.status != "ok":
            todo.append(mf)

    paths = ModelPaths(folder / spec.encoder.filename, folder / spec.decoder.filename)
    if not todo:
        return paths
    if offline:
        raise ModelNotAvailableError(
            _not_available_message(
                spec, folder, f"offline mode ({ENV_OFFLINE}=1 or offline=True)", states, base_url
            )
        )
    unchecked = [mf for mf in todo if not mf.has_checksum]
    if unchecked and not allow_unverified:
        raise ModelUnverifiedError(_unverified_message(spec, unchecked, folder))

    folder.mkdir(parents=True, exist_ok=True)
    _clean_stale_parts(folder)
    try:
        if base_url:
            for mf in todo:
                _fetch_direct(f"{base_url}/{mf.filename}", mf, folder, progress)
        else:
            by_archive: dict[ModelArchive, list[ModelFile]] = {}
            for mf in todo:
                if mf.archive is None:
                    _fetch_direct(mf.url, mf, folder, progress)
                else:
                    by_archive.setdefault(mf.archive, []).append(mf)
            for archive, files in by_archive.items():
                _fetch_from_archive(archive, files, folder, progress)
    except _Unreachable as exc:
        for mf in todo:  # report what is still missing after the partial success, if any
            states[mf.filename] = _check_cached(folder / mf.filename, mf)
        reason = f"the server is unreachable ({exc})"
        raise ModelNotAvailableError(
            _not_available_message(spec, folder, reason, states, base_url)
        ) from exc
    return paths
