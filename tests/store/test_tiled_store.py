"""Tiled stores: each frame's tiles and overview on disk, filled by ``embed --tiles`` from lazy
input, read back by ``compute_tiled_embedding(store=...)`` without encoding."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_sam2_webgpu.cli import main
from napari_sam2_webgpu.image.encoder import ImageEmbedding
from napari_sam2_webgpu.image.predictor import Sam2Predictor
from napari_sam2_webgpu.image.tiling import TileSpec
from napari_sam2_webgpu.store import (
    EmbeddingStore,
    StoreIdentity,
    StoreMismatchError,
    open_stack_store,
    precompute_embeddings,
)

from ..conftest import blob_image

pytest.importorskip("zarr")

SPEC = TileSpec(96, 16)
HW = (120, 150)  # 2 x 2 tiles of 96


def identity(**changes) -> StoreIdentity:
    base = dict(
        model="micro", encoder_sha256="ab" * 32, frames=(2,), image_hw=HW, tiles=SPEC.describe()
    )
    return StoreIdentity(**{**base, **changes})


def embedding(seed: int, hw) -> ImageEmbedding:
    rng = np.random.default_rng(seed)
    return ImageEmbedding(
        rng.normal(size=(1, 256, 64, 64)).astype(np.float32),
        rng.normal(size=(1, 32, 256, 256)).astype(np.float32),
        rng.normal(size=(1, 64, 128, 128)).astype(np.float32),
        hw,
    )


def test_tiles_and_overview_round_trip(tmp_path):
    store = EmbeddingStore.open(tmp_path / "s.zarr", identity())
    layout = store.identity.tile_layout
    assert layout.grid == (2, 2) and store.identity.entries_per_frame == 5
    tile_hw = layout.tiles[0].hw
    assert store.put(1, embedding(0, tile_hw), tile=3)
    assert store.has(1, 3) and not store.has(1, 2) and not store.has(0, 3)
    assert store.get(1, tile=3).image_hw == tile_hw
    np.testing.assert_array_equal(store.get(1, 3).image_embed, embedding(0, tile_hw).image_embed)
    assert store.get(1, 2) is None and 1 not in store and store.done_frames() == []
    with pytest.raises(ValueError, match="tile 0 are"):
        store.put(1, embedding(0, HW), tile=0)  # an overview is not a tile
    with pytest.raises(IndexError, match="outside the layout"):
        store.get(1, tile=4)
    for t in range(4):
        store.put(1, embedding(t, tile_hw), tile=t)
    assert store.done_frames() == []  # the overview is missing
    store.put(1, embedding(9, HW))  # tile None: the overview
    assert store.done_frames() == [1] and 1 in store
    frame = store.frame_tiles(1)
    assert frame.get(None).image_hw == HW and frame.get(2) is not None
    # Reopened with another tiling: refused, named.
    with pytest.raises(StoreMismatchError, match="the tiles"):
        EmbeddingStore.open(tmp_path / "s.zarr", identity(tiles=TileSpec(128, 16).describe()))
    plain = EmbeddingStore.open(tmp_path / "p.zarr", identity(tiles="none"))
    with pytest.raises(ValueError, match="whole frames"):
        plain.frame_tiles(0)
    with pytest.raises(ValueError, match="whole frames"):
        plain.get(0, tile=1)


@pytest.fixture(scope="module")
def predictor(micro_model_files):
    _, files = micro_model_files
    return Sam2Predictor.from_files(files.encoder, files.decoder, "cpu")


def test_precompute_tiled_then_decode_from_the_store_without_encoding(predictor, tmp_path):
    image = np.stack([blob_image(*HW, seed=s)[..., 0] for s in range(2)])
    store = open_stack_store(tmp_path / "s.zarr", predictor, image, tiles=SPEC)
    stop = threading.Event()
    seen = []

    def progress(done, total):
        seen.append((done, total))
        if done == 3:
            stop.set()  # cut off inside frame 0

    first = precompute_embeddings(predictor, image, store, progress=progress, cancelled=stop)
    assert first.cancelled and first.computed == [] and seen[0] == (0, 10)
    kept = [t for t in range(4) if store.has(0, t)]
    assert kept == [0, 1, 2]  # the tiles stored before the cut stay
    second = precompute_embeddings(predictor, image, store)
    assert second.computed == [0, 1] and store.done_frames() == [0, 1]
    # Reading back: masks equal to freshly encoded ones, and nothing encoded.
    calls = []

    def no_encoding(*args, **kwargs):
        calls.append(args)
        return predictor.compute_embedding(*args, **kwargs)

    from napari_sam2_webgpu.image.tiling import tiled_embedding

    stored = tiled_embedding(no_encoding, image[1], spec=SPEC, store=store.frame_tiles(1))
    fresh = predictor.compute_tiled_embedding(image[1], spec=SPEC)
    for prompt in (
        {"point_coords": [[100.0, 60.0]], "point_labels": [1]},
        {"box": [2, 2, 148, 118]},
    ):
        a, sa, _ = predictor.predict(**prompt, embedding=stored)
        b, sb, _ = predictor.predict(**prompt, embedding=fresh)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(sa, sb, rtol=1e-6)
    assert calls == []


def _embed(files, *args):
    return main(
        ["embed", *args, "--encoder", str(files.encoder), "--decoder", str(files.decoder)]
        + ["--backend", "cpu"]
    )


def test_embed_tiles_an_ome_zarr_read_lazily(micro_model_files, tmp_path, capsys):
    import zarr

    _, files = micro_model_files
    data = np.stack([blob_image(*HW, seed=s)[..., 0] for s in range(2)])
    group = zarr.open_group(str(tmp_path / "stack.ome.zarr"), mode="w")
    level = group.create_array("0", shape=(2, 1, *HW), chunks=(1, 1, 64, 64), dtype="uint8")
    level[:] = data[:, None]
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [{"axes": [{"name": n} for n in "zcyx"], "datasets": [{"path": "0"}]}],
    }
    out = tmp_path / "stack.sam2.zarr"
    args = [str(tmp_path / "stack.ome.zarr"), "--out", str(out), "--tiles", "on"]
    assert _embed(files, *args, "--tile-size", "96", "--halo", "16") == 0
    captured = capsys.readouterr()
    assert "4 tiles a frame (2 x 2" in captured.err and "tile 10/10" in captured.err
    assert "2 frames encoded" in captured.out
    store = EmbeddingStore.open(out, _identity(out), mode="r")
    assert store.identity.tiles == SPEC.describe() and store.done_frames() == [0, 1]
    # Another tiling for the same store is refused.
    assert _embed(files, *args, "--tile-size", "128", "--halo", "16") == 1
    assert "the tiles" in capsys.readouterr().err
    assert _embed(files, *args, "--tile-size", "100", "--halo", "60") == 1
    assert "--tile-size/--halo" in capsys.readouterr().err


def _identity(path):
    import json

    meta = json.loads((path / "zarr.json").read_text())
    return StoreIdentity.from_json(meta["attributes"]["identity"])
