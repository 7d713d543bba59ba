"""Label images to COCO instance segmentation and back (pure Python and numpy; no Qt, no napari).

A label image holds one object per positive value (0 is background). Each object of each 2D
image becomes one COCO annotation whose mask is a run-length encoding (RLE) in the pycocotools
format: counts over the pixels in column-major (Fortran) order, starting with a run of zeros,
written in pycocotools' compressed string form. A stack (a 3D array) is one COCO image entry per
slice. Nothing here needs pycocotools; its masks, areas and boxes are reproduced exactly.

File format
-----------
What :func:`labels_to_coco` writes::

    {
      "info": {"description": "...", "label_id": "..."},
      "licenses": [],
      "images": [{"id": 1, "file_name": "cells.tif", "height": 512, "width": 640}, ...],
      "categories": [{"id": 1, "name": "object", "supercategory": "object"}],
      "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "label_id": 7, "iscrowd": 0,
         "area": 312, "bbox": [40.0, 12.0, 20.0, 19.0],
         "segmentation": {"size": [512, 640], "counts": "Yd`0..."}},
        ...
      ]
    }

- ``label_id`` (an extra annotation key, :data:`LABEL_ID_KEY`) is the object's value in the
  label image, so :func:`coco_to_labels` gives back the same label image exactly. COCO readers
  ignore keys they do not know. On reading, ``label_id`` may also sit in the annotation's
  ``attributes`` dictionary (as CVAT writes extra fields).
- ``bbox`` is ``[x, y, width, height]`` in pixels (x = column), as floats, like
  ``pycocotools.mask.toBbox``; ``area`` is the pixel count, like ``pycocotools.mask.area``.
- One category by default (``{"id": 1, "name": "object"}``); ``categories`` and
  ``label_categories`` give several.

Reading
-------
:func:`coco_to_labels` reads masks in any of the three COCO forms: compressed RLE (a string),
uncompressed RLE (a list of counts) and polygons (lists of ``x, y`` vertices, rasterized with
:func:`skimage.draw.polygon` at pixel centres; pycocotools' own rasterization may differ by a
pixel along the outline).

- **Label values:** an annotation's ``label_id`` when it has one. Annotations without it are
  numbered in annotation order, per image, after the largest ``label_id`` of that image (so a
  file with no ``label_id`` at all gives 1, 2, 3, ... in the order of its annotations).
- **Overlaps** (a label image holds one object per pixel): by default (``overlap="last"``) the
  annotations are drawn in file order, so a later annotation covers an earlier one where they
  overlap. ``overlap="first"`` keeps the earlier one; ``overlap="smallest"`` draws the largest
  masks first, so that a small object inside a large one stays visible (ties keep file order).
  What :func:`labels_to_coco` writes never overlaps, so the rule does not matter for a round
  trip.

Examples
--------
>>> import numpy as np
>>> labels = np.zeros((4, 5), dtype=np.uint8)
>>> labels[1:3, 1:3] = 7
>>> coco = labels_to_coco(labels, file_names=["cells.png"])
>>> annotation = coco["annotations"][0]
>>> annotation["label_id"], annotation["bbox"], annotation["area"]
(7, [1.0, 1.0, 2.0, 2.0], 4)
>>> annotation["segmentation"]
{'size': [4, 5], 'counts': '52207'}
>>> np.array_equal(coco_to_labels(coco), labels)
True
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .imagefiles import MAX_LABEL

__all__ = [
    "LABEL_ID_KEY",
    "OVERLAP_RULES",
    "CocoError",
    "CocoImage",
    "coco_to_label_images",
    "coco_to_labels",
    "decode_rle",
    "encode_rle",
    "is_coco",
    "iter_coco_images",
    "labels_to_coco",
    "load_coco",
    "read_coco",
    "rle_from_string",
    "rle_to_string",
    "save_coco",
    "slice_file_names",
    "write_coco",
]

#: The annotation key that keeps each object's value in the label image.
LABEL_ID_KEY = "label_id"
#: How overlapping annotations are resolved when drawn into one label image.
OVERLAP_RULES = ("last", "first", "smallest")
#: Name of the single default category.
DEFAULT_CATEGORY = "object"

_DESCRIPTION = "Instance segmentation exported by napari-sam2-webgpu"
_LABEL_ID_NOTE = (
    f"each annotation's '{LABEL_ID_KEY}' is its value in the label image (0 is background)"
)
# Above this largest label, objects are found through np.unique instead of a find_objects list
# as long as the largest label.
_FIND_OBJECTS_LIMIT = 1 << 20


class CocoError(ValueError):
    """Labels or a COCO file that cannot be converted; the message says what and where."""


@dataclass(frozen=True)
class CocoImage:
    """One COCO image entry read back as a label image.

    Attributes
    ----------
    id : int
        The entry's ``id``.
    file_name : str
        The entry's ``file_name`` (``""`` when it has none).
    labels : numpy.ndarray
        The label image, shape ``(height, width)``.
    label_categories : dict of int to int
        Each label value's ``category_id``.
    """

    id: int
    file_name: str
    labels: np.ndarray
    label_categories: dict[int, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# RLE: pycocotools' format


def rle_to_string(counts: Sequence[int] | np.ndarray) -> str:
    """Compress RLE counts into pycocotools' string form (``rleToString`` in ``maskApi.c``).

    Each count, from the third on as the difference to the count two before it, is written as
    a signed variable-length number, 5 bits per character, in the characters ``0`` to ``o``.

    Parameters
    ----------
    counts : sequence of int
        Run lengths, alternately zeros and ones, starting with zeros.

    Returns
    -------
    str

    Examples
    --------
    >>> rle_to_string([5, 2, 2, 2, 9])
    '52207'
    """
    values = [int(c) for c in counts]
    chars: list[str] = []
    for i, count in enumerate(values):
        x = count - values[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return "".join(chars)


def rle_from_string(text: str) -> list[int]:
    """Decompress pycocotools' RLE string form into counts (``rleFrString`` in ``maskApi.c``).

    Parameters
    ----------
    text : str
        The ``counts`` string of a compressed RLE.

    Returns
    -------
    list of int

    Raises
    ------
    CocoError
        For characters outside ``0``-``o``, a string that ends inside a number, or a negative
        count.

    Examples
    --------
    >>> rle_from_string("52207")
    [5, 2, 2, 2, 9]
    """
    counts: list[int] = []
    p, n = 0, len(text)
    while p < n:
        x = k = 0
        more = True
        while more:
            if p >= n:
                raise CocoError(f"RLE string {_clip(text)!r} ends inside a number")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise CocoError(f"RLE string {_clip(text)!r} has the character {text[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        if x < 0:
            raise CocoError(f"RLE string {_clip(text)!r} decodes to a negative count")
        counts.append(x)
    return counts


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _runs(flat: np.ndarray) -> np.ndarray:
    """Run lengths of a 1D bool array (the first run has flat[0]'s value)."""
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    return np.diff(np.concatenate(([0], change, [flat.size])))


def _counts_of_columns(columns: np.ndarray, before: int, total: int) -> list[int]:
    """RLE counts of a mask whose nonzero pixels all lie in ``columns`` (full height, Fortran
    order), preceded by ``before`` zero pixels in an image of ``total`` pixels."""
    flat = columns.ravel(order="F")
    runs = _runs(flat).tolist()
    if flat[0]:
        counts = [before, *runs]
    else:
        counts = runs
        counts[0] += before
    after = total - before - flat.size
    if after:
        if flat[-1]:
            counts.append(after)
        else:
            counts[-1] += after
    return counts


def encode_rle(mask: np.ndarray, *, compressed: bool = True) -> dict[str, Any]:
    """Encode a 2D mask as a COCO RLE, like ``pycocotools.mask.encode``.

    Parameters
    ----------
    mask : numpy.ndarray
        2D, nonzero pixels are the object.
    compressed : bool
        pycocotools' string form of the counts (default), or the plain list of run lengths
        (COCO's "uncompressed RLE", as SAM2's ``uncompressed_rle`` output mode writes it).

    Returns
    -------
    dict
        ``{"size": [height, width], "counts": str or list of int}``; runs alternate background
        and object in column-major order, starting with background.

    Raises
    ------
    CocoError
        When ``mask`` is not 2D or is empty.

    Examples
    --------
    >>> encode_rle(np.eye(2, dtype=bool))
    {'size': [2, 2], 'counts': '0120'}
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise CocoError(f"A mask must be a non-empty 2D array, got shape {mask.shape}")
    height, width = mask.shape
    counts = _counts_of_columns(mask != 0, 0, height * width)
    return {"size": [height, width], "counts": rle_to_string(counts) if compressed else counts}


def _rle_counts(segmentation: Mapping[str, Any], height: int, width: int, where: str) -> list[int]:
    size = segmentation.get("size")
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(_is_int(v) for v in size):
        raise CocoError(f"{where}: an RLE needs 'size': [height, width], got {size!r}")
    if [int(size[0]), int(size[1])] != [height, width]:
        raise CocoError(
            f"{where}: the RLE size {list(size)} disagrees with the image's "
            f"height x width [{height}, {width}]"
        )
    counts = segmentation.get("counts")
    if isinstance(counts, str):
        values = rle_from_string(counts)
    elif isinstance(counts, (list, tuple)) and all(_is_int(v) and v >= 0 for v in counts):
        values = [int(v) for v in counts]
    else:
        raise CocoError(
            f"{where}: RLE 'counts' must be a string (compressed) or a list of non-negative "
            "whole numbers (uncompressed)"
        )
    if sum(values) != height * width:
        raise CocoError(
            f"{where}: the RLE counts cover {sum(values)} pixels, but the image has "
            f"{height} x {width} = {height * width}"
        )
    return values


def decode_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (compressed or uncompressed) into a bool mask, like
    ``pycocotools.mask.decode``.

    Parameters
    ----------
    rle : dict
        ``{"size": [height, width], "counts": str or list of int}``.

    Returns
    -------
    numpy.ndarray
        bool, shape ``(height, width)``.

    Raises
    ------
    CocoError
        When the RLE is malformed or its counts do not cover exactly height x width pixels.

    Examples
    --------
    >>> decode_rle({"size": [2, 2], "counts": [0, 1, 2, 1]}).astype(int)
    array([[1, 0],
           [0, 1]])
    """
    size = rle.get("size") if isinstance(rle, Mapping) else None
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(map(_is_int, size)):
        raise CocoError(f"An RLE needs 'size': [height, width], got {size!r}")
    height, width = int(size[0]), int(size[1])
    counts = _rle_counts(rle, height, width, "RLE")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape((height, width), order="F")


# --------------------------------------------------------------------------------------------
# Label images -> COCO


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_labels(labels: Any, what: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype.kind not in "iu":
        raise CocoError(
            f"{what} must hold whole numbers (an integer dtype), got dtype {array.dtype}"
        )
    if array.ndim not in (2, 3):
        raise CocoError(
            f"{what} must be 2D (height, width) or a 3D stack (slices, height, width), "
            f"got shape {array.shape}"
        )
    if 0 in array.shape:
        raise CocoError(f"{what} is empty (shape {array.shape})")
    if array.size:
        low, high = int(array.min()), int(array.max())
        if low < 0:
            raise CocoError(
                f"{what} has the negative label {low}: labels are 0 (background) or more"
            )
        if high > MAX_LABEL:
            raise CocoError(f"{what} has the label {high}: labels go up to {MAX_LABEL}")
    return array


def _slices(labels: Any) -> list[np.ndarray]:
    """The 2D label images of one array, or of a sequence of arrays, in order."""
    if isinstance(labels, np.ndarray) or not isinstance(labels, (list, tuple)):
        arrays = [_check_labels(labels, "The labels")]
    else:
        if not labels:
            raise CocoError("No label images given")
        arrays = [_check_labels(a, f"Label image {i + 1}") for i, a in enumerate(labels)]
    out: list[np.ndarray] = []
    for array in arrays:
        out.extend([array] if array.ndim == 2 else list(array))
    return out


def _objects(image: np.ndarray) -> list[tuple[int, slice, slice]]:
    """(label, rows, columns) of each object of a 2D label image, by increasing label."""
    from scipy import ndimage

    if not image.any():
        return []
    high = int(image.max())
    if high <= _FIND_OBJECTS_LIMIT:
        found = ndimage.find_objects(image)
        return [(i + 1, s[0], s[1]) for i, s in enumerate(found) if s is not None]
    values, inverse = np.unique(image, return_inverse=True)
    inverse = inverse.reshape(image.shape)
    if values[0] != 0:  # no background: shift, as find_objects skips 0
        values = np.concatenate(([0], values))
        inverse = inverse + 1
    found = ndimage.find_objects(inverse)
    return [(int(values[i + 1]), s[0], s[1]) for i, s in enumerate(found) if s is not None]


def _category_table(
    category: str,
    categories: Mapping[int, str] | None,
    label_categories: Mapping[int, int] | None,
) -> tuple[list[dict[str, Any]], dict[int, int], int]:
    if categories is None:
        if not isinstance(category, str) or not category:
            raise CocoError(f"The category name must be a non-empty string, got {category!r}")
        categories = {1: category}
    if not categories:
        raise CocoError("categories is empty: give at least one {id: name}")
    table = []
    for cid, name in categories.items():
        if not _is_int(cid) or cid < 1:
            raise CocoError(f"Category ids are whole numbers from 1, got {cid!r}")
        if not isinstance(name, str) or not name:
            raise CocoError(f"Category {cid} needs a non-empty name, got {name!r}")
        table.append({"id": int(cid), "name": name, "supercategory": name})
    table.sort(key=lambda c: c["id"])
    known = {c["id"] for c in table}
    mapping: dict[int, int] = {}
    for label, cid in (label_categories or {}).items():
        if not _is_int(label) or label < 1:
            raise CocoError(f"label_categories keys are labels (1 or more), got {label!r}")
        if cid not in known:
            raise CocoError(
                f"label_categories maps label {label} to category {cid!r}, which is not one "
                f"of the categories {sorted(known)}"
            )
        mapping[int(label)] = int(cid)
    return table, mapping, table[0]["id"]


def slice_file_names(name: str, count: int) -> list[str]:
    """File names for the image entries of one label image: ``name`` itself for a 2D image,
    ``<stem>_0000<suffix>``, ``<stem>_0001<suffix>``, ... for the slices of a stack.

    Parameters
    ----------
    name : str
        The label image's file (or layer) name.
    count : int
        Number of slices; 0 for a 2D image.

    Returns
    -------
    list of str

    Examples
    --------
    >>> slice_file_names("cells.tif", 0)
    ['cells.tif']
    >>> slice_file_names("stack.tif", 2)
    ['stack_0000.tif', 'stack_0001.tif']
    """
    if count == 0:
        return [name]
    path = Path(name)
    digits = max(4, len(str(count - 1)))
    return [f"{path.stem}_{i:0{digits}d}{path.suffix}" for i in range(count)]


def labels_to_coco(
    labels: np.ndarray | Sequence[np.ndarray],
    *,
    file_names: Sequence[str] | None = None,
    category: str = DEFAULT_CATEGORY,
    categories: Mapping[int, str] | None = None,
    label_categories: Mapping[int, int] | None = None,
    first_image_id: int = 1,
) -> dict[str, Any]:
    """Convert label images to a COCO instance-segmentation dictionary.

    Parameters
    ----------
    labels : numpy.ndarray or sequence of numpy.ndarray
        A 2D label image (one image entry), a 3D stack (one image entry per slice), or a
        sequence of such arrays (their entries in order; shapes may differ). Integer dtype,
        0 is background, each positive value one object.
    file_names : sequence of str, optional
        One ``file_name`` per image entry (after stacks are split into slices). Default
        ``image_0001``, ``image_0002``, ...
    category : str
        Name of the single category (id 1) when ``categories`` is not given.
    categories : mapping of int to str, optional
        Category id -> name, for several categories.
    label_categories : mapping of int to int, optional
        Label value -> category id. Labels not in it get the smallest category id.
    first_image_id : int
        The first image entry's ``id``; the others follow.

    Returns
    -------
    dict
        ``info``, ``licenses``, ``images``, ``categories`` and ``annotations`` (one per object
        per image, in image order then increasing label, ids from 1), each with a compressed
        RLE ``segmentation``, ``bbox`` (x, y, width, height), ``area``, ``iscrowd`` 0 and
        :data:`LABEL_ID_KEY`.

    Raises
    ------
    CocoError
        For labels that are not integers, negative or above :data:`~.imagefiles.MAX_LABEL`, not
        2D or 3D, or empty; file names that do not match the image count; unknown categories.

    Examples
    --------
    >>> stack = np.zeros((2, 3, 3), dtype=np.uint16)
    >>> stack[0, 0, 0] = stack[1, 2, 2] = 5
    >>> coco = labels_to_coco(stack, file_names=["a.png", "b.png"], category="nucleus")
    >>> [(a["image_id"], a["label_id"], a["bbox"]) for a in coco["annotations"]]
    [(1, 5, [0.0, 0.0, 1.0, 1.0]), (2, 5, [2.0, 2.0, 1.0, 1.0])]
    >>> coco["categories"]
    [{'id': 1, 'name': 'nucleus', 'supercategory': 'nucleus'}]
    """
    slices = _slices(labels)
    if file_names is None:
        file_names = [f"image_{first_image_id + i:04d}" for i in range(len(slices))]
    else:
        file_names = list(file_names)
        if len(file_names) != len(slices):
            raise CocoError(
                f"{len(file_names)} file names for {len(slices)} images (a stack gives one "
                "image per slice)"
            )
        for name in file_names:
            if not isinstance(name, str):
                raise CocoError(f"File names must be strings, got {name!r}")
    if not _is_int(first_image_id) or first_image_id < 0:
        raise CocoError(f"first_image_id must be a whole number >= 0, got {first_image_id!r}")
    table, mapping, default_category = _category_table(category, categories, label_categories)

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index, (image, name) in enumerate(zip(slices, file_names, strict=True)):
        image_id = int(first_image_id) + index
        height, width = image.shape
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        for label, rows, cols in _objects(image):
            columns = image[:, cols] == label
            area = int(np.count_nonzero(columns))
            counts = _counts_of_columns(columns, height * cols.start, height * width)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": mapping.get(label, default_category),
                    LABEL_ID_KEY: label,
                    "iscrowd": 0,
                    "area": area,
                    "bbox": [
                        float(cols.start),
                        float(rows.start),
                        float(cols.stop - cols.start),
                        float(rows.stop - rows.start),
                    ],
                    "segmentation": {"size": [height, width], "counts": rle_to_string(counts)},
                }
            )
    return {
        "info": {"description": _DESCRIPTION, LABEL_ID_KEY: _LABEL_ID_NOTE},
        "licenses": [],
        "images": images,
        "categories": table,
        "annotations": annotations,
    }


