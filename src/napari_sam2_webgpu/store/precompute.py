"""Encode every frame of a stack into an :class:`~.embeddings.EmbeddingStore` (resumable).

What ``napari-sam2-webgpu embed`` runs: frames already in the store are skipped, a frame that
cannot be encoded (no finite value, ...) is reported and the others go on, and a cancel keeps
what was written. A tiled store (``open_stack_store(..., tiles=TileSpec())``) gets every tile
and the overview of each frame; a frame cut off midway keeps its stored tiles.

The stack may be a numpy, dask or zarr array: frames (and, tiled, tile windows) are read one at
a time, never the whole stack.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .embeddings import EmbeddingStore, StoreIdentity, encoder_checksum

if TYPE_CHECKING:  # pragma: no cover
    from ..image.predictor import Sam2Predictor
    from ..image.tiling import TileSpec

__all__ = [
    "PrecomputeReport",
    "StackFrames",
    "open_stack_store",
    "precompute_embeddings",
    "stack_layout",
]

#: ``progress(done, total)``: called once before the first frame and after each one.
ProgressCallback = Callable[[int, int], None]


def stack_layout(image: np.ndarray) -> tuple[tuple[int, ...], bool]:
    """The stack's leading axes and whether its frames are colour.

    The rule of the CLI: 2D is one grey frame; 3D with a last axis of 1, 3 or 4 is one colour
    frame, else a stack of grey frames; 4D is a stack of colour frames.

    Raises
    ------
    ValueError
        Fewer than 2 or more than 4 axes.
    """
    if image.ndim == 2:
        return (), False
    if image.ndim == 3:
        if image.shape[-1] in (1, 3, 4):
            return (), True
        return (int(image.shape[0]),), False
    if image.ndim == 4:
        return (int(image.shape[0]),), True
    raise ValueError(f"expected an image or a stack of 2 to 4 axes, got shape {tuple(image.shape)}")


class StackFrames(Sequence):
    """The 2D frames of a stack, flat in C order, read one at a time (numpy views, or lazy
    dask/zarr slices).

    Parameters
    ----------
    image : array-like
        The stack (numpy, dask, zarr).
    leading : tuple of int
        Its leading (frame) axes, from :func:`stack_layout`.
    """

    def __init__(self, image: Any, leading: tuple[int, ...]) -> None:
        self.image = image
        self.leading = tuple(leading)

    def __len__(self) -> int:
        return int(np.prod(self.leading, dtype=np.int64)) if self.leading else 1

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        if not self.leading:
            return self.image
        return self.image[tuple(int(i) for i in np.unravel_index(index, self.leading))]


def open_stack_store(
    path: str,
    predictor: Sam2Predictor,
    image: Any,
    *,
    contrast_limits: tuple[float, float] | None = None,
    dtype: str = "float32",
    mode: str = "a",
    tiles: TileSpec | None = None,
) -> EmbeddingStore:
    """The store at ``path`` for ``image`` encoded by ``predictor``'s encoder.

    Parameters are those of :meth:`.EmbeddingStore.open`; the identity is made from the
    predictor's encoder file (checksum), the stack's layout, ``contrast_limits`` and ``tiles``
    (each frame encoded as these tiles and an overview; None: frames encoded whole).
    """
    leading, rgb = stack_layout(image)
    height, width = image.shape[len(leading) : len(leading) + 2]
    identity = StoreIdentity(
        model=predictor.name,
        encoder_sha256=encoder_checksum(predictor.encoder_path),
        frames=leading,
        image_hw=(int(height), int(width)),
        contrast_limits=None if contrast_limits is None else tuple(contrast_limits),
        rgb=rgb,
        tiles="none" if tiles is None else tiles.describe(),
    )
    return EmbeddingStore.open(path, identity, dtype=dtype, mode=mode)


@dataclass
class PrecomputeReport:
    """What :func:`precompute_embeddings` did.

    Attributes
    ----------
    computed : list of int
        Frames encoded and stored now (tiled: frames completed now).
    skipped : list of int
        Frames the store already had.
    failed : list of (int, str)
        Frames that could not be encoded, with the reason.
    cancelled : bool
        Whether it stopped early.
    seconds : float
        Wall time.
    """

    computed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No frame failed."""
        return not self.failed


