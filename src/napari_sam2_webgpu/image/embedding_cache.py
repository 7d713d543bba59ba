"""A least-recently-used cache of image embeddings, bounded by memory.

Encoding is the slow step of SAM2 (seconds on a CPU), decoding the fast one (tens of
milliseconds), so the napari widget keeps the embeddings of the slices it has encoded: stepping
back to a slice of a z-stack or time series reuses its embedding instead of encoding again.

An embedding of the SAM2.1 models is about 16 MiB (``image_embed`` 4 MiB, ``high_res_feats_0``
8 MiB, ``high_res_feats_1`` 4 MiB, float32), so the default bound of 1 GiB keeps 64 slices.
When a new embedding does not fit, the least recently used ones are dropped.

The cache is pure Python (no Qt, no napari) and thread-safe: the widget stores embeddings from
its worker thread and reads them from the GUI thread.

>>> cache = EmbeddingCache(max_bytes=512 * 2**20)
>>> key = EmbeddingKey("layer-uuid", ((0, 12),), (0.0, 255.0), "sam2.1 tiny")
>>> cache.put(key, embedding)          # doctest: +SKIP
>>> cache.get(key) is embedding        # doctest: +SKIP
True
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # pragma: no cover
    from .encoder import ImageEmbedding

__all__ = ["DEFAULT_MAX_BYTES", "ENV_CACHE_BYTES", "EmbeddingCache", "EmbeddingKey"]

#: Default memory bound: 1 GiB, about 64 SAM2.1 embeddings.
DEFAULT_MAX_BYTES = 1 << 30
#: Environment variable overriding the default bound, in MiB (e.g. ``4096``).
ENV_CACHE_BYTES = "NAPARI_SAM2_WEBGPU_EMBEDDING_CACHE_MB"


class EmbeddingKey(NamedTuple):
    """What an embedding depends on.

    Attributes
    ----------
    layer_id : hashable
        The image layer (napari's ``layer.unique_id``).
    slice_key : tuple
        The displayed 2D slice: ``((axis, index), ...)`` of the axes not displayed, plus the
        displayed axes (see :class:`napari_sam2_webgpu._napari.slices.SliceInfo`).
    contrast_limits : (float, float) or None
        The intensities mapped to black and white when the slice was encoded.
    model : str
        The model (name and file) that encoded it.
    """

    layer_id: Hashable
    slice_key: tuple
    contrast_limits: tuple[float, float] | None
    model: str


def _default_max_bytes() -> int:
    value = os.environ.get(ENV_CACHE_BYTES, "").strip()
    if not value:
        return DEFAULT_MAX_BYTES
    try:
        return max(0, int(float(value) * (1 << 20)))
    except ValueError:
        return DEFAULT_MAX_BYTES


def _nbytes(embedding: object) -> int:
    return int(getattr(embedding, "nbytes", 0))


class EmbeddingCache:
    """Least-recently-used mapping of :class:`EmbeddingKey` to ``ImageEmbedding``.

    Parameters
    ----------
    max_bytes : int, optional
        Upper bound of the memory held (the sum of the embeddings' ``nbytes``). Defaults to
        :data:`DEFAULT_MAX_BYTES`, or :data:`ENV_CACHE_BYTES` (MiB) when set. ``0`` disables
        caching.

    Attributes
    ----------
    hits, misses : int
        Counts of :meth:`get` calls that found, or did not find, their key.
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        self._lock = threading.RLock()
        self._items: OrderedDict[EmbeddingKey, ImageEmbedding] = OrderedDict()
        self._sizes: dict[EmbeddingKey, int] = {}  # as measured when stored (or refreshed)
        self._nbytes = 0
        self._max_bytes = _default_max_bytes() if max_bytes is None else self._check(max_bytes)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _check(max_bytes: int) -> int:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a non-negative int, got {max_bytes!r}")
        return max_bytes

    # -- size ----------------------------------------------------------------------------------
    @property
    def max_bytes(self) -> int:
        """The memory bound; lowering it drops least recently used embeddings at once."""
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        with self._lock:
            self._max_bytes = self._check(value)
            self._evict(0)

    @property
    def nbytes(self) -> int:
        """Memory held by the cached embeddings, in bytes."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def __iter__(self) -> Iterator[EmbeddingKey]:
        return iter(self.keys())

    def keys(self) -> list[EmbeddingKey]:
        """Keys from least to most recently used."""
        with self._lock:
            return list(self._items)

    def __repr__(self) -> str:
        return (
            f"EmbeddingCache({len(self)} embeddings, {self._nbytes / 2**20:.1f} of "
            f"{self._max_bytes / 2**20:.0f} MiB)"
        )

    # -- access --------------------------------------------------------------------------------
    def get(self, key: EmbeddingKey) -> ImageEmbedding | None:
        """The embedding stored under ``key`` (now the most recently used), or None."""
        with self._lock:
            embedding = self._items.get(key)
            if embedding is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return embedding

    def peek(self, key: EmbeddingKey) -> ImageEmbedding | None:
        """Like :meth:`get`, without changing the order or the counters."""
        with self._lock:
            return self._items.get(key)

    def put(self, key: EmbeddingKey, embedding: ImageEmbedding) -> bool:
        """Store an embedding, dropping least recently used ones until it fits.

        Returns
        -------
        bool
            False when the embedding alone is larger than :attr:`max_bytes` (it is not stored,
            and nothing else is dropped for it).
        """
        size = _nbytes(embedding)
        with self._lock:
            self._forget(key)
            if size > self._max_bytes:
                return False
            self._evict(size)
            self._items[key] = embedding
            self._sizes[key] = size
            self._nbytes += size
            return True

    def refresh(self, key: EmbeddingKey) -> None:
        """Measure ``key``'s embedding again: a tiled embedding grows as its tiles are encoded.

        Least recently used others are dropped if it no longer fits with them (it stays, as
        the most recently used, even when it alone exceeds the bound: it is in use).
        """
        with self._lock:
            embedding = self._items.get(key)
            if embedding is None:
                return
            size = _nbytes(embedding)
            self._nbytes += size - self._sizes[key]
            self._sizes[key] = size
            self._items.move_to_end(key)
            while len(self._items) > 1 and self._nbytes > self._max_bytes:
                oldest = next(iter(self._items))
                self._forget(oldest)

    def _forget(self, key: EmbeddingKey) -> None:
        if self._items.pop(key, None) is not None:
            self._nbytes -= self._sizes.pop(key)

    def _evict(self, room: int) -> None:
        """Drop least recently used items until ``room`` more bytes fit."""
        while self._items and self._nbytes + room > self._max_bytes:
            self._forget(next(iter(self._items)))

    def discard(self, key: EmbeddingKey) -> None:
        """Forget one key (no error when absent)."""
        with self._lock:
            self._forget(key)

    def drop(self, predicate: Callable[[EmbeddingKey], bool]) -> int:
        """Forget every key for which ``predicate(key)`` is true; returns how many."""
        with self._lock:
            doomed = [k for k in self._items if predicate(k)]
            for key in doomed:
                self.discard(key)
            return len(doomed)

    def drop_layer(self, layer_id: Hashable) -> int:
        """Forget the embeddings of one image layer (removed, or its data changed)."""
        return self.drop(lambda k: k.layer_id == layer_id)

    def clear(self) -> None:
        """Forget everything (the hit and miss counters are kept)."""
        with self._lock:
            self._items.clear()
            self._sizes.clear()
            self._nbytes = 0
