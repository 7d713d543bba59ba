"""Names and paths of model files: the one definition of the ONNX file-name convention.

A SAM2 model is up to four ONNX files that share a stem::

    <stem>.encoder.onnx            image encoder (run once per image)
    <stem>.decoder.onnx            prompt decoder (run on every click)
    <stem>.memory_attention.onnx   video: conditions a frame on the memory bank
    <stem>.memory_encoder.onnx     video: turns a frame's mask into memory

The stem of a SAM2.1 size is ``sam2.1_hiera_<size>`` (:func:`model_stem`). The registry's
downloads, ``napari-sam2-webgpu export`` (and ``--install``), the benchmark and the look-up of
the video files beside a custom encoder all name files through this module, so they agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "COMPONENTS",
    "IMAGE_COMPONENTS",
    "VIDEO_COMPONENTS",
    "VIDEO_SUFFIXES",
    "ModelPaths",
    "VideoModelPaths",
    "companion_video_files",
    "component_filename",
    "model_paths_from_files",
    "model_stem",
    "stem_of",
]

#: The four files of an exported model, in the order :class:`VideoModelPaths` holds them.
COMPONENTS: tuple[str, str, str, str] = ("encoder", "decoder", "memory_attention", "memory_encoder")
#: The pair single images need (all the registry publishes).
IMAGE_COMPONENTS: tuple[str, str] = ("encoder", "decoder")
#: The pair propagation through stacks adds.
VIDEO_COMPONENTS: tuple[str, str] = ("memory_attention", "memory_encoder")
#: File-name suffixes of :data:`COMPONENTS` (``<stem><suffix>``).
VIDEO_SUFFIXES: tuple[str, ...] = tuple(f".{c}.onnx" for c in COMPONENTS)


def model_stem(size: str) -> str:
    """The file stem of a SAM2.1 model size, e.g. ``"sam2.1_hiera_tiny"``.

    Parameters
    ----------
    size : str
        Model size as spelled in the file names (``"tiny"``, ``"base_plus"``, ...).

    Returns
    -------
    str
    """
    return f"sam2.1_hiera_{size}"


def component_filename(stem: str, component: str) -> str:
    """The file name of one component of a model, e.g. ``"x.encoder.onnx"``.

    Parameters
    ----------
    stem : str
        File stem shared by the model's files (see :func:`model_stem`).
    component : str
        One of :data:`COMPONENTS`.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        Unknown component.
    """
    if component not in COMPONENTS:
        raise ValueError(f"component must be one of {COMPONENTS}, got {component!r}")
    return f"{stem}.{component}.onnx"


def stem_of(path: str | os.PathLike[str]) -> str:
    """The stem of a model file: ``"dir/x.encoder.onnx"`` -> ``"x"``.

    A name that does not end in a component suffix loses only ``.onnx``.

    Parameters
    ----------
    path : path-like
        Any of the model's files.

    Returns
    -------
    str
    """
    name = Path(path).name.removesuffix(".onnx")
    for component in COMPONENTS:
        if name.endswith(f".{component}"):
            return name.removesuffix(f".{component}")
    return name


@dataclass(frozen=True)
class ModelPaths:
    """Local paths of an encoder/decoder pair.

    Parameters
    ----------
    encoder, decoder : Path
        Files ready to be opened by ONNX Runtime.
    """

    encoder: Path
    decoder: Path


@dataclass(frozen=True)
class VideoModelPaths:
    """The four files propagation through stacks needs, all from one export.

    Parameters
    ----------
    encoder, decoder, memory_attention, memory_encoder : Path
        The files of :data:`COMPONENTS`.
    """

    encoder: Path
    decoder: Path
    memory_attention: Path
    memory_encoder: Path

    @classmethod
    def in_folder(cls, folder: Path, stem: str) -> VideoModelPaths:
        """The four paths of the model `stem` in `folder` (whether or not they exist)."""
        return cls(*(Path(folder) / component_filename(stem, c) for c in COMPONENTS))

    @property
    def files(self) -> tuple[Path, Path, Path, Path]:
        """The paths in the order :meth:`Sam2Propagator.from_files` takes them."""
        return (self.encoder, self.decoder, self.memory_attention, self.memory_encoder)


def companion_video_files(encoder: str | os.PathLike) -> tuple[Path, Path] | None:
    """The memory attention and memory encoder exported with ``encoder``, if both exist.

    They share its stem: ``x.encoder.onnx`` -> ``x.memory_attention.onnx`` and
    ``x.memory_encoder.onnx``.

    Parameters
    ----------
    encoder : path-like
        The encoder file of a model.

    Returns
    -------
    (Path, Path) or None
        ``(memory_attention, memory_encoder)``, or None when either is missing.
    """
    path = Path(encoder)
    stem = stem_of(path)
    found = tuple(path.with_name(component_filename(stem, c)) for c in VIDEO_COMPONENTS)
    return found if all(p.is_file() for p in found) else None  # type: ignore[return-value]


def model_paths_from_files(
    encoder: str | os.PathLike[str], decoder: str | os.PathLike[str]
) -> ModelPaths:
    """Use a custom encoder/decoder ONNX pair from disk (e.g. one made by ``export``).

    No checksum is involved: the user chose these files. The pair must follow samexporter's
    SAM2 interface (see docs/models.md).

    Parameters
    ----------
    encoder, decoder : path-like
        Paths of the two ONNX files.

    Returns
    -------
    ModelPaths
        Absolute paths.

    Raises
    ------
    FileNotFoundError
        If either file does not exist.
    """
    paths = ModelPaths(Path(encoder).expanduser().resolve(), Path(decoder).expanduser().resolve())
    for role, path in (("encoder", paths.encoder), ("decoder", paths.decoder)):
        if not path.is_file():
            raise FileNotFoundError(f"custom SAM2 {role} ONNX file not found: {path}")
    return paths
