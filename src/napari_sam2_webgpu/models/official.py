"""Meta's official SAM2.1 checkpoints, and the four ONNX files built from them on this machine.

The default source of every size. The checkpoint (``sam2.1_hiera_<size>.pt``) is downloaded
once from Meta's pinned URL into ``<cache>/checkpoints`` and checked against its SHA-256; the
encoder, decoder, memory attention and memory encoder are then built from the packaged graph
templates without torch (:mod:`.convert`) into ``<cache>/built``. One download serves clicks and
propagation.

Where the checksums come from: Meta publishes none. The SHA-256 and byte size of each file below
were read in ``micro_sam/v2/util.py`` of micro-sam (commit 05c57cce), which verifies these URLs
with pooch, and agree with every other public record found (download scripts and model
registries of unrelated projects; none disagreed).

A build records the checkpoint's hash, the templates it used and the hash of each file
(``<stem>.build.json``). A file that changed is rebuilt, and so is a build made from older
templates (a package update): from the cached checkpoint, without downloading it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cache import cache_dir, check_cached, new_hidden_file, write_stamp
from .download import ensure_files
from .errors import ModelNotAvailableError
from .files import VideoModelPaths, model_stem
from .locks import download_lock
from .registry import ModelFile
from .settings import ENV_CACHE_DIR
from .templates import CONSTANTS_FILE, TEMPLATE_FORMAT, load_index
from .transfer import ProgressCallback

__all__ = [
    "CHECKPOINTS",
    "CheckpointSpec",
    "built_dir",
    "built_model",
    "checkpoint_dir",
    "checkpoint_spec",
    "ensure_built",
    "ensure_checkpoint",
    "templates_digest",
]

logger = logging.getLogger(__name__)

_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"


def _checkpoint(size: str, sha256: str, nbytes: int) -> ModelFile:
    name = f"{model_stem(size)}.pt"
    return ModelFile(name, f"{_BASE}/{name}", sha256, nbytes)


#: The official SAM2.1 checkpoint of each size (see the module notes for the checksums).
CHECKPOINTS: dict[str, ModelFile] = {
    "tiny": _checkpoint(
        "tiny", "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69", 156_008_466
    ),
    "small": _checkpoint(
        "small", "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38", 184_416_285
    ),
    "base_plus": _checkpoint(
        "base_plus", "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5", 323_606_802
    ),
    "large": _checkpoint(
        "large", "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318", 898_083_611
    ),
}


@dataclass(frozen=True)
class CheckpointSpec:
    """An official checkpoint as a set of published files for the download machinery.

    Parameters
    ----------
    name : str
        The model size.
    checkpoint : ModelFile
        The ``.pt`` file.
    """

    name: str
    checkpoint: ModelFile
    #: No "convert it yourself" hint: this is the checkpoint.
    checkpoint_url: str = ""

    @property
    def files(self) -> tuple[ModelFile]:
        """tuple of ModelFile: the checkpoint alone."""
        return (self.checkpoint,)

    @property
    def fully_verified(self) -> bool:
        """bool: Whether the checkpoint has a published checksum."""
        return self.checkpoint.has_checksum


def checkpoint_spec(size: str) -> CheckpointSpec:
    """The official checkpoint of ``size`` (one of :data:`CHECKPOINTS`).

    Raises
    ------
    ValueError
        For a size without an official checkpoint.
    """
    if size not in CHECKPOINTS:
        raise ValueError(
            f"No official SAM2.1 checkpoint for {size!r}; sizes: {', '.join(CHECKPOINTS)}."
        )
    return CheckpointSpec(size, CHECKPOINTS[size])


def checkpoint_dir(cache: Path | None = None) -> Path:
    """Folder of the downloaded official checkpoints (``<cache>/checkpoints``)."""
    return (cache if cache is not None else cache_dir()) / "checkpoints"


def built_dir(cache: Path | None = None) -> Path:
    """Folder of the models built from official checkpoints (``<cache>/built``)."""
    return (cache if cache is not None else cache_dir()) / "built"


def templates_digest(size: str, templates: Path | None = None) -> str:
    """SHA-256 over the template files of ``size``: a build from other templates is stale."""
    index = load_index(size, templates)
    digest = hashlib.sha256(f"format {TEMPLATE_FORMAT}\n".encode())
    paths = [index.folder / f"{size}.json", index.folder / CONSTANTS_FILE]
    paths += [index.template(c) for c in index.components]
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _manifest_path(folder: Path, stem: str) -> Path:
    return folder / f"{stem}.build.json"


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def built_model(
    size: str, cache: Path | None = None, *, templates: Path | None = None
) -> VideoModelPaths | None:
    """The current build of ``size``, or None when it is missing, changed or stale.

    Parameters
    ----------
    size : str
        Model size.
    cache : Path, optional
        Cache folder; default :func:`~.cache.cache_dir`.
    templates : Path, optional
        Template folder; the package's own by default.

    Returns
    -------
    VideoModelPaths or None
        None unless all four files exist, match the hashes recorded when they were built, and
        were built from the templates installed now.
    """
    return _current_build(size, cache, templates_digest(size, templates))


def _current_build(size: str, cache: Path | None, digest: str) -> VideoModelPaths | None:
    """:func:`built_model` for templates whose digest is already known."""
    folder, stem = built_dir(cache), model_stem(size)
    paths = VideoModelPaths.in_folder(folder, stem)
    manifest = _read_manifest(_manifest_path(folder, stem))
    if manifest is None or manifest.get("templates") != digest:
        return None
    recorded = manifest.get("files", {})
    for path in paths.files:
        expected = recorded.get(path.name)
        if not isinstance(expected, str):
            return None
        if check_cached(path, ModelFile(path.name, "", expected, 0)).status != "ok":
            logger.warning("Built model file %s is missing or changed; it will be rebuilt.", path)
            return None
    return paths


def ensure_checkpoint(
    size: str,
    *,
    progress: ProgressCallback | None = None,
    cache: Path | None = None,
    base_url: str | None = None,
    offline: bool | None = None,
    allow_unverified: bool | None = None,
) -> Path:
    """The verified official checkpoint of ``size``, downloaded if needed.

    Arguments, errors and notes as :func:`~.download.ensure_model`; a mirror (``base_url``)
    serves the file as ``<base_url>/sam2.1_hiera_<size>.pt``.

    Returns
    -------
    Path
    """
    spec = checkpoint_spec(size)
    folder = checkpoint_dir(cache)
    ensure_files(
        spec,
        folder,
        progress=progress,
        base_url=base_url,
        offline=offline,
        allow_unverified=allow_unverified,
    )
    return folder / spec.checkpoint.filename


def ensure_built(
    size: str,
    *,
    progress: ProgressCallback | None = None,
    cache: Path | None = None,
    base_url: str | None = None,
    offline: bool | None = None,
    allow_unverified: bool | None = None,
    templates: Path | None = None,
) -> VideoModelPaths:
    """The four ONNX files of ``size`` built from Meta's checkpoint, downloading and building
    what is missing.

    Parameters
    ----------
    size : str
        One of :data:`CHECKPOINTS`.
    progress : callable, optional
        ``progress(done, total, description)`` for the download (bytes of the checkpoint) and
        then for the build (bytes written); an exception raised by it cancels, leaving nothing.
    cache : Path, optional
        Cache folder; default :func:`~.cache.cache_dir`.
    base_url, offline, allow_unverified : optional
        For the checkpoint download, as :func:`~.download.ensure_model`.
    templates : Path, optional
        Template folder; the package's own by default.

    Returns
    -------
    VideoModelPaths

    Raises
    ------
    ModelNotAvailableError, ModelDownloadError
        As :func:`~.download.ensure_model` (offline, unreachable, read-only cache, bad
        download).
    """
    digest = templates_digest(size, templates)  # read the templates once per request
    found = _current_build(size, cache, digest)
    if found is not None:
        return found
    checkpoint = ensure_checkpoint(
        size,
        progress=progress,
        cache=cache,
        base_url=base_url,
        offline=offline,
        allow_unverified=allow_unverified,
    )
    folder, stem = built_dir(cache), model_stem(size)
    names = [p.name for p in VideoModelPaths.in_folder(folder, stem).files]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with download_lock(folder, names):
            found = _current_build(size, cache, digest)  # another process built it
            if found is not None:
                return found
            logger.info("Building the %s model from %s.", size, checkpoint)
            return _build(checkpoint, size, folder, stem, progress, templates, digest)
    except OSError as exc:  # read-only cache, disk full: say where, and what to do
        raise ModelNotAvailableError(
            f"The {size} model cannot be built into {folder}: {exc}. Set {ENV_CACHE_DIR} to a "
            f"writable folder with about {2 * CHECKPOINTS[size].size / 1e9:.1f} GB free, or "
            f"run `napari-sam2-webgpu download {size}` once as a user who can write there."
        ) from exc


def _build(
    checkpoint: Path,
    size: str,
    folder: Path,
    stem: str,
    progress: ProgressCallback | None,
    templates: Path | None,
    digest: str,
) -> VideoModelPaths:
    from .convert import build_model

    manifest_path = _manifest_path(folder, stem)
    manifest_path.unlink(missing_ok=True)  # the old files stop counting before they change
    paths, digests = build_model(
        checkpoint, size, folder, stem=stem, templates=templates, progress=progress
    )
    for path in paths.files:
        write_stamp(path, digests[path.name], trust="built")
    manifest = {
        "size": size,
        "checkpoint": checkpoint.name,
        "checkpoint_sha256": CHECKPOINTS[size].sha256 if size in CHECKPOINTS else "",
        "templates": digest,
        "files": digests,
    }
    tmp = new_hidden_file(folder, manifest_path.name, ".part")
    try:
        tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        os.replace(tmp, manifest_path)
    finally:
        tmp.unlink(missing_ok=True)
    return paths
