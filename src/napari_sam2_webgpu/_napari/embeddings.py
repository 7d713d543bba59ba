"""Encoding a displayed slice, and finding a slice's embedding in the cache.

An embedding is cached under (layer, slice, contrast limits, model): a click and a propagation
run that need the same slice share one encode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image

from ..image import EmbeddingCache, EmbeddingKey
from .slices import SliceInfo, base_data

if TYPE_CHECKING:  # pragma: no cover
    from ..image import ImageEmbedding, Sam2Predictor

__all__ = ["EncodeRequest", "find_embedding", "model_key"]


def model_key(predictor: Any) -> str:
    """Identity of a loaded model in cache keys (its name and encoder file)."""
    return f"{predictor.name}|{predictor.encoder_path or id(predictor)}"


@dataclass
class EncodeRequest:
    """What an encode needs; :meth:`load` reads the pixels (call it in the worker thread)."""

    layer: Image
    layer_id: Any
    slice: SliceInfo
    contrast_limits: tuple[float, float] | None
    rgb: bool

    def load(self) -> np.ndarray:
        """The slice's pixels as a numpy array (reads dask/zarr data)."""
        return np.asarray(base_data(self.layer)[self.slice.indexer()])

    def compute(self, predictor: Sam2Predictor) -> ImageEmbedding:
        """Read the slice and encode it (slow: seconds on a CPU)."""
        return predictor.compute_embedding(
            self.load(), contrast_limits=self.contrast_limits, rgb=self.rgb
        )

    def key(self, model: str) -> EmbeddingKey:
        """The cache key of the embedding under ``model`` (see :func:`model_key`)."""
        return EmbeddingKey(self.layer_id, self.slice.key, self.contrast_limits, model)


def find_embedding(
    cache: EmbeddingCache, key: EmbeddingKey
) -> tuple[EmbeddingKey, ImageEmbedding] | None:
    """The cached embedding for ``key``, else the newest of the same slice and model.

    The same slice encoded with other contrast limits is still a usable embedding (the exact
    one is preferred). Returns ``(key found, embedding)`` or None.
    """
    candidates = [key] + [
        k
        for k in reversed(cache.keys())
        if k.layer_id == key.layer_id and k.slice_key == key.slice_key and k.model == key.model
    ]
    for candidate in candidates:
        embedding = cache.get(candidate)
        if embedding is not None:
            return candidate, embedding
    return None