# --------------------------------------------------------------------------------------------
# COCO -> label images


def is_coco(data: Any) -> bool:
    """Whether ``data`` looks like a COCO dictionary: ``images`` and ``annotations`` lists.

    Parameters
    ----------
    data : Any
        Parsed JSON.

    Returns
    -------
    bool

    Examples
    --------
    >>> is_coco({"images": [], "annotations": []}), is_coco({"type": "FeatureCollection"})
    (True, False)
    """
    return (
        isinstance(data, Mapping)
        and isinstance(data.get("images"), list)
        and isinstance(data.get("annotations"), list)
    )


def _check_coco(coco: Any, where: str = "The data") -> dict[int, Mapping[str, Any]]:
    """Check the top level and the image entries; the entries by id, in file order."""
    if not isinstance(coco, Mapping):
        raise CocoError(
            f"{where} is not COCO: a JSON object was expected, got {type(coco).__name__}"
        )
    missing = [k for k in ("images", "annotations") if not isinstance(coco.get(k), list)]
    if missing:
        raise CocoError(
            f"{where} is not COCO instance segmentation: no {' or '.join(repr(k) for k in missing)}"
            " list"
        )
    images: dict[int, Mapping[str, Any]] = {}
    for i, entry in enumerate(coco["images"]):
        if not isinstance(entry, Mapping):
            raise CocoError(f"{where}: images[{i}] is not an object")
        image_id = entry.get("id")
        if not _is_int(image_id):
            raise CocoError(f"{where}: images[{i}] has no whole-number 'id'")
        for key in ("height", "width"):
            value = entry.get(key)
            if not _is_int(value) or value < 1:
                raise CocoError(
                    f"{where}: image {image_id} needs a positive whole-number '{key}', "
                    f"got {value!r}"
                )
        if image_id in images:
            raise CocoError(f"{where}: the image id {image_id} appears twice in 'images'")
        images[int(image_id)] = entry
    return images


