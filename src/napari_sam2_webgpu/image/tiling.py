"""Tiled embeddings: large images encoded as overlapping tiles at SAM2's native scale.

SAM2 sees every image at 1024 x 1024. A 10,000-pixel section encoded whole is shrunk tenfold,
so a 30-pixel nucleus becomes 3 pixels and its mask a blur. Encoded as tiles of
``tile_size`` pixels (1024: one image pixel per model pixel), small objects keep their
resolution.

- :class:`TileSpec` is what the user chooses: the tile side and the halo (overlap) around each
  tile's own part of the image. ``tile_size`` also sets the scale: tiles of 2048 pixels are
  encoded at half resolution.
- :class:`TileLayout` is a spec applied to an image: a grid of :class:`Tile` windows spread
  evenly (every window full size, consecutive windows overlapping by at least ``2 * halo``),
  and the *inner* part of each window, which partitions the image. Every pixel of a tile's inner
  part lies at least ``halo`` pixels from the edges of its window that are not image edges.
- :class:`TiledEmbedding` holds the tiles' embeddings, encoded lazily (or all at once with
  :meth:`TiledEmbedding.encode_all`), bounded in memory, and an *overview*: the whole image
  encoded at once, as without tiling.

Which window decodes a prompt (:meth:`TileLayout.choose`): the tile whose window contains all of
the prompt set's points and box with the widest margin to its cutting edges (edges that are
image edges do not count: nothing lies beyond them). An object of radius up to ``halo`` around
a click is therefore never cut by its tile. A prompt set that fits in no window (a box larger
than a tile, points far apart) is decoded on the overview. Masks are not stitched across
tiles: a decode is one window, pasted into an image-sized mask.

Pure Python + numpy: nothing here imports napari, Qt or onnxruntime.

>>> layout = TileSpec(tile_size=1024, halo=128).layout((4096, 4096))
>>> layout.grid, len(layout)
((5, 5), 25)
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from .encoder import ImageEmbedding
from .postprocess import LOGIT_CLAMP
from .preprocess import MIN_SIDE, MODEL_SIZE, ImageError, check_image, intensity_range
from .prompts import PromptError, check_prompts

__all__ = [
    "DEFAULT_HALO",
    "DEFAULT_TILE_BYTES",
    "DEFAULT_TILE_SIZE",
    "TILING_THRESHOLD",
    "Tile",
    "TileLayout",
    "TileSpec",
    "TileStore",
    "TiledEmbedding",
    "needs_tiling",
    "paste",
    "prompt_extent",
    "tiled_embedding",
    "to_window",
    "whole_image_window",
]

logger = logging.getLogger("napari_sam2_webgpu")

#: Default tile side: SAM2's input size, so tiles are encoded at the image's own resolution.
DEFAULT_TILE_SIZE = MODEL_SIZE
#: Default halo. Objects up to 2 x 128 pixels across around a click are never cut by their tile
#: and segment-everything finds objects up to that size whole; a 8192² image needs 121 tiles
#: (169 with a halo of 192, 225 with 256: encoding time grows with the count). Measured with
#: benchmarks/tiling.py.
DEFAULT_HALO = 128
#: Images whose longer side exceeds this many pixels are tiled by default (the widget, the CLI):
#: whole, they would be shrunk more than twofold.
TILING_THRESHOLD = 2 * MODEL_SIZE
#: Default memory bound of the tiles held by a :class:`TiledEmbedding` (64 tiles of SAM2.1).
DEFAULT_TILE_BYTES = 1 << 30

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class TileSpec:
    """How an image is tiled: the tile side and the halo, in image pixels.

    Parameters
    ----------
    tile_size : int
        Side of each tile window. 1024 encodes tiles at the image's resolution; larger tiles
        are shrunk to 1024 (2048: half resolution, a quarter of the tiles).
    halo : int
        Overlap kept around each tile's own part of the image: consecutive windows overlap by
        at least ``2 * halo``. At most ``tile_size // 4``.

    Raises
    ------
    ValueError
        A tile smaller than 64 pixels, a negative halo or one too large for the tile.
    """

    tile_size: int = DEFAULT_TILE_SIZE
    halo: int = DEFAULT_HALO

    def __post_init__(self) -> None:
        tile, halo = int(self.tile_size), int(self.halo)
        if tile < 64:
            raise ValueError(f"tile_size must be at least 64 pixels, got {self.tile_size}.")
        if halo < 0 or halo > tile // 4:
            raise ValueError(
                f"halo must be between 0 and tile_size // 4 ({tile // 4}), got {self.halo}."
            )
        object.__setattr__(self, "tile_size", tile)
        object.__setattr__(self, "halo", halo)

    @property
    def scale(self) -> float:
        """Model pixels per image pixel inside a tile (1.0 at the default tile size)."""
        return MODEL_SIZE / self.tile_size

    def describe(self) -> str:
        """A short stable text, e.g. ``"tiles 1024 halo 128"`` (stores record it)."""
        return f"tiles {self.tile_size} halo {self.halo}"

    @classmethod
    def parse(cls, text: str) -> TileSpec:
        """The spec :meth:`describe` wrote (ValueError for anything else)."""
        parts = str(text).split()
        if len(parts) != 4 or parts[0] != "tiles" or parts[2] != "halo":
            raise ValueError(f"not a tile spec: {text!r}")
        return cls(int(parts[1]), int(parts[3]))

    def layout(self, image_hw: Sequence[int]) -> TileLayout:
        """This spec applied to an image of ``image_hw`` pixels."""
        return TileLayout(self, (int(image_hw[0]), int(image_hw[1])))


def needs_tiling(image_hw: Sequence[int], threshold: int = TILING_THRESHOLD) -> bool:
    """Whether an image is large enough to be tiled by default (longer side > ``threshold``)."""
    return max(int(image_hw[0]), int(image_hw[1])) > threshold


@dataclass(frozen=True)
class Tile:
    """One tile: the window that is encoded, and the part of the image it answers for.

    Attributes
    ----------
    index : int
        Position in :attr:`TileLayout.tiles` (row-major).
    row, col : int
        Position in the grid.
    box : (int, int, int, int)
        The encoded window ``x0, y0, x1, y1`` (end-exclusive image pixels).
    inner : (int, int, int, int)
        The tile's own part of the image, same convention; the inner parts of all tiles
        partition the image.
    """

    index: int
    row: int
    col: int
    box: Box
    inner: Box

    @property
    def hw(self) -> tuple[int, int]:
        """Height and width of the window."""
        return self.box[3] - self.box[1], self.box[2] - self.box[0]

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of the window into the image."""
        x0, y0, x1, y1 = self.box
        return slice(y0, y1), slice(x0, x1)


