"""The embedding store on disk (store/embeddings.py): round trips, identity, faults."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys

import numpy as np
import pytest

from napari_sam2_webgpu.image.encoder import ImageEmbedding
from napari_sam2_webgpu.store import (
    EmbeddingStore,
    StoreError,
    StoreIdentity,
    StoreMismatchError,
    StoreUnavailableError,
    encoder_checksum,
)

pytest.importorskip("zarr")

HW = (40, 50)


def identity(**changes) -> StoreIdentity:
    base = dict(model="micro", encoder_sha256="ab" * 32, frames=(3, 2), image_hw=HW, rgb=False)
    return StoreIdentity(**{**base, **changes})


def embedding(seed: int) -> ImageEmbedding:
    rng = np.random.default_rng(seed)
    return ImageEmbedding(
        rng.normal(size=(1, 256, 64, 64)).astype(np.float32),
        rng.normal(size=(1, 32, 256, 256)).astype(np.float32),
        rng.normal(size=(1, 64, 128, 128)).astype(np.float32),
        HW,
    )


def _same(a: ImageEmbedding, b: ImageEmbedding) -> None:
    for x, y in zip(a.tensors, b.tensors, strict=True):
        np.testing.assert_array_equal(x, y)


def test_float32_round_trip_is_exact_and_survives_reopening(tmp_path):
    path = tmp_path / "stack.sam2.zarr"
    store = EmbeddingStore.open(path, identity())
    assert store.num_frames == 6 and store.done_frames() == [] and store.dtype == "float32"
    assert store.get(0) is None
    assert store.put((1, 0), embedding(1))
    assert store.put(5, embedding(5))
    assert not store.put(5, embedding(99))  # already stored: not written twice
    assert store.frame_index((1, 0)) == 2 and (1, 0) in store and 2 in store and 3 not in store
    again = EmbeddingStore.open(path, identity(), mode="r")
    assert again.done_frames() == [2, 5]
    _same(again.get((1, 0)), embedding(1))
    _same(again.get(5), embedding(5))
    assert again.get(5).image_hw == HW and not again.get(5).on_device
    assert "2/6 frames" in repr(again)
    with pytest.raises(IndexError):
        again.frame_index(6)


def test_float16_is_within_its_rounding(tmp_path):
    store = EmbeddingStore.open(tmp_path / "half.zarr", identity(), dtype="float16")
    original = embedding(3)
    store.put(0, original)
    got = EmbeddingStore.open(tmp_path / "half.zarr", identity(), mode="r").get(0)
    assert got.image_embed.dtype == np.float32
    for x, y in zip(got.tensors, original.tensors, strict=True):
        # float16 keeps 11 significant bits: relative error at most 2^-11.
        np.testing.assert_allclose(x, y, rtol=2**-11, atol=1e-7)
    size = sum(f.stat().st_size for f in (tmp_path / "half.zarr").rglob("*") if f.is_file())
    assert size < 9 << 20  # 16 MB of float32, halved


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"encoder_sha256": "cd" * 32, "model": "other"}, "the model"),
        ({"frames": (7,)}, "the stack"),
        ({"contrast_limits": (10.0, 200.0)}, "the contrast limits"),
        ({"rgb": True}, "colour"),
        ({"preprocessing": 99}, "preprocessing version"),
        ({"tiles": "tiles 64 halo 16"}, "the tiles"),
    ],
)
def test_another_identity_is_refused_with_the_difference_named(tmp_path, change, words):
    EmbeddingStore.open(tmp_path / "s.zarr", identity()).put(0, embedding(0))
    with pytest.raises(StoreMismatchError, match=words):
        EmbeddingStore.open(tmp_path / "s.zarr", identity(**change))
    # The refused store is untouched, and overwriting it starts over.
    assert EmbeddingStore.open(tmp_path / "s.zarr", identity()).done_frames() == [0]
    fresh = EmbeddingStore.open(tmp_path / "s.zarr", identity(**change), mode="w")
    assert fresh.done_frames() == []


def test_not_a_store_and_other_formats(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "data.txt").write_text("mine")
    with pytest.raises(StoreError, match="not an embedding store"):
        EmbeddingStore.open(tmp_path / "folder", identity())
    with pytest.raises(StoreError, match="not an embedding store"):
        EmbeddingStore.open(tmp_path / "folder", identity(), mode="w")
    assert (tmp_path / "folder" / "data.txt").read_text() == "mine"  # never deleted
    with pytest.raises(FileNotFoundError):
        EmbeddingStore.open(tmp_path / "missing.zarr", identity(), mode="r")
    path = tmp_path / "old.zarr"
    EmbeddingStore.open(path, identity())
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["format_version"] = 0
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="format 0"):
        EmbeddingStore.open(path, identity())
    with pytest.raises(ValueError, match="dtype"):
        EmbeddingStore.open(tmp_path / "x.zarr", identity(), dtype="int8")


def test_a_frame_cut_off_mid_write_is_missing_and_recomputed(tmp_path):
    path = tmp_path / "s.zarr"
    store = EmbeddingStore.open(path, identity())
    store.put(0, embedding(0))
    # A writer that died after the arrays of frame 1 but before its "done" flag.
    store._group["image_embed"][1:2] = embedding(1).image_embed
    again = EmbeddingStore.open(path, identity())
    assert again.done_frames() == [0] and again.get(1) is None
    assert again.put(1, embedding(1))
    _same(again.get(1), embedding(1))


def test_a_damaged_frame_is_treated_as_missing(tmp_path, caplog):
    path = tmp_path / "s.zarr"
    store = EmbeddingStore.open(path, identity())
    store.put(4, embedding(4))
    chunk = next(
        p for p in (path / "high_res_feats_0").rglob("*") if p.is_file() and p.name != "zarr.json"
    )
    chunk.write_bytes(chunk.read_bytes()[:1000])  # truncated, as by a full disk
    again = EmbeddingStore.open(path, identity())
    assert again.get(4) is None
    assert "unreadable" in caplog.text
    assert 4 not in again  # forgotten: computed and written again
    assert again.put(4, embedding(4))
    _same(again.get(4), embedding(4))


def test_a_place_that_cannot_hold_a_store(tmp_path):
    (tmp_path / "a file").write_text("")
    with pytest.raises(StoreUnavailableError, match="cannot write the embedding store"):
        EmbeddingStore.open(tmp_path / "a file" / "s.zarr", identity())


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root ignores modes")
def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(StoreUnavailableError, match="cannot write"):
            EmbeddingStore.open(folder / "s.zarr", identity())
    finally:
        folder.chmod(0o755)


def test_read_only_store_serves_but_does_not_write(tmp_path):
    EmbeddingStore.open(tmp_path / "s.zarr", identity()).put(0, embedding(0))
    store = EmbeddingStore.open(tmp_path / "s.zarr", identity(), mode="r")
    with pytest.raises(StoreUnavailableError, match="read-only"):
        store.put(1, embedding(1))
    calls = []
    provide = store.provider(lambda frame: calls.append(frame) or embedding(frame))
    _same(provide(0), embedding(0))
    _same(provide(3), embedding(3))
    assert calls == [3] and store.done_frames() == [0]


def test_provider_stores_what_it_computes(tmp_path):
    store = EmbeddingStore.open(tmp_path / "s.zarr", identity())
    calls = []
    provide = store.provider(lambda frame: calls.append(frame) or embedding(frame))
    for frame in (2, 2, 5, 2):
        _same(provide(frame), embedding(frame))
    assert calls == [2, 5]
    assert store.done_frames() == [2, 5]


def test_wrong_image_size_is_refused(tmp_path):
    store = EmbeddingStore.open(tmp_path / "s.zarr", identity())
    other = embedding(0)
    with pytest.raises(ValueError, match="store's frames"):
        store.put(0, ImageEmbedding(*other.tensors, (10, 10)))


def _writer(path: str, frames: list[int]) -> None:
    store = EmbeddingStore.open(path, identity())
    for frame in frames:
        store.put(frame, embedding(frame))


def test_two_processes_writing_one_store(tmp_path):
    path = str(tmp_path / "shared.zarr")
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_writer, args=(path, frames))
        for frames in ([0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0])
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    store = EmbeddingStore.open(path, identity(), mode="r")
    assert store.done_frames() == list(range(6))
    for frame in range(6):
        _same(store.get(frame), embedding(frame))


def test_encoder_checksum(tmp_path):
    path = tmp_path / "enc.onnx"
    path.write_bytes(b"model")
    first = encoder_checksum(path)
    assert len(first) == 64 and encoder_checksum(path) == first
    path.write_bytes(b"another model!")
    assert encoder_checksum(path) != first
    shutil.copy(path, tmp_path / "copy.onnx")
    assert encoder_checksum(tmp_path / "copy.onnx") == encoder_checksum(path)
    with pytest.raises(FileNotFoundError):
        encoder_checksum(tmp_path / "missing.onnx")
