"""Filling a store from a stack (store/precompute.py) and the ``embed`` command."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_sam2_webgpu.cli import main
from napari_sam2_webgpu.image.predictor import Sam2Predictor
from napari_sam2_webgpu.store import (
    EmbeddingStore,
    StoreMismatchError,
    open_stack_store,
    precompute_embeddings,
    stack_layout,
)

from ..conftest import blob_image

pytest.importorskip("zarr")


def test_stack_layout():
    assert stack_layout(np.zeros((5, 6))) == ((), False)
    assert stack_layout(np.zeros((5, 6, 3))) == ((), True)
    assert stack_layout(np.zeros((7, 5, 6))) == ((7,), False)
    assert stack_layout(np.zeros((7, 5, 6, 4))) == ((7,), True)
    with pytest.raises(ValueError, match="2 to 4 axes"):
        stack_layout(np.zeros(5))


@pytest.fixture(scope="module")
def predictor(micro_model_files):
    _, files = micro_model_files
    return Sam2Predictor.from_files(files.encoder, files.decoder, "cpu")


def stack(frames: int = 3) -> np.ndarray:
    return np.stack([blob_image(48, 56, seed=s)[..., 0] for s in range(frames)])


def test_precompute_resumes_reports_and_cancels(predictor, tmp_path):
    image = stack(3).astype(np.float32)
    image[1] = np.nan  # a frame that cannot be encoded
    store = open_stack_store(tmp_path / "s.zarr", predictor, image)
    assert store.identity.frames == (3,) and store.identity.image_hw == (48, 56)
    stop = threading.Event()
    seen = []

    def progress(done, total):
        seen.append((done, total))
        if done == 1:
            stop.set()  # cancel after the first frame

    first = precompute_embeddings(predictor, image, store, progress=progress, cancelled=stop)
    assert first.cancelled and first.computed == [0] and seen[:2] == [(0, 3), (1, 3)]
    second = precompute_embeddings(predictor, image, store)
    assert second.skipped == [0] and second.computed == [2] and not second.ok
    assert second.failed[0][0] == 1 and "finite" in second.failed[0][1]
    assert store.done_frames() == [0, 2]
    # What the store gives back is what the encoder computes.
    expected = predictor.compute_embedding(image[2])
    got = store.get(2)
    for x, y in zip(got.tensors, expected.tensors, strict=True):
        np.testing.assert_array_equal(x, y)


def test_the_store_follows_the_model_and_contrast(predictor, tmp_path):
    image = stack(2)
    open_stack_store(tmp_path / "s.zarr", predictor, image, contrast_limits=(0, 200))
    with pytest.raises(StoreMismatchError, match="contrast limits: 0..200 in the store"):
        open_stack_store(tmp_path / "s.zarr", predictor, image)
    with pytest.raises(StoreMismatchError, match="the stack"):
        open_stack_store(tmp_path / "s.zarr", predictor, stack(3), contrast_limits=(0, 200))


def _embed(files, *args):
    model = ["--encoder", str(files.encoder), "--decoder", str(files.decoder), "--backend", "cpu"]
    return main(["embed", *args, *model])


def test_embed_command(micro_model_files, tmp_path, capsys):
    _, files = micro_model_files
    np.save(tmp_path / "stack.npy", stack(3))
    out = tmp_path / "stack.sam2.zarr"
    assert _embed(files, str(tmp_path / "stack.npy"), "--out", str(out)) == 0
    captured = capsys.readouterr()
    assert "3 frames encoded" in captured.out and "frame 3/3" in captured.err
    assert _embed(files, str(tmp_path / "stack.npy"), "--out", str(out)) == 0
    resumed = capsys.readouterr().out
    assert "0 frames encoded" in resumed and "3 stored already" in resumed
    # Another contrast is another store: refused, named, and --overwrite starts over.
    args = [str(tmp_path / "stack.npy"), "--out", str(out), "--contrast", "10,100"]
    assert _embed(files, *args) == 1
    assert "contrast limits" in capsys.readouterr().err
    assert _embed(files, *args, "--overwrite", "--float16") == 0
    assert "3 frames encoded" in capsys.readouterr().out
    reopened = EmbeddingStore.open(out, _identity_of(out), mode="r")
    assert reopened.dtype == "float16" and reopened.done_frames() == [0, 1, 2]


def _identity_of(path):
    import json

    from napari_sam2_webgpu.store import StoreIdentity

    meta = json.loads((path / "zarr.json").read_text())
    return StoreIdentity.from_json(meta["attributes"]["identity"])


def test_embed_reports_a_bad_frame_and_a_bad_place(micro_model_files, tmp_path, capsys):
    _, files = micro_model_files
    image = stack(2).astype(np.float32)
    image[0] = np.inf
    np.save(tmp_path / "stack.npy", image)
    assert _embed(files, str(tmp_path / "stack.npy"), "--out", str(tmp_path / "s.zarr")) == 1
    captured = capsys.readouterr()
    assert "frame 0 not stored" in captured.err and "1 failed" in captured.out
    (tmp_path / "file").write_text("")
    code = _embed(files, str(tmp_path / "stack.npy"), "--out", str(tmp_path / "file" / "s.zarr"))
    assert code == 1 and "cannot write the embedding store" in capsys.readouterr().err


def test_propagate_reads_the_store(micro_model_files, tmp_path, capsys):
    from ..video.test_propagator import moving_blob_stack

    _, files = micro_model_files
    np.save(tmp_path / "stack.npy", moving_blob_stack(3, (60, 70)))
    store = tmp_path / "stack.sam2.zarr"
    base = ["propagate", str(tmp_path / "stack.npy"), "--frame", "1", "--point", "20,22"]
    base += ["--encoder", str(files.encoder), "--decoder", str(files.decoder), "--backend", "cpu"]
    assert main([*base, "--out", str(tmp_path / "plain.npy")]) == 0
    # The store is filled by the first run that uses it, and read by the next.
    for run in ("fills", "reads"):
        out = tmp_path / f"{run}.npy"
        assert main([*base, "--store", str(store), "--out", str(out)]) == 0, run
        np.testing.assert_array_equal(np.load(out), np.load(tmp_path / "plain.npy"))
    assert "3/3 frames" in capsys.readouterr().err
