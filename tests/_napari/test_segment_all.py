"""Segment all from the napari side (_napari/segment_all.py), on a ``ViewerModel`` (no Qt).

The micro model has random weights: thresholds at 0 and no box suppression keep every mask, so
the runs write labels; the expected labels are the core's own (``AutomaticMaskGenerator`` and
``masks_to_labels``) on the same slice and contrast limits. Two points a side keep it fast.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_sam2_webgpu._napari.annotator import Annotator
from napari_sam2_webgpu._napari.errors import AnnotatorError
from napari_sam2_webgpu._napari.segment_all import (
    SegmentAllController,
    SegmentAllParams,
)
from napari_sam2_webgpu.image import AutomaticMaskGenerator, masks_to_labels

from .stacks import moving_blob_stack

FAST = dict(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)


def expected(predictor, plane, layer, **params):
    """The core's labels of one slice, with the layer's contrast limits as a click uses."""
    params = {**FAST, **params}
    order = params.pop("order", "area")
    records = AutomaticMaskGenerator(predictor, **params).generate(
        plane, contrast_limits=layer.contrast_limits, rgb=layer.rgb
    )
    return masks_to_labels(records, plane.shape[:2], order=order)


@pytest.fixture
def setup(micro_predictor):
    """``make(data, **layer_kwargs)`` -> viewer, image, annotator, controller."""
    made = []

    def make(data, **kwargs):
        viewer = ViewerModel()
        image = viewer.add_image(data, name="cells", **kwargs)
        annotator = Annotator(viewer)
        annotator.set_image_layer(image)
        annotator.set_predictor(micro_predictor)
        made.append(annotator)
        return viewer, image, annotator, SegmentAllController(annotator)

    yield make
    for annotator in made:
        annotator.close()


def test_params_defaults_and_checks():
    params = SegmentAllParams()
    assert (params.points_per_side, params.pred_iou_thresh, params.stability_score_thresh) == (
        32,
        0.8,
        0.9,
    )
    assert params.order == "area" and "order" not in params.generator_kwargs()
    accepted = inspect.signature(AutomaticMaskGenerator).parameters
    assert set(params.generator_kwargs()) <= set(accepted)
    changed = params.replace(points_per_side=4.0, use_m2m=1, order="score")
    assert changed.points_per_side == 4 and changed.use_m2m is True and params.points_per_side == 32
    for bad in (
        dict(points_per_side=0),
        dict(points_per_side=2.5),
        dict(pred_iou_thresh=1.5),
        dict(min_mask_region_area=-1),
        dict(order="size"),
        dict(points=3),
    ):
        with pytest.raises(ValueError):
            params.replace(**bad)


def test_slice_into_a_new_layer_then_rerun(setup, micro_predictor):
    data = moving_blob_stack(1)[0]
    viewer, image, annotator, controller = setup(data, scale=(2.0, 0.5), translate=(3, 4))
    manual = viewer.add_labels(np.ones(data.shape, np.uint16), name="manual")
    annotator.set_labels_layer(manual)
    run = controller.segment("slice", **FAST)
    labels = run.labels
    assert run.created and labels is not manual and labels.name == "cells instances"
    assert viewer.layers.index(labels) == viewer.layers.index(image) + 1
    np.testing.assert_array_equal(labels.scale, image.scale)
    np.testing.assert_array_equal(labels.translate, image.translate)
    want = expected(micro_predictor, data, image)
    assert want.any() and run.objects > 0 and run.slices_encoded == 1
    np.testing.assert_array_equal(labels.data, want)
    np.testing.assert_array_equal(manual.data, 1)  # never written
    # The new layer is the target; the next click's id is above its labels; the slice is encoded.
    assert annotator.labels_layer is labels and annotator.object_id == want.max() + 1
    assert annotator.is_ready and len(annotator.cache) == 1

    # Again with the score order: the same layer, the slice replaced (ids above the old ones),
    # the embedding from the cache, one undo step brings the first run back.
    again = controller.segment("slice", order="score", **FAST)
    assert again.labels is labels and not again.created and again.slices_encoded == 0
    score = expected(micro_predictor, data, image, order="score")
    np.testing.assert_array_equal(labels.data, np.where(score > 0, score + want.max(), 0))
    labels.undo()
    np.testing.assert_array_equal(labels.data, want)
    assert "Segmented: 1 / 1 slices" in again.describe()


def test_whole_stack_offsets_ids_and_reuses_cached_slices(setup, micro_predictor):
    stack = moving_blob_stack(3)
    viewer, image, annotator, controller = setup(stack)
    viewer.dims.set_current_step(0, 1)
    request = annotator.encode_request()  # slice 1 encoded before, as a click would
    annotator.finish_encode(request, request.compute(micro_predictor), micro_predictor)
    seen = []
    run = controller.segment("stack", **FAST)
    assert run.written == [0, 1, 2] and run.slices_encoded == 2 and not run.failed
    offset = 0
    for z in range(3):
        want = expected(micro_predictor, stack[z], image)
        np.testing.assert_array_equal(run.labels.data[z], np.where(want > 0, want + offset, 0))
        offset += int(want.max())
        seen.append(set(np.unique(run.labels.data[z])) - {0})
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2])

    # Another slice alone: only that slice changes, in the same layer.
    before = run.labels.data.copy()
    viewer.dims.set_current_step(0, 2)
    again = controller.segment("slice", **FAST)
    assert again.labels is run.labels
    np.testing.assert_array_equal(run.labels.data[:2], before[:2])
    assert run.labels.data[2].min(initial=0) == 0 and run.labels.data[2].max() > before.max()


def test_progress_cancel_and_a_bad_slice(setup, micro_predictor):
    stack = moving_blob_stack(3).astype(np.float32)
    stack[1] = np.nan  # a slice without a finite value: reported, the stack goes on
    viewer, image, annotator, controller = setup(stack, contrast_limits=(0, 255))
    plan = controller.plan("stack", params=controller.params.replace(**FAST))
    run = controller.start(plan)
    calls = []
    for step in run.steps(progress=lambda *a: calls.append(a)):
        controller.apply(run, step)
    controller.finish(run)
    assert run.written == [0, 2] and list(run.failed) == [1] and run.error is None
    assert "finite" in run.failed[1] and not run.labels.data[1].any()
    assert calls[0][:2] == (0, 3) and calls[-1][:2] == (3, 3)  # 1 batch a slice
    assert calls[-1][2] == "SAM2: segment all, slice 3 / 3"

    # Cancelled after the first slice: that slice stays, nothing more is written.
    viewer.layers.remove(run.labels)
    run = controller.start(plan)
    for step in run.steps(cancelled=lambda: bool(run.written)):
        controller.apply(run, step)
    controller.finish(run)
    assert run.cancelled and run.written == [0] and run.labels.data[0].any()
    assert not run.labels.data[1:].any() and "Cancelled" in run.describe()


def test_constant_image_and_refusals(setup):
    viewer, image, annotator, controller = setup(np.full((40, 48), 7, np.uint8))
    run = controller.segment("slice", **FAST)
    assert run.objects == 0 and run.error is None and not run.labels.data.any()
    assert annotator.labels_layer is run.labels
    with pytest.raises(AnnotatorError, match="single 2D image"):
        controller.plan("stack")
    with pytest.raises(ValueError, match="scope"):
        controller.plan("all")
    viewer3, stack, annotator3, controller3 = setup(moving_blob_stack(2))
    with pytest.raises(AnnotatorError, match="displayed"):
        controller3.plan("stack", axis=1)
    annotator3.set_predictor(None)
    with pytest.raises(AnnotatorError, match="Load a model"):
        controller3.start(controller3.plan("slice"))
    # A layer made for a run that never started goes again.
    layer, created = controller3.output_layer(stack)
    assert created and layer in viewer3.layers
    controller3.discard(layer)
    assert layer not in viewer3.layers
