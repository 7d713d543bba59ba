"""Which model files to load: the SAM2.1 registry, the checksummed cache, downloads, and the policy.

The one question this package answers is "which ONNX files does size X mean?":
:func:`resolve_model` (an installed export of that size, else the registry download). Under it:

========================  ==================================================================
:mod:`.registry`          the sizes (:data:`MODEL_SIZES`), their published files and checksums
:mod:`.files`             the file-name convention (``<stem>.encoder.onnx`` ...), path records
:mod:`.cache`             cache folder, SHA-256 stamps, verification, :func:`cache_status`
:mod:`.download`          :func:`ensure_model`: check, lock, fetch, verify, install
:mod:`.fetch`             part files, atomic install, zip extraction
:mod:`.transfer`          HTTP streaming with throttled progress and a stall guard
:mod:`.locks`             cross-process download locks
:mod:`.messages`          what the errors tell the user to do
:mod:`.resolve`           :func:`resolve_model`, :func:`find_video_model`
:mod:`.errors`            :class:`ModelError` and its subclasses
:mod:`.settings`          the ``NAPARI_SAM2_WEBGPU_*`` environment variables
========================  ==================================================================

Everything here is pure Python; ``requests`` (installed with ``pooch``) and ``filelock`` are
imported only when something is actually downloaded. docs/models.md describes the registry,
the cache and the trust policy.

The names below are re-exported from the submodules. Code that patches a module attribute (a
test changing :data:`~.transfer.STALL_SECONDS`, say) must patch the submodule that uses it; the
re-export here is a separate binding.
"""

from __future__ import annotations

from .cache import (
    HASH_CHUNK,
    cache_dir,
    cache_status,
    exported_dir,
    is_cached,
    sha256_file,
    verify_file,
)
from .download import ensure_model
from .errors import (
    ModelDownloadError,
    ModelError,
    ModelNotAvailableError,
    ModelUnverifiedError,
)
from .fetch import STALE_PART_SECONDS
from .files import (
    COMPONENTS,
    IMAGE_COMPONENTS,
    VIDEO_COMPONENTS,
    VIDEO_SUFFIXES,
    ModelPaths,
    VideoModelPaths,
    companion_video_files,
    component_filename,
    model_paths_from_files,
    model_stem,
    stem_of,
)
from .locks import LOCK_TIMEOUT
from .registry import (
    MODEL_SIZES,
    REGISTRY,
    UNVERIFIED,
    ModelArchive,
    ModelFile,
    ModelSpec,
    get_spec,
)
from .resolve import (
    check_size,
    export_command,
    find_video_model,
    installed_export,
    resolve_model,
)
from .settings import (
    ENV_ALLOW_UNVERIFIED,
    ENV_BASE_URL,
    ENV_CACHE_DIR,
    ENV_DOWNLOAD_TIMEOUT,
    ENV_OFFLINE,
)
from .transfer import (
    DOWNLOAD_CHUNK,
    DOWNLOAD_TIMEOUT,
    PROGRESS_SECONDS,
    STALL_MIN_BYTES,
    STALL_SECONDS,
    ProgressCallback,
)

__all__ = [
    "COMPONENTS",
    "DOWNLOAD_CHUNK",
    "DOWNLOAD_TIMEOUT",
    "ENV_ALLOW_UNVERIFIED",
    "ENV_BASE_URL",
    "ENV_CACHE_DIR",
    "ENV_DOWNLOAD_TIMEOUT",
    "ENV_OFFLINE",
    "HASH_CHUNK",
    "IMAGE_COMPONENTS",
    "LOCK_TIMEOUT",
    "MODEL_SIZES",
    "PROGRESS_SECONDS",
    "REGISTRY",
    "STALE_PART_SECONDS",
    "STALL_MIN_BYTES",
    "STALL_SECONDS",
    "UNVERIFIED",
    "VIDEO_COMPONENTS",
    "VIDEO_SUFFIXES",
    "ModelArchive",
    "ModelDownloadError",
    "ModelError",
    "ModelFile",
    "ModelNotAvailableError",
    "ModelPaths",
    "ModelSpec",
    "ModelUnverifiedError",
    "ProgressCallback",
    "VideoModelPaths",
    "cache_dir",
    "cache_status",
    "check_size",
    "companion_video_files",
    "component_filename",
    "ensure_model",
    "export_command",
    "exported_dir",
    "find_video_model",
    "get_spec",
    "installed_export",
    "is_cached",
    "model_paths_from_files",
    "model_stem",
    "resolve_model",
    "sha256_file",
    "stem_of",
    "verify_file",
]