def _axis(length: int, spec: TileSpec) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Windows and inner parts along one axis (start, stop)."""
    size = min(spec.tile_size, length)
    stride = spec.tile_size - 2 * spec.halo
    count = 1 if length <= size else math.ceil((length - size) / stride) + 1
    # Integer spreading: consecutive starts differ by at most ceil((length - size) / (count - 1))
    # <= stride, so windows overlap by at least 2 * halo.
    starts = [0] if count == 1 else [i * (length - size) // (count - 1) for i in range(count)]
    windows = [(s, s + size) for s in starts]
    cuts = [0] + [(windows[i + 1][0] + windows[i][1]) // 2 for i in range(count - 1)] + [length]
    return windows, [(cuts[i], cuts[i + 1]) for i in range(count)]


class TileLayout:
    """A :class:`TileSpec` applied to one image size: the tiles, row-major.

    Parameters
    ----------
    spec : TileSpec
    image_hw : (int, int)

    Examples
    --------
    >>> layout = TileSpec(1024, 128).layout((1500, 3000))
    >>> layout.grid
    (2, 4)
    >>> layout.tiles[0].box, layout.tiles[0].inner
    ((0, 0, 1024, 1024), (0, 0, 841, 750))
    """

    def __init__(self, spec: TileSpec, image_hw: tuple[int, int]) -> None:
        height, width = (int(v) for v in image_hw)
        if height < 1 or width < 1:
            raise ValueError(f"Cannot tile an image of {height} x {width} pixels.")
        self.spec = spec
        self.image_hw = (height, width)
        rows, row_inner = _axis(height, spec)
        cols, col_inner = _axis(width, spec)
        self.grid = (len(rows), len(cols))
        self.tiles: tuple[Tile, ...] = tuple(
            Tile(
                r * len(cols) + c,
                r,
                c,
                (cols[c][0], rows[r][0], cols[c][1], rows[r][1]),
                (col_inner[c][0], row_inner[r][0], col_inner[c][1], row_inner[r][1]),
            )
            for r in range(len(rows))
            for c in range(len(cols))
        )

    def __len__(self) -> int:
        return len(self.tiles)

    def __repr__(self) -> str:
        h, w = self.image_hw
        return f"TileLayout({self.spec.describe()}, {h} x {w}: {self.grid[0]} x {self.grid[1]})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TileLayout)
            and other.spec == self.spec
            and other.image_hw == self.image_hw
        )

    def __hash__(self) -> int:
        return hash((self.spec, self.image_hw))

    def margins(self, extent: Sequence[float]) -> np.ndarray:
        """Per tile, the distance from ``extent`` (``x0, y0, x1, y1``) to the window's cutting
        edges (negative: the extent is not inside; image edges count as infinitely far)."""
        x0, y0, x1, y1 = (float(v) for v in extent)
        height, width = self.image_hw
        out = np.empty(len(self.tiles))
        for tile in self.tiles:
            bx0, by0, bx1, by1 = tile.box
            # Pixel centres: window pixels span [b0 - 0.5, b1 - 0.5].
            gaps = [
                (x0 - (bx0 - 0.5), bx0 == 0),
                (y0 - (by0 - 0.5), by0 == 0),
                ((bx1 - 0.5) - x1, bx1 == width),
                ((by1 - 0.5) - y1, by1 == height),
            ]
            if any(gap < 0 for gap, _ in gaps):
                out[tile.index] = min(gap for gap, _ in gaps)
            else:
                cutting = [gap for gap, at_image_edge in gaps if not at_image_edge]
                out[tile.index] = min(cutting) if cutting else np.inf
        return out

    def choose(self, extent: Sequence[float]) -> Tile | None:
        """The tile that decodes prompts spanning ``extent`` (``x0, y0, x1, y1`` pixels).

        The tile whose window contains the extent with the widest margin to its cutting edges
        (the first such tile on ties); None when no window contains it (decode on the overview).
        """
        margins = self.margins(extent)
        best = int(np.argmax(margins))
        return self.tiles[best] if margins[best] >= 0 else None

    def tile_at(self, x: float, y: float) -> Tile:
        """The tile whose inner part holds pixel ``(x, y)``."""
        height, width = self.image_hw
        col = min(max(int(round(x)), 0), width - 1)
        row = min(max(int(round(y)), 0), height - 1)
        for tile in self.tiles:
            ix0, iy0, ix1, iy1 = tile.inner
            if ix0 <= col < ix1 and iy0 <= row < iy1:
                return tile
        raise AssertionError("inner parts partition the image")  # pragma: no cover


def prompt_extent(*coords: Any) -> tuple[float, float, float, float]:
    """``x0, y0, x1, y1`` of prompt coordinates: arrays of ``(x, y)`` pairs (points ``(N, 2)``,
    boxes ``(4,)``), any number of them; None entries are skipped."""
    coords = np.concatenate(
        [np.asarray(c, dtype=np.float64).reshape(-1, 2) for c in coords if c is not None]
    )
    return (
        float(coords[:, 0].min()),
        float(coords[:, 1].min()),
        float(coords[:, 0].max()),
        float(coords[:, 1].max()),
    )


#: ``encode(tile)`` for a :class:`Tile`, or ``encode(None)`` for the overview.
TileEncoder = Callable[[Tile | None], ImageEmbedding]


class TiledEmbedding:
    """The embeddings of a large image's tiles (and its overview), encoded on demand.

    Decode on it like on an :class:`~.encoder.ImageEmbedding`:
    ``predictor.predict(..., embedding=tiled)`` decodes each prompt set in the tile chosen by
    :meth:`TileLayout.choose` (encoding that tile first if needed) and returns image-sized masks.
    Make one with :meth:`Sam2Predictor.compute_tiled_embedding
    <napari_sam2_webgpu.image.predictor.Sam2Predictor.compute_tiled_embedding>`.

    Parameters
    ----------
    layout : TileLayout
        The tiles.
    encode : callable
        ``encode(tile)`` returns a tile's embedding, ``encode(None)`` the overview's (the whole
        image). It may read them from a store on disk.
    max_bytes : int
        Memory bound of the tiles held; the least recently used are dropped (and encoded or
        read again when needed). The overview is always kept.

    Notes
    -----
    Thread-safe: a tile is encoded once whichever threads ask for it, and a thread asking for a
    tile in memory never waits for another tile's encode.
    """

    def __init__(
        self, layout: TileLayout, encode: TileEncoder, *, max_bytes: int = DEFAULT_TILE_BYTES
    ) -> None:
        self.layout = layout
        self._encode = encode
        self.max_bytes = int(max_bytes)
        self._tiles: OrderedDict[int, ImageEmbedding] = OrderedDict()
        self._overview: ImageEmbedding | None = None
        self._pending: dict[int | None, threading.Event] = {}  # being encoded, by some thread
        self._lock = threading.Lock()
        self.encodes = 0  # tiles and overviews encoded (or read) so far

    @property
    def image_hw(self) -> tuple[int, int]:
        """Height and width of the whole image."""
        return self.layout.image_hw

    @property
    def tiles(self) -> tuple[Tile, ...]:
        """The layout's tiles."""
        return self.layout.tiles

    @property
    def nbytes(self) -> int:
        """Memory held by the tiles and overview in memory, in bytes."""
        with self._lock:
            held = list(self._tiles.values())
            if self._overview is not None:
                held.append(self._overview)
        return sum(e.nbytes for e in held)

    @property
    def encoded(self) -> list[int]:
        """Indices of the tiles held in memory."""
        with self._lock:
            return sorted(self._tiles)

    def __repr__(self) -> str:
        return f"TiledEmbedding({self.layout!r}, {len(self._tiles)} tiles in memory)"

    def is_encoded(self, index: int | None) -> bool:
        """Whether tile ``index`` (None: the overview) is in memory."""
        with self._lock:
            return self._overview is not None if index is None else index in self._tiles

    def tile(self, index: int) -> ImageEmbedding:
        """Tile ``index``'s embedding (encoded now when not in memory)."""
        return self._get(index)

    def overview(self) -> ImageEmbedding:
        """The whole image's embedding (encoded now when not in memory)."""
        return self._get(None)

    def _get(self, index: int | None) -> ImageEmbedding:
        # The lock guards the bookkeeping only: a thread that finds a tile in memory never
        # waits for another thread's encode (seconds on a CPU) of another tile; a thread that
        # wants the tile being encoded waits for that encode instead of repeating it.
        while True:
            with self._lock:
                found = self._overview if index is None else self._tiles.get(index)
                if found is not None:
                    if index is not None:
                        self._tiles.move_to_end(index)
                    return found
                pending = self._pending.get(index)
                mine = pending is None
                if mine:
                    pending = self._pending[index] = threading.Event()
            if not mine:
                pending.wait()
                continue  # encoded meanwhile (or failed there: try here)
            try:
                embedding = self._encode(None if index is None else self.layout.tiles[index])
                with self._lock:
                    self.encodes += 1
                    if index is None:
                        self._overview = embedding
                    else:
                        self._tiles[index] = embedding
                        self._trim()
                return embedding
            finally:
                with self._lock:
                    self._pending.pop(index).set()

    def _trim(self) -> None:
        held = sum(e.nbytes for e in self._tiles.values())
        while len(self._tiles) > 1 and held > self.max_bytes:
            _, dropped = self._tiles.popitem(last=False)
            held -= dropped.nbytes

    def encode_all(
        self,
        *,
        tiles: Sequence[int] | None = None,
        overview: bool = True,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        """Encode every tile (and the overview) now; with a store, they are all written.

        Parameters
        ----------
        tiles : sequence of int, optional
            Only these tiles (default: all).
        overview : bool
            Also encode the overview.
        progress : callable, optional
            ``progress(done, total)`` after each.
        cancelled : callable, optional
            Polled before each; when it returns True, the rest is left for later (no error).
        """
        parts: list[int | None] = list(range(len(self.layout)) if tiles is None else tiles)
        if overview:
            parts.append(None)
        total = len(parts)
        if progress is not None:
            progress(0, total)
        for done, index in enumerate(parts, start=1):
            if cancelled is not None and cancelled():
                return
            if index is None:
                self.overview()
            else:
                self.tile(index)
            if progress is not None:
                progress(done, total)

    # -- routing ----------------------------------------------------------------------------------
    def window_for(
        self, point_coords: Any = None, point_labels: Any = None, box: Any = None
    ) -> Tile | None:
        """The tile that decodes this prompt set (None: the overview). PromptError if malformed.

        For one prompt set (unbatched), as :meth:`Sam2Predictor.predict
        <napari_sam2_webgpu.image.predictor.Sam2Predictor.predict>` takes it.
        """
        coords, _, batched = check_prompts(point_coords, point_labels, box, self.image_hw)
        if batched:
            raise PromptError("window_for() takes one prompt set.")
        return self.layout.choose(prompt_extent(coords[0]))

    def ready_for(
        self, point_coords: Any = None, point_labels: Any = None, box: Any = None
    ) -> bool:
        """Whether this prompt set decodes without encoding anything (False if malformed)."""
        try:
            tile = self.window_for(point_coords, point_labels, box)
        except PromptError:
            return True  # it fails at once, without encoding
        return self.is_encoded(None if tile is None else tile.index)


@dataclass
class RoutedDecode:
    """One prompt set's decode: the tile that decoded it (None: the overview) and its
    window-sized masks (or logits), scores and low-res logits."""

    tile: Tile | None
    masks: np.ndarray  # (K, h, w) bool or float logits
    scores: np.ndarray  # (K,)
    low_res: np.ndarray  # (K, 256, 256)


def _sets(
    point_coords: Any, point_labels: Any, box: Any, image_hw: tuple[int, int]
) -> tuple[list[tuple[Any, Any, Any]], bool]:
    """The prompt sets one by one (validated on the whole image), and whether batched."""
    _, _, batched = check_prompts(point_coords, point_labels, box, image_hw)
    if not batched:
        return [(point_coords, point_labels, box)], False
    points = None if point_coords is None else np.asarray(point_coords, dtype=np.float64)
    labels = None if point_labels is None else np.asarray(point_labels)
    boxes = None if box is None else np.asarray(box, dtype=np.float64)
    count = len(points) if points is not None else len(boxes)
    return [
        (
            None if points is None else points[i],
            None if labels is None else labels[i],
            None if boxes is None else boxes[i],
        )
        for i in range(count)
    ], True


def to_window(points: Any, box: Any, tile: Tile | None) -> tuple[Any, Any]:
    """Points ``(N, 2)`` and a box ``(4,)`` in image pixels -> in ``tile``'s window's pixels
    (``tile`` None: unchanged)."""
    if tile is None:
        return points, box
    x0, y0 = tile.box[:2]
    shift = np.array([x0, y0], dtype=np.float64)
    moved_points = None if points is None else np.asarray(points, dtype=np.float64) - shift
    moved_box = None if box is None else np.asarray(box, dtype=np.float64) - np.tile(shift, 2)
    return moved_points, moved_box


def paste(parts: np.ndarray, tile: Tile | None, image_hw: tuple[int, int]) -> np.ndarray:
    """Window-sized ``(K, h, w)`` masks or logits into image-sized ones (``tile`` None: the
    overview's, already image-sized). Logits outside the window are ``-LOGIT_CLAMP``."""
    if tile is None:
        return parts
    fill = False if parts.dtype == bool else -LOGIT_CLAMP
    out = np.full((parts.shape[0], *image_hw), fill, dtype=parts.dtype)
    rows, cols = tile.slices
    out[:, rows, cols] = parts
    return out


def decode_tiled(
    decode_window: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]],
    tiled: TiledEmbedding,
    point_coords: Any,
    point_labels: Any,
    box: Any,
    mask_input: Any,
    *,
    single: bool = False,
) -> tuple[list[RoutedDecode], bool]:
    """Decode each prompt set in its window: ``decode_window(embedding, points, labels, box,
    mask_input)`` returns window-sized masks, scores and low-res logits of one set.
    ``single``: PromptError for batched prompts (before anything is encoded)."""
    sets, batched = _sets(point_coords, point_labels, box, tiled.image_hw)
    if single and batched:
        raise PromptError("predict_best() takes one prompt set; use predict() for batches.")
    masks_in = None if mask_input is None else np.asarray(mask_input, dtype=np.float32)
    routed = []
    for i, (points, labels, set_box) in enumerate(sets):
        coords, _, _ = check_prompts(points, labels, set_box, tiled.image_hw)
        tile = tiled.layout.choose(prompt_extent(coords[0]))
        embedding = tiled.overview() if tile is None else tiled.tile(tile.index)
        moved_points, moved_box = to_window(points, set_box, tile)
        one_mask = None
        if masks_in is not None:
            one_mask = masks_in[i] if batched and masks_in.ndim == 4 else masks_in
        masks, scores, low_res = decode_window(embedding, moved_points, labels, moved_box, one_mask)
        routed.append(RoutedDecode(tile, masks, scores, low_res))
    return routed, batched