def _label_of(annotation: Mapping[str, Any], where: str) -> int | None:
    value = annotation.get(LABEL_ID_KEY)
    if value is None and isinstance(annotation.get("attributes"), Mapping):
        value = annotation["attributes"].get(LABEL_ID_KEY)
    if value is None:
        return None
    if not _is_int(value) or not 1 <= value <= MAX_LABEL:
        raise CocoError(
            f"{where}: '{LABEL_ID_KEY}' must be a whole number 1 to {MAX_LABEL}, got {value!r}"
        )
    return int(value)


def _pixels(
    segmentation: Any, height: int, width: int, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """An annotation's pixels as (starts, stops) runs of flat indices into the image in
    Fortran order (index = column * height + row)."""
    if isinstance(segmentation, Mapping):
        counts = np.asarray(_rle_counts(segmentation, height, width, where), dtype=np.int64)
        ends = np.cumsum(counts)
        starts = ends - counts
        ones = slice(1, None, 2)
        keep = counts[ones] > 0
        return starts[ones][keep], ends[ones][keep]
    if isinstance(segmentation, list):
        from skimage.draw import polygon

        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        for part in segmentation:
            if (
                not isinstance(part, (list, tuple))
                or len(part) < 6
                or len(part) % 2
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in part)
            ):
                raise CocoError(f"{where}: a polygon is a list of x, y numbers (at least 3 points)")
            xy = np.asarray(part, dtype=np.float64).reshape(-1, 2)
            # COCO coordinates put pixel (0, 0)'s centre at (0.5, 0.5).
            r, c = polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape=(height, width))
            rows.append(r)
            cols.append(c)
        flat = np.unique(np.concatenate(cols).astype(np.int64) * height + np.concatenate(rows))
        return flat, flat + 1
    raise CocoError(
        f"{where}: 'segmentation' must be an RLE object or a list of polygons, "
        f"got {type(segmentation).__name__}"
    )


