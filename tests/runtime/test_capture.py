"""Static-shape captured sessions (runtime/capture.py), exercised with the CPU EP's own memory.

On WebGPU the factory adds ``enableGraphCapture``; the mechanics (one fixed-dimension session
per prompt shape, shared embedding buffers, the check against the plain session, fallbacks)
are the same on the CPU EP, so they are tested here everywhere.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from napari_sam2_webgpu.runtime import create_session
from napari_sam2_webgpu.runtime.capture import (
    MAX_FAILURES,
    CapturedSessions,
    free_dimensions,
)

from ..conftest import blob_image


@pytest.fixture(scope="module")
def decoder_path(micro_model_files):
    return micro_model_files[1].decoder


@pytest.fixture(scope="module")
def plain(decoder_path):
    return create_session(decoder_path, "cpu")[0]


def _factory(path, calls=None):
    def create(dimensions):
        if calls is not None:
            calls.append(dict(dimensions))
        return create_session(path, "cpu", fixed_dimensions=dimensions)[0]

    return create


def _feeds(embedding, count, seed=0, sets=1):
    rng = np.random.default_rng(seed)
    return {
        "image_embed": embedding.image_embed,
        "high_res_feats_0": embedding.high_res_feats_0,
        "high_res_feats_1": embedding.high_res_feats_1,
        "point_coords": rng.uniform(0, 1024, (sets, count, 2)).astype(np.float32),
        "point_labels": np.ones((sets, count), np.float32),
        "mask_input": np.zeros((sets, 1, 256, 256), np.float32),
        "has_mask_input": np.zeros(sets, np.float32),
    }


def _plain_run(session, feeds):
    from napari_sam2_webgpu.runtime.iobinding import run_bound

    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, run_bound(session, feeds), strict=True))


@pytest.fixture(scope="module")
def embeddings(micro_predictor, cpu_device_io):
    """Two images' embeddings as device tensors (the CPU EP's memory stands in for the GPU)."""
    out = []
    for seed in (1, 2):
        host = micro_predictor.compute_embedding(blob_image(200, 240, seed=seed))
        out.append(
            dataclasses.replace(
                host,
                image_embed=cpu_device_io.upload(host.image_embed),
                high_res_feats_0=cpu_device_io.upload(host.high_res_feats_0),
                high_res_feats_1=cpu_device_io.upload(host.high_res_feats_1),
                device=cpu_device_io,
            )
        )
    return out


def test_free_dimensions_of_the_decoder(plain):
    free = free_dimensions(plain)
    assert free["point_coords"] == [(0, "num_labels"), (1, "num_points")]
    assert free["has_mask_input"] == [(0, "num_labels")]
    assert "image_embed" not in free


def test_outputs_equal_the_plain_session_per_shape(plain, decoder_path, cpu_device_io, embeddings):
    calls = []
    captured = CapturedSessions(plain, cpu_device_io, _factory(decoder_path, calls))
    first, second = embeddings
    for count, sets in ((1, 1), (3, 1), (1, 4), (1, 1)):
        for embedding in (first, second, first):
            feeds = _feeds(embedding, count, seed=count + sets, sets=sets)
            got = captured.run(feeds)
            expected = _plain_run(plain, feeds)
            assert set(got) == set(expected)
            for name, value in expected.items():
                np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5)
    # One session per shape, made once; the repeated shape reused its session.
    assert calls == [
        {"num_labels": 1, "num_points": 1},
        {"num_labels": 1, "num_points": 3},
        {"num_labels": 4, "num_points": 1},
    ]
    assert captured.shapes[-1] == {"num_labels": 1, "num_points": 1}


def test_a_new_embedding_replaces_the_shared_one(plain, decoder_path, cpu_device_io, embeddings):
    """Alternating images with one prompt shape: each call reads its own image, never the last."""
    captured = CapturedSessions(plain, cpu_device_io, _factory(decoder_path))
    outputs = []
    for embedding in (embeddings[0], embeddings[1], embeddings[0]):
        outputs.append(captured.run(_feeds(embedding, 2, seed=5))["masks"])
    assert not np.allclose(outputs[0], outputs[1])
    np.testing.assert_allclose(outputs[0], outputs[2], rtol=1e-6, atol=1e-6)


def test_host_embeddings_are_uploaded(plain, decoder_path, cpu_device_io, embeddings):
    captured = CapturedSessions(plain, cpu_device_io, _factory(decoder_path))
    host = embeddings[0].numpy()
    feeds = _feeds(host, 2, seed=6)
    got = captured.run(feeds)
    np.testing.assert_allclose(got["masks"], _plain_run(plain, feeds)["masks"], atol=1e-5)


def test_least_recently_used_shape_is_released(plain, decoder_path, cpu_device_io, embeddings):
    calls = []
    captured = CapturedSessions(plain, cpu_device_io, _factory(decoder_path, calls), max_sessions=2)
    for count in (1, 2, 1, 3, 2):
        captured.run(_feeds(embeddings[0], count))
    assert [shape["num_points"] for shape in captured.shapes] == [3, 2]
    assert [c["num_points"] for c in calls] == [1, 2, 3, 2]
    captured.release()
    assert captured.shapes == []
    with pytest.raises(ValueError, match="max_sessions"):
        CapturedSessions(plain, cpu_device_io, _factory(decoder_path), max_sessions=0)


def test_a_session_that_cannot_be_made_falls_back(
    plain, decoder_path, cpu_device_io, embeddings, caplog
):
    calls = []

    def refuse(dimensions):
        calls.append(dimensions)
        raise RuntimeError("all compute graph nodes have not been partitioned to the EP")

    captured = CapturedSessions(plain, cpu_device_io, refuse)
    with caplog.at_level(logging.INFO, logger="napari_sam2_webgpu"):
        assert captured.run(_feeds(embeddings[0], 1)) is None
        assert captured.run(_feeds(embeddings[0], 1)) is None  # a failed shape is not retried
    assert len(calls) == 1
    assert "graph capture of" in caplog.text and "partitioned" in caplog.text
    for count in range(2, 2 + MAX_FAILURES):
        captured.run(_feeds(embeddings[0], count))
    assert not captured.enabled
    assert len(calls) == MAX_FAILURES  # given up: no more attempts


def test_a_captured_session_that_computes_otherwise_is_refused(
    plain, micro_model_files, cpu_device_io, embeddings, tmp_path, caplog
):
    """A session whose outputs differ from the plain one's (e.g. a stale replay) is not used."""
    import onnx

    model = onnx.load(str(micro_model_files[1].decoder))
    # Another decoder: the same graph with one weight changed.
    weight = next(t for t in model.graph.initializer if t.dims and np.prod(t.dims) > 1000)
    values = onnx.numpy_helper.to_array(weight) * 1.5
    weight.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float32), weight.name))
    other = tmp_path / "other.onnx"
    onnx.save(model, str(other))
    captured = CapturedSessions(plain, cpu_device_io, _factory(other))
    with caplog.at_level(logging.INFO, logger="napari_sam2_webgpu"):
        assert captured.run(_feeds(embeddings[0], 1)) is None
    assert "differs from the plain session" in caplog.text


def test_prompt_decoder_runs_through_capture(micro_predictor, decoder_path, cpu_device_io):
    decoder = micro_predictor.decoder
    plain_session = decoder.session
    image = blob_image(180, 200, seed=4)
    embedding = micro_predictor.compute_embedding(image)
    prompt = dict(point_coords=[[50.0, 60.0], [120.0, 90.0]], point_labels=[1, 0])
    expected = micro_predictor.predict(**prompt, embedding=embedding)
    calls = []
    decoder.enable_capture(
        CapturedSessions(plain_session, cpu_device_io, _factory(decoder_path, calls))
    )
    try:
        assert decoder.captures
        got = micro_predictor.predict(**prompt, embedding=embedding)
    finally:
        decoder.enable_capture(None)
    assert not decoder.captures
    assert calls == [{"num_labels": 1, "num_points": 2}]  # the model adds SAM2's padding
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1], atol=1e-5)
