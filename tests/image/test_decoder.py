"""``PromptDecoder``: feeds, runs, mask choice, object pointers, and where clicks decode."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu.image import decoder as decoder_module
from napari_sam2_webgpu.image.decoder import PromptDecoder, TrackedMask, check_decoder
from napari_sam2_webgpu.image.postprocess import to_model_coords
from napari_sam2_webgpu.image.prompts import LOW_RES, PromptError
from napari_sam2_webgpu.runtime.iobinding import BoundEncoder, static_shape

from ..conftest import blob_image

POINT = {"point_coords": [[30.0, 22.0]], "point_labels": [1]}


@pytest.fixture(scope="module")
def embedding(micro_predictor):
    return micro_predictor.compute_embedding(blob_image(48, 64, seed=3))


def test_decoder_describes_its_outputs(micro_predictor):
    decoder = micro_predictor.decoder
    assert decoder.provider == "cpu"
    assert {"masks", "iou_predictions", "single_mask", "obj_ptrs"} <= set(decoder.outputs)
    assert decoder.has_object_pointers
    assert 0 < decoder.stability_delta < 1 and 0 < decoder.stability_thresh <= 1
    with pytest.raises(ValueError, match="is a SAM2 image encoder"):
        check_decoder(micro_predictor.encoder.session)
    with pytest.raises(ValueError, match="is a SAM2 image encoder"):
        PromptDecoder(micro_predictor.encoder.session)


def test_decode_is_what_predict_returns(micro_predictor, embedding):
    decoder = micro_predictor.decoder
    logits, scores, batched = decoder.decode(embedding, **POINT)
    assert not batched and logits.shape == (1, 3, LOW_RES, LOW_RES) and scores.shape == (1, 3)
    masks, got_scores, low_res = micro_predictor.predict(**POINT, embedding=embedding)
    np.testing.assert_allclose(got_scores, scores[0], atol=1e-6)
    np.testing.assert_allclose(low_res, np.clip(logits[0], -32, 32), atol=1e-6)
    assert masks.shape == (3, 48, 64)


def test_feeds_run_and_select_compose_decode(micro_predictor, embedding):
    decoder = micro_predictor.decoder
    feeds, batched = decoder.feeds(embedding, **POINT)
    assert set(feeds) == {
        "image_embed",
        "high_res_feats_0",
        "high_res_feats_1",
        "point_coords",
        "point_labels",
        "mask_input",
        "has_mask_input",
    }
    assert feeds["has_mask_input"].tolist() == [0.0] and not batched
    outputs = decoder.run(feeds)
    assert list(outputs) == decoder.outputs
    single, single_scores = decoder.select(outputs, multimask=False)
    ref = decoder.decode(embedding, **POINT, multimask_output=False)
    np.testing.assert_array_equal(single, ref[0])
    np.testing.assert_array_equal(single_scores, ref[1])
    with pytest.raises(PromptError, match="outside the image"):
        decoder.feeds(embedding, point_coords=[[100.0, 10.0]], point_labels=[1])


def test_model_feeds_take_prompts_in_the_model_frame(micro_predictor, embedding):
    decoder = micro_predictor.decoder
    checked, _ = decoder.feeds(embedding, **POINT)
    coords = to_model_coords(np.array([[[30.0, 22.0]]]), embedding.image_hw)
    raw = decoder.model_feeds(embedding, coords, np.ones((1, 1), np.float32))
    for name in checked:
        np.testing.assert_array_equal(raw[name], checked[name])
    mask = np.ones((1, 1, LOW_RES, LOW_RES), np.float32)
    with_mask = decoder.model_feeds(embedding, coords, np.ones((1, 1)), mask)
    assert with_mask["has_mask_input"].tolist() == [1.0]
    assert with_mask["point_labels"].dtype == np.float32


@pytest.mark.parametrize("multimask", [True, False])
def test_select_tracked_takes_one_mask_and_its_pointer(micro_predictor, embedding, multimask):
    decoder = micro_predictor.decoder
    feeds, _ = decoder.feeds(embedding, **POINT)
    outputs = decoder.run(feeds)
    tracked = decoder.select_tracked(outputs, multimask)
    assert isinstance(tracked, TrackedMask)
    assert tracked.low_res.shape == (1, 1, LOW_RES, LOW_RES)
    assert tracked.obj_ptr.shape == (256,)
    assert tracked.object_score == pytest.approx(float(outputs["object_score_logits"][0, 0]))
    if multimask:
        best = int(np.argmax(outputs["iou_predictions"][0]))
        np.testing.assert_array_equal(tracked.low_res[0, 0], outputs["masks"][0, best])
        np.testing.assert_array_equal(tracked.obj_ptr, outputs["obj_ptrs"][0, 1 + best])
        first_token = decoder.select_tracked(outputs, True, multimask_pointer=False)
        np.testing.assert_array_equal(first_token.obj_ptr, outputs["obj_ptrs"][0, 0])
    else:
        single, _ = decoder.select(outputs, multimask=False)
        np.testing.assert_array_equal(tracked.low_res, single)
        np.testing.assert_array_equal(tracked.obj_ptr, outputs["obj_ptrs"][0, 0])


def test_place_copies_device_embeddings_to_the_host_for_a_cpu_decoder(
    micro_predictor, cpu_device_io
):
    host = micro_predictor.compute_embedding(blob_image(40, 50, seed=1))
    decoder = micro_predictor.decoder
    assert decoder.place(host) is host
    values = [cpu_device_io.upload(t) for t in host.tensors]
    on_device = type(host)(*values, host.image_hw, cpu_device_io)
    placed = decoder.place(on_device)
    assert not placed.on_device
    np.testing.assert_array_equal(placed.image_embed, host.image_embed)
    gpu = PromptDecoder(decoder.session, provider="webgpu")
    assert gpu.place(on_device) is on_device


@pytest.mark.parametrize("cpu_wins", [True, False])
def test_decoder_moves_to_the_cpu_only_when_faster(
    micro_model_files, cpu_device_io, cpu_wins, monkeypatch
):
    """The load-time choice of where clicks decode, with the CPU EP's memory as the 'GPU'."""
    from napari_sam2_webgpu.image.predictor import Sam2Predictor

    _, files = micro_model_files
    predictor = Sam2Predictor.from_files(files.encoder, files.decoder, backend="cpu")
    session = predictor.encoder.session
    shapes = {o.name: static_shape(o.shape) for o in session.get_outputs()}
    predictor.encoder.bound = BoundEncoder(session, cpu_device_io, shapes)
    predictor.decoder.provider = "webgpu"  # as on a GPU: clicks read device embeddings
    image = blob_image(200, 260, seed=9)
    prompt = dict(point_coords=[[120.0, 90.0]], point_labels=[1])
    predictor.set_image(image)
    ref = predictor.predict(**prompt)
    assert predictor.embedding.on_device

    timings = iter([10.0, 5.0] if cpu_wins else [10.0, 9.0])  # device first, then CPU
    monkeypatch.setattr(
        decoder_module, "time_decoder", lambda run, repeats: (run(), next(timings))[1]
    )
    other = Sam2Predictor.from_files(files.encoder, files.decoder, backend="cpu").decoder.session
    cpu = PromptDecoder(other, provider="cpu")
    probe = predictor.encoder.encode(np.zeros((64, 64), dtype=np.uint8))
    if decoder_module.cpu_decoder_is_faster(predictor.decoder, cpu, probe):
        predictor.use_decoder(cpu)
    assert predictor.decoder_provider == ("cpu" if cpu_wins else "webgpu")
    assert predictor.embedding.on_device is not cpu_wins
    got = predictor.predict(**prompt)
    np.testing.assert_array_equal(got[0], ref[0])
    predictor.set_image(image)
    assert predictor.embedding.on_device is not cpu_wins  # new embeddings follow the decoder
    np.testing.assert_array_equal(predictor.predict(**prompt)[0], ref[0])
