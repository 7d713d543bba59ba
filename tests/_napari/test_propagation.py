"""Propagating an object through a stack from the napari side (_napari/propagation.py).

These tests drive :class:`PropagationController` on a ``ViewerModel`` (no Qt): the stack and its
axis, which prompts are sent, the writing rule, one-step undo, cancelling and corrections. The
widget's Propagate button, progress bar and messages are tested in test_widget.py (its GUI tests
must run after test_runtime.py: once Qt's GL has loaded Mesa under Xvfb, wgpu's adapter
enumeration aborts the process).

The micro model has random weights, so its masks are noise-like: the tests compare the Labels
layer with the propagator's own masks (``controller._state.masks(frame)``), not with the blob.
On this stack every frame's mask is non-empty (checked), which the writing checks rely on.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_sam2_webgpu._napari.annotator import Annotator
from napari_sam2_webgpu._napari.errors import AnnotatorError
from napari_sam2_webgpu._napari.propagation import (
    PropagationController,
    _LayerFrames,
    stack_prompts,
    stack_spec,
)

from .stacks import (
    OBJECT,
    OTHER,
    blob_centre,
    expected_labels,
    moving_blob_stack,
    state_masks,
)


@pytest.fixture
def stack_setup(micro_predictor):
    """ViewerModel, 5-slice stack, annotator on the micro model, controller, pre-existing labels."""
    viewer = ViewerModel()
    image = viewer.add_image(moving_blob_stack(), name="stack")
    before = np.zeros(image.data.shape, np.uint16)
    before[:, :, 45:] = OTHER  # in the way of the blob's right part on the last slices
    labels = viewer.add_labels(before.copy(), name="manual")
    annotator = Annotator(viewer)
    annotator.inline_decode_seconds = 0.0
    annotator.set_image_layer(image)
    annotator.set_predictor(micro_predictor)
    annotator.set_labels_layer(labels)
    annotator.object_id = OBJECT
    controller = PropagationController(annotator)
    controller.set_model(micro_predictor)
    yield viewer, image, labels, before, annotator, controller
    annotator.close()


def point_on(viewer, image, annotator, frame, row=None, col=None, positive=True):
    """Step to ``frame`` (encoded if needed) and add a point (default: the blob's centre)."""
    viewer.dims.set_current_step(0, frame)
    if not annotator.is_ready:
        request = annotator.encode_request()
        embedding = request.compute(annotator.predictor)
        annotator.finish_encode(request, embedding, annotator.predictor)
    cy, cx = blob_centre(frame)
    annotator.add_point(
        image.data_to_world([frame, cy if row is None else row, cx if col is None else col]),
        positive=positive,
    )


# -- the stack and its prompts (no model runs) ----------------------------------------------------


def test_stack_axis_fixed_steps_and_frames(micro_predictor):
    viewer = ViewerModel()
    data = np.arange(2 * 3 * 16 * 20, dtype=np.uint16).reshape(2, 3, 16, 20)
    image = viewer.add_image(data)
    annotator = Annotator(viewer)
    annotator.set_image_layer(image)
    annotator.set_predictor(micro_predictor)
    viewer.dims.set_current_step(0, 1)
    viewer.dims.set_current_step(1, 2)

    spec = stack_spec(annotator)  # 4D: the first not-displayed axis, the other one held
    assert (spec.axis, spec.fixed, spec.num_frames) == (0, ((1, 2),), 2)
    assert spec.frame_slice(0).indexer() == (0, 2, slice(None), slice(None))
    spec = stack_spec(annotator, axis=1)
    assert (spec.axis, spec.fixed, spec.num_frames) == (1, ((0, 1),), 3)
    frames = _LayerFrames(spec)
    assert frames.shape == (3, 16, 20)
    np.testing.assert_array_equal(frames[2], data[1, 2])
    with pytest.raises(AnnotatorError, match="displayed"):
        stack_spec(annotator, axis=3)

    viewer.dims.order = (0, 2, 1, 3)  # display (z, x): frames are taken along y
    spec = stack_spec(annotator, axis=2)
    assert spec.template.shape == (3, 20) and spec.num_frames == 16
    np.testing.assert_array_equal(_LayerFrames(spec)[5], data[1, :, 5, :])
    annotator.close()

    flat = ViewerModel()
    annotator = Annotator(flat)
    annotator.set_image_layer(flat.add_image(np.zeros((16, 20), np.uint8), name="flat"))
    annotator.set_predictor(micro_predictor)
    with pytest.raises(AnnotatorError, match="single 2D image"):
        stack_spec(annotator)
    annotator.close()


def test_rgb_stack_frames(micro_predictor):
    viewer = ViewerModel()
    data = np.random.default_rng(0).integers(0, 255, (3, 16, 20, 3), dtype=np.uint8)
    image = viewer.add_image(data, rgb=True)
    annotator = Annotator(viewer)
    annotator.set_image_layer(image)
    annotator.set_predictor(micro_predictor)
    spec = stack_spec(annotator)
    assert spec.rgb and _LayerFrames(spec).shape == (3, 16, 20, 3)
    np.testing.assert_array_equal(_LayerFrames(spec)[1], data[1])
    annotator.close()


def test_prompts_of_every_slice(stack_setup):
    viewer, image, _, _, annotator, controller = stack_setup
    prompts = annotator.ensure_prompt_layers()
    with annotator.prompts.muted():  # as if clicked on each slice (no decoding here)
        prompts.add(np.array([[1, 10.0, 12.0], [1, 30.0, 40.0], [3, 5.0, 6.0]]))
        prompts.features = {"positive": [True, False, True]}
        annotator.box_layer.add(
            np.array([[4, 2, 3], [4, 2, 30], [4, 20, 30], [4, 20, 3]], float),
            shape_type="rectangle",
        )
    spec = stack_spec(annotator)
    found = stack_prompts(annotator, spec)
    assert sorted(found) == [1, 3, 4]
    points, labels, box = found[1]
    np.testing.assert_array_equal(points, [[12, 10], [40, 30]])  # (x, y)
    assert labels.tolist() == [1, 0] and box is None
    np.testing.assert_array_equal(found[4][2], [3, 2, 30, 20])
    assert found[4][0] is None


# -- runs with the micro model --------------------------------------------------------------------


def test_propagate_both_ways_without_overwriting(stack_setup):
    viewer, image, labels, before, annotator, controller = stack_setup
    point_on(viewer, image, annotator, 2)
    assert annotator.preview_mask is not None  # the click decoded, as usual
    assert controller.check() is None
    cached = len(annotator.cache)

    run = controller.propagate("both")
    assert run.frames_written == [2, 3, 4, 2, 1, 0] and run.total == 6
    assert not run.cancelled and run.error is None and run.fps > 0
    masks = state_masks(controller, range(5))
    assert all(m.any() for m in masks.values())  # the fixture's property the checks rely on
    np.testing.assert_array_equal(labels.data, expected_labels(before, masks, OBJECT))
    assert all((labels.data[f] == OBJECT).any() for f in range(5))
    np.testing.assert_array_equal(labels.data[before == OTHER], OTHER)
    assert any((masks[f] & (before[f] == OTHER)).any() for f in range(5))  # it was in the way
    # Each slice was encoded once, into the annotator's cache under a click's key.
    assert run.frames_encoded == 4 and len(annotator.cache) == cached + 4
    viewer.dims.set_current_step(0, 4)
    assert annotator.is_ready  # a click on slice 4 needs no encode
    assert "Propagated object 3 (both): 6 slices" in run.describe()

    # Propagating again with the same prompts sends none and encodes nothing.
    again = controller.propagate("forward")
    assert again.updates == {} and again.clears == [] and again.frames_encoded == 0
    assert again.frames_written == [2, 3, 4]
    np.testing.assert_array_equal(labels.data, expected_labels(before, masks, OBJECT))

    # A run is one undo step (the second one changed nothing, so it added none).
    assert controller.is_propagated()
    labels.undo()
    np.testing.assert_array_equal(labels.data, before)
    assert not controller.is_propagated()  # its labels are gone: "commit" is a commit again


def test_correction_replaces_the_drifted_mask(stack_setup):
    viewer, image, labels, before, annotator, controller = stack_setup
    point_on(viewer, image, annotator, 1)
    controller.propagate("forward")
    assert controller.is_propagated()
    labels.data[3, :20, :20] = OBJECT  # drift: the object's pixels where they should not be

    point_on(viewer, image, annotator, 3, row=5, col=5, positive=False)  # the correction
    assert not controller.is_propagated()
    run = controller.propagate("forward")
    assert sorted(run.updates) == [3] and run.clears == []
    assert run.frames_written == [1, 2, 3, 4]
    fixed = state_masks(controller, [3])[3]
    assert 3 in controller._state.objects[OBJECT].cond  # a conditioning frame from now on
    np.testing.assert_array_equal(
        labels.data[3], np.where(fixed & (before[3] == 0), OBJECT, before[3])
    )

    # Removing the correction point clears that slice's prompts in the tracking state.
    prompts = annotator.prompts_layer
    prompts.selected_data = {len(prompts.data) - 1}
    prompts.remove_selected()
    plan = controller.start("forward")
    assert plan.clears == [3] and plan.updates == {}
    controller.finish(plan)


def test_cancel_keeps_the_frames_written(stack_setup):
    viewer, image, labels, before, annotator, controller = stack_setup
    point_on(viewer, image, annotator, 2)
    run = controller.start("both")
    for step in run.steps():
        if controller.apply(run, step):
            run.cancel()  # after the first frame
    controller.finish(run)
    assert run.cancelled and run.frames_written == [2] and run.total == 6
    assert "Cancelled object 3 (both): 1 slices" in run.describe()
    mask = state_masks(controller, [2])[2]
    np.testing.assert_array_equal(labels.data[2], np.where(mask & (before[2] == 0), 3, before[2]))
    np.testing.assert_array_equal(labels.data[[0, 1, 3, 4]], before[[0, 1, 3, 4]])
    assert controller.run is None and controller.check() is None  # free for the next run
    controller.propagate("both")
    assert all((labels.data[f] == OBJECT).any() for f in range(5))


def test_overwrite_option_and_other_objects(stack_setup):
    viewer, image, labels, before, annotator, controller = stack_setup
    annotator.overwrite = True
    point_on(viewer, image, annotator, 2)
    controller.propagate("forward")
    masks = state_masks(controller, [2, 3, 4])
    np.testing.assert_array_equal(
        labels.data, expected_labels(before, masks, OBJECT, overwrite=True)
    )
    assert (labels.data[before == OTHER] == OBJECT).any()

    # Done with it ("commit" after propagating): the next object starts from scratch.
    assert controller.finish_object() == OTHER + 1
    assert len(annotator.prompts_layer.data) == 0 and OBJECT not in controller._state.objects
    point_on(viewer, image, annotator, 4, row=10, col=10)
    run = controller.propagate("backward")
    assert controller._state.obj_ids == [OTHER + 1] and len(run.frames_written) == 5


def test_unavailable_without_video_components(micro_model_files, tmp_path):
    from napari_sam2_webgpu.predictor import Sam2Predictor

    _, files = micro_model_files
    enc = shutil.copy(files.encoder, tmp_path / "m.encoder.onnx")
    dec = shutil.copy(files.decoder, tmp_path / "m.decoder.onnx")
    predictor = Sam2Predictor.from_files(enc, dec, backend="cpu")
    viewer = ViewerModel()
    image = viewer.add_image(moving_blob_stack(3))
    annotator = Annotator(viewer)
    annotator.set_image_layer(image)
    annotator.set_predictor(predictor)
    controller = PropagationController(annotator)
    assert "Load a model" in controller.check()
    controller.set_model(predictor, "small")
    assert not controller.available
    reason = controller.check()
    assert "napari-sam2-webgpu convert sam2.1_hiera_small.pt --size small --install" in reason
    with pytest.raises(AnnotatorError, match="video components"):
        controller.start("both")
    controller.set_model(predictor)  # custom files: where to put the exported ones
    assert "--out" in controller.unavailable_reason
    annotator.close()


# -- undo steps -----------------------------------------------------------------------------------


def drive(controller, run, stop_after=None, between=None):
    """Iterate a run's steps and apply each on "the GUI thread", as the widget does; call
    ``between(run)`` after each frame written; stop after ``stop_after`` frames."""
    for step in run.steps():
        if controller.apply(run, step):
            if between is not None:
                between(run)
            if stop_after is not None and len(run.frames_written) == stop_after:
                run.cancel()
    return controller.finish(run)


def test_a_whole_run_is_one_undo_step(stack_setup):
    """Frames are written one GUI event each, yet one undo takes the whole run back, and the
    next one the commit made before it."""
    viewer, image, labels, before, annotator, controller = stack_setup
    point_on(viewer, image, annotator, 0, row=12, col=12)
    assert annotator.commit() > 0
    committed = labels.data.copy()
    point_on(viewer, image, annotator, 2)
    seen = []
    run = drive(
        controller, controller.start("both"), between=lambda r: seen.append(r.labels.data.copy())
    )
    assert run.frames_written == [2, 3, 4, 2, 1, 0] and run.error is None
    assert not np.array_equal(seen[0], committed)  # each frame shows as soon as it is written
    assert controller.is_last_undo_step()
    labels.undo()
    np.testing.assert_array_equal(labels.data, committed)
    assert not controller.is_last_undo_step() and not controller.is_propagated()
    labels.undo()
    np.testing.assert_array_equal(labels.data, before)


def test_a_cancelled_or_failed_run_is_one_undo_step(stack_setup):
    viewer, image, labels, before, annotator, controller = stack_setup
    point_on(viewer, image, annotator, 2)
    run = controller.start("both")

    def fail_at_the_second_frame(run):
        if len(run.frames_written) == 2:
            run.error = RuntimeError("the Labels layer is read-only")  # as the widget records it
            run.cancel()

    drive(controller, run, between=fail_at_the_second_frame)
    assert run.frames_written == [2, 3] and run.error is not None
    assert (labels.data[[2, 3]] == OBJECT).any()
    labels.undo()
    np.testing.assert_array_equal(labels.data, before)
    # The run no longer groups the layer's changes: an edit now is a step of its own, at once.
    steps = []
    labels.events.paint.connect(lambda event: steps.append(event.value))
    labels.data_setitem((np.array([0]), np.array([0]), np.array([0])), 5)
    assert len(steps) == 1

    annotator.clear()
    point_on(viewer, image, annotator, 2)
    drive(controller, controller.start("forward"), stop_after=1)  # cancelled by the user
    assert (labels.data == OBJECT).any() and len(steps) == 2
    labels.undo()
    assert labels.data[0, 0, 0] == 5 and not (labels.data == OBJECT).any()


def test_a_commit_or_an_undo_during_a_run_keeps_the_steps_apart(stack_setup):
    viewer, image, labels, before, annotator, controller = stack_setup
    point_on(viewer, image, annotator, 1)
    run = controller.start("forward")
    annotator.object_id = OTHER + 2  # the next object, committed while the run goes on
    states = []

    def commit_at_the_second_frame(run):
        states.append(labels.data.copy())
        if len(run.frames_written) == 2:
            mask = np.zeros(labels.data.shape[1:], bool)
            mask[:4, :4] = True
            sl = run.spec.frame_slice(0)
            annotator.target.commit(mask, sl, image, overwrite=False)
            states.append(labels.data.copy())

    drive(controller, run, between=commit_at_the_second_frame)
    assert run.frames_written == [1, 2, 3, 4]
    labels.undo()  # the run's frames after the commit
    np.testing.assert_array_equal(labels.data, states[2])
    labels.undo()  # the commit
    np.testing.assert_array_equal(labels.data, states[1])
    labels.undo()  # the run's frames before it
    np.testing.assert_array_equal(labels.data, before)

    # The widget's Undo during a run takes back the run's frames so far, not an older step.
    annotator.object_id = OBJECT
    run = controller.start("forward")
    undone = []
    drive(controller, run, stop_after=3, between=lambda r: undone.append(annotator.undo()))
    assert undone == [True, True, True]
    np.testing.assert_array_equal(labels.data, before)