def _draw_image(
    entry: Mapping[str, Any],
    annotations: list[tuple[int, Mapping[str, Any]]],
    overlap: str,
    dtype: Any,
) -> tuple[np.ndarray, dict[int, int]]:
    height, width = int(entry["height"]), int(entry["width"])
    image_id = entry["id"]
    decoded = []
    for index, annotation in annotations:
        where = f"annotation {annotation.get('id', f'#{index}')} (image {image_id})"
        starts, stops = _pixels(annotation.get("segmentation"), height, width, where)
        decoded.append((_label_of(annotation, where), starts, stops, annotation, where))
    # Annotations without a label id are numbered in file order after the largest label id.
    next_label = max((d[0] for d in decoded if d[0] is not None), default=0) + 1
    labelled = []
    categories: dict[int, int] = {}
    for label, starts, stops, annotation, where in decoded:
        if label is None:
            label = next_label
            next_label += 1
            if label > MAX_LABEL:
                raise CocoError(f"{where}: more than {MAX_LABEL} objects in one image")
        category = annotation.get("category_id")
        if _is_int(category):
            categories.setdefault(label, int(category))
        labelled.append((label, starts, stops))
    high = max((item[0] for item in labelled), default=0)
    if dtype is None:
        from .imagefiles import label_dtype

        dtype = label_dtype(max(high, 1))
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu" or high > np.iinfo(dtype).max:
        raise CocoError(f"dtype {dtype} cannot hold the label {high} (image {image_id})")
    if overlap == "first":
        labelled.reverse()
    elif overlap == "smallest":
        labelled.sort(key=lambda item: -int(np.sum(item[2] - item[1])))  # stable: ties in order
    # Column-major buffer: flat index = column * height + row, as in the RLE.
    out = np.zeros((width, height), dtype=dtype)
    flat = out.reshape(-1)
    for label, starts, stops in labelled:
        for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
            flat[start:stop] = label
    return np.ascontiguousarray(out.T), categories


