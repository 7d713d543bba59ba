"""Texts of the errors a missing, unwritable or unverifiable model raises.

Each message says what is wrong, which files are needed where (with sizes and checksums), and
what the user can do: download by hand, use a mirror, point the cache elsewhere, opt in, or
use the official source. Kept apart from the download logic so that both stay readable.
"""

from __future__ import annotations

from pathlib import Path

from .cache import FileState, cache_dir
from .registry import REGISTRY, FileSet, ModelArchive, ModelFile, is_sha256
from .settings import (
    ENV_ALLOW_UNVERIFIED,
    ENV_BASE_URL,
    ENV_CACHE_DIR,
    ENV_OFFLINE,
)

__all__ = [
    "fmt_sha",
    "fmt_size",
    "not_available_message",
    "not_writable_message",
    "unverified_message",
]

_MISSING = FileState("missing")


def fmt_size(n: int) -> str:
    """``"1,234 bytes"``, or ``"size not published"`` for 0."""
    return f"{n:,} bytes" if n > 0 else "size not published"


def fmt_sha(sha: str) -> str:
    """``"sha256 <hex>"``, or ``"no published sha256"`` for ``UNVERIFIED``."""
    return f"sha256 {sha}" if is_sha256(sha) else "no published sha256"


def _manual_download_lines(spec: FileSet, base_url: str | None) -> list[str]:
    lines = ["", "To install it by hand, download"]
    if base_url:
        lines += [f"  {base_url}/{mf.filename}" for mf in spec.files]
    archives: dict[str, ModelArchive] = {}
    for mf in spec.files:
        if mf.archive is not None:
            archives.setdefault(mf.archive.url, mf.archive)
        elif not base_url:
            lines.append(f"  {mf.url}")
    for arc in archives.values():
        prefix = "  or " if base_url else "  "
        lines.append(
            f"{prefix}{arc.url}\n      (zip archive, {fmt_size(arc.size)}, "
            f"{fmt_sha(arc.sha256)}; extract only the two .onnx files named above)"
        )
    lines.append(
        "and place the files under exactly those names in the folder above, then try again; "
        "they are checked against the sha256 values listed."
    )
    return lines


def _checkpoint_lines(spec: FileSet) -> list[str]:
    if not spec.checkpoint_url:
        return []
    name = spec.checkpoint_url.rsplit("/", 1)[-1]
    return [
        "Alternatively use the official source (the default), which builds the model here "
        "without torch from Meta's checkpoint",
        f"  {spec.checkpoint_url}",
        f"or convert that file yourself: `napari-sam2-webgpu convert {name} --size {spec.name}"
        " --install`.",
    ]


def not_available_message(
    spec: FileSet,
    folder: Path,
    reason: str,
    states: dict[str, FileState],
    base_url: str | None,
) -> str:
    """Why `spec` cannot be used now (offline, unreachable) and how to install it by hand.

    Parameters
    ----------
    spec : ModelSpec or CheckpointSpec
        The model asked for.
    folder : Path
        The cache folder.
    reason : str
        Completes "is not available: ...".
    states : dict
        File name -> :class:`~napari_sam2_webgpu.models.cache.FileState` of the files checked.
    base_url : str or None
        The mirror in use, if any.

    Returns
    -------
    str
    """
    lines = [
        f"SAM2.1 model {spec.name!r} is not available: {reason}.",
        "",
        "Needed files and their state in the cache folder",
        f"  {folder}",
    ]
    for mf in spec.files:
        state = states.get(mf.filename, _MISSING)
        extra = f": {state.detail}" if state.detail else ""
        lines.append(
            f"    {mf.filename}  ({fmt_size(mf.size)}, {fmt_sha(mf.sha256)}) "
            f"- {state.status}{extra}"
        )
    lines += _manual_download_lines(spec, base_url)
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
    lines += _checkpoint_lines(spec)
    lines += [
        "",
        "Settings (environment variables):",
        f"  {ENV_CACHE_DIR}=DIR         cache folder (now {cache_dir()})",
        f"  {ENV_BASE_URL}=URL          mirror serving the files above as URL/<filename>",
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


def not_writable_message(
    spec: FileSet,
    folder: Path,
    files: list[ModelFile],
    states: dict[str, FileState],
    exc: BaseException | None,
) -> str:
    """Why `files` cannot be downloaded into `folder`, and where someone should place them.

    Parameters
    ----------
    spec : ModelSpec or CheckpointSpec
        The model asked for.
    folder : Path
        The cache folder that cannot be created or written.
    files : list of ModelFile
        The files still needed (only these are listed).
    states : dict
        File name -> :class:`~napari_sam2_webgpu.models.cache.FileState`.
    exc : BaseException or None
        The error that showed the folder is not writable.

    Returns
    -------
    str
    """
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
        state = states.get(mf.filename, _MISSING)
        lines.append(
            f"  {folder / mf.filename}  ({fmt_size(mf.size)}, {fmt_sha(mf.sha256)}) "
            f"- {state.status}"
        )
    return "\n".join(lines)


def unverified_message(spec: FileSet, files: list[ModelFile], folder: Path) -> str:
    """Why files without a published checksum are refused, and how to accept them anyway.

    Parameters
    ----------
    spec : ModelSpec or CheckpointSpec
        The model asked for.
    files : list of ModelFile
        The files without a checksum.
    folder : Path
        The cache folder (where the hash seen would be recorded).

    Returns
    -------
    str
    """
    names = ", ".join(mf.filename for mf in files)
    return (
        f"SAM2.1 model {spec.name!r}: no SHA-256 checksum has been published for {names}, so a "
        "download could not be told apart from a corrupted or tampered file, and it is refused "
        "by default.\n"
        f"To accept it anyway, pass allow_unverified=True or set {ENV_ALLOW_UNVERIFIED}=1; the "
        f"hash seen on that first use is recorded in {folder} and checked from then on.\n"
        "Safer alternatives: the official source (the default; Meta's checkpoint, whose "
        "SHA-256 is known, built here without torch), or a samexporter size with published "
        f"checksums ({', '.join(s.name for s in REGISTRY.values() if s.fully_verified)})."
    )
