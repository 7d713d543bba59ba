"""Tests of embedding_cache.py: LRU order, the byte bound, keys, thread safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_sam2_webgpu.image.embedding_cache import (
    DEFAULT_MAX_BYTES,
    ENV_CACHE_BYTES,
    EmbeddingCache,
    EmbeddingKey,
)
from napari_sam2_webgpu.image.encoder import ImageEmbedding


def fake(nbytes: int) -> ImageEmbedding:
    """An ImageEmbedding holding exactly ``nbytes`` (multiple of 12) bytes."""
    n = nbytes // 12
    return ImageEmbedding(
        np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32), (8, 8)
    )


def key(z: int, layer: str = "layer", contrast=(0.0, 255.0), model: str = "m") -> EmbeddingKey:
    return EmbeddingKey(layer, (((0, z),), (1, 2)), contrast, model)


def test_get_put_and_counters():
    cache = EmbeddingCache(max_bytes=1200)
    emb = fake(120)
    assert cache.get(key(0)) is None
    assert cache.put(key(0), emb)
    assert cache.get(key(0)) is emb
    assert key(0) in cache and len(cache) == 1 and cache.nbytes == 120
    assert (cache.hits, cache.misses) == (1, 1)
    assert "1 embeddings" in repr(cache)


def test_key_fields_distinguish_entries():
    cache = EmbeddingCache(max_bytes=10_000)
    variants = [
        key(0),
        key(1),
        key(0, layer="other"),
        key(0, contrast=(0.0, 100.0)),
        key(0, contrast=None),
        key(0, model="large"),
    ]
    for i, k in enumerate(variants):
        cache.put(k, fake(12 * (i + 1)))
    assert len(cache) == len(variants)
    assert [cache.peek(k).nbytes for k in variants] == [12 * (i + 1) for i in range(6)]


def test_least_recently_used_is_dropped_first():
    cache = EmbeddingCache(max_bytes=360)  # three embeddings of 120 bytes
    for z in range(3):
        cache.put(key(z), fake(120))
    cache.get(key(0))  # 0 becomes the most recent: 1 is now the oldest
    cache.put(key(3), fake(120))
    assert key(1) not in cache
    assert cache.keys() == [key(2), key(0), key(3)]
    assert cache.nbytes == 360


def test_peek_does_not_touch_order():
    cache = EmbeddingCache(max_bytes=240)
    cache.put(key(0), fake(120))
    cache.put(key(1), fake(120))
    assert cache.peek(key(0)) is not None
    cache.put(key(2), fake(120))
    assert key(0) not in cache and key(1) in cache
    assert (cache.hits, cache.misses) == (0, 0)


def test_bounded_memory_while_stepping_through_a_stack():
    cache = EmbeddingCache(max_bytes=5 * 1200)
    for z in range(50):
        cache.put(key(z), fake(1200))
        assert cache.nbytes <= cache.max_bytes
    assert len(cache) == 5
    assert cache.keys() == [key(z) for z in range(45, 50)]


def test_replacing_a_key_updates_the_size():
    cache = EmbeddingCache(max_bytes=1000)
    cache.put(key(0), fake(120))
    cache.put(key(0), fake(240))
    assert len(cache) == 1 and cache.nbytes == 240


def test_too_large_is_not_stored_and_evicts_nothing():
    cache = EmbeddingCache(max_bytes=240)
    cache.put(key(0), fake(120))
    assert not cache.put(key(1), fake(360))
    assert key(1) not in cache and key(0) in cache


def test_zero_disables_caching():
    cache = EmbeddingCache(max_bytes=0)
    assert not cache.put(key(0), fake(12))
    assert len(cache) == 0


def test_lowering_max_bytes_evicts():
    cache = EmbeddingCache(max_bytes=1200)
    for z in range(10):
        cache.put(key(z), fake(120))
    cache.max_bytes = 360
    assert cache.keys() == [key(7), key(8), key(9)]
    with pytest.raises(ValueError):
        cache.max_bytes = -1
    with pytest.raises(ValueError):
        EmbeddingCache(max_bytes=1.5)


def test_drop_layer_discard_clear():
    cache = EmbeddingCache(max_bytes=10_000)
    for z in range(3):
        cache.put(key(z, layer="a"), fake(12))
        cache.put(key(z, layer="b"), fake(12))
    assert cache.drop_layer("a") == 3
    assert all(k.layer_id == "b" for k in cache)
    cache.discard(key(0, layer="b"))
    cache.discard(key(0, layer="b"))  # absent: no error
    assert len(cache) == 2 and cache.nbytes == 24
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0


def test_default_bound_and_environment(monkeypatch):
    monkeypatch.delenv(ENV_CACHE_BYTES, raising=False)
    assert EmbeddingCache().max_bytes == DEFAULT_MAX_BYTES
    monkeypatch.setenv(ENV_CACHE_BYTES, "64")
    assert EmbeddingCache().max_bytes == 64 << 20
    monkeypatch.setenv(ENV_CACHE_BYTES, "lots")
    assert EmbeddingCache().max_bytes == DEFAULT_MAX_BYTES


def test_real_embedding_size(micro_predictor):
    """A SAM2.1 embedding is 16 MiB: the default bound keeps 64 slices."""
    emb = micro_predictor.compute_embedding(np.zeros((64, 64), np.uint8))
    assert emb.nbytes == 16 << 20
    assert DEFAULT_MAX_BYTES // emb.nbytes == 64


def test_thread_safety():
    cache = EmbeddingCache(max_bytes=100 * 120)
    errors = []

    def worker(offset: int) -> None:
        try:
            for z in range(500):
                cache.put(key(offset * 1000 + z), fake(120))
                cache.get(key(offset * 1000 + z // 2))
        except Exception as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cache) == 100 and cache.nbytes == 100 * 120


class Growing:
    """An embedding that grows after it is cached (a tiled one encoding its tiles)."""

    def __init__(self, nbytes):
        self.nbytes = nbytes


def test_refresh_measures_an_embedding_that_grew():
    cache = EmbeddingCache(max_bytes=1000)
    grows = Growing(0)
    cache.put(key(0), fake(120))
    cache.put(key(1), fake(120))
    cache.put(key(2), grows)
    assert cache.nbytes == 240
    grows.nbytes = 600
    cache.refresh(key(2))
    assert cache.nbytes == 840 and len(cache) == 3
    grows.nbytes = 850  # no longer fits with the others: the least recently used go first
    cache.refresh(key(2))
    assert cache.keys() == [key(1), key(2)] and cache.nbytes == 970
    grows.nbytes = 2000  # alone over the bound: kept (it is in use), the rest dropped
    cache.refresh(key(2))
    assert cache.keys() == [key(2)] and cache.nbytes == 2000
    cache.discard(key(2))  # the size recorded is what is taken off, whatever it is now
    assert cache.nbytes == 0 and len(cache) == 0
    cache.refresh(key(5))  # absent: nothing happens
