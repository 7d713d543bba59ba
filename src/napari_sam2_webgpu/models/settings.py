"""Environment variables that configure where model files live and how they are fetched.

All names are defined here so that the registry, the cache, the download code and their
messages spell them the same way.
"""

from __future__ import annotations

import os

__all__ = [
    "ENV_ALLOW_UNVERIFIED",
    "ENV_BASE_URL",
    "ENV_CACHE_DIR",
    "ENV_DOWNLOAD_TIMEOUT",
    "ENV_OFFLINE",
    "ENV_SOURCE",
    "env_flag",
]

#: Folder of the model cache (default: the user data folder, see ``cache_dir``).
ENV_CACHE_DIR = "NAPARI_SAM2_WEBGPU_CACHE_DIR"
#: Mirror serving the ``.onnx`` files as ``URL/<filename>`` instead of the registry URLs.
ENV_BASE_URL = "NAPARI_SAM2_WEBGPU_BASE_URL"
#: ``1``: never touch the network; use the cache or fail with instructions.
ENV_OFFLINE = "NAPARI_SAM2_WEBGPU_OFFLINE"
#: ``1``: accept files without a published checksum (trust on first use).
ENV_ALLOW_UNVERIFIED = "NAPARI_SAM2_WEBGPU_ALLOW_UNVERIFIED"
#: Where a size's model comes from when the caller does not say: ``official`` (Meta's
#: checkpoint, built here; the default) or ``samexporter`` (the published ONNX pair).
ENV_SOURCE = "NAPARI_SAM2_WEBGPU_SOURCE"
#: Seconds: overrides both ``DOWNLOAD_TIMEOUT`` and ``STALL_SECONDS`` of the transfer.
ENV_DOWNLOAD_TIMEOUT = "NAPARI_SAM2_WEBGPU_DOWNLOAD_TIMEOUT"

_TRUTHY = {"1", "true", "yes", "on"}


def env_flag(name: str) -> bool:
    """Whether the environment variable `name` is set to a true value.

    Parameters
    ----------
    name : str
        Variable name, e.g. :data:`ENV_OFFLINE`.

    Returns
    -------
    bool
        True for ``1``, ``true``, ``yes`` or ``on`` (any case, surrounding spaces ignored).
    """
    return os.environ.get(name, "").strip().lower() in _TRUTHY