def _check_overlap(overlap: str) -> None:
    if overlap not in OVERLAP_RULES:
        raise CocoError(f"overlap must be one of {', '.join(OVERLAP_RULES)}, got {overlap!r}")


def _by_image(
    coco: Mapping[str, Any], images: Mapping[int, Any], where: str
) -> dict[int, list[tuple[int, Mapping[str, Any]]]]:
    grouped: dict[int, list[tuple[int, Mapping[str, Any]]]] = {i: [] for i in images}
    for index, annotation in enumerate(coco["annotations"]):
        if not isinstance(annotation, Mapping):
            raise CocoError(f"{where}: annotations[{index}] is not an object")
        image_id = annotation.get("image_id")
        if not _is_int(image_id) or image_id not in grouped:
            raise CocoError(
                f"{where}: annotation {annotation.get('id', f'#{index}')} refers to image id "
                f"{image_id!r}, which is not in 'images'"
            )
        grouped[int(image_id)].append((index, annotation))
    return grouped


def iter_coco_images(
    coco: Mapping[str, Any],
    *,
    image_ids: Sequence[int] | None = None,
    overlap: str = "last",
    dtype: Any = None,
) -> Iterator[CocoImage]:
    """Draw COCO image entries into label images one at a time (see
    :func:`coco_to_label_images`, which returns them all at once).

    The top level, the image entries, the requested ids and each annotation's ``image_id`` are
    checked before this returns; each mask is checked when its image is drawn.

    Parameters
    ----------
    coco : dict
    image_ids : sequence of int, optional
    overlap : {"last", "first", "smallest"}
    dtype : numpy dtype, optional

    Returns
    -------
    iterator of CocoImage

    Raises
    ------
    CocoError
        As :func:`coco_to_label_images`.
    """
    _check_overlap(overlap)
    images = _check_coco(coco)
    grouped = _by_image(coco, images, "The data")
    ids = list(images) if image_ids is None else list(image_ids)
    for image_id in ids:
        if not _is_int(image_id) or image_id not in images:
            known = ", ".join(str(i) for i in list(images)[:10]) or "none"
            more = ", ..." if len(images) > 10 else ""
            raise CocoError(f"No image with id {image_id!r}: the ids are {known}{more}")
    return _draw_images(images, grouped, ids, overlap, dtype)