def assemble(
    routed: list[RoutedDecode], batched: bool, image_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``predict``'s outputs from routed decodes: image-sized masks, scores, low-res logits."""
    masks = [paste(r.masks, r.tile, image_hw) for r in routed]
    scores = [r.scores for r in routed]
    low_res = [r.low_res for r in routed]
    if not batched:
        return masks[0], scores[0], low_res[0]
    return np.stack(masks), np.stack(scores), np.stack(low_res)


# -- making a tiled embedding ---------------------------------------------------------------------
class TileStore(Protocol):
    """Where a :class:`TiledEmbedding` reads and writes its tiles (e.g. one frame of an
    :class:`~napari_sam2_webgpu.store.EmbeddingStore`, :meth:`~napari_sam2_webgpu.store.
    EmbeddingStore.frame_tiles`). ``tile`` is a tile index, or None for the overview."""

    def get(self, tile: int | None) -> ImageEmbedding | None:
        """The stored embedding, or None."""

    def put(self, tile: int | None, embedding: ImageEmbedding) -> None:
        """Store an embedding (never raises: a store that cannot be written is skipped)."""


def _plain(image: Any) -> Any:
    """The image without an alpha channel (lazily for dask/zarr arrays)."""
    return image[..., :3] if image.ndim == 3 and image.shape[-1] == 4 else image


def whole_image_window(
    image: Any, contrast_limits: Sequence[float] | None = None, rgb: bool | None = None
) -> tuple[tuple[int, int], tuple[float, float]]:
    """Validate an image (numpy, dask or zarr) without reading it whole, and find the
    intensity window every tile is encoded with.

    Returns
    -------
    image_hw : (int, int)
    limits : (float, float)
        ``contrast_limits``, or the whole image's default window
        (:func:`~.preprocess.intensity_range`, from a strided sample of at most about 2048²
        pixels, as for an image encoded whole).

    Raises
    ------
    ImageError
        As :func:`~.preprocess.check_image` and :func:`~.preprocess.intensity_range`.
    """
    shape, dtype = tuple(getattr(image, "shape", ())), getattr(image, "dtype", None)
    if dtype is None or len(shape) not in (2, 3):
        check_image(np.asarray(image), rgb=rgb)  # the specific message
    # Validate dtype and dimensions on a stand-in: the pixels are read below, a sample only.
    check_image(np.zeros((MIN_SIDE, MIN_SIDE, *shape[2:]), dtype=dtype), rgb=rgb)
    height, width = int(shape[0]), int(shape[1])
    if min(height, width) < MIN_SIDE:
        check_image(np.zeros((height, width, *shape[2:]), dtype=dtype), rgb=rgb)
    plain = _plain(image)
    if contrast_limits is not None:
        return (height, width), intensity_range(np.zeros((1, 1), dtype), contrast_limits)
    step_y, step_x = max(1, height // 2048), max(1, width // 2048)
    sample = np.asarray(plain[::step_y, ::step_x])
    if sample.dtype.kind == "f" and not np.any(np.isfinite(sample)):
        raise ImageError("The image has no finite value (all NaN or infinite).")
    return (height, width), intensity_range(sample)


def _overview_pixels(image: Any) -> np.ndarray:
    """The whole image for the overview: as is for numpy, a strided sample of lazy arrays
    (at least twice the model's resolution, so never read whole)."""
    if isinstance(image, np.ndarray):
        return image
    height, width = image.shape[:2]
    step = max(1, max(height, width) // (2 * MODEL_SIZE))
    return np.asarray(image[::step, ::step])


def tiled_embedding(
    encode: Callable[..., ImageEmbedding],
    image: Any,
    *,
    contrast_limits: Sequence[float] | None = None,
    rgb: bool | None = None,
    spec: TileSpec | None = None,
    store: TileStore | None = None,
    adopt: Callable[[ImageEmbedding], ImageEmbedding] | None = None,
    max_bytes: int = DEFAULT_TILE_BYTES,
    overview: Any = None,
) -> TiledEmbedding:
    """A lazily encoded :class:`TiledEmbedding` of ``image``.

    Parameters
    ----------
    encode : callable
        ``encode(pixels, contrast_limits=..., rgb=...)`` -> :class:`~.encoder.ImageEmbedding`
        (``Sam2Predictor.compute_embedding``).
    image : array-like
        ``(H, W)`` or ``(H, W, C)``; numpy, dask or zarr (only the windows encoded are read).
    contrast_limits, rgb
        As for encoding a whole image; the same window is used for every tile.
    spec : TileSpec, optional
        Tile size and halo (default :class:`TileSpec()`).
    store : TileStore, optional
        Tiles are read from it when there, and written to it when encoded.
    adopt : callable, optional
        Applied to embeddings read from ``store`` (e.g. to upload them to the GPU).
    max_bytes : int
        Memory bound of the tiles held.
    overview : array-like, optional
        The whole image at a lower resolution for the overview (e.g. a coarser level of a
        multiscale pyramid); default: ``image`` itself (numpy), or a strided sample of it.
    """
    spec = spec or TileSpec()
    image_hw, limits = whole_image_window(image, contrast_limits, rgb)
    layout = spec.layout(image_hw)

    def encode_tile(tile: Tile | None) -> ImageEmbedding:
        index = None if tile is None else tile.index
        if store is not None:
            stored = store.get(index)
            if stored is not None:
                return stored if adopt is None else adopt(stored)
        if tile is None:
            pixels = _overview_pixels(image if overview is None else overview)
            embedding = encode(pixels, contrast_limits=limits, rgb=rgb)
            # A sampled overview still describes the whole image: masks come back full size.
            embedding = replace(embedding, image_hw=image_hw)
        else:
            embedding = encode(np.asarray(image[tile.slices]), contrast_limits=limits, rgb=rgb)
        if store is not None:
            store.put(index, embedding)
        return embedding

    return TiledEmbedding(layout, encode_tile, max_bytes=max_bytes)
