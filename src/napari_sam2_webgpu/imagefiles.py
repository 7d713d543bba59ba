"""Reading images and writing label images safely (no Qt, no napari).

Label images are written only in lossless formats, with the smallest unsigned dtype that holds
the largest label, through a temporary file renamed into place: an interrupted write never leaves
a half-written file under the final name, and an input is never written over.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LABEL_FORMATS",
    "MAX_LABEL",
    "ImageFileError",
    "check_label_output",
    "label_dtype",
    "open_image",
    "read_image",
    "write_labels",
]

#: Lossless formats a label image can be written in, and the largest label each can hold.
LABEL_FORMATS: dict[str, int] = {
    ".tif": 2**32 - 1,
    ".tiff": 2**32 - 1,
    ".npy": 2**32 - 1,
    ".png": 2**16 - 1,
}
#: Formats that hold a stack (frames, height, width), not only a 2D image.
STACK_FORMATS = (".tif", ".tiff", ".npy")
#: The largest label any format holds (uint32).
MAX_LABEL = 2**32 - 1


class ImageFileError(ValueError):
    """An input or output file cannot be used; the message names the file and says why."""


def label_dtype(max_label: int) -> np.dtype:
    """The smallest unsigned integer dtype that stores labels up to ``max_label``.

    Parameters
    ----------
    max_label : int
        The largest label to store, 1 to :data:`MAX_LABEL`.

    Returns
    -------
    numpy.dtype
        uint8, uint16 or uint32.

    Raises
    ------
    ImageFileError
        When ``max_label`` is below 1 (0 is background) or above :data:`MAX_LABEL`.

    Examples
    --------
    >>> label_dtype(255), label_dtype(256), label_dtype(70000)
    (dtype('uint8'), dtype('uint16'), dtype('uint32'))
    """
    if not 1 <= max_label <= MAX_LABEL:
        raise ImageFileError(
            f"Label {max_label} cannot be stored: labels are 1 to {MAX_LABEL} (0 is background)."
        )
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_label <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise AssertionError("unreachable")  # pragma: no cover


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_label_output(
    path: str | os.PathLike,
    *,
    max_label: int,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
    stack: bool = False,
) -> Path:
    """Check, before any work is done, that a label image can be written to ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The output file.
    max_label : int
        The largest label that will be written (decides the dtype, which the format must hold).
    inputs : iterable of paths
        Files read by the same job: never written over, even with ``overwrite``.
    overwrite : bool
        Whether an existing output file may be replaced.
    stack : bool
        Whether the labels are a stack (frames, height, width): PNG cannot hold one.

    Returns
    -------
    pathlib.Path
        The output path.

    Raises
    ------
    ImageFileError
        A lossy or unknown format, a label the format cannot hold, an existing file without
        ``overwrite``, one of the inputs, a folder, or a folder that cannot be written to.
    """
    out = Path(path)
    suffix = out.suffix.lower()
    formats = STACK_FORMATS if stack else tuple(LABEL_FORMATS)
    if suffix not in formats:
        kind = "label stacks" if stack else "label images"
        raise ImageFileError(
            f"Cannot write {kind} as '{out.suffix or out.name}' ({out}): use a lossless format, "
            f"one of {', '.join(formats)}."
        )
    label_dtype(max_label)  # raises for labels no format holds
    if max_label > LABEL_FORMATS[suffix]:
        raise ImageFileError(
            f"{suffix} holds labels up to {LABEL_FORMATS[suffix]}, not {max_label} ({out}): "
            "use .tif or .npy."
        )
    for source in inputs:
        if _same_file(out, Path(source)):
            raise ImageFileError(f"Refusing to write the labels over the input file {out}.")
    if out.is_dir():
        raise ImageFileError(f"{out} is a folder: give a file name, e.g. {out / 'labels.tif'}.")
    if out.exists() and not overwrite:
        raise ImageFileError(f"{out} already exists: pass --overwrite to replace it.")
    folder = _existing_parent(out)
    if not folder.is_dir():
        raise ImageFileError(f"Cannot create {out}: {folder} is not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ImageFileError(f"Cannot write {out}: the folder {folder} is not writable.")
    return out


def _existing_parent(path: Path) -> Path:
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image or stack from a file (.tif/.tiff, .npy, or any format scikit-image reads).

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    ImageFileError
        When the file is missing, a folder, or not readable as an image.
    """
    path = Path(path)
    if path.is_dir():
        raise ImageFileError(f"{path} is a folder, not an image file.")
    if not path.is_file():
        raise ImageFileError(f"Image not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(path)
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        import skimage.io

        return skimage.io.imread(path)
    # Readers raise assorted types for a file that is not what its name says.
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImageFileError(f"Cannot read {path} as an image: {reason}") from exc


#: Inputs :func:`open_image` reads lazily (the rest are read whole by :func:`read_image`).
LAZY_FORMATS = (".zarr", ".tif", ".tiff", ".npy")


def open_image(path: str | os.PathLike) -> Any:
    """Open an image or stack without reading it: only the regions used are read.

    - ``.zarr`` folders: OME-Zarr (NGFF 0.4 or 0.5; the full-resolution level, singleton axes
      dropped, a colour channel axis moved last) or a plain zarr array;
    - ``.tif``/``.tiff``: through tifffile's zarr interface (tiled or striped files);
    - ``.npy``: memory-mapped;
    - anything else is read whole (:func:`read_image`).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    numpy.ndarray or dask.array.Array
        Dask arrays behave as numpy arrays do (slicing, arithmetic) and read only what is
        computed (``np.asarray(image[region])``).

    Raises
    ------
    ImageFileError
        Missing, unreadable, or an OME-Zarr whose axes cannot be an image or stack.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".zarr":
        if not path.is_dir():
            raise ImageFileError(f"Image not found: {path}")
        try:
            return _open_zarr(path)
        except ImageFileError:
            raise
        except Exception as exc:
            raise ImageFileError(f"Cannot read {path} as a zarr image: {exc}") from exc
    if path.is_dir():
        raise ImageFileError(f"{path} is a folder, not an image file.")
    if not path.is_file():
        raise ImageFileError(f"Image not found: {path}")
    try:
        if suffix in (".tif", ".tiff"):
            import dask.array as da
            import tifffile
            import zarr

            return da.from_zarr(zarr.open(tifffile.imread(path, aszarr=True), mode="r"))
        if suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImageFileError(f"Cannot read {path} as an image: {reason}") from exc
    return read_image(path)


def _open_zarr(path: Path) -> Any:
    """A zarr array, or an OME-Zarr's full-resolution level as a lazy ``(..., H, W[, C])``."""
    import dask.array as da
    import zarr

    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Array):
        return da.from_zarr(node)
    attrs = dict(node.attrs)
    multiscales = attrs.get("ome", attrs).get("multiscales")
    if not multiscales:
        arrays = [name for name, _ in node.arrays()]
        raise ImageFileError(
            f"{path} is a zarr group but not OME-Zarr (no multiscales); its arrays: "
            f"{', '.join(arrays) or 'none'}. Give the array's folder."
        )
    scale = multiscales[0]
    level = node[scale["datasets"][0]["path"]]
    axes = [a["name"] if isinstance(a, dict) else str(a) for a in scale.get("axes", [])]
    if not axes:  # NGFF before 0.4: t, c, z, y, x
        axes = ["t", "c", "z", "y", "x"][-level.ndim :]
    return _image_axes(level, [a.lower() for a in axes], path)