def _draw_images(images, grouped, ids, overlap, dtype) -> Iterator[CocoImage]:
    for image_id in ids:
        entry = images[image_id]
        labels, categories = _draw_image(entry, grouped[image_id], overlap, dtype)
        name = entry.get("file_name")
        yield CocoImage(int(image_id), name if isinstance(name, str) else "", labels, categories)


def coco_to_label_images(
    coco: Mapping[str, Any],
    *,
    image_ids: Sequence[int] | None = None,
    overlap: str = "last",
    dtype: Any = None,
) -> list[CocoImage]:
    """Draw each COCO image entry's annotations into a label image.

    Parameters
    ----------
    coco : dict
        A COCO dictionary (parsed JSON).
    image_ids : sequence of int, optional
        The entries to draw, in this order. Default: all, in the order of ``images``.
    overlap : {"last", "first", "smallest"}
        Which annotation keeps a pixel that several cover (see the module notes).
    dtype : numpy dtype, optional
        Of the label images. Default: per image, the smallest unsigned dtype that holds its
        largest label.

    Returns
    -------
    list of CocoImage

    Raises
    ------
    CocoError
        When ``coco`` is not COCO, an image id is missing, an annotation refers to an image
        that does not exist, a mask is malformed or its size disagrees with its image.
    """
    return list(iter_coco_images(coco, image_ids=image_ids, overlap=overlap, dtype=dtype))


