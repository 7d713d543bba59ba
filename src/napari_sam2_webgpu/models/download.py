"""``ensure_model``: verified local paths of a model's pair, downloading what is missing.

The steps: check each file in the cache (:mod:`.cache`); refuse early when offline or when a
file without a published checksum has not been opted in; take the per-file locks
(:mod:`.locks`); look again (another process may have installed the file meanwhile); fetch what
is still missing (:mod:`.fetch`, :mod:`.transfer`). Every failure becomes one
:class:`~napari_sam2_webgpu.models.errors.ModelError` whose message says what to do
(:mod:`.messages`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .cache import (
    FileState,
    cache_dir,
    check_cached,
    stat_key,
    trust_on_first_use,
)
from .errors import (
    CacheNotWritableError,
    ModelNotAvailableError,
    ModelUnverifiedError,
    ServerUnreachableError,
)
from .fetch import clean_stale_parts, fetch_direct, fetch_from_archive
from .files import ModelPaths
from .locks import download_lock
from .messages import fmt_sha, not_available_message, not_writable_message, unverified_message
from .registry import FileSet, ModelArchive, ModelFile, ModelSpec, as_spec
from .settings import ENV_ALLOW_UNVERIFIED, ENV_BASE_URL, ENV_OFFLINE, env_flag
from .transfer import ProgressCallback

__all__ = ["ensure_files", "ensure_model"]

logger = logging.getLogger(__name__)


def _warn_corrupt(path: Path, mf: ModelFile, state: FileState, offline: bool) -> None:
    if not offline:
        logger.warning("Cached %s is corrupted (%s); downloading it again.", path, state.detail)
        return
    logger.warning(
        "Cached %s is corrupted (%s) and cannot be replaced in offline mode. Delete it and "
        "download the model on a machine with internet access, or copy a good file to that "
        "path (expected %s).",
        path,
        state.detail,
        fmt_sha(mf.sha256),
    )


class _Check:
    """The state of a model's files in the cache, and what still has to be fetched."""

    def __init__(self, spec: FileSet, folder: Path) -> None:
        self.spec = spec
        self.folder = folder
        self.states: dict[str, FileState] = {}
        self.seen: dict[str, tuple[int, int, int] | None] = {}
        self.todo: list[ModelFile] = []

    def run(self, *, allow_unverified: bool, offline: bool) -> None:
        """Check every file once; a file the user said to trust is adopted on the way."""
        for mf in self.spec.files:
            path = self.folder / mf.filename
            state = check_cached(path, mf)
            if state.status == "unverifiable" and allow_unverified:
                # The user placed (or kept) a file we cannot check and said to trust it.
                state = trust_on_first_use(path)
            if state.status == "corrupt":
                _warn_corrupt(path, mf, state, offline)
            self.states[mf.filename] = state
            self.seen[mf.filename] = stat_key(path)
            if state.status != "ok":
                self.todo.append(mf)

    def recheck_changed(self) -> None:
        """Look again at files another process may have installed while this one waited."""
        for mf in self.todo:
            path = self.folder / mf.filename
            if stat_key(path) != self.seen[mf.filename]:
                self.states[mf.filename] = check_cached(path, mf)
        self.todo = [mf for mf in self.todo if self.states[mf.filename].status != "ok"]

    def refresh_todo(self) -> None:
        """Update the states of the files still needed (after a partial success)."""
        for mf in self.todo:
            self.states[mf.filename] = check_cached(self.folder / mf.filename, mf)


def _download(
    todo: list[ModelFile], folder: Path, base_url: str | None, progress: ProgressCallback | None
) -> None:
    if base_url:
        for mf in todo:
            fetch_direct(f"{base_url}/{mf.filename}", mf, folder, progress)
        return
    by_archive: dict[ModelArchive, list[ModelFile]] = {}
    for mf in todo:
        if mf.archive is None:
            fetch_direct(mf.url, mf, folder, progress)
        else:
            by_archive.setdefault(mf.archive, []).append(mf)
    for archive, files in by_archive.items():
        fetch_from_archive(archive, files, folder, progress)


