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

    # Propagating again with the same prompts sends none and encodes nothing. Slices 3 and 4
    # are tracked again, now with slice 1 (tracked by the backward pass) in their memory, as
    # the official predictor does: their masks may change.
    first = labels.data.copy()
    again = controller.propagate("forward")
    assert again.updates == {} and again.clears == [] and again.frames_encoded == 0
    assert again.frames_written == [2, 3, 4]
    masks.update(state_masks(controller, [2, 3, 4]))
    np.testing.assert_array_equal(labels.data, expected_labels(before, masks, OBJECT))

    # A run is one undo step (one that changed nothing adds none).
    assert controller.is_propagated()
    if not np.array_equal(labels.data, first):
        labels.undo()
        np.testing.assert_array_equal(labels.data, first)
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


# -- several objects ------------------------------------------------------------------------------


def test_several_objects_propagate_together(stack_setup):
    """Objects prompted one after another (N between them) are tracked by one Propagate, each
    under its own id, exactly as each tracked alone; objects of a run never paint over each
    other, and finishing one leaves the others' prompts and tracking."""
    viewer, image, labels, before, annotator, controller = stack_setup
    point_on(viewer, image, annotator, 1)  # object 3 on its blob
    second = annotator.next_object()  # the labels hold 7: the next free id is 8
    assert second == OTHER + 1 and annotator.prompted_objects == [OBJECT]
    assert annotator.preview_mask is None  # the new object has no prompts yet
    point_on(viewer, image, annotator, 3, row=50, col=12)
    third = annotator.next_object()
    point_on(viewer, image, annotator, 1, row=40, col=30)
    assert annotator.prompted_objects == [OBJECT, second, third]
    sl = annotator.current_slice()
    assert len(annotator.slice_prompts(sl)[0]) == 1  # the current object's prompts only
    assert annotator.prompts_layer.text.visible  # ids drawn beside the prompts

    run = controller.propagate("both")
    assert run.object_ids == (OBJECT, second, third)
    assert run.frames_written == [1, 2, 3, 4, 1, 0]
    assert "objects 3, 8, 9 (both)" in run.describe()
    masks = {f: controller._state.masks(f) for f in range(5)}
    expected = before.copy()
    for f, by_object in masks.items():
        for obj_id in sorted(by_object):  # smaller ids first, background only
            plane = expected[f]
            plane[by_object[obj_id] & (plane == 0)] = obj_id
    np.testing.assert_array_equal(labels.data, expected)
    assert all(masks[f][o].any() for f in masks for o in run.object_ids)  # checks say something
    # Every object's scores on every slice, for the review.
    assert set(controller.scores) == set(run.object_ids)
    assert all(sorted(controller.scores[o]) == list(range(5)) for o in run.object_ids)
    assert isinstance(controller.review(), list)

    # Alone gives the same masks (objects are tracked independently; tests/video checks every
    # object of such a run, here the one prompted on a later slice stands for them).
    propagator = controller._propagator
    frames = _LayerFrames(run.spec)
    for obj_id in (second,):
        alone = propagator.init_state(frames, contrast_limits=run.spec.contrast_limits)
        for frame, prompts in stack_prompts(annotator, run.spec, obj_id).items():
            points, point_labels, box = prompts
            propagator.add_prompts(alone, frame, obj_id, points=points, labels=point_labels)
        last = {
            frame: got[obj_id] for frame, got in propagator.propagate(alone, "both", start_frame=1)
        }
        for frame, mask in last.items():  # a slice's last visit is what the labels show
            np.testing.assert_array_equal(mask, controller._state.masks(frame)[obj_id])

    # Done with the current object (9): the others keep their prompts and tracking.
    assert controller.is_propagated()
    assert controller.finish_object() >= third  # 9 again if none of its pixels was free
    assert annotator.prompted_objects == [OBJECT, second]
    again = controller.propagate("forward")
    assert again.object_ids == (OBJECT, second) and again.updates == {}
    assert again.prompt_updates == {} and again.frames_encoded == 0
    assert controller._state.obj_ids == [OBJECT, second]


