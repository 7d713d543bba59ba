"""The one policy that turns a model size into files: used by the widget, the CLI and the library.

For a size, three sources exist:

* an **installed model**: the four files ``napari-sam2-webgpu convert CHECKPOINT --size SIZE
  --install`` (or ``export ... --install``) wrote into
  :func:`~napari_sam2_webgpu.models.exported_dir`, often from a fine-tuned checkpoint;
* ``official`` (the default): Meta's checkpoint of that size, downloaded and built into the four
  files on this machine without torch (:func:`~napari_sam2_webgpu.models.official.ensure_built`);
* ``samexporter``: the published third-party encoder/decoder pair of that size
  (:func:`~napari_sam2_webgpu.models.ensure_model`), which has no video components.

:func:`resolve_model` prefers the installed model: the user made it on purpose. So
``Sam2Predictor.from_pretrained``, ``Sam2Propagator.from_pretrained``, the CLI and the widget
all load the same files for the same size.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal, overload

from .cache import exported_dir
from .download import ensure_model
from .errors import ModelNotAvailableError
from .files import ModelPaths, VideoModelPaths, model_stem
from .official import ensure_built
from .registry import MODEL_SIZES, registry_key
from .settings import ENV_SOURCE
from .transfer import ProgressCallback

__all__ = [
    "SOURCES",
    "check_size",
    "check_source",
    "export_command",
    "find_video_model",
    "installed_export",
    "installed_models",
    "installed_name",
    "resolve_model",
]

logger = logging.getLogger(__name__)

#: Where a registry size's files come from (see the module notes); the first is the default.
SOURCES: tuple[str, ...] = ("official", "samexporter")


def check_source(source: str | None) -> str:
    """The source to use: ``source``, else ``$NAPARI_SAM2_WEBGPU_SOURCE``, else ``official``.

    Raises
    ------
    ValueError
        For a name not in :data:`SOURCES`.
    """
    if source is None:
        source = os.environ.get(ENV_SOURCE, "").strip() or SOURCES[0]
    name = str(source).strip().lower()
    if name not in SOURCES:
        raise ValueError(f"Unknown model source {source!r}; sources: {', '.join(SOURCES)}.")
    return name


def export_command(size: str) -> str:
    """The command that converts and installs the full model of `size` (for messages).

    Parameters
    ----------
    size : str
        Model size.

    Returns
    -------
    str
    """
    stem = model_stem(size)
    return f"napari-sam2-webgpu convert {stem}.pt --size {size} --install"


def _canonical(size: str) -> str:
    """The registry spelling of `size` if it names a registry size, else `size` as given."""
    return registry_key(size) or str(size).strip()


def installed_export(size: str, cache: Path | None = None) -> VideoModelPaths | None:
    """The complete installed model of `size` (or of that name), or None when there is none.

    Parameters
    ----------
    size : str
        Model size; registry names are normalised as :func:`~napari_sam2_webgpu.models.get_spec`
        does (``"b+"`` -> ``"base_plus"``) and looked up as ``sam2.1_hiera_<size>``. Other names
        (a conversion installed with ``convert --name NAME --install``, or ``"micro"``, a test
        config) are looked up as ``sam2.1_hiera_<name>``, then as ``<name>``.
    cache : Path, optional
        Cache folder; default :func:`~napari_sam2_webgpu.models.cache_dir`.

    Returns
    -------
    VideoModelPaths or None
        None unless all four files exist: an export without its video components (``export
        --no-video --install``) does not count.
    """
    size = _canonical(size)
    folder = exported_dir(cache)
    stems = [model_stem(size)] if registry_key(size) else [model_stem(size), size]
    for stem in stems:
        paths = VideoModelPaths.in_folder(folder, stem)
        if all(p.is_file() for p in paths.files):
            return paths
    return None


def installed_models(cache: Path | None = None) -> list[str]:
    """Names of the complete models installed in :func:`~.cache.exported_dir`, sorted.

    A model installed as ``sam2.1_hiera_<size>`` is listed as ``<size>``; one installed under
    its own name (``convert --name NAME --install``) as that name. Each name is accepted by
    :func:`resolve_model`.
    """
    folder = exported_dir(cache)
    if not folder.is_dir():
        return []
    names = set()
    for path in folder.glob("*.encoder.onnx"):
        stem = path.name.removesuffix(".encoder.onnx")
        if all(p.is_file() for p in VideoModelPaths.in_folder(folder, stem).files):
            names.add(installed_name(stem))
    return sorted(names)


def installed_name(stem: str) -> str:
    """The name a model installed under the file stem ``stem`` is chosen by.

    ``sam2.1_hiera_<size>`` is ``<size>``; any other stem is its own name.
    """
    prefix = model_stem("")
    return stem.removeprefix(prefix) if stem.startswith(prefix) else stem


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
        f"Propagation with the {size!r} model needs its video components, which the "
        "samexporter pair does not have: use the official source (the default; the model is "
        f"built from Meta's checkpoint), or install a conversion with\n  {export_command(size)}"
        f"\n(missing in {folder}: {', '.join(missing)})."
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
    source: str | None = ...,
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
    source: str | None = ...,
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
    source: str | None = None,
) -> ModelPaths | VideoModelPaths:
    """The files to load for a model size: an installed model if there is one, else the source's.

    1. An installed model of `size` (:func:`installed_export`: all four files of
       ``convert --install`` or ``export --install``) wins when present: it is the user's own.
    2. Otherwise, with the ``official`` source, Meta's checkpoint is downloaded (once) and the
       four files are built from it (once); they serve images and propagation.
    3. With the ``samexporter`` source, the published pair of `size` is downloaded and
       verified on first use (:func:`~napari_sam2_webgpu.models.ensure_model`); it has no
       video components, so ``video=True`` is refused.

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
    source : {"official", "samexporter"}, optional
        Where a registry size comes from; default ``$NAPARI_SAM2_WEBGPU_SOURCE``, else
        ``official`` (see :func:`check_source`).

    Returns
    -------
    VideoModelPaths or ModelPaths
        :class:`VideoModelPaths` for an installed or official model (always with
        ``video=True``), :class:`ModelPaths` for the samexporter pair. Both have ``encoder``
        and ``decoder``.

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
    source = check_source(source)
    exported = installed_export(name, cache)
    if exported is not None:
        logger.info("Using the installed model of %r in %s.", name, exported.encoder.parent)
        return exported
    name = check_size(name, cache=cache)
    fetch = dict(
        progress=progress,
        cache=cache,
        offline=offline,
        allow_unverified=allow_unverified,
        base_url=base_url,
    )
    if source == "official":
        return ensure_built(name, **fetch)
    if video:
        return find_video_model(name, cache)  # raises, saying how to get the video components
    return ensure_model(name, **fetch)