def coco_to_labels(
    coco: Mapping[str, Any],
    image_id: int | None = None,
    *,
    overlap: str = "last",
    dtype: Any = None,
) -> np.ndarray:
    """A COCO dictionary back to a label image (one entry) or a stack (all entries).

    Parameters
    ----------
    coco : dict
        A COCO dictionary (parsed JSON).
    image_id : int, optional
        The image entry to draw. Default: the only entry as a 2D image, or every entry as a
        stack ``(entries, height, width)`` in the order of ``images`` (they must share a size;
        otherwise use :func:`coco_to_label_images`).
    overlap : {"last", "first", "smallest"}
        Which annotation keeps a pixel that several cover (see the module notes).
    dtype : numpy dtype, optional
        Default: the smallest unsigned dtype that holds the largest label.

    Returns
    -------
    numpy.ndarray
        2D for one image entry, 3D for several.

    Raises
    ------
    CocoError
        As :func:`coco_to_label_images`; also for a file without image entries, and entries of
        different sizes when no ``image_id`` is given.

    Examples
    --------
    >>> coco = {
    ...     "images": [{"id": 3, "file_name": "a.png", "height": 2, "width": 3}],
    ...     "annotations": [
    ...         {"id": 1, "image_id": 3, "category_id": 1,
    ...          "segmentation": {"size": [2, 3], "counts": [2, 2, 2]}},
    ...     ],
    ... }
    >>> coco_to_labels(coco, 3)
    array([[0, 1, 0],
           [0, 1, 0]], dtype=uint8)
    """
    if image_id is not None:
        return coco_to_label_images(coco, image_ids=[image_id], overlap=overlap, dtype=dtype)[
            0
        ].labels
    images = _check_coco(coco)
    if not images:
        raise CocoError("The data has no image entries")
    shapes = {(int(e["height"]), int(e["width"])) for e in images.values()}
    if len(shapes) > 1:
        raise CocoError(
            f"The {len(images)} image entries have different sizes ({len(shapes)} sizes): pass "
            "an image_id, or use coco_to_label_images"
        )
    drawn = coco_to_label_images(coco, overlap=overlap, dtype=dtype)
    if len(drawn) == 1:
        return drawn[0].labels
    if dtype is None:
        dtype = max((d.labels.dtype for d in drawn), key=lambda t: t.itemsize)
    return np.stack([d.labels.astype(dtype, copy=False) for d in drawn])


