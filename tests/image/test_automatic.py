"""Segment everything: parity with ``SAM2AutomaticMaskGenerator``, the filters against the
official ``sam2.utils.amg`` functions, bad input, instance labels, progress and cancel.

Random weights give large noise masks, so the parity runs keep every mask (thresholds 0, no box
suppression) and compare them one to one; the filters are checked on controlled data. Few grid
points keep this file fast: the decoder costs ~0.1 s a point on two CPU cores.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_sam2_webgpu.coco import decode_rle, encode_rle
from napari_sam2_webgpu.image import automatic
from napari_sam2_webgpu.image.automatic import (
    AutomaticMaskGenerator,
    SegmentationCancelled,
    masks_to_labels,
    segment_all,
)
from napari_sam2_webgpu.image.mask_candidates import near_crop_edge
from napari_sam2_webgpu.image.mask_geometry import (
    batched_mask_to_box,
    box_nms,
    build_point_grid,
    fill_small_regions,
    generate_crop_boxes,
)
from napari_sam2_webgpu.image.postprocess import mask_iou
from napari_sam2_webgpu.image.preprocess import ImageError

from ..conftest import blob_image
from ..export.helpers import connected_components_cpu

H, W = 160, 224
#: Every mask survives: parity is checked mask by mask, not on what random weights filter.
KEEP_ALL = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
#: Small decoder batches keep the decoder's memory (ONNX Runtime's and torch's) low.
PARITY = dict(KEEP_ALL, points_per_batch=2)


@pytest.fixture(scope="module")
def image():
    return blob_image(H, W, seed=5)


def _official(model, image, **params):
    import torch
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    with torch.inference_mode():
        return SAM2AutomaticMaskGenerator(model, **params).generate(image)


def _assert_same_records(ours, ref):
    assert len(ours) == len(ref) > 0
    # Match each official mask to ours from the same prompt (point and crop) by IoU: the order
    # is the official one too, but a tie in the scores could swap two equally good masks, and
    # random weights give several prompts the same mask (the whole image) with other scores.
    for r in ref:
        ious = [
            mask_iou(o["segmentation"], r["segmentation"])
            if o["crop_box"] == r["crop_box"]
            and np.allclose(o["point_coords"], r["point_coords"], atol=1e-4)
            else -1.0
            for o in ours
        ]
        best = int(np.argmax(ious))
        assert ious[best] >= 0.99, (ious[best], r["bbox"])
        o = ours[best]
        assert o["predicted_iou"] == pytest.approx(r["predicted_iou"], abs=1e-3)
        assert o["stability_score"] == pytest.approx(r["stability_score"], abs=0.02)
        assert o["crop_box"] == r["crop_box"]
        np.testing.assert_allclose(o["point_coords"], r["point_coords"], atol=1e-4)
        np.testing.assert_allclose(o["bbox"], r["bbox"], atol=1.0)
        assert abs(o["area"] - r["area"]) <= 0.01 * max(r["area"], 100)
        assert set(o) == set(r)
    # Random weights still give masks that are neither empty nor the whole image.
    areas = np.array([r["area"] for r in ours])
    assert np.any((areas > 0) & (areas < H * W))


# -- parity --------------------------------------------------------------------------------------
@pytest.mark.parity
def test_parity_whole_image_with_small_region_removal(
    micro_model_files, micro_predictor, image, monkeypatch
):
    import sam2.utils.misc

    monkeypatch.setattr(sam2.utils.misc, "get_connected_components", connected_components_cpu)
    model, _ = micro_model_files
    params = dict(PARITY, points_per_side=3, min_mask_region_area=4)
    ours = AutomaticMaskGenerator(micro_predictor, **params).generate(image)
    _assert_same_records(ours, _official(model, image, **params))
    assert len(ours) == 27  # 9 points x 3 masks, nothing dropped


@pytest.mark.parity
def test_parity_full_size_tiny(image, tmp_path):
    """The full-size tiny config (real Hiera trunk), built from its checkpoint without torch as
    users get it, against the official generator on the same weights; a 2 x 2 grid keeps it
    cheap."""
    from napari_sam2_webgpu import Sam2Predictor
    from napari_sam2_webgpu.export import build_sam2_model
    from napari_sam2_webgpu.models.convert import build_model

    model = build_sam2_model("tiny", seed=3)
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    paths, _ = build_model(state, "tiny", tmp_path, stem="tiny")
    del state
    predictor = Sam2Predictor.from_files(paths.encoder, paths.decoder, "cpu")
    params = dict(PARITY, points_per_side=2)
    ours = AutomaticMaskGenerator(predictor, **params).generate(image)
    del predictor
    _assert_same_records(ours, _official(model, image, **params))


@pytest.mark.parity
def test_parity_crops(micro_model_files, micro_predictor, image, monkeypatch):
    """One crop layer (4 crops), crop-box NMS at its default.

    Random masks are large blobs that always touch a crop's inner edge, so the official filter
    would drop every crop mask; it is switched off on both sides to compare the crops' masks
    (uncropping of masks, boxes and points, and the NMS between crops).
    """
    import sam2.automatic_mask_generator as official

    def nowhere_near(boxes, *args, **kwargs):
        import torch

        return torch.zeros(len(boxes), dtype=torch.bool)

    monkeypatch.setattr(official, "is_box_near_crop_edge", nowhere_near)
    monkeypatch.setattr(
        automatic, "near_crop_edge", lambda boxes, *a: np.zeros(len(boxes), dtype=bool)
    )
    model, _ = micro_model_files
    params = dict(PARITY, points_per_side=2, crop_n_layers=1)
    ours = AutomaticMaskGenerator(micro_predictor, **params).generate(image)
    _assert_same_records(ours, _official(model, image, **params))
    assert len({tuple(r["crop_box"]) for r in ours}) > 1  # crop masks survived


@pytest.mark.parity
@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
def test_parity_m2m(micro_model_files, micro_predictor, image, multimask):
    model, _ = micro_model_files
    params = dict(PARITY, points_per_side=2, use_m2m=True, multimask_output=multimask)
    ours = AutomaticMaskGenerator(micro_predictor, **params).generate(image)
    _assert_same_records(ours, _official(model, image, **params))
    assert len(ours) == (12 if multimask else 4)


# -- the filters and geometry against sam2.utils.amg ----------------------------------------------
def test_geometry_matches_official():
    amg = pytest.importorskip("sam2.utils.amg")
    torch = pytest.importorskip("torch")
    for n in (1, 4, 7):
        np.testing.assert_array_equal(build_point_grid(n), amg.build_point_grid(n))
    for hw, layers, ratio in [((100, 140), 2, 512 / 1500), ((9, 300), 1, 0.5), ((37, 37), 3, 0.1)]:
        assert generate_crop_boxes(hw, layers, ratio) == amg.generate_crop_boxes(hw, layers, ratio)
    rng = np.random.default_rng(0)
    masks = rng.random((6, 13, 17)) > 0.97
    masks[0] = False
    np.testing.assert_array_equal(
        batched_mask_to_box(masks), amg.batched_mask_to_box(torch.from_numpy(masks)).numpy()
    )
    for mask in [masks[1], masks[0], np.ones((3, 4), bool), rng.random((5, 6)) > 0.5]:
        rle = encode_rle(mask, compressed=False)
        assert rle == amg.mask_to_rle_pytorch(torch.from_numpy(mask[None]))[0]
        np.testing.assert_array_equal(decode_rle(rle), mask)


def test_crop_edge_filter_matches_official():
    amg = pytest.importorskip("sam2.utils.amg")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    xy = rng.integers(0, 90, (200, 2))
    boxes = np.concatenate([xy, xy + rng.integers(0, 60, (200, 2))], axis=1)  # crop frame
    hw = (150, 210)
    for crop_box, _ in zip(*generate_crop_boxes(hw, 2, 0.3), strict=True):
        ref = amg.is_box_near_crop_edge(torch.from_numpy(boxes), crop_box, [0, 0, hw[1], hw[0]])
        np.testing.assert_array_equal(near_crop_edge(boxes, crop_box, hw), ref.numpy())


def test_box_nms_matches_torchvision():
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    rng = np.random.default_rng(1)
    xy = rng.integers(0, 60, (300, 2))
    boxes = np.concatenate([xy, xy + rng.integers(0, 30, (300, 2))], axis=1)
    scores = rng.random(300).astype(np.float32)
    scores[::7] = 0.5  # ties keep their order, as in torchvision's stable sort
    for thresh in (0.3, 0.7, 1.0):
        ref = ops.nms(torch.from_numpy(boxes).float(), torch.from_numpy(scores), thresh).numpy()
        np.testing.assert_array_equal(box_nms(boxes, scores, thresh), ref)
    assert box_nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)


def test_fill_small_regions_matches_official(monkeypatch):
    torch = pytest.importorskip("torch")
    import sam2.utils.misc
    from sam2.utils.transforms import SAM2Transforms

    monkeypatch.setattr(sam2.utils.misc, "get_connected_components", connected_components_cpu)
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 1, (4, 1, 32, 32)).astype(np.float32)
    logits[:, :, 8:24, 8:24] += 2.0
    for area in (0, 1, 5, 40):
        transforms = SAM2Transforms(32, 0.0, max_hole_area=area, max_sprinkle_area=area)
        ref = transforms.postprocess_masks(torch.from_numpy(logits), (32, 32)).numpy()
        np.testing.assert_allclose(fill_small_regions(logits[:, 0], area), ref[:, 0], atol=1e-5)


# -- bad input ------------------------------------------------------------------------------------
class NoModel:
    """Stands in for a predictor that must not be used."""

    def __getattr__(self, name):
        raise AssertionError(f"the model was used ({name})")


@pytest.mark.parametrize("shape", [(0, 10), (10, 0), (0, 0, 3)])
def test_empty_image_is_an_error(shape):
    with pytest.raises(ValueError, match="empty"):
        AutomaticMaskGenerator(NoModel()).generate(np.zeros(shape, np.uint8))


@pytest.mark.parametrize(
    "img",
    [
        np.full((40, 50), 7, np.uint8),
        np.full((40, 50, 3), [10, 200, 30], np.uint8),
        np.full((40, 50), 0.25, np.float32),
        np.ones((1, 1), np.uint16),
        np.ones((1, 1, 3), np.uint8),
        np.arange(5 * 3, dtype=float).reshape(5, 3),
    ],
    ids=["constant", "constant-rgb", "constant-float", "1-pixel", "1-pixel-rgb", "5x3"],
)
def test_nothing_to_segment_gives_no_masks(img):
    calls = []
    labels, records = segment_all(NoModel(), img, progress=lambda *a: calls.append(a))
    assert records == []
    assert labels.shape == img.shape[:2] and labels.dtype == np.int32 and not labels.any()
    assert calls == [(0, 0)]


@pytest.mark.parametrize(
    "img", [np.ones((1, 1), bool), np.ones((2, 2, 2), np.uint8), np.ones((3, 9, 9, 3))]
)
def test_not_an_image_is_an_error(img):
    with pytest.raises(ImageError):
        AutomaticMaskGenerator(NoModel()).generate(img)


def test_all_nan_is_an_error():
    with pytest.raises(ImageError, match="finite"):
        AutomaticMaskGenerator(NoModel()).generate(np.full((20, 20), np.nan))


def test_bad_parameters():
    with pytest.raises(ValueError, match="exactly one"):
        AutomaticMaskGenerator(NoModel(), point_grids=[build_point_grid(2)])
    with pytest.raises(ValueError, match="point_grids"):
        AutomaticMaskGenerator(
            NoModel(), points_per_side=None, point_grids=[build_point_grid(2)], crop_n_layers=1
        )
    with pytest.raises(ValueError, match="output_mode"):
        AutomaticMaskGenerator(NoModel(), output_mode="rle")


def test_grayscale_rgb_and_dtypes_agree(micro_predictor):
    """Gray uint8, the same as RGB, as uint16 and as float: the same masks."""
    gray = blob_image(64, 80, seed=9)[..., 0]
    params = dict(PARITY, points_per_side=1)
    ref = AutomaticMaskGenerator(micro_predictor, **params).generate(gray)
    assert len(ref) == 3 and all(r["segmentation"].shape == gray.shape for r in ref)
    variants = [
        (np.stack([gray] * 3, axis=-1), None),
        (gray.astype(np.uint16) * 257, (0, 65535)),
        (gray.astype(np.float32) / 255, None),
    ]
    for img, limits in variants:
        got = AutomaticMaskGenerator(micro_predictor, **params).generate(
            img, contrast_limits=limits
        )
        assert len(got) == len(ref)
        for g, r in zip(got, ref, strict=True):
            assert mask_iou(g["segmentation"], r["segmentation"]) >= 0.99


# -- labels ---------------------------------------------------------------------------------------
def _record(mask, iou=0.9, stability=0.95):
    box = batched_mask_to_box(mask[None])[0]
    return {
        "segmentation": mask,
        "area": int(mask.sum()),
        "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
        "predicted_iou": iou,
        "stability_score": stability,
    }


def _overlapping_records():
    big = np.zeros((30, 40), bool)
    big[2:28, 3:37] = True
    small = np.zeros_like(big)
    small[10:15, 10:16] = True
    side = np.zeros_like(big)
    side[20:30, 30:40] = True  # overlaps big's corner
    return [_record(small, 0.7), _record(big, 0.9), _record(side, 0.8)]


def test_labels_area_order_keeps_small_objects():
    records = _overlapping_records()
    labels = masks_to_labels(records, (30, 40))
    small, big, side = (r["segmentation"] for r in records)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels == 1, small)  # the small one inside survives whole
    np.testing.assert_array_equal(labels == 3, side)  # smaller than big: on top of it
    np.testing.assert_array_equal(labels == 2, big & ~small & ~side)
    np.testing.assert_array_equal(labels == 0, ~(big | small | side))


def test_labels_score_order_most_confident_wins():
    records = _overlapping_records()
    labels = masks_to_labels(records, (30, 40), order="score")
    small, big, side = (r["segmentation"] for r in records)
    np.testing.assert_array_equal(labels == 2, big)  # 0.9 covers the others
    np.testing.assert_array_equal(labels == 3, side & ~big)
    assert not np.any(labels == 1)


def test_labels_from_rle_and_errors():
    records = _overlapping_records()
    as_rle = [
        {**r, "segmentation": encode_rle(r["segmentation"], compressed=False)} for r in records
    ]
    np.testing.assert_array_equal(
        masks_to_labels(as_rle, (30, 40)), masks_to_labels(records, (30, 40))
    )
    assert not masks_to_labels([], (5, 6)).any()
    with pytest.raises(ValueError, match="order"):
        masks_to_labels(records, (30, 40), order="size")
    with pytest.raises(ValueError, match="shape"):
        masks_to_labels(records, (31, 40))


# -- the whole path, progress and cancel ---------------------------------------------------------
def test_segment_all_progress_and_labels(micro_predictor, image):
    calls = []
    labels, records = segment_all(
        micro_predictor,
        image,
        points_per_side=2,
        points_per_batch=3,
        progress=lambda done, total: calls.append((done, total)),
        output_mode="uncompressed_rle",
        **KEEP_ALL,
    )
    assert calls == [(0, 2), (1, 2), (2, 2)]
    assert len(records) == 12 and labels.shape == (H, W) and labels.dtype == np.int32
    assert labels.max() > 0
    for i, record in enumerate(records):
        mask = decode_rle(record["segmentation"])
        assert record["area"] == mask.sum()
        # Every pixel of a label comes from its record's mask (no overlaps by construction).
        assert not np.any((labels == i + 1) & ~mask)


@pytest.mark.parametrize("hook", ["callable", "event"])
def test_cancel_stops_between_batches(micro_predictor, image, hook):
    calls = []
    event = threading.Event()

    def progress(done, total):
        calls.append((done, total))
        if done >= 1:
            event.set()

    cancelled = event if hook == "event" else event.is_set
    generator = AutomaticMaskGenerator(micro_predictor, points_per_side=2, points_per_batch=1)
    with pytest.raises(SegmentationCancelled):
        generator.generate(image, progress=progress, cancelled=cancelled)
    assert calls == [(0, 4), (1, 4)]


def test_cancel_before_start_encodes_nothing(image):
    with pytest.raises(SegmentationCancelled):
        AutomaticMaskGenerator(NoModel()).generate(image, cancelled=lambda: True)


def test_decoder_runs_of_any_size_give_the_same_masks(micro_predictor):
    """``decoder_batch`` splits a batch into several decoder runs (WebGPU's default): the
    records do not change."""
    image = blob_image(48, 64, seed=5)
    params = dict(KEEP_ALL, points_per_side=3, points_per_batch=9)
    whole = AutomaticMaskGenerator(micro_predictor, **params).generate(image)
    split = AutomaticMaskGenerator(micro_predictor, decoder_batch=2, **params).generate(image)
    assert len(whole) == len(split) > 0
    for a, b in zip(whole, split, strict=True):
        np.testing.assert_array_equal(a["segmentation"], b["segmentation"])
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-5)
    with pytest.raises(ValueError, match="decoder_batch"):
        AutomaticMaskGenerator(NoModel(), decoder_batch=0)
