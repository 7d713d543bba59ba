"""Exceptions raised when model files cannot be found, fetched or trusted.

:class:`ModelError` and its subclasses are what callers catch (the CLI prints them as one
``error:`` line). :class:`CacheNotWritableError` and :class:`ServerUnreachableError` are signals
between the download steps; :func:`~napari_sam2_webgpu.models.ensure_model` turns them into a
:class:`ModelNotAvailableError` whose message says what to do, so they never reach a caller.
"""

from __future__ import annotations

__all__ = [
    "CacheNotWritableError",
    "ModelDownloadError",
    "ModelError",
    "ModelNotAvailableError",
    "ModelUnverifiedError",
    "ServerUnreachableError",
]


class ModelError(RuntimeError):
    """Base class of every model-file problem raised by this package."""


class ModelDownloadError(ModelError):
    """A download failed: HTTP error, interrupted transfer, wrong size or wrong checksum."""


class ModelNotAvailableError(ModelError):
    """The model is not in the cache and cannot be fetched (offline, or server unreachable)."""


class ModelUnverifiedError(ModelError):
    """A file has no published checksum and the user has not opted in to trusting it."""


class ServerUnreachableError(Exception):
    """The server could not be reached at all (nothing was received).

    Not a :class:`ModelError`: the caller reports it, with the cache state, as
    :class:`ModelNotAvailableError`.
    """


class CacheNotWritableError(Exception):
    """The cache folder cannot be created or written; ``__cause__`` is the :class:`OSError`.

    Not a :class:`ModelError`: the caller reports it, naming the paths the files belong at, as
    :class:`ModelNotAvailableError`.
    """
