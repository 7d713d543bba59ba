"""Cross-process locks that keep two processes from downloading the same file at once.

Two napari windows, or napari and the CLI, asking for the same model: the first holds
``<cache>/.<filename>.lock`` (``filelock``, imported only when something is downloaded) while
it downloads; the second waits, then finds the verified file and uses it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ModelDownloadError

__all__ = ["LOCK_SUFFIX", "LOCK_TIMEOUT", "download_lock"]

logger = logging.getLogger(__name__)

#: Longest wait for another process that is downloading the same file.
LOCK_TIMEOUT = 3 * 3600
#: Lock files are ``.<filename><LOCK_SUFFIX>`` in the cache folder.
LOCK_SUFFIX = ".lock"


def _acquire(lock: Any, name: str, folder: Path, path: Path) -> bool:
    """Take `lock`, waiting for another downloader; False where locks do not work."""
    from filelock import Timeout

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
        return False
    return True


@contextlib.contextmanager
def download_lock(folder: Path, names: list[str]) -> Iterator[None]:
    """Hold ``.<name>.lock`` in `folder` for each of `names` while the block runs.

    The lock only saves bandwidth: part files and the atomic move keep the cache correct without
    it. So where no lock can be taken (a file system without locks, a lock file owned by another
    user) the download goes ahead unlocked, and whether the folder is writable is left to the
    part file to find out.

    Parameters
    ----------
    folder : Path
        The cache folder.
    names : list of str
        File names about to be downloaded.

    Raises
    ------
    ModelDownloadError
        Another process held a lock for longer than :data:`LOCK_TIMEOUT`.
    """
    from filelock import FileLock

    held: list[tuple[Any, Path]] = []
    try:
        for name in sorted(set(names)):  # one order in every process: no deadlock
            path = folder / f".{name}{LOCK_SUFFIX}"
            lock = FileLock(str(path))
            if _acquire(lock, name, folder, path):
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
