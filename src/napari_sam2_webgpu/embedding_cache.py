"""Kept for compatibility: these names live in :mod:`napari_sam2_webgpu.image.embedding_cache`."""

from __future__ import annotations

from .image.embedding_cache import (
    DEFAULT_MAX_BYTES,
    ENV_CACHE_BYTES,
    EmbeddingCache,
    EmbeddingKey,
)

__all__ = ["DEFAULT_MAX_BYTES", "ENV_CACHE_BYTES", "EmbeddingCache", "EmbeddingKey"]