def _image_axes(level: Any, axes: list[str], path: Path) -> Any:
    """OME axes to the layout the commands take: (frames, H, W[, C]), singletons dropped."""
    import dask.array as da

    array = da.from_zarr(level)
    if len(axes) != array.ndim:
        raise ImageFileError(f"{path}: {len(axes)} axes named for a {array.ndim}D array")
    sizes = zip(axes, array.shape, strict=True)
    keep = [i for i, (name, size) in enumerate(sizes) if size > 1 or name in ("y", "x")]
    array = array[tuple(slice(None) if i in keep else 0 for i in range(array.ndim))]
    names = [axes[i] for i in keep]
    if "c" in names:
        channels = array.shape[names.index("c")]
        if channels not in (3, 4):
            raise ImageFileError(
                f"{path} has {channels} channels: open one channel (or an RGB image); "
                "napari-sam2-webgpu segments one grey or colour image per frame."
            )
        array = da.moveaxis(array, names.index("c"), -1)
        names.append(names.pop(names.index("c")))
    frames = [n for n in names if n not in ("y", "x", "c")]
    if len(frames) > 1:
        raise ImageFileError(
            f"{path} has axes {', '.join(names)}: more than one frame axis "
            f"({', '.join(frames)}); give one time point or one z-stack."
        )
    return array


def write_labels(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Write a label image atomically: into a temporary file beside it, then renamed.

    Parameters
    ----------
    path : str or os.PathLike
        The output file; its suffix picks the format (:data:`LABEL_FORMATS`). Missing parent
        folders are created.
    labels : numpy.ndarray
        Unsigned integer labels.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ImageFileError
        When the file cannot be written (the message names it); nothing is left behind.
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in LABEL_FORMATS:
        raise ImageFileError(
            f"Cannot write labels as '{out.suffix}' ({out}): use one of {', '.join(LABEL_FORMATS)}."
        )
    temp = out.with_name(f".{out.stem}.{secrets.token_hex(4)}.partial{out.suffix}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL with mode 0o666: the umask decides the permissions, as for any new file.
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        if suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(temp, labels, compression="zlib")
        elif suffix == ".npy":
            np.save(temp, labels)
        else:
            import skimage.io

            skimage.io.imsave(temp, labels, check_contrast=False)
        os.replace(temp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        reason = exc.strerror or str(exc)
        raise ImageFileError(f"Cannot write {out}: {reason}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return out
