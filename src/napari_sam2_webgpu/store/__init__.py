"""Image embeddings on disk (zarr): encode a stack once, annotate it any number of times.

- :class:`EmbeddingStore`: one stack's embeddings for one model and preprocessing.
- :class:`StoreIdentity`: what stored embeddings depend on; a mismatch is refused.
- :func:`encoder_checksum`: the model's identity in a store.
- :func:`open_stack_store`, :func:`precompute_embeddings`: a stack's store, filled (resumable).

The command ``napari-sam2-webgpu embed STACK --out STACK.sam2.zarr`` fills a store.
Importing this package is cheap (``zarr`` is imported when a store is opened).
"""

from __future__ import annotations

from .embeddings import (
    FORMAT,
    FORMAT_VERSION,
    PREPROCESSING_VERSION,
    STORAGE_DTYPES,
    EmbeddingStore,
    StoreError,
    StoreIdentity,
    StoreMismatchError,
    StoreUnavailableError,
    encoder_checksum,
)
from .precompute import PrecomputeReport, open_stack_store, precompute_embeddings, stack_layout

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "PREPROCESSING_VERSION",
    "STORAGE_DTYPES",
    "EmbeddingStore",
    "PrecomputeReport",
    "StoreError",
    "StoreIdentity",
    "StoreMismatchError",
    "StoreUnavailableError",
    "encoder_checksum",
    "open_stack_store",
    "precompute_embeddings",
    "stack_layout",
]
