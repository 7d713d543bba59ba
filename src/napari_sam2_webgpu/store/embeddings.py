"""Image embeddings on disk: a zarr store per stack, model and preprocessing.

Encoding is SAM2's slow step (seconds per slice on a CPU). A store keeps every encoded slice of
a stack on disk, so reopening the stack, or annotating on a laptop a stack encoded once on a GPU
workstation (``napari-sam2-webgpu embed``), costs no encoding. An embedding read back is
the one that was written (float32 stores are exact; float16 stores halve the size, within the
bound measured in docs/embedding-store.md).

Layout (zarr v3, one group)::

    STACK.sam2.zarr/
      zarr.json                   attributes: format, identity (below), storage dtype,
                                  package version
      image_embed/                (F, 256, 64, 64)   one chunk per frame
      high_res_feats_0/           (F, 32, 256, 256)
      high_res_feats_1/           (F, 64, 128, 128)
      done/                       (F,) uint8: 1 once a frame's three arrays are written

``F`` is the number of 2D frames of the stack (its leading axes flattened, C order). A *tiled*
store (``identity.tiles`` a :class:`~napari_sam2_webgpu.image.tiling.TileSpec` description)
holds ``T + 1`` entries per frame instead of one: the frame's ``T`` tiles (row-major) and its
overview (the whole frame encoded at once), so the arrays have ``F * (T + 1)`` rows, frame
``f``'s tile ``t`` at row ``f * (T + 1) + t`` and its overview at ``f * (T + 1) + T``.

What a store depends on is its :class:`StoreIdentity`: the encoder (by checksum), the stack's
shape, the intensity window and colour interpretation, the version of the preprocessing
arithmetic and the tile layout. A store opened with another identity is refused with the
differences named (:class:`StoreMismatchError`); the package version is recorded for
provenance only, since embeddings change only when the preprocessing or the model does.

Faults: a frame is marked done after its arrays, so a writer cut off mid-frame leaves it
missing and it is computed again; a done frame whose chunks cannot be read is treated as
missing and rewritten; writers in several processes take a lock file beside the store, and a
frame already done is not written twice. A folder that cannot be written raises
:class:`StoreUnavailableError` (callers fall back to memory).

``zarr`` is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ..image.encoder import ImageEmbedding
    from ..image.tiling import TileLayout

__all__ = [
    "EMBEDDING_ARRAYS",
    "FORMAT",
    "FORMAT_VERSION",
    "PREPROCESSING_VERSION",
    "STORAGE_DTYPES",
    "EmbeddingStore",
    "StoreError",
    "StoreIdentity",
    "StoreMismatchError",
    "StoreUnavailableError",
    "FrameTiles",
    "encoder_checksum",
]

logger = logging.getLogger("napari_sam2_webgpu")

#: The ``format`` attribute of a store's group.
FORMAT = "napari-sam2-webgpu embeddings"
#: Version of the layout above; a store of another version is refused.
FORMAT_VERSION = 1
#: Version of the arithmetic that turns an image into the encoder's input
#: (:func:`napari_sam2_webgpu.image.preprocess.prepare_image`); bumped when it changes.
PREPROCESSING_VERSION = 1
#: How embeddings can be stored.
STORAGE_DTYPES = ("float32", "float16")
#: Each array of an embedding and its shape for one frame (every SAM2 size).
EMBEDDING_ARRAYS: dict[str, tuple[int, ...]] = {
    "image_embed": (256, 64, 64),
    "high_res_feats_0": (32, 256, 256),
    "high_res_feats_1": (64, 128, 128),
}
_DONE = "done"
_LOCK_SUFFIX = ".lock"


class StoreError(ValueError):
    """A path that is not an embedding store of this plugin (or of a format it cannot read)."""


class StoreMismatchError(StoreError):
    """A store made for another model, stack or preprocessing than the one asked for."""


class StoreUnavailableError(OSError):
    """The store cannot be created or written where it was asked for (read-only, no space)."""


@dataclass(frozen=True)
class StoreIdentity:
    """What stored embeddings depend on; a store only serves the identity it was made with.

    Attributes
    ----------
    model : str
        The model's name (for messages).
    encoder_sha256 : str
        The encoder file's checksum (:func:`encoder_checksum`): the model, exactly.
    frames : tuple of int
        The stack's leading axes (``()`` for one 2D image); their product is the frame count.
    image_hw : (int, int)
        Height and width of each frame.
    contrast_limits : (float, float) or None
        The intensity window every frame was encoded with (``None``: each frame's default).
    rgb : bool or None
        Whether the last axis is colour (as passed to the encoder).
    preprocessing : int
        :data:`PREPROCESSING_VERSION` of the code that prepared the frames.
    tiles : str
        The tile layout (``"none"``: each frame encoded whole), else
        :meth:`TileSpec.describe() <napari_sam2_webgpu.image.tiling.TileSpec.describe>`.
    """

    model: str
    encoder_sha256: str
    frames: tuple[int, ...]
    image_hw: tuple[int, int]
    contrast_limits: tuple[float, float] | None = None
    rgb: bool | None = None
    preprocessing: int = PREPROCESSING_VERSION
    tiles: str = "none"

    @property
    def num_frames(self) -> int:
        """Frames in the stack."""
        return int(np.prod(self.frames, dtype=np.int64)) if self.frames else 1

    @property
    def tile_layout(self) -> TileLayout | None:
        """The tiles of each frame (None: frames are encoded whole)."""
        from ..image.tiling import TileSpec

        if self.tiles == "none":
            return None
        return TileSpec.parse(self.tiles).layout(self.image_hw)

    @property
    def entries_per_frame(self) -> int:
        """Embeddings stored per frame: 1, or the tiles and the overview."""
        layout = self.tile_layout
        return 1 if layout is None else len(layout) + 1

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (the store's ``identity`` attribute)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoreIdentity:
        """The identity recorded in a store."""
        limits = data.get("contrast_limits")
        return cls(
            model=str(data["model"]),
            encoder_sha256=str(data["encoder_sha256"]),
            frames=tuple(int(v) for v in data["frames"]),
            image_hw=(int(data["image_hw"][0]), int(data["image_hw"][1])),
            contrast_limits=None if limits is None else (float(limits[0]), float(limits[1])),
            rgb=data.get("rgb"),
            preprocessing=int(data.get("preprocessing", 0)),
            tiles=str(data.get("tiles", "none")),
        )

    def differences(self, other: StoreIdentity) -> list[str]:
        """What differs from ``other`` that makes embeddings differ, in words (empty: none)."""
        found = []
        if self.encoder_sha256 != other.encoder_sha256:
            found.append(
                f"the model: the store holds {self.model!r} (encoder "
                f"{self.encoder_sha256[:12]}), asked for {other.model!r} "
                f"(encoder {other.encoder_sha256[:12]})"
            )
        if (self.frames, self.image_hw) != (other.frames, other.image_hw):
            found.append(
                f"the stack: the store is for {_shape(self)} frames, this stack is {_shape(other)}"
            )
        if self.contrast_limits != other.contrast_limits:
            found.append(
                f"the contrast limits: {_limits(self.contrast_limits)} in the store, "
                f"{_limits(other.contrast_limits)} asked for"
            )
        if self.rgb != other.rgb:
            found.append(f"colour: rgb={self.rgb} in the store, rgb={other.rgb} asked for")
        if self.preprocessing != other.preprocessing:
            found.append(
                f"the preprocessing version: {self.preprocessing} in the store, "
                f"{other.preprocessing} in this version of the plugin"
            )
        if self.tiles != other.tiles:
            found.append(f"the tiles: {self.tiles!r} in the store, {other.tiles!r} asked for")
        return found


def _shape(identity: StoreIdentity) -> str:
    dims = [*identity.frames, *identity.image_hw]
    return " x ".join(str(d) for d in dims)


def _limits(limits: tuple[float, float] | None) -> str:
    return "each frame's default" if limits is None else f"{limits[0]:g}..{limits[1]:g}"


@lru_cache(maxsize=16)
def _checksum(path: str, stat: tuple[int, int, int]) -> str:
    from ..models.cache import sha256_file

    return sha256_file(path)


def encoder_checksum(path: str | os.PathLike) -> str:
    """The sha256 of an encoder file (remembered while the file does not change).

    Parameters
    ----------
    path : path
        The encoder ``.onnx``.

    Returns
    -------
    str
        64 hex digits.
    """
    from ..models.cache import stat_key

    resolved = Path(path).resolve()
    stat = stat_key(resolved)
    if stat is None:
        raise FileNotFoundError(f"The encoder file does not exist: {path}")
    return _checksum(str(resolved), stat)


def _is_store(path: Path) -> bool:
    return (path / "zarr.json").is_file()


class EmbeddingStore:
    """Embeddings of one stack's frames in a zarr group on disk.

    Use :meth:`open`; frames are indexed ``0 .. num_frames - 1`` (the stack's leading axes
    flattened in C order, :meth:`frame_index`).

    Parameters
    ----------
    group : zarr.Group
    path : pathlib.Path
    identity : StoreIdentity
    dtype : {"float32", "float16"}
    writable : bool

    Notes
    -----
    Thread-safe; several processes may read and write one store (see the module notes).
    """

    def __init__(
        self, group: Any, path: Path, identity: StoreIdentity, dtype: str, writable: bool
    ) -> None:
        self._group = group
        self.path = path
        self.identity = identity
        self.dtype = dtype
        self.writable = writable
        self._lock = threading.Lock()

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        identity: StoreIdentity,
        *,
        dtype: str = "float32",
        mode: str = "a",
    ) -> EmbeddingStore:
        """Open the store at ``path`` for ``identity``, creating it if needed.

        Parameters
        ----------
        path : path
            The store's folder (conventionally ``<stack>.sam2.zarr``).
        identity : StoreIdentity
            What the embeddings must depend on.
        dtype : {"float32", "float16"}
            Storage precision of a new store (an existing store keeps its own).
        mode : {"a", "r", "w"}
            ``"a"``: read and write, create if missing; ``"r"``: read only (missing: error);
            ``"w"``: start over (an existing store at ``path`` is deleted first).

        Returns
        -------
        EmbeddingStore

        Raises
        ------
        StoreMismatchError
            The store was made for another identity (the differences are named).
        StoreError
            ``path`` holds something else, or a store of a format this version cannot read.
        StoreUnavailableError
            The store cannot be created or written there (read-only folder, no space...).
        FileNotFoundError
            ``mode="r"`` and there is no store.
        """
        if dtype not in STORAGE_DTYPES:
            raise ValueError(f"dtype must be one of {STORAGE_DTYPES}, got {dtype!r}")
        if mode not in ("a", "r", "w"):
            raise ValueError(f"mode must be 'a', 'r' or 'w', got {mode!r}")
        path = Path(path)
        if mode == "r":
            if not _is_store(path):
                raise FileNotFoundError(f"No embedding store at {path}")
            return cls._existing(path, identity, writable=False)
        try:
            with _file_lock(path):
                if mode == "w" and path.exists():
                    if path.is_dir() and (_is_store(path) or not any(path.iterdir())):
                        shutil.rmtree(path)
                    else:
                        raise StoreError(f"{path} exists and is not an embedding store")
                if _is_store(path):
                    return cls._existing(path, identity, writable=True)
                if path.exists() and (not path.is_dir() or any(path.iterdir())):
                    raise StoreError(f"{path} exists and is not an embedding store")
                return cls._create(path, identity, dtype)
        except PermissionError as exc:
            raise StoreUnavailableError(
                exc.errno, f"cannot write the embedding store ({exc.strerror})", str(path)
            ) from exc
        except OSError as exc:
            if isinstance(exc, StoreUnavailableError | FileNotFoundError):
                raise
            raise StoreUnavailableError(
                exc.errno, f"cannot write the embedding store ({exc.strerror or exc})", str(path)
            ) from exc

    @classmethod
    def _create(cls, path: Path, identity: StoreIdentity, dtype: str) -> EmbeddingStore:
        import zarr

        from .. import __version__

        group = zarr.open_group(str(path), mode="w")
        frames = identity.num_frames * identity.entries_per_frame
        for name, shape in EMBEDDING_ARRAYS.items():
            group.create_array(
                name,
                shape=(frames, *shape),
                chunks=(1, *shape),
                dtype=dtype,
                compressors=None,  # float features barely compress; reading stays fast
                fill_value=0,
            )
        group.create_array(_DONE, shape=(frames,), chunks=(1,), dtype="uint8", fill_value=0)
        # The attributes go last: a store without them is not a store (_existing refuses it).
        group.attrs.update(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "identity": identity.to_json(),
                "dtype": dtype,
                "package_version": __version__,
            }
        )
        return cls(group, path, identity, dtype, writable=True)

    @classmethod
    def _existing(cls, path: Path, identity: StoreIdentity, writable: bool) -> EmbeddingStore:
        import zarr

        try:
            group = zarr.open_group(str(path), mode="r+" if writable else "r")
            attrs = dict(group.attrs)
        except Exception as exc:  # a damaged zarr.json, or not zarr at all
            raise StoreError(f"{path} is not a readable embedding store: {exc}") from exc
        if attrs.get("format") != FORMAT:
            raise StoreError(f"{path} is not an embedding store of this plugin")
        if attrs.get("format_version") != FORMAT_VERSION:
            raise StoreError(
                f"{path} is an embedding store of format {attrs.get('format_version')}; this "
                f"version of the plugin reads format {FORMAT_VERSION}. Compute it again "
                "(napari-sam2-webgpu embed ... --overwrite)."
            )
        stored = StoreIdentity.from_json(attrs["identity"])
        differences = stored.differences(identity)
        if differences:
            raise StoreMismatchError(
                f"The embedding store {path} was made with other settings: "
                + "; ".join(differences)
                + ". Use another store for these settings, or overwrite this one."
            )
        return cls(group, path, stored, str(attrs["dtype"]), writable)

    # -- frames -------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        """Frames in the stack."""
        return self.identity.num_frames

    def frame_index(self, index: Sequence[int] | int) -> int:
        """The flat frame number of ``index`` on the stack's leading axes."""
        frames = self.identity.frames
        if isinstance(index, int | np.integer):
            flat = int(index)
        else:
            flat = int(np.ravel_multi_index(tuple(int(i) for i in index), frames))
        if not 0 <= flat < self.num_frames:
            raise IndexError(f"frame {index} is outside the stack ({self.num_frames} frames)")
        return flat

    def _row(self, frame: Sequence[int] | int, tile: int | None) -> int:
        """The arrays' row of ``frame``'s tile (None: the frame, or a tiled frame's overview)."""
        flat = self.frame_index(frame)
        entries = self.identity.entries_per_frame
        if tile is None:
            return flat * entries + entries - 1
        if entries == 1:
            raise ValueError("this store holds whole frames, not tiles")
        if not 0 <= int(tile) < entries - 1:
            raise IndexError(f"tile {tile} is outside the layout ({entries - 1} tiles)")
        return flat * entries + int(tile)

    def _entry_hw(self, tile: int | None) -> tuple[int, int]:
        if tile is None:
            return tuple(self.identity.image_hw)
        return self.identity.tile_layout.tiles[int(tile)].hw

    def _done_rows(self) -> np.ndarray:
        try:
            return np.asarray(self._group[_DONE][:]).astype(bool)
        except Exception:  # damaged flags: every frame counts as missing until rewritten
            return np.zeros(self.num_frames * self.identity.entries_per_frame, bool)

    def done_frames(self) -> list[int]:
        """The frames whose embeddings (every tile, and the overview) are stored, in order."""
        done = self._done_rows().reshape(self.num_frames, self.identity.entries_per_frame)
        return [int(i) for i in np.flatnonzero(done.all(axis=1))]

    def has(self, frame: Sequence[int] | int, tile: int | None = None) -> bool:
        """Whether ``frame``'s embedding (tile ``tile``; None: the frame or overview) is stored."""
        try:
            return bool(self._group[_DONE][self._row(frame, tile)])
        except Exception:
            return False

    def __contains__(self, frame: object) -> bool:
        if not isinstance(frame, int | np.integer | tuple):
            return False
        try:
            first = self._row(frame, None) - self.identity.entries_per_frame + 1  # type: ignore[arg-type]
            entries = self._group[_DONE][first : first + self.identity.entries_per_frame]
            return bool(np.all(np.asarray(entries)))
        except Exception:
            return False

    def get(self, frame: Sequence[int] | int, tile: int | None = None) -> ImageEmbedding | None:
        """The stored embedding of ``frame`` (float32, in host memory), or ``None``.

        ``tile``: a tile's embedding in a tiled store (None: the frame's, or its overview).
        A stored entry whose data cannot be read (a damaged chunk) is marked missing again, so
        it is computed and written anew.
        """
        from ..image.encoder import ImageEmbedding

        row = self._row(frame, tile)
        if not self.has(frame, tile):
            return None
        try:
            tensors = [
                np.asarray(self._group[name][row : row + 1], dtype=np.float32)
                for name in ("image_embed", "high_res_feats_0", "high_res_feats_1")
            ]
        except Exception as exc:
            logger.warning("embedding store %s: entry %d unreadable (%s)", self.path, row, exc)
            self._forget(row)
            return None
        return ImageEmbedding(*tensors, self._entry_hw(tile))

    def put(
        self, frame: Sequence[int] | int, embedding: ImageEmbedding, tile: int | None = None
    ) -> bool:
        """Store the embedding of ``frame`` (tile ``tile``), unless it is stored already.

        Returns
        -------
        bool
            Whether it was written (``False``: another writer stored it first).

        Raises
        ------
        StoreUnavailableError
            The store is read-only, or writing failed (the entry stays missing).
        ValueError
            The embedding's image size is not the frame's (or the tile's).
        """
        row = self._row(frame, tile)
        if not self.writable:
            raise StoreUnavailableError(f"the embedding store {self.path} is open read-only")
        expected = self._entry_hw(tile)
        if tuple(embedding.image_hw) != tuple(expected):
            what = "frames" if tile is None else f"tile {tile}"
            raise ValueError(
                f"embedding of a {embedding.image_hw} image, the store's {what} are {expected}"
            )
        host = embedding.numpy()
        values = {
            "image_embed": host.image_embed,
            "high_res_feats_0": host.high_res_feats_0,
            "high_res_feats_1": host.high_res_feats_1,
        }
        try:
            with self._lock, _file_lock(self.path):
                if self.has(frame, tile):
                    return False
                for name, value in values.items():
                    self._group[name][row : row + 1] = value.astype(self.dtype, copy=False)
                self._group[_DONE][row] = 1  # last: an entry cut off mid-write stays missing
        except OSError as exc:
            raise StoreUnavailableError(
                exc.errno, f"cannot write entry {row} ({exc.strerror or exc})", str(self.path)
            ) from exc
        return True

    def frame_tiles(self, frame: Sequence[int] | int) -> FrameTiles:
        """The tiles of one frame of a tiled store, as a
        :class:`~napari_sam2_webgpu.image.tiling.TileStore` for
        ``Sam2Predictor.compute_tiled_embedding(store=...)``."""
        if self.identity.tile_layout is None:
            raise ValueError("this store holds whole frames, not tiles")
        return FrameTiles(self, self.frame_index(frame))

    def _forget(self, row: int) -> None:
        """Mark an entry missing (it is computed and written again)."""
        if not self.writable:
            return
        try:
            with self._lock, _file_lock(self.path):
                self._group[_DONE][row] = 0
        except Exception as exc:  # the store is damaged beyond the flag: leave it
            logger.warning("embedding store %s: cannot mark entry %d: %s", self.path, row, exc)

    def provider(self, encode: Callable[[int], ImageEmbedding]) -> Callable[[int], ImageEmbedding]:
        """``frame -> embedding`` reading the store, encoding (and storing) what is missing.

        For :meth:`Sam2Propagator.init_state(embedding_provider=...)
        <napari_sam2_webgpu.video.Sam2Propagator.init_state>` and similar loops. A store that
        cannot be written (read-only) still serves what it holds.
        """

        def embedding(frame: int) -> ImageEmbedding:
            stored = self.get(frame)
            if stored is not None:
                return stored
            computed = encode(frame)
            if self.writable:
                try:
                    self.put(frame, computed)
                except StoreUnavailableError as exc:
                    logger.warning("%s; frame %d is kept in memory only", exc, frame)
            return computed

        return embedding

    def __repr__(self) -> str:
        done = len(self.done_frames())
        return (
            f"EmbeddingStore({str(self.path)!r}, model={self.identity.model!r}, "
            f"{done}/{self.num_frames} frames, {self.dtype})"
        )


class FrameTiles:
    """One frame of a tiled :class:`EmbeddingStore` as a
    :class:`~napari_sam2_webgpu.image.tiling.TileStore` (``tile`` None: the overview).

    Writing never raises: a store that cannot be written is logged once and skipped, so
    encoding goes on in memory.
    """

    def __init__(self, store: EmbeddingStore, frame: int) -> None:
        self.store = store
        self.frame = frame
        self._warned = False

    def get(self, tile: int | None) -> ImageEmbedding | None:
        """The stored tile (None: overview), or None."""
        return self.store.get(self.frame, tile)

    def put(self, tile: int | None, embedding: ImageEmbedding) -> None:
        """Store a tile (None: overview) when the store can be written."""
        if not self.store.writable:
            return
        try:
            self.store.put(self.frame, embedding, tile)
        except StoreUnavailableError as exc:
            if not self._warned:
                self._warned = True
                logger.warning("%s; tiles are kept in memory only", exc)


def _file_lock(path: Path) -> Any:
    """A lock file beside the store, shared by every process writing it."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + _LOCK_SUFFIX, timeout=600)
