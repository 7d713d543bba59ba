"""``Sam2Predictor``: clear errors for bad input without losing state, and documented behaviour.

Runs on the CPU with the ``micro`` model (random weights, SAM2.1 graph).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu.image.encoder import ImageEmbedding
from napari_sam2_webgpu.image.postprocess import mask_iou
from napari_sam2_webgpu.image.predictor import Sam2Predictor
from napari_sam2_webgpu.image.preprocess import ImageError, prepare_image
from napari_sam2_webgpu.image.prompts import PromptError

from ..conftest import blob_image

H, W = 48, 64
POINT = {"point_coords": [[30.0, 22.0]], "point_labels": [1]}
BOX = [10.0, 8.0, 50.0, 40.0]


def _assert_same_embedding(a: ImageEmbedding, b: ImageEmbedding, atol: float = 1e-5) -> None:
    assert a.image_hw == b.image_hw
    for name in ("image_embed", "high_res_feats_0", "high_res_feats_1"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=atol, rtol=0)


def _max_diff(a: ImageEmbedding, b: ImageEmbedding) -> float:
    return float(np.max(np.abs(a.image_embed - b.image_embed)))


class Reference:
    """The predictor with its reference image set, and the answer to a reference prompt."""

    def __init__(self, predictor: Sam2Predictor) -> None:
        self.predictor = predictor
        self.image = blob_image(H, W, seed=3)
        predictor.set_image(self.image)
        self.embedding = predictor.embedding
        self.masks, self.scores, self.low_res = predictor.predict(**POINT)

    def assert_intact(self, *, predict: bool = True) -> None:
        """The embedding set before is still current, and predict gives the same answer."""
        assert self.predictor.is_image_set
        assert self.predictor.embedding is self.embedding
        assert self.predictor.image_hw == (H, W)
        if not predict:
            return
        masks, scores, low_res = self.predictor.predict(**POINT)
        np.testing.assert_array_equal(masks, self.masks)
        np.testing.assert_allclose(scores, self.scores, atol=1e-6)
        np.testing.assert_allclose(low_res, self.low_res, atol=1e-5)


@pytest.fixture(scope="module")
def predictor(micro_predictor):
    return micro_predictor


@pytest.fixture(scope="module")
def _reference(predictor):
    return Reference(predictor)


@pytest.fixture
def ref(_reference):
    # Tests below may set other images: every test starts from the reference image.
    _reference.predictor.set_embedding(_reference.embedding)
    return _reference


def test_reference_masks_are_nontrivial(ref):
    # Random weights still give masks that are neither empty nor full: comparisons have teeth.
    assert ref.masks.shape == (3, H, W) and ref.masks.dtype == bool
    fractions = ref.masks.reshape(3, -1).mean(axis=1)
    assert np.any((fractions > 0.01) & (fractions < 0.99)), fractions
    assert ref.scores.shape == (3,)
    assert ref.low_res.shape == (3, 256, 256)


# -- bad images -----------------------------------------------------------------------------


class _Opaque:
    pass


BAD_IMAGES = {
    "empty 0xN": (np.zeros((0, 64), np.uint8), "empty"),
    "empty Nx0 rgb": (np.zeros((64, 0, 3), np.uint8), "empty"),
    "one pixel": (np.zeros((1, 1), np.uint8), "at least 8 pixels"),
    "too thin": (np.zeros((5, 300), np.uint8), "at least 8 pixels"),
    "1D": (np.zeros(100, np.uint8), "got 1D array"),
    "5D": (np.zeros((2, 2, 16, 16, 3), np.uint8), "got 5D array"),
    "stack (Z, Y, X)": (np.zeros((5, 64, 64), np.uint8), "stack, not a 2D image"),
    "all NaN": (np.full((32, 32), np.nan, np.float32), "no finite value"),
    "all inf": (np.full((32, 32), np.inf, np.float64), "no finite value"),
    "boolean": (np.ones((32, 32), bool), "boolean"),
    "complex": (np.ones((32, 32), np.complex64), "complex.*np.abs"),
    "None": (None, "Expected an image as a numpy array.*got NoneType"),
    "path string": ("cells.tif", r"got str \(read the file first\)"),
    "object": (_Opaque(), "Expected an image as a numpy array.*got _Opaque"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_image_is_rejected_and_nothing_is_lost(ref, case):
    image, message = BAD_IMAGES[case]
    with pytest.raises(ImageError, match=message):
        ref.predictor.set_image(image)
    ref.assert_intact(predict=False)  # a decode each time would be slow; see the next test


def test_predict_works_after_every_bad_image(ref):
    for image, _ in BAD_IMAGES.values():
        with pytest.raises(ImageError):
            ref.predictor.set_image(image)
    ref.assert_intact()


def test_bad_image_error_is_a_value_error(ref):
    # Callers that only know ValueError still catch it.
    with pytest.raises(ValueError, match="boolean"):
        ref.predictor.compute_embedding(np.zeros((32, 32), bool))


def test_stack_rejected_when_rgb_false(ref):
    with pytest.raises(ImageError, match="stack"):
        ref.predictor.set_image(np.zeros((32, 32, 3), np.uint8), rgb=False)
    ref.assert_intact()


@pytest.mark.parametrize("limits", [(np.nan, 1.0), (0.0, np.inf)])
def test_non_finite_contrast_limits(ref, limits):
    with pytest.raises(ImageError, match="Contrast limits must be finite"):
        ref.predictor.set_image(ref.image, contrast_limits=limits)
    ref.assert_intact()


# -- bad prompts ----------------------------------------------------------------------------

BAD_PROMPTS = {
    "point left": (dict(point_coords=[[-1.0, 10.0]], point_labels=[1]), r"outside the image"),
    "point right": (dict(point_coords=[[W, 10.0]], point_labels=[1]), r"outside the image"),
    "point above": (dict(point_coords=[[10.0, -1.0]], point_labels=[1]), r"outside the image"),
    "point below": (dict(point_coords=[[10.0, H]], point_labels=[1]), r"outside the image"),
    "one of several outside": (
        dict(point_coords=[[10.0, 10.0], [10.0, 1e6]], point_labels=[1, 0]),
        r"Point \(x=10, y=1e\+06\) is outside",
    ),
    "NaN point": (dict(point_coords=[[np.nan, 10.0]], point_labels=[1]), "NaN or infinite"),
    "inf point": (dict(point_coords=[[10.0, np.inf]], point_labels=[1]), "NaN or infinite"),
    "label 2": (dict(point_coords=[[10.0, 10.0]], point_labels=[2]), r"1 \(object\) or 0"),
    "label -1": (dict(point_coords=[[10.0, 10.0]], point_labels=[-1]), r"1 \(object\) or 0"),
    "label 0.5": (dict(point_coords=[[10.0, 10.0]], point_labels=[0.5]), r"1 \(object\) or 0"),
    "coords without labels": (dict(point_coords=[[10.0, 10.0]]), "point_labels must be given"),
    "labels without coords": (dict(point_labels=[1]), "without point_coords"),
    "more labels than points": (
        dict(point_coords=[[10.0, 10.0]], point_labels=[1, 0]),
        "one label per point",
    ),
    "fewer labels than points": (
        dict(point_coords=[[10.0, 10.0], [20.0, 20.0]], point_labels=[1]),
        "one label per point",
    ),
    "empty points": (
        dict(point_coords=np.zeros((0, 2)), point_labels=np.zeros(0)),
        "point_coords is empty",
    ),
    "points not (N, 2)": (
        dict(point_coords=[[10.0, 10.0, 1.0]], point_labels=[1]),
        r"shape \(N, 2\)",
    ),
    "no prompt at all": (dict(), "at least one point or a box"),
    "box left": (dict(box=[-30.0, 5.0, -10.0, 20.0]), "entirely outside"),
    "box right": (dict(box=[W + 5.0, 5.0, W + 20.0, 20.0]), "entirely outside"),
    "box above": (dict(box=[5.0, -30.0, 20.0, -5.0]), "entirely outside"),
    "box below": (dict(box=[5.0, H + 1.0, 20.0, H + 30.0]), "entirely outside"),
    "zero-width box": (dict(box=[20.0, 5.0, 20.0, 30.0]), "zero width or height"),
    "zero-height box": (dict(box=[5.0, 12.0, 30.0, 12.0]), "zero width or height"),
    "box of 3 numbers": (dict(box=[1.0, 2.0, 3.0]), r"box must be \(4,\) or \(B, 4\)"),
    "box of 2x2": (dict(box=[[1.0, 2.0], [3.0, 4.0]]), r"box must be \(4,\) or \(B, 4\)"),
    "NaN box": (dict(box=[1.0, np.nan, 30.0, 30.0]), "box contains NaN"),
    "mask_input 128x128": (
        dict(**POINT, mask_input=np.zeros((1, 128, 128), np.float32)),
        r"mask_input must be low-resolution logits of shape \(1, 256, 256\)",
    ),
    "mask_input with 3 masks": (
        dict(**POINT, mask_input=np.zeros((3, 256, 256), np.float32)),
        r"mask_input must be low-resolution logits",
    ),
    "NaN mask_input": (
        dict(**POINT, mask_input=np.full((1, 256, 256), np.nan, np.float32)),
        "mask_input contains NaN",
    ),
    "2 boxes, 1 point set": (
        dict(box=[BOX, BOX], **POINT),
        "2 box.*but 1 point set.*batch sizes must match",
    ),
    "1 box, 3 point sets": (
        dict(box=BOX, point_coords=np.full((3, 1, 2), 20.0), point_labels=np.ones((3, 1))),
        "1 box.*but 3 point set.*batch sizes must match",
    ),
}


@pytest.mark.parametrize("case", list(BAD_PROMPTS))
def test_bad_prompt_is_rejected_and_nothing_is_lost(ref, case):
    kwargs, message = BAD_PROMPTS[case]
    with pytest.raises(PromptError, match=message):
        ref.predictor.predict(**kwargs)
    ref.assert_intact(predict=False)  # see the next test


def test_predict_works_after_every_bad_prompt(ref):
    for kwargs, _ in BAD_PROMPTS.values():
        with pytest.raises(PromptError):
            ref.predictor.predict(**kwargs)
    ref.assert_intact()


def test_prompt_error_is_a_value_error(ref):
    with pytest.raises(ValueError, match="outside"):
        ref.predictor.predict(point_coords=[[-5.0, 0.0]], point_labels=[1])


def test_points_on_the_border_pixels_are_inside(ref):
    # The centres of the corner pixels and the image's outer edge (+-0.5) are valid points.
    corners = [[0.0, 0.0], [W - 1.0, H - 1.0], [-0.5, -0.5], [W - 0.5, H - 0.5]]
    masks, scores, _ = ref.predictor.predict(point_coords=corners, point_labels=[1, 1, 0, 0])
    assert masks.shape == (3, H, W) and np.all(np.isfinite(scores))


def test_box_partly_outside_is_clipped(ref):
    inside = ref.predictor.predict(box=[-0.5, 8.0, 50.0, H - 0.5])
    beyond = ref.predictor.predict(box=[-40.0, 8.0, 50.0, H + 100.0])
    np.testing.assert_array_equal(beyond[0], inside[0])
    np.testing.assert_allclose(beyond[1], inside[1], atol=1e-6)


def test_predict_before_set_image(predictor, micro_model_files):
    _, files = micro_model_files
    fresh = Sam2Predictor(
        predictor.encoder.session, predictor.decoder.session, predictor.backend_info
    )
    assert not fresh.is_image_set and fresh.image_hw is None and fresh.embedding is None
    with pytest.raises(RuntimeError, match=r"set_image\(\.\.\.\) before predict"):
        fresh.predict(**POINT)
    # Still true after reset_image.
    fresh.set_image(blob_image(H, W, seed=3))
    fresh.reset_image()
    with pytest.raises(RuntimeError, match="set_image"):
        fresh.predict(**POINT)


def test_set_embedding_rejects_other_types(ref):
    with pytest.raises(
        TypeError, match="Expected an ImageEmbedding or TiledEmbedding, got ndarray"
    ):
        ref.predictor.set_embedding(ref.embedding.image_embed)
    ref.assert_intact()


# -- bad model files ------------------------------------------------------------------------


def test_decoder_given_as_encoder(micro_model_files):
    # The two files swapped: the first problem found is the decoder in the encoder's place.
    _, files = micro_model_files
    with pytest.raises(ValueError, match="encoder file .* is a SAM2 decoder.*Pass it as decoder="):
        Sam2Predictor.from_files(files.decoder, files.encoder, backend="cpu")


def test_encoder_given_as_decoder(micro_model_files):
    _, files = micro_model_files
    with pytest.raises(ValueError, match="decoder file .* is a SAM2 image encoder.*as encoder="):
        Sam2Predictor.from_files(files.encoder, files.encoder, backend="cpu")


@pytest.mark.parametrize("which", ["encoder", "decoder"])
def test_missing_file(micro_model_files, tmp_path, which):
    _, files = micro_model_files
    paths = {"encoder": files.encoder, "decoder": files.decoder}
    paths[which] = tmp_path / "nope.onnx"
    with pytest.raises(FileNotFoundError, match=f"The {which} file does not exist: .*nope.onnx"):
        Sam2Predictor.from_files(paths["encoder"], paths["decoder"], backend="cpu")


@pytest.mark.parametrize("which", ["encoder", "decoder"])
def test_garbage_file(micro_model_files, tmp_path, which):
    _, files = micro_model_files
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf \x00\xff\x13" * 100)
    paths = {"encoder": files.encoder, "decoder": files.decoder, which: garbage}
    with pytest.raises(ValueError, match="garbage.onnx is not a valid ONNX model"):
        Sam2Predictor.from_files(paths["encoder"], paths["decoder"], backend="cpu")


# -- images that work -----------------------------------------------------------------------


# The embedding is a deterministic function of the encoder's input tensor, so equalities are
# checked on the tensor (exact and cheap) and encoding is kept to where it says something more.


def test_uint16_image(ref):
    image16 = ref.image.astype(np.uint16) * 257  # same picture, full 16-bit range
    emb = ref.predictor.compute_embedding(image16)
    assert emb.image_hw == (H, W)
    assert all(np.all(np.isfinite(a)) for a in (emb.image_embed, emb.high_res_feats_0))
    # Default limits for uint16 are percentiles, not the dtype range: a different embedding.
    assert _max_diff(emb, ref.embedding) > 1e-3
    # Scaled to 0..65535, it is the uint8 picture.
    np.testing.assert_allclose(
        prepare_image(image16, contrast_limits=(0, 65535)), prepare_image(ref.image), atol=1e-5
    )
    ref.assert_intact()


def test_float_image_in_unit_range_is_used_as_is(ref):
    unit = ref.image.astype(np.float32) / 255.0
    np.testing.assert_allclose(prepare_image(unit), prepare_image(ref.image), atol=1e-5)


def test_float_image_with_nans_is_nan_safe(ref):
    rng = np.random.default_rng(5)
    image = rng.uniform(100.0, 900.0, (H, W)).astype(np.float32)
    image[:8] = 100.0  # the minimum and maximum cover more than the default percentiles,
    image[-8:] = 900.0  # so replacing NaNs by the minimum does not move them
    with_nans = image.copy()
    holes = rng.random((H, W)) < 0.05
    with_nans[holes] = np.nan
    filled = np.where(holes, np.float32(100.0), with_nans)
    np.testing.assert_array_equal(prepare_image(with_nans), prepare_image(filled))
    ref.predictor.set_image(with_nans)
    emb_nan = ref.predictor.embedding
    assert all(np.all(np.isfinite(a)) for a in (emb_nan.image_embed, emb_nan.high_res_feats_0))
    masks, scores, _ = ref.predictor.predict(**POINT)
    assert masks.shape == (3, H, W) and np.all(np.isfinite(scores))


def test_rgba_drops_alpha(ref):
    alpha = np.random.default_rng(1).integers(0, 256, (H, W, 1), dtype=np.uint8)
    rgba = np.concatenate([ref.image, alpha], axis=-1)
    np.testing.assert_array_equal(prepare_image(rgba), prepare_image(ref.image))
    np.testing.assert_array_equal(prepare_image(rgba, rgb=True), prepare_image(ref.image))


def test_gray_forms_agree(ref):
    gray = ref.image[..., 0]
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    tensor = prepare_image(gray)
    np.testing.assert_allclose(prepare_image(gray[..., None]), tensor, atol=1e-6)
    np.testing.assert_allclose(prepare_image(rgb), tensor, atol=1e-6)
    emb_2d = ref.predictor.compute_embedding(gray)
    _assert_same_embedding(emb_2d, ref.predictor.compute_embedding(rgb))
    # ... and differ from the colour image they came from.
    assert _max_diff(emb_2d, ref.embedding) > 1e-3


def test_contrast_limits(ref):
    np.testing.assert_array_equal(
        prepare_image(ref.image, contrast_limits=(0, 255)), prepare_image(ref.image)
    )
    stretched = ref.predictor.compute_embedding(ref.image, contrast_limits=(30, 120))
    assert _max_diff(stretched, ref.embedding) > 1e-3


# -- prompts that work ----------------------------------------------------------------------


def test_reversed_box_equals_box(ref):
    x0, y0, x1, y1 = BOX
    normal = ref.predictor.predict(box=BOX)
    for box in ([x1, y1, x0, y0], [x1, y0, x0, y1], [x0, y1, x1, y0]):
        got = ref.predictor.predict(box=box)
        np.testing.assert_array_equal(got[0], normal[0])
        np.testing.assert_array_equal(got[1], normal[1])
        np.testing.assert_array_equal(got[2], normal[2])


def test_batched_boxes(ref):
    boxes = np.array([BOX, [30.0, 20.0, 60.0, 45.0]])
    masks, scores, low_res = ref.predictor.predict(box=boxes)
    assert masks.shape == (2, 3, H, W) and masks.dtype == bool
    assert scores.shape == (2, 3)
    assert low_res.shape == (2, 3, 256, 256)
    for b, box in enumerate(boxes):
        one = ref.predictor.predict(box=box)
        assert min(mask_iou(masks[b, k], one[0][k]) for k in range(3)) >= 0.999
        np.testing.assert_allclose(scores[b], one[1], atol=1e-4)


def test_batched_boxes_with_points(ref):
    boxes = np.array([BOX, [2.0, 2.0, 30.0, 25.0]])
    coords = np.array([[[30.0, 22.0]], [[12.0, 12.0]]])
    labels = np.ones((2, 1))
    masks, scores, _ = ref.predictor.predict(point_coords=coords, point_labels=labels, box=boxes)
    assert masks.shape == (2, 3, H, W) and scores.shape == (2, 3)
    one = ref.predictor.predict(point_coords=coords[1], point_labels=labels[1], box=boxes[1])
    np.testing.assert_allclose(scores[1], one[1], atol=1e-4)


def test_return_logits(ref):
    logits, scores, low_res = ref.predictor.predict(**POINT, return_logits=True)
    assert logits.shape == (3, H, W)
    assert logits.dtype == np.float32
    np.testing.assert_array_equal(logits > 0, ref.masks)
    np.testing.assert_allclose(scores, ref.scores, atol=1e-6)
    np.testing.assert_allclose(low_res, ref.low_res, atol=1e-5)
    # Real logits, not booleans cast to float.
    assert len(np.unique(logits)) > 10


def test_single_mask_output(ref):
    masks, scores, low_res = ref.predictor.predict(**POINT, multimask_output=False)
    assert masks.shape == (1, H, W) and scores.shape == (1,) and low_res.shape == (1, 256, 256)


def test_mask_input_refines(ref):
    best = int(np.argmax(ref.scores))
    masks, scores, _ = ref.predictor.predict(**POINT, mask_input=ref.low_res[best][None])
    assert masks.shape == (3, H, W)
    # The mask prompt is used: scores change.
    assert not np.allclose(scores, ref.scores, atol=1e-4)


def test_set_embedding_equals_set_image(ref):
    image = blob_image(40, 90, seed=11)
    predictor = ref.predictor
    predictor.set_image(image)
    by_image = predictor.predict(point_coords=[[45.0, 20.0]], point_labels=[1])
    predictor.set_embedding(ref.embedding)
    emb = predictor.compute_embedding(image)
    assert predictor.embedding is ref.embedding  # compute_embedding does not change the image
    predictor.set_embedding(emb)
    assert predictor.image_hw == (40, 90)
    by_embedding = predictor.predict(point_coords=[[45.0, 20.0]], point_labels=[1])
    np.testing.assert_array_equal(by_embedding[0], by_image[0])
    np.testing.assert_allclose(by_embedding[1], by_image[1], atol=1e-6)
    assert emb.nbytes == (256 * 64 * 64 + 32 * 256 * 256 + 64 * 128 * 128) * 4


# -- backends -------------------------------------------------------------------------------


def test_cpu_backend(predictor):
    assert predictor.backend == "cpu"
    assert predictor.device == "CPU"
    assert predictor.backend_info.provider == "cpu"
    assert predictor.backend_info.requested == "cpu"
    assert predictor.backend_info.fallback_reason is None
    assert "backend='cpu'" in repr(predictor)


def test_auto_falls_back_to_cpu_with_a_reason(micro_model_files, monkeypatch):
    from napari_sam2_webgpu.runtime import ENV_BACKEND, resolve_backend

    monkeypatch.delenv(ENV_BACKEND, raising=False)
    if resolve_backend("auto").provider == "webgpu":
        pytest.skip("WebGPU works here: there is no fallback to check")
    _, files = micro_model_files
    predictor = Sam2Predictor.from_files(files.encoder, files.decoder, backend="auto")
    assert predictor.backend == "cpu"
    assert predictor.device == "CPU"
    reason = predictor.backend_info.fallback_reason
    assert isinstance(reason, str) and reason.strip()
    assert "WebGPU unavailable" in predictor.backend_info.describe()


# -- decoders in samexporter's interface (masks and iou_predictions only) -------------------


@pytest.fixture(scope="module")
def samexporter_decoder(micro_model_files, tmp_path_factory):
    onnx = pytest.importorskip("onnx")
    _, files = micro_model_files
    proto = onnx.load(str(files.decoder))
    keep = [o for o in proto.graph.output if o.name in ("masks", "iou_predictions")]
    assert len(keep) == 2
    del proto.graph.output[:]
    proto.graph.output.extend(keep)
    del proto.metadata_props[:]  # samexporter's files carry none of ours
    path = tmp_path_factory.mktemp("samexporter") / "micro.decoder.onnx"
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def samexporter_predictor(micro_model_files, samexporter_decoder):
    _, files = micro_model_files
    return Sam2Predictor.from_files(files.encoder, samexporter_decoder, backend="cpu")


def test_samexporter_decoder_loads(samexporter_predictor):
    outputs = [o.name for o in samexporter_predictor.decoder.session.get_outputs()]
    assert outputs == ["masks", "iou_predictions"] == samexporter_predictor.decoder.outputs


def test_samexporter_decoder_multimask_matches_full_decoder(ref, samexporter_predictor):
    samexporter_predictor.set_embedding(ref.embedding)
    for prompt in (POINT, {**POINT, "box": BOX}):
        full = ref.predictor.predict(**prompt)
        got = samexporter_predictor.predict(**prompt)
        np.testing.assert_array_equal(got[0], full[0])
        np.testing.assert_allclose(got[1], full[1], atol=1e-6)
        np.testing.assert_allclose(got[2], full[2], atol=1e-5)


def test_samexporter_decoder_single_mask_is_best_multimask(ref, samexporter_predictor):
    samexporter_predictor.set_embedding(ref.embedding)
    for prompt in (POINT, {"box": BOX}):
        multi_masks, multi_scores, multi_low = samexporter_predictor.predict(**prompt)
        masks, scores, low = samexporter_predictor.predict(**prompt, multimask_output=False)
        best = int(np.argmax(multi_scores))
        assert masks.shape == (1, H, W) and scores.shape == (1,) and low.shape == (1, 256, 256)
        assert scores[0] == pytest.approx(multi_scores.max(), abs=1e-6)
        np.testing.assert_array_equal(masks[0], multi_masks[best])
        np.testing.assert_allclose(low[0], multi_low[best], atol=1e-5)
    # Batched prompts pick the best mask per prompt set.
    boxes = np.array([BOX, [2.0, 2.0, 30.0, 25.0]])
    _, multi_scores, _ = samexporter_predictor.predict(box=boxes)
    _, scores, _ = samexporter_predictor.predict(box=boxes, multimask_output=False)
    np.testing.assert_allclose(scores[:, 0], multi_scores.max(axis=1), atol=1e-6)


@pytest.mark.parametrize("multimask", [True, False])
def test_predict_best_is_the_best_mask_of_predict(micro_predictor, multimask):
    image = blob_image(240, 330, seed=11)
    micro_predictor.set_image(image)
    prompt = dict(point_coords=[[100.0, 120.0], [250.0, 60.0]], point_labels=[1, 0])
    masks, scores, low_res = micro_predictor.predict(**prompt, multimask_output=multimask)
    mask, score, best_low = micro_predictor.predict_best(**prompt, multimask_output=multimask)
    best = int(np.argmax(scores))
    np.testing.assert_array_equal(mask, masks[best])
    assert score == pytest.approx(float(scores[best]))
    np.testing.assert_array_equal(best_low, low_res[best : best + 1])


def test_predict_best_refuses_batches(micro_predictor):
    micro_predictor.set_image(blob_image(120, 160, seed=12))
    with pytest.raises(PromptError, match="one prompt set"):
        micro_predictor.predict_best(
            point_coords=[[[10.0, 10.0]], [[50.0, 60.0]]], point_labels=[[1], [1]]
        )


# -- an explicit embedding per decode -------------------------------------------------------


def test_predict_on_an_explicit_embedding_leaves_the_current_image(ref):
    other_image = blob_image(70, 90, seed=21)
    other = ref.predictor.compute_embedding(other_image)
    ref.predictor.set_embedding(other)
    expected = ref.predictor.predict(point_coords=[[40.0, 30.0]], point_labels=[1])
    ref.predictor.set_embedding(ref.embedding)
    got = ref.predictor.predict(point_coords=[[40.0, 30.0]], point_labels=[1], embedding=other)
    assert got[0].shape == (3, 70, 90)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1], atol=1e-6)
    np.testing.assert_allclose(got[2], expected[2], atol=1e-6)
    ref.assert_intact()  # the current image did not change
    # predict_best takes one too, and its mask is the best of predict's.
    mask, score, _ = ref.predictor.predict_best(
        point_coords=[[40.0, 30.0]], point_labels=[1], embedding=other
    )
    best = int(np.argmax(expected[1]))
    np.testing.assert_array_equal(mask, expected[0][best])
    assert score == pytest.approx(float(expected[1][best]))
    ref.assert_intact()


def test_predict_with_an_embedding_needs_no_current_image(predictor, ref):
    fresh = Sam2Predictor(
        predictor.encoder.session, predictor.decoder.session, predictor.backend_info
    )
    masks, scores, _ = fresh.predict(**POINT, embedding=ref.embedding)
    np.testing.assert_array_equal(masks, ref.masks)
    np.testing.assert_allclose(scores, ref.scores, atol=1e-6)
    assert not fresh.is_image_set
    # Prompts are checked against the embedding's image, not some other one.
    with pytest.raises(PromptError, match="outside the image"):
        fresh.predict(point_coords=[[W + 5.0, 1.0]], point_labels=[1], embedding=ref.embedding)
    with pytest.raises(
        TypeError, match="Expected an ImageEmbedding or TiledEmbedding, got ndarray"
    ):
        fresh.predict(**POINT, embedding=ref.embedding.image_embed)


def test_predictor_composes_a_public_encoder_and_decoder(predictor, ref):
    from napari_sam2_webgpu.image.decoder import PromptDecoder
    from napari_sam2_webgpu.image.encoder import ImageEncoder

    assert isinstance(predictor.encoder, ImageEncoder)
    assert isinstance(predictor.decoder, PromptDecoder)
    assert predictor.decoder_provider == predictor.decoder.provider == "cpu"
    emb = predictor.encoder.encode(ref.image)
    _assert_same_embedding(emb, ref.embedding)
    logits, scores, _ = predictor.decoder.decode(emb, **POINT)
    np.testing.assert_allclose(scores[0], ref.scores, atol=1e-6)