def test_switching_objects_and_renaming(stack_setup):
    """Typing an id with prompts edits that object; typing a free id renames the current one;
    Clear removes the current object's prompts only (or all of them)."""
    viewer, image, labels, before, annotator, controller = stack_setup
    point_on(viewer, image, annotator, 2)
    first = annotator.preview_mask.copy()
    other = annotator.next_object()
    point_on(viewer, image, annotator, 2, row=50, col=12)
    assert not np.array_equal(annotator.preview_mask, first)
    annotator.object_id = OBJECT  # back to the first object: its mask is decoded again
    np.testing.assert_array_equal(annotator.preview_mask, first)
    annotator.object_id = 20  # a free id: the first object is renamed
    assert annotator.prompted_objects == [other, 20]
    np.testing.assert_array_equal(annotator.preview_mask, first)
    assert annotator.next_free_id() == 21  # past the prompted ids
    annotator.clear()
    assert annotator.prompted_objects == [other] and annotator.preview_mask is None
    annotator.object_id = other
    annotator.clear(all_objects=True)
    assert annotator.prompted_objects == [] and len(annotator.prompts_layer.data) == 0

    # One box per slice and object: another object's box on the slice stays.
    annotator.add_box(image.data_to_world([2, 5, 5]), image.data_to_world([2, 30, 40]))
    annotator.next_object()
    annotator.add_box(image.data_to_world([2, 35, 5]), image.data_to_world([2, 60, 40]))
    annotator.add_box(image.data_to_world([2, 36, 6]), image.data_to_world([2, 61, 41]))
    boxes = annotator.box_layer
    assert len(boxes.data) == 2 and sorted(boxes.features["object"]) == [other, other + 1]


def test_objects_of_one_run_do_not_paint_over_each_other(stack_setup):
    """The write rule of several objects on one slice, with and without overwrite."""
    from napari_sam2_webgpu._napari.labels import UndoGroup, write_objects

    viewer, image, labels, before, annotator, controller = stack_setup
    sl = stack_spec(annotator).frame_slice(0)
    a = np.zeros(before.shape[1:], bool)
    a[10:30, 30:60] = True  # crosses the 7s from column 45
    b = np.zeros_like(a)
    b[20:40, 20:50] = True  # overlaps a
    labels.data[0, 0, :5] = 9  # object 9's pixels of an earlier run, outside its mask now
    for overwrite in (False, True):
        group = UndoGroup(labels)
        write_objects(group, sl, {9: b, 4: a}, overwrite)
        group.close()
        plane = labels.data[0]
        assert (plane[a] == 4)[~(before[0][a] == OTHER)].all() if not overwrite else True
        assert ((plane == 4) == (a & ((before[0] == 0) | overwrite))).all()
        assert ((plane == 9) == (b & ~a & ((before[0] == 0) | overwrite))).all()
        assert not (plane[0, :5] == 9).any()
        labels.undo()
        np.testing.assert_array_equal(labels.data[0, 1:], before[0, 1:])
        labels.data[0, 0, :5] = 9


def test_a_correction_on_a_flagged_slice_propagates_both_ways_from_it(stack_setup):
    from napari_sam2_webgpu.video import FrameScore

    viewer, image, labels, before, annotator, controller = stack_setup
    point_on(viewer, image, annotator, 0)
    controller.propagate("forward")
    scores = controller.scores[OBJECT]
    assert sorted(scores) == [0, 1, 2, 3, 4]
    # As if the model had lost the object on slices 2 and 3.
    for frame in (2, 3):
        scores[frame] = FrameScore(-2.0, 0.1, 0)
    flags = controller.review()
    assert [(f.frame, f.kind, f.last_frame) for f in flags] == [(2, "lost", 3), (4, "reappears", 4)]
    point_on(viewer, image, annotator, 3)  # the correction, on a flagged slice
    run = controller.start("forward")
    assert run.start_frame == 3 and run.direction == "both"
    steps = drive(controller, run)
    assert steps.frames_written == [3, 4, 3, 2, 1, 0]
    # A correction on a slice not flagged keeps the chosen direction and the first prompted
    # slice (the random model's own scores may flag any slice: none are kept here).
    controller.scores.clear()
    point_on(viewer, image, annotator, 4, row=5, col=5, positive=False)
    run = controller.start("forward")
    assert run.start_frame is None and run.direction == "forward"
    controller.finish(run)