def precompute_embeddings(
    predictor: Sam2Predictor,
    image: Any,
    store: EmbeddingStore,
    *,
    contrast_limits: tuple[float, float] | None = None,
    progress: ProgressCallback | None = None,
    cancelled: Callable[[], bool] | threading.Event | None = None,
) -> PrecomputeReport:
    """Encode the frames of ``image`` that ``store`` lacks, and store them.

    Parameters
    ----------
    predictor : Sam2Predictor
        Its encoder must be the store's (see :func:`open_stack_store`).
    image : array-like
        The image or stack, of the store's shape (its frames and colour axis as the store
        records them, e.g. from :func:`open_stack_store`). numpy, dask or zarr: read frame by
        frame (tile by tile for a tiled store).
    store : EmbeddingStore
    contrast_limits : (float, float), optional
        As recorded in the store.
    progress : callable, optional
        ``progress(done, total)`` in frames, or in tiles (overviews included) for a tiled
        store.
    cancelled : callable or threading.Event, optional
        Polled before each frame (tiled: each tile); when it says so, the run stops (what was
        stored stays).

    Returns
    -------
    PrecomputeReport
    """
    from ..image.preprocess import ImageError

    start = time.perf_counter()
    # The store's own layout: a napari layer's colour axis is known, not guessed.
    leading, rgb = tuple(store.identity.frames), bool(store.identity.rgb)
    shape = tuple(int(v) for v in image.shape)
    if shape[: len(leading) + 2] != (*leading, *store.identity.image_hw):
        raise ValueError(
            f"the store is for frames {leading} of {store.identity.image_hw}, the stack has "
            f"shape {shape}"
        )
    frames = StackFrames(image, leading)
    report = PrecomputeReport()
    done = set(store.done_frames())
    entries = store.identity.entries_per_frame
    total = len(frames) * entries
    if progress is not None:
        progress(0, total)
    stop = cancelled.is_set if isinstance(cancelled, threading.Event) else cancelled
    for index in range(len(frames)):
        if index in done:
            report.skipped.append(index)
        elif stop is not None and stop():
            report.cancelled = True
            break
        else:
            try:
                if entries == 1:
                    computed = _encode_frame(
                        predictor, frames[index], store, index, rgb, contrast_limits
                    )
                else:

                    def tile_progress(tiles_done: int, _: int, index: int = index) -> None:
                        if progress is not None:
                            progress(index * entries + tiles_done, total)

                    computed = _encode_tiles(
                        predictor,
                        frames[index],
                        store,
                        index,
                        rgb,
                        contrast_limits,
                        tile_progress,
                        stop,
                    )
                    if stop is not None and stop() and index not in store:
                        report.cancelled = True
                        break
            except ImageError as exc:
                report.failed.append((index, str(exc)))
            else:
                (report.computed if computed else report.skipped).append(index)
        if progress is not None:
            progress((index + 1) * entries, total)
    report.seconds = time.perf_counter() - start
    return report


def _encode_frame(
    predictor: Sam2Predictor,
    frame: Any,
    store: EmbeddingStore,
    index: int,
    rgb: bool,
    contrast_limits: tuple[float, float] | None,
) -> bool:
    """Encode one whole frame into the store; False when another writer stored it first."""
    embedding = predictor.compute_embedding(
        np.asarray(frame), contrast_limits=contrast_limits, rgb=rgb
    )
    return store.put(index, embedding)


def _encode_tiles(
    predictor: Sam2Predictor,
    frame: Any,
    store: EmbeddingStore,
    index: int,
    rgb: bool,
    contrast_limits: tuple[float, float] | None,
    progress: ProgressCallback,
    stop: Callable[[], bool] | None,
) -> bool:
    """Encode a frame's missing tiles and overview into the store (one tile in memory at a
    time); whether anything was encoded."""
    from ..image.tiling import TileSpec

    tiled = predictor.compute_tiled_embedding(
        frame,
        contrast_limits=contrast_limits,
        rgb=rgb,
        spec=TileSpec.parse(store.identity.tiles),
        store=store.frame_tiles(index),
        max_bytes=0,
    )
    missing = [t for t in range(len(tiled.layout)) if not store.has(index, t)]
    overview = not store.has(index, None)
    tiled.encode_all(tiles=missing, overview=overview, progress=progress, cancelled=stop)
    return bool(missing) or overview