def _fetch_missing(check: _Check, base_url: str | None, progress: ProgressCallback | None) -> None:
    """Create the folder, lock, recheck and download; failures become ModelNotAvailableError."""
    spec, folder = check.spec, check.folder
    try:
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        message = not_writable_message(spec, folder, check.todo, check.states, exc)
        raise ModelNotAvailableError(message) from exc
    try:
        with download_lock(folder, [mf.filename for mf in check.todo]):
            check.recheck_changed()
            if check.todo:
                clean_stale_parts(folder)
                _download(check.todo, folder, base_url, progress)
    except CacheNotWritableError as exc:
        message = not_writable_message(spec, folder, check.todo, check.states, exc.__cause__)
        raise ModelNotAvailableError(message) from exc
    except ServerUnreachableError as exc:
        check.refresh_todo()  # report what is still missing after a partial success, if any
        reason = f"the server is unreachable ({exc})"
        message = not_available_message(spec, folder, reason, check.states, base_url)
        raise ModelNotAvailableError(message) from exc


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

    This is the registry download only; :func:`~napari_sam2_webgpu.models.resolve_model` decides
    between it and an installed export.

    Parameters
    ----------
    model : str or ModelSpec
        Registry name (see :func:`~napari_sam2_webgpu.models.get_spec`) or any spec, including
        one not in the registry.
    progress : callable, optional
        ``progress(bytes_done, bytes_total, filename)``, called repeatedly during each download
        (from the calling thread; `filename` is the archive's name while an archive is being
        fetched); ``bytes_total`` is 0 if the server does not send a size. The last call of a
        completed download has ``bytes_done == bytes_total``. An exception raised by the
        callback aborts the download (use it to cancel); nothing is kept and the exception
        propagates.
    cache : Path, optional
        Cache folder; default :func:`~napari_sam2_webgpu.models.cache_dir`.
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
        the files belong at and ``ENV_CACHE_DIR``.
    ModelDownloadError
        HTTP error, interrupted or stalled transfer (see ``DOWNLOAD_TIMEOUT``,
        ``STALL_SECONDS``, ``STALL_MIN_BYTES`` and ``ENV_DOWNLOAD_TIMEOUT``), wrong size or
        checksum. Nothing is left at the final path; run again to retry.
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
    spec = as_spec(model)
    folder = Path(cache) if cache is not None else cache_dir()
    ensure_files(
        spec,
        folder,
        progress=progress,
        base_url=base_url,
        offline=offline,
        allow_unverified=allow_unverified,
    )
    return ModelPaths(folder / spec.encoder.filename, folder / spec.decoder.filename)


def ensure_files(
    spec: FileSet,
    folder: Path,
    *,
    progress: ProgressCallback | None = None,
    base_url: str | None = None,
    offline: bool | None = None,
    allow_unverified: bool | None = None,
) -> None:
    """Make every file of ``spec.files`` present and verified in ``folder``.

    The machinery of :func:`ensure_model` for any set of published files (a registry pair, an
    official checkpoint); the arguments, errors and notes are those of :func:`ensure_model`.

    Parameters
    ----------
    spec : ModelSpec or CheckpointSpec
        Anything with ``name``, ``files``, ``fully_verified`` and ``checkpoint_url``.
    folder : Path
        Where the files belong.
    """
    if base_url is None:
        base_url = os.environ.get(ENV_BASE_URL, "").strip() or None
    base_url = base_url.rstrip("/") if base_url else None
    if offline is None:
        offline = env_flag(ENV_OFFLINE)
    if allow_unverified is None:
        allow_unverified = env_flag(ENV_ALLOW_UNVERIFIED)

    check = _Check(spec, folder)
    check.run(allow_unverified=allow_unverified, offline=offline)
    if not check.todo:
        return  # nothing is written: a read-only cache with verified files is enough
    if offline:
        reason = f"offline mode ({ENV_OFFLINE}=1 or offline=True)"
        raise ModelNotAvailableError(
            not_available_message(spec, folder, reason, check.states, base_url)
        )
    unchecked = [mf for mf in check.todo if not mf.has_checksum]
    if unchecked and not allow_unverified:
        raise ModelUnverifiedError(unverified_message(spec, unchecked, folder))
    _fetch_missing(check, base_url, progress)
