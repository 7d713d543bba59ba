"""Which model files to load: the SAM2.1 registry, the checksummed cache, downloads, and the policy.

The one question this package answers is "which ONNX files does size X mean?":
:func:`resolve_model` (an installed export of that size, else the registry download). Under it:

========================  ==================================================================
:mod:`.registry`          the sizes (:data:`MODEL_SIZES`), their published files and checksums
:mod:`.interface`         the input and output names of the four graphs (one definition)
:mod:`.files`             the file-name convention (``<stem>.encoder.onnx`` ...), path records
:mod:`.cache`             cache folder, SHA-256 stamps, verification, :func:`cache_status`
:mod:`.download`          :func:`ensure_model`: check, lock, fetch, verify, install
:mod:`.fetch`             part files, atomic install, zip extraction
:mod:`.transfer`          HTTP streaming with throttled progress and a stall guard
:mod:`.locks`             cross-process download locks
:mod:`.messages`          what the errors tell the user to do
:mod:`.resolve`           :func:`resolve_model`, :func:`find_video_model`, the sources
:mod:`.official`          Meta's checkpoints: download, build into the cache (default source)
:mod:`.checkpoint`        :func:`read_checkpoint`: PyTorch/safetensors files without torch
:mod:`.templates`         the weightless graph templates shipped in the package
:mod:`.convert`           :func:`build_model`: checkpoint + templates -> the four ONNX files
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
from .checkpoint import Checkpoint, CheckpointError, read_checkpoint
from .convert import ConversionError, build_model, check_state_dict
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
from .official import (
    CHECKPOINTS,
    built_dir,
    built_model,
    checkpoint_dir,
    ensure_built,
    ensure_checkpoint,
)
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
    SOURCES,
    check_size,
    check_source,
    export_command,
    find_video_model,
    installed_export,
    installed_models,
    installed_name,
    resolve_model,
)
from .settings import (
    ENV_ALLOW_UNVERIFIED,
    ENV_BASE_URL,
    ENV_CACHE_DIR,
    ENV_DOWNLOAD_TIMEOUT,
    ENV_OFFLINE,
    ENV_SOURCE,
)
from .templates import template_sizes
from .transfer import (
    DOWNLOAD_CHUNK,
    DOWNLOAD_TIMEOUT,
    PROGRESS_SECONDS,
    STALL_MIN_BYTES,
    STALL_SECONDS,
    ProgressCallback,
)

__all__ = [
    "CHECKPOINTS",
    "COMPONENTS",
    "DOWNLOAD_CHUNK",
    "DOWNLOAD_TIMEOUT",
    "ENV_ALLOW_UNVERIFIED",
    "ENV_BASE_URL",
    "ENV_CACHE_DIR",
    "ENV_DOWNLOAD_TIMEOUT",
    "ENV_OFFLINE",
    "ENV_SOURCE",
    "HASH_CHUNK",
    "IMAGE_COMPONENTS",
    "LOCK_TIMEOUT",
    "MODEL_SIZES",
    "PROGRESS_SECONDS",
    "REGISTRY",
    "SOURCES",
    "STALE_PART_SECONDS",
    "STALL_MIN_BYTES",
    "STALL_SECONDS",
    "UNVERIFIED",
    "VIDEO_COMPONENTS",
    "VIDEO_SUFFIXES",
    "Checkpoint",
    "CheckpointError",
    "ConversionError",
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
    "build_model",
    "built_dir",
    "built_model",
    "cache_dir",
    "cache_status",
    "check_size",
    "check_source",
    "check_state_dict",
    "checkpoint_dir",
    "companion_video_files",
    "component_filename",
    "ensure_built",
    "ensure_checkpoint",
    "ensure_model",
    "export_command",
    "exported_dir",
    "find_video_model",
    "get_spec",
    "installed_export",
    "installed_models",
    "installed_name",
    "is_cached",
    "model_paths_from_files",
    "model_stem",
    "read_checkpoint",
    "resolve_model",
    "sha256_file",
    "stem_of",
    "template_sizes",
    "verify_file",
]
