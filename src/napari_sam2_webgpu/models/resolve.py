"""The one policy that turns a model size into files: used by the widget, the CLI and the library.

For a size, two sources exist:

* an **installed export**: the four files ``napari-sam2-webgpu export --size SIZE --checkpoint
  ... --install`` wrote into :func:`~napari_sam2_webgpu.models.exported_dir` (encoder, decoder,
  memory attention, memory encoder, one stem);
* the **registry download**: the published encoder/decoder pair of that size
  (:func:`~napari_sam2_webgpu.models.ensure_model`), which has no video components.

:func:`resolve_model` prefers the installed export: the user made it on purpose (often from a
fine-tuned checkpoint), and it is the only source that can also propagate through stacks. So
``Sam2Predictor.from_pretrained``, ``Sam2Propagator.from_pretrained``, the CLI and the widget
all load the same files for the same size.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, overload

from .cache import exported_dir
from .download import ensure_model
from .errors import ModelNotAvailableError
from .files import ModelPaths, VideoModelPaths, model_stem
from .registry import MODEL_SIZES, registry_key
from .transfer import ProgressCallback

__all__ = [
    "check_size",
    "export_command",
    "find_video_model",
    "installed_export",
    "resolve_model",
]

logger = logging.getLogger(__name__)


def export_command(size: str) -> str:
    """The command that exports and installs the full model of `size` (for messages).

    Parameters
    ----------
    size : str
        Model size.

    Returns
    -------
    str
    """
    stem = model_stem(size)
    return f"napari-sam2-webgpu export --size {size} --checkpoint {stem}.pt --install"


def _canonical(size: str) -> str:
    """The registry spelling of `size` if it names a registry size, else `size` as given."""
    return registry_key(size) or str(size).strip()


def installed_export(size: str, cache: Path | None = None) -> VideoModelPaths | None:
    """The complete installed export of `size`, or None when there is none.

    Parameters
    ----------
    size : str
        Model size; registry names are normalised as :func:`~napari_sam2_webgpu.models.get_spec`
        does (``"b+"`` -> ``"base_plus"``). Other names (e.g. ``"micro"``, a test config) are
        looked up as given.
    cache : Path, optional
        Cache folder; default :func:`~napari_sam2_webgpu.models.cache_dir`.

    Returns
    -------
    VideoModelPaths or None
        None unless all four files exist: an export without its video components (``export
        --no-video --install``) does not count.
    """
    size = _canonical(size)
    paths = VideoModelPaths.in_folder(exported_dir(cache), model_stem(size))
    return paths if all(p.is_file() for p in paths.files) else None


def find_video_model(size: str, cache: Path | None = None) -> VideoModelPaths:
    """The installed export of `size`, with its video components.

    Parameters
    ----------
    size : str
        Model size (see :func:`installed_export`).
    cache : Path, optional
        Cache folder; default :func:`~napari_sam2_webgpu.models.cache_dir`.

    Returns
    -------
    VideoModelPaths

    Raises
    ------
    ModelNotAvailableError
        It has not been exported; the message gives the command that does it.
    """
    size = _canonical(size)
    found = installed_export(size, cache)
    if found is not None:
        return found
    folder = exported_dir(cache)
    expected = VideoModelPaths.in_folder(folder, model_stem(size))
    missing = [p.name for p in expected.files if not p.is_file()]
    raise ModelNotAvailableError(
        f"Propagation with the {size!r} model needs its video components, which are not "
        f"published as ONNX: export them once from the official checkpoint with\n"
        f"  {export_command(size)}\n(missing in {folder}: {', '.join(missing)})."
    )


def check_size(size: str, *, cache: Path | None = None) -> str:
    """Check that :func:`resolve_model` can serve `size`, without downloading anything.

    Parameters
    ----------
    size : str
        Model size.
    cache : Path, optional
        Cache folder; default :func:`~napari_sam2_webgpu.models.cache_dir`.

    Returns
    -------
    str
        The canonical name: a registry size, or the name of an installed export.

    Raises
    ------
    ValueError
        Neither a registry size nor an installed export; the message lists the registry sizes.
    """
    name = _canonical(size)
    if name in MODEL_SIZES or installed_export(name, cache) is not None:
        return name
    raise ValueError(
        f"Unknown SAM2.1 model {size!r}; valid names: {', '.join(MODEL_SIZES)} (or the size of "
        f"a model installed with `{export_command('SIZE')}`)."
    )


@overload
def resolve_model(
    size: str,
    *,
    video: Literal[True],
    progress: ProgressCallback | None = ...,
    cache: Path | None = ...,
    offline: bool | None = ...,
    allow_unverified: bool | None = ...,
    base_url: str | None = ...,
) -> VideoModelPaths: ...


@overload
def resolve_model(
    size: str,
    *,
    video: bool = ...,
    progress: ProgressCallback | None = ...,
    cache: Path | None = ...,
    offline: bool | None = ...,
    allow_unverified: bool | None = ...,
    base_url: str | None = ...,
) -> ModelPaths | VideoModelPaths: ...


def resolve_model(
    size: str,
    *,
    video: bool = False,
    progress: ProgressCallback | None = None,
    cache: Path | None = None,
    offline: bool | None = None,
    allow_unverified: bool | None = None,
    base_url: str | None = None,
) -> ModelPaths | VideoModelPaths:
    """The files to load for a model size: an installed export if there is one, else the download.

    1. An installed export of `size` (:func:`installed_export`: all four files of
       ``export --install``) wins when present: it is the user's own, and it has the video
       components.
    2. Otherwise the registry pair of `size` is used, downloaded and verified on first use
       (:func:`~napari_sam2_webgpu.models.ensure_model`). With ``video=True`` this step is
       skipped, since the registry publishes no video components.

    Parameters
    ----------
    size : str
        Model size: one of ``MODEL_SIZES`` (short forms such as ``"b+"`` accepted), or the size
        of an installed export that is not in the registry.
    video : bool
        Propagation through stacks is wanted: only an installed export qualifies.
    progress : callable, optional
        ``progress(bytes_done, bytes_total, filename)`` during a download; see
        :func:`~napari_sam2_webgpu.models.ensure_model` (also for cancelling).
    cache : Path, optional
        Cache folder (the export is looked up in its ``exported`` folder); default
        :func:`~napari_sam2_webgpu.models.cache_dir`.
    offline, allow_unverified, base_url : optional
        Passed to :func:`~napari_sam2_webgpu.models.ensure_model` for the download.

    Returns
    -------
    VideoModelPaths or ModelPaths
        :class:`VideoModelPaths` for an installed export (always with ``video=True``),
        :class:`ModelPaths` for the registry pair. Both have ``encoder`` and ``decoder``.

    Raises
    ------
    ModelNotAvailableError
        ``video=True`` and `size` was not exported (the message gives the export command);
        or the registry pair is missing and cannot be downloaded (offline, unreachable,
        read-only cache).
    ModelDownloadError, ModelUnverifiedError
        As :func:`~napari_sam2_webgpu.models.ensure_model`.
    ValueError
        `size` is neither a registry size nor an installed export (``video=False``).
    """
    name = _canonical(size)
    exported = installed_export(name, cache)
    if exported is not None:
        logger.info("Using the installed export of %r in %s.", name, exported.encoder.parent)
        return exported
    if video:
        return find_video_model(name, cache)  # raises, saying how to export
    return ensure_model(
        check_size(name, cache=cache),
        progress=progress,
        cache=cache,
        offline=offline,
        allow_unverified=allow_unverified,
        base_url=base_url,
    )
