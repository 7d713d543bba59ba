"""Batches over image files: which outputs to write, resuming, and going on past bad files.

Pure Python (no Qt, no napari). :func:`plan_batch` turns the command line's INPUT (a file, a
folder or a glob pattern) and OUT (a file or a folder) into one :class:`BatchItem` per image;
:func:`run_batch` reads each image, calls a function that makes its label image, and writes it
atomically. An output that exists is skipped unless ``overwrite`` (so an interrupted batch
resumes where it stopped), an input is never written over, and a file that cannot be read or
segmented is reported while the batch goes on.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .imagefiles import (
    LABEL_FORMATS,
    ImageFileError,
    check_label_output,
    label_dtype,
    open_image,
    write_labels,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "LABELS_SUFFIX",
    "BatchError",
    "BatchItem",
    "BatchReport",
    "plan_batch",
    "run_batch",
]

#: File types a folder or pattern contributes to a batch (what :func:`open_image` reads;
#: ``.zarr`` is a folder: OME-Zarr or a zarr array).
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".npy", ".zarr")


def _is_zarr(path: Path) -> bool:
    return path.is_dir() and path.suffix.lower() == ".zarr"


def _is_image(path: Path) -> bool:
    return (path.is_file() or _is_zarr(path)) and path.suffix.lower() in IMAGE_SUFFIXES


#: What an output file is named in an output folder: ``<input stem>_labels.tif``.
LABELS_SUFFIX = "_labels.tif"


class BatchError(ValueError):
    """The batch cannot start: no inputs, or an output that does not fit the inputs."""


@dataclass(frozen=True)
class BatchItem:
    """One image of a batch and the label image written for it."""

    source: Path
    output: Path


@dataclass
class BatchReport:
    """What a batch did.

    Attributes
    ----------
    written : list of BatchItem
        Label images written.
    skipped : list of BatchItem
        Outputs that existed already (not recomputed without ``overwrite``).
    failed : list of (BatchItem, str)
        Items that failed, with the reason.
    cancelled : bool
        Whether the batch stopped early because it was asked to.
    """

    written: list[BatchItem] = field(default_factory=list)
    skipped: list[BatchItem] = field(default_factory=list)
    failed: list[tuple[BatchItem, str]] = field(default_factory=list)
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing failed and the batch ran to its end."""
        return not self.failed and not self.cancelled


def _is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


def _sources(input: str) -> list[Path]:
    if _is_pattern(input):
        found = [Path(p) for p in sorted(glob.glob(input, recursive=True))]
        where = f"matching {input!r}"
    elif _is_zarr(Path(input)):
        return [Path(input)]
    elif Path(input).is_dir():
        found = sorted(Path(input).iterdir())
        where = f"in {input}"
    elif Path(input).is_file():
        return [Path(input)]
    else:
        raise BatchError(f"{input}: no such file or folder.")
    images = [p for p in found if _is_image(p)]
    if not images:
        raise BatchError(f"No image files {where} (looked for {', '.join(IMAGE_SUFFIXES)}).")
    return images


def _output_names(sources: Sequence[Path]) -> list[str]:
    """``<stem>_labels.tif``; inputs that share a stem keep their suffix in the name."""
    stems = [s.stem for s in sources]
    return [
        f"{s.stem}{s.suffix.replace('.', '_')}{LABELS_SUFFIX}"
        if stems.count(s.stem) > 1
        else f"{s.stem}{LABELS_SUFFIX}"
        for s in sources
    ]