def test_stop_after_lost_is_passed_to_the_run(stack_setup):
    viewer, image, labels, before, annotator, controller = stack_setup
    controller.stop_after_lost = 2
    point_on(viewer, image, annotator, 0)
    run = controller.start("forward")
    assert run.stop_after_lost == 2
    drive(controller, run)
    assert run.frames_written == [0, 1, 2, 3, 4]  # never lost on this stack


def test_tracks_layer_of_the_propagated_objects(stack_setup, tmp_path):
    from napari.layers import Tracks

    from napari_sam2_webgpu.tracks import label_tracks, read_tracks_csv, write_tracks_csv

    viewer, image, labels, before, annotator, controller = stack_setup
    with pytest.raises(AnnotatorError, match="propagate first"):
        controller.tracks()
    point_on(viewer, image, annotator, 1)
    controller.propagate("both")
    tracks = controller.tracks([OBJECT])
    np.testing.assert_allclose(tracks, label_tracks(labels.data, [OBJECT]))
    assert tracks[:, 1].tolist() == [0, 1, 2, 3, 4]  # one row per slice it is on
    layer = controller.show_tracks([OBJECT])
    assert isinstance(layer, Tracks) and layer.name == "manual tracks"
    np.testing.assert_allclose(layer.data[:, 1:], tracks[:, 1:4])  # (t, y, x) of a 3D stack
    np.testing.assert_allclose(layer.features["area"], tracks[:, 4])
    every = controller.show_tracks()  # every label on the stack: the 7s too, same layer
    assert every is layer and set(layer.data[:, 0]) == {OBJECT, OTHER}
    assert len(viewer.layers) == len({lay.name for lay in viewer.layers})
    path = write_tracks_csv(tmp_path / "t.csv", tracks)
    np.testing.assert_allclose(read_tracks_csv(path), tracks, atol=1e-3)


def test_the_preview_on_a_correction_slice_is_memory_conditioned(stack_setup):
    """After propagating, the preview of a tracked slice is what tracking made of it; a
    correction there previews the memory-conditioned mask, which the next run keeps."""
    viewer, image, labels, before, annotator, controller = stack_setup
    point_on(viewer, image, annotator, 1)
    controller.propagate("forward")
    viewer.dims.set_current_step(0, 1)
    annotator.request_decode()
    np.testing.assert_array_equal(annotator.preview_mask, controller._state.masks(1)[OBJECT])

    point_on(viewer, image, annotator, 3, row=5, col=5, positive=False)  # the correction
    preview = annotator.preview_mask.copy()
    spec = stack_spec(annotator)
    points, point_labels, box = annotator.slice_prompts(spec.frame_slice(3))
    expected = controller._propagator.preview_prompts(
        controller._state, 3, OBJECT, points=points, labels=point_labels, box=box
    )
    np.testing.assert_array_equal(preview, expected)
    assert controller._state.objects[OBJECT].pending == {}  # the preview changed nothing
    controller.propagate("forward")
    np.testing.assert_array_equal(controller._state.masks(3)[OBJECT], preview)
    np.testing.assert_array_equal(labels.data[3] == OBJECT, preview & (before[3] != OTHER))

    # A slice it was not tracked on (before the first prompt, forward only): decoded alone.
    point_on(viewer, image, annotator, 0)
    assert (
        controller.memory_preview(
            annotator.current_slice(), *annotator.slice_prompts(annotator.current_slice())
        )
        is None
    )
