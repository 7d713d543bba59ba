"""COCO instance JSON in napari: the npe2 writer and reader contributions (thin over
:mod:`napari_sam2_webgpu.coco`; no Qt).

- :func:`write_coco_labels`: *File > Save Selected Layer(s)* with a ``.json`` name and the
  "COCO instances (JSON)" writer. Each selected Labels layer gives one COCO image entry, a 3D
  layer one per slice (layers of more dimensions one per 2D plane).
- :func:`get_coco_reader`: opens a COCO JSON as one Labels layer, a stack when every image
  entry has the same size (the first axis the entries, in file order), else one Labels layer
  per image entry. JSON that is not COCO is left to other readers (``None``).

The reader keeps the COCO details in the layer's ``metadata["coco"]`` (file, image ids, file
names, categories, each label's category), and the writer uses them again: a layer opened
from COCO is saved with the same file names and categories.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..coco import (
    CocoError,
    coco_to_label_images,
    read_coco,
    save_coco,
    slice_file_names,
)

__all__ = ["METADATA_KEY", "get_coco_reader", "read_coco_layers", "write_coco_labels"]

#: The layer metadata key under which the reader keeps the COCO details.
METADATA_KEY = "coco"

LayerData = tuple[Any, dict[str, Any], str]
PathLike = str | os.PathLike


def _layer_array(data: Any, meta: dict[str, Any]) -> np.ndarray:
    if meta.get("multiscale") and isinstance(data, (list, tuple)):
        data = data[0]  # the full-resolution level
    array = np.asarray(data)
    if array.ndim > 3:
        array = array.reshape(-1, *array.shape[-2:])
    return array


def _stored(meta: dict[str, Any]) -> dict[str, Any]:
    stored = (meta.get("metadata") or {}).get(METADATA_KEY)
    return stored if isinstance(stored, dict) else {}


def write_coco_labels(path: str, layer_data: list[LayerData]) -> list[str]:
    """Write Labels layers to one COCO JSON file (npe2 multi-layer writer).

    Parameters
    ----------
    path : str
        The ``.json`` file.
    layer_data : list of (data, metadata, layer_type)
        napari's layer data tuples; layers that are not Labels are skipped.

    Returns
    -------
    list of str
        The written file, or nothing when no Labels layer was given.

    Raises
    ------
    CocoError
        For data that are not labels (the message names the layer), or a file that cannot be
        written.
    """
    arrays: list[np.ndarray] = []
    names: list[str] = []
    stored_all: list[dict[str, Any]] = []
    for data, meta, layer_type in layer_data:
        if layer_type != "labels":
            continue
        array = _layer_array(data, meta)
        name = str(meta.get("name") or "labels")
        if array.ndim not in (2, 3):
            raise CocoError(f"Layer {name!r}: labels of shape {array.shape} are not an image")
        count = array.shape[0] if array.ndim == 3 else 0
        stored = _stored(meta)
        kept = stored.get("file_names")
        if (
            isinstance(kept, list)
            and len(kept) == max(count, 1)
            and all(isinstance(n, str) for n in kept)
        ):
            names.extend(kept)
        else:
            names.extend(slice_file_names(name, count))
        arrays.append(array)
        stored_all.append(stored)
    if not arrays:
        return []
    options: dict[str, Any] = {}
    if len(stored_all) == 1 and stored_all[0].get("categories"):
        # A single layer opened from COCO: keep its categories and each label's category.
        stored = stored_all[0]
        try:
            options["categories"] = {int(c["id"]): str(c["name"]) for c in stored["categories"]}
            options["label_categories"] = {
                int(k): int(v)
                for k, v in (stored.get("label_categories") or {}).items()
                if int(v) in options["categories"]
            }
        except (KeyError, TypeError, ValueError):
            options = {}
    try:
        written = save_coco(path, arrays, file_names=names, **options)
    except CocoError as exc:
        layers = ", ".join(repr(str(m.get("name"))) for _, m, t in layer_data if t == "labels")
        raise CocoError(f"Cannot save {layers} as COCO: {exc}") from exc
    return [str(written)]


def _name(file_name: str, image_id: int) -> str:
    return Path(file_name.replace("\\", "/")).stem or f"image {image_id}"


def read_coco_layers(path: PathLike, coco: dict[str, Any] | None = None) -> list[LayerData]:
    """A COCO JSON file as napari Labels layer data.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    coco : dict, optional
        Its parsed content, when already read.

    Returns
    -------
    list of (data, metadata, "labels")
        One stacked layer when all image entries share a size (or there is one), else one
        layer per entry; none for a file without image entries.

    Raises
    ------
    CocoError
        When the file is not COCO or a mask is malformed; the message names the file.
    """
    path = Path(path)
    if coco is None:
        coco = read_coco(path)
    try:
        images = coco_to_label_images(coco)
    except CocoError as exc:
        raise CocoError(f"{path}: {exc}") from exc
    if not images:
        return []
    categories = [
        {"id": c["id"], "name": c["name"]}
        for c in coco.get("categories") or []
        if isinstance(c, dict) and "id" in c and "name" in c
    ]

    def metadata(group: Sequence[Any]) -> dict[str, Any]:
        label_categories: dict[int, int] = {}
        for image in group:
            for label, category in image.label_categories.items():
                label_categories.setdefault(label, category)
        return {
            METADATA_KEY: {
                "source": str(path),
                "image_ids": [image.id for image in group],
                "file_names": [image.file_name for image in group],
                "categories": categories,
                "label_categories": label_categories,
            }
        }

    if len({image.labels.shape for image in images}) == 1:
        if len(images) == 1:
            data = images[0].labels
        else:
            dtype = max((image.labels.dtype for image in images), key=lambda t: t.itemsize)
            data = np.stack([image.labels.astype(dtype, copy=False) for image in images])
        return [(data, {"name": path.stem, "metadata": metadata(images)}, "labels")]
    return [
        (
            image.labels,
            {
                "name": f"{path.stem}: {_name(image.file_name, image.id)}",
                "metadata": metadata([image]),
            },
            "labels",
        )
        for image in images
    ]


def get_coco_reader(path: PathLike | list[PathLike]) -> Callable[..., list[LayerData]] | None:
    """The npe2 reader for COCO JSON: a function reading ``path``, or ``None`` when ``path``
    is not COCO JSON (another reader may take it).

    Parameters
    ----------
    path : str, os.PathLike or list of them

    Returns
    -------
    callable or None
    """
    paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
    if not paths or any(p.suffix.lower() != ".json" for p in paths):
        return None
    parsed: dict[Path, dict[str, Any]] = {}
    for p in paths:
        try:
            parsed[p] = read_coco(p)
        except CocoError:
            return None

    def reader(_path: Any = None) -> list[LayerData]:
        layers: list[LayerData] = []
        for p in paths:
            layers.extend(read_coco_layers(p, parsed[p]))
        return layers

    return reader