def plan_batch(input: str | os.PathLike, out: str | os.PathLike) -> list[BatchItem]:
    """The images of a batch and their outputs.

    Parameters
    ----------
    input : str or path
        An image file (a single image or a stack), a folder (its image files, not recursing),
        or a glob pattern (``"data/*.tif"``, ``"plates/**/*.png"``). Files of
        :data:`IMAGE_SUFFIXES` are taken.
    out : str or path
        For a single input file: the label file (``.tif``, ``.tiff``, ``.npy``, ``.png``), or a
        folder. Otherwise a folder (created if needed), which receives
        ``<input stem>_labels.tif`` per input.

    Returns
    -------
    list of BatchItem
        Sorted by input path. Files that are themselves outputs of this batch (a folder that is
        both input and output, read again on a resumed run) are left out.

    Raises
    ------
    BatchError
        No such input, no image in it, or a file given as OUT for several inputs.
    """
    text = os.fspath(input)
    sources = _sources(text)
    out = Path(out)
    single = len(sources) == 1 and not _is_pattern(text) and sources[0] == Path(text)
    if single and out.suffix.lower() in LABEL_FORMATS and not out.is_dir():
        return [BatchItem(sources[0], out)]
    if out.suffix.lower() in LABEL_FORMATS and not out.is_dir():
        raise BatchError(
            f"{out} is a file name, but {text} holds {len(sources)} images: give a folder "
            "for --out (one label image per input)."
        )
    if out.is_file():
        raise BatchError(f"{out} is a file: give a folder for --out.")
    outputs = [out / name for name in _output_names(sources)]
    planned = {p.absolute() for p in outputs}
    items = [
        BatchItem(s, o)
        for s, o in zip(sources, outputs, strict=True)
        if s.absolute() not in planned
    ]
    if not items:
        raise BatchError(f"Every image {text} holds is an output of this batch.")
    return items


def run_batch(
    items: Sequence[BatchItem],
    segment: Callable[[np.ndarray, BatchItem], np.ndarray],
    *,
    overwrite: bool = False,
    on_item: Callable[[int, int, BatchItem, str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> BatchReport:
    """Segment every item, writing its label image; skip, report and go on as documented.

    Parameters
    ----------
    items : sequence of BatchItem
        From :func:`plan_batch`.
    segment : callable
        ``segment(image, item) -> labels``: the label image (unsigned or non-negative integers)
        of an image as :func:`~.imagefiles.open_image` returns it (numpy, or a lazy zarr/dask
        array for ``.zarr``, TIFF and ``.npy`` inputs: read what is needed).
    overwrite : bool
        Recompute outputs that exist (they are skipped otherwise).
    on_item : callable, optional
        ``on_item(done, total, item, status)`` after each item, ``status`` being ``"written"``,
        ``"skipped"`` or ``"failed: <reason>"`` (a progress bar or log line).
    cancelled : callable, optional
        Polled before each item; when it returns True the batch stops (what was written stays).

    Returns
    -------
    BatchReport
    """
    report = BatchReport()
    inputs = [item.source for item in items]
    total = len(items)
    for done, item in enumerate(items, 1):
        if cancelled is not None and cancelled():
            report.cancelled = True
            break
        if item.output.exists() and not overwrite:
            report.skipped.append(item)
            status = "skipped"
        else:
            try:
                image = open_image(item.source)
                labels = np.asarray(segment(image, item))
                check_label_output(
                    item.output,
                    max_label=max(1, int(labels.max(initial=0))),  # no object: still a file
                    inputs=inputs,
                    overwrite=True,
                    stack=labels.ndim > 2,
                )
                write_labels(item.output, _smallest_dtype(labels))
            # One bad file must not end a batch of hundreds: any failure is reported with its
            # file, and the exit status says that something failed.
            except Exception as exc:  # noqa: BLE001
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                reason = reason or type(exc).__name__
                report.failed.append((item, reason))
                status = f"failed: {reason}"
            else:
                report.written.append(item)
                status = "written"
        if on_item is not None:
            on_item(done, total, item, status)
    return report


def _smallest_dtype(labels: np.ndarray) -> np.ndarray:
    if labels.size and labels.min() < 0:
        raise ImageFileError("Negative labels cannot be written.")
    return labels.astype(label_dtype(max(1, int(labels.max(initial=0)))), copy=False)