# --------------------------------------------------------------------------------------------
# Files


def write_coco(
    path: str | os.PathLike, coco: Mapping[str, Any], *, indent: int | None = None
) -> Path:
    """Write a COCO dictionary as JSON atomically: into a temporary file beside it, then
    renamed, so an interrupted write never leaves a half-written file under ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.json`` file; missing parent folders are created.
    coco : dict
        What to write.
    indent : int, optional
        JSON indentation; default compact.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    CocoError
        When the file cannot be written (nothing is left behind).
    """
    out = Path(path)
    temp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(temp, "x", encoding="utf-8") as stream:
            json.dump(coco, stream, indent=indent)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise CocoError(f"Cannot write {out}: {exc.strerror or exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return out


def save_coco(
    path: str | os.PathLike,
    labels: np.ndarray | Sequence[np.ndarray],
    *,
    indent: int | None = None,
    **options: Any,
) -> Path:
    """Convert label images with :func:`labels_to_coco` and write them with
    :func:`write_coco` (atomically).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.json`` file.
    labels : numpy.ndarray or sequence of numpy.ndarray
        As for :func:`labels_to_coco`.
    indent : int, optional
        JSON indentation; default compact.
    **options
        ``file_names``, ``category``, ``categories``, ``label_categories``,
        ``first_image_id`` of :func:`labels_to_coco`.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    CocoError
        For bad labels or options (before anything is written), or a file that cannot be
        written.
    """
    return write_coco(path, labels_to_coco(labels, **options), indent=indent)


def read_coco(path: str | os.PathLike) -> dict[str, Any]:
    """Read a COCO JSON file and check its top level and image entries.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict

    Raises
    ------
    CocoError
        When the file is missing, not JSON, or not COCO (no ``images`` and ``annotations``
        lists, or malformed image entries).
    """
    path = Path(path)
    if path.is_dir():
        raise CocoError(f"{path} is a folder, not a COCO JSON file")
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except FileNotFoundError:
        raise CocoError(f"COCO file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise CocoError(f"{path} is not a JSON file (not UTF-8 text)") from exc
    except json.JSONDecodeError as exc:
        raise CocoError(f"{path} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise CocoError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    _check_coco(data, str(path))
    return data


def load_coco(
    path: str | os.PathLike,
    image_id: int | None = None,
    *,
    overlap: str = "last",
    dtype: Any = None,
) -> np.ndarray:
    """Read a COCO JSON file into a label image or stack (see :func:`coco_to_labels`).

    Parameters
    ----------
    path : str or os.PathLike
    image_id : int, optional
        One entry; default the only entry (2D) or all of them (a stack).
    overlap : {"last", "first", "smallest"}
    dtype : numpy dtype, optional

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    CocoError
        As :func:`read_coco` and :func:`coco_to_labels`; messages name the file.
    """
    coco = read_coco(path)
    try:
        return coco_to_labels(coco, image_id, overlap=overlap, dtype=dtype)
    except CocoError as exc:
        raise CocoError(f"{path}: {exc}") from exc
