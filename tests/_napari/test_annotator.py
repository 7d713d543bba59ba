"""Tests of _napari/annotator.py on a ViewerModel (no Qt, no window), with the micro model.

Decoding runs synchronously here (the widget runs it in a worker thread, see test_widget.py).
Clicks go through the Points layer's own mouse callbacks, as napari's tests do.
"""

from __future__ import annotations

import numpy as np
import pytest
from napari.components import ViewerModel
from napari.utils._proxies import ReadOnlyWrapper
from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

from napari_sam2_webgpu._napari import annotator as annotator_module
from napari_sam2_webgpu._napari import decoding as decoding_module
from napari_sam2_webgpu._napari import viewer_events as viewer_events_module
from napari_sam2_webgpu._napari.annotator import Annotator
from napari_sam2_webgpu._napari.errors import AnnotatorError
from napari_sam2_webgpu._napari.prompt_layers import BOX_NAME, PREVIEW_NAME, PROMPTS_NAME
from napari_sam2_webgpu._napari.slices import displayed_slice
from napari_sam2_webgpu.image import ImageError

from ..conftest import MouseEvent, blob_image


def click(layer, world_position, button=1, modifiers=()):
    """Press and release at a world position through ``layer``'s mouse callbacks."""
    for kind, run in (
        ("mouse_press", mouse_press_callbacks),
        ("mouse_release", mouse_release_callbacks),
    ):
        event = MouseEvent(kind, tuple(world_position), button=button, modifiers=modifiers)
        run(layer, ReadOnlyWrapper(event, exceptions=("handled",)))


@pytest.fixture
def messages(monkeypatch):
    """Notifications shown by the annotator and its collaborators, as (level, text)."""
    seen = []
    for module in (annotator_module, decoding_module, viewer_events_module):
        for level in ("info", "warning", "error"):
            if hasattr(module, f"show_{level}"):
                monkeypatch.setattr(
                    module, f"show_{level}", lambda msg, level=level: seen.append((level, msg))
                )
    return seen


def encode(annotator):
    request = annotator.encode_request()
    embedding = request.compute(annotator.predictor)
    assert annotator.finish_encode(request, embedding, annotator.predictor)
    return embedding


@pytest.fixture
def setup(micro_predictor):
    """A viewer with a 3D stack (scaled, translated), an annotator and the micro model."""
    viewer = ViewerModel()
    stack = np.stack([blob_image(96, 128, seed=z)[..., 0] for z in range(4)]).astype(np.uint16)
    image = viewer.add_image(stack * 200, scale=(3.0, 0.5, 0.5), translate=(0, 10, -4))
    annotator = Annotator(viewer)
    annotator.set_image_layer(image)
    annotator.set_predictor(micro_predictor)
    yield viewer, image, annotator
    annotator.close()


def world(image, z, row, col):
    return image.data_to_world([z, row, col])


def here(viewer, image, row, col):
    """World position of (row, col) on the displayed slice."""
    z = int(np.round(image.world_to_data(viewer.dims.point)[0]))
    return world(image, z, row, col)


# -- slices and coordinates -----------------------------------------------------------------------


def test_displayed_slice_2d_3d_and_transposed():
    viewer = ViewerModel()
    image = viewer.add_image(np.zeros((5, 30, 40), np.uint8))
    viewer.dims.set_current_step(0, 3)
    sl = displayed_slice(image, viewer.dims)
    assert (sl.rows_axis, sl.cols_axis, sl.indices, sl.shape) == (1, 2, ((0, 3),), (30, 40))
    assert sl.indexer() == (3, slice(None), slice(None))
    viewer.dims.order = (1, 0, 2)  # display (z, x): the slice is taken along y
    viewer.dims.set_current_step(1, 7)
    sl = displayed_slice(image, viewer.dims)
    assert (sl.rows_axis, sl.cols_axis, sl.indices, sl.shape) == (0, 2, ((1, 7),), (5, 40))
    viewer.dims.ndisplay = 3
    with pytest.raises(AnnotatorError, match="2D"):
        displayed_slice(image, viewer.dims)


def test_displayed_slice_outside_a_shorter_layer():
    viewer = ViewerModel()
    short = viewer.add_image(np.zeros((3, 20, 20), np.uint8))
    viewer.add_image(np.zeros((10, 20, 20), np.uint8))
    viewer.dims.set_current_step(0, 8)
    with pytest.raises(AnnotatorError, match="outside the image layer"):
        displayed_slice(short, viewer.dims)


def test_rgb_and_4d_rgb_slices(micro_predictor):
    viewer = ViewerModel()
    rgb4d = np.stack(
        [np.stack([blob_image(64, 80, seed=t + z) for z in range(3)]) for t in range(2)]
    )
    image = viewer.add_image(rgb4d, rgb=True)
    assert image.rgb and image.ndim == 4
    annotator = Annotator(viewer)
    annotator.set_image_layer(image)
    annotator.set_predictor(micro_predictor)
    viewer.dims.set_current_step(0, 1)
    viewer.dims.set_current_step(1, 2)
    request = annotator.encode_request()
    assert request.rgb and request.load().shape == (64, 80, 3)
    np.testing.assert_array_equal(request.load(), rgb4d[1, 2])
    encode(annotator)
    annotator.add_point(image.data_to_world([1, 2, 32, 40]))
    assert annotator.preview_mask.shape == (64, 80)
    assert annotator.preview_layer.data.shape == (1, 1, 64, 80)


@pytest.mark.parametrize(
    "data",
    [
        (blob_image(64, 64)[..., 0].astype(np.float32) / 255.0),
        (blob_image(64, 64)[..., 0].astype(np.uint16) * 257),
        (blob_image(64, 64)[..., 0].astype(np.float64) * 1e4 - 5e3),
    ],
    ids=["float01", "uint16", "float-signed"],
)
def test_dtypes_and_contrast_limits(micro_predictor, data):
    viewer = ViewerModel()
    image = viewer.add_image(data)
    annotator = Annotator(viewer)
    annotator.set_image_layer(image)
    annotator.set_predictor(micro_predictor)
    request = annotator.encode_request()
    assert request.contrast_limits == tuple(float(c) for c in image.contrast_limits)
    encode(annotator)
    annotator.add_point([32, 32])
    assert annotator.preview_mask is not None


def test_channels_as_separate_layers_keep_prompts(micro_predictor):
    viewer = ViewerModel()
    channels = np.stack([blob_image(64, 64, seed=s)[..., 0] for s in range(2)])
    first, second = viewer.add_image(channels, channel_axis=0)
    annotator = Annotator(viewer)
    annotator.set_image_layer(first)
    annotator.set_predictor(micro_predictor)
    encode(annotator)
    annotator.add_point([30, 30])
    assert annotator.preview_mask is not None
    annotator.set_image_layer(second)  # same geometry: prompts stay, the new layer is encoded
    assert len(annotator.prompts_layer.data) == 1 and not annotator.is_ready
    encode(annotator)
    assert annotator.preview_mask is not None


# -- clicks, prompts, preview ---------------------------------------------------------------------


def test_clicks_through_the_points_mouse_callbacks(setup, monkeypatch):
    viewer, image, annotator = setup
    viewer.dims.set_current_step(0, 2)
    encode(annotator)
    prompts = annotator.prompts_layer
    assert prompts.name == PROMPTS_NAME and prompts.mode == "add"
    assert viewer.layers.selection.active is prompts
    seen = []
    real_predict = annotator.predictor.predict_best
    monkeypatch.setattr(
        annotator.predictor,
        "predict_best",
        lambda **kw: seen.append(kw) or real_predict(**kw),
    )
    click(prompts, world(image, 2, 40, 64))
    click(prompts, world(image, 2, 10, 12), modifiers=("Control",))
    click(prompts, world(image, 2, 80, 100), button=2)
    assert prompts.features["positive"].tolist() == [True, False, False]
    np.testing.assert_allclose(prompts.data[0], [2, 40, 64])
    # SAM's (x, y) = (column, row) of the displayed slice, whatever the scale and translate.
    np.testing.assert_allclose(seen[-1]["point_coords"], [[64, 40], [12, 10], [100, 80]])
    assert seen[-1]["point_labels"].tolist() == [1, 0, 0]
    mask = annotator.preview_mask
    assert mask.shape == (96, 128) and mask.any()
    preview = annotator.preview_layer
    assert preview.name == PREVIEW_NAME and preview.data.shape == (1, 96, 128)
    np.testing.assert_allclose(preview.translate, [6.0, 10, -4])  # moved to z = 2
    assert annotator.last_decode_seconds > 0 and 0 <= annotator.last_score <= 1.5

    annotator.toggle_polarity()
    click(prompts, world(image, 2, 50, 50))
    click(prompts, world(image, 2, 52, 52), modifiers=("Control",))
    assert prompts.features["positive"].tolist()[-2:] == [False, True]


def test_moving_and_deleting_points_redecode(setup):
    viewer, image, annotator = setup
    encode(annotator)
    annotator.add_point(here(viewer, image, 40, 60))
    annotator.add_point(here(viewer, image, 45, 70), positive=False)
    n = annotator.decoder.generation
    prompts = annotator.prompts_layer
    prompts.selected_data = {1}
    prompts._move({1}, [0, 20, 20])
    assert annotator.decoder.generation > n
    prompts.selected_data = {1}
    prompts.remove_selected()
    assert len(prompts.data) == 1 and annotator.preview_mask is not None
    prompts.remove_selected()  # nothing selected any more
    prompts.selected_data = {0}
    prompts.remove_selected()
    assert annotator.preview_mask is None


def test_prompts_event_and_slice_prompts(setup):
    """``events.prompts`` fires on every prompt change (the widget's Propagate button follows)."""
    viewer, image, annotator = setup
    encode(annotator)
    seen = []
    annotator.events.prompts.connect(lambda event: seen.append(event.type))
    annotator.add_point(here(viewer, image, 40, 60))
    annotator.add_point(here(viewer, image, 45, 70), positive=False)
    annotator.add_box(here(viewer, image, 10, 10), here(viewer, image, 60, 90))
    assert len(seen) == 3
    points, labels, box = annotator.slice_prompts(annotator.current_slice())
    np.testing.assert_allclose(points, [[60, 40], [70, 45]])  # (x, y) pixels
    assert labels.tolist() == [1, 0]
    np.testing.assert_allclose(box, [10, 10, 90, 60])
    prompts = annotator.prompts_layer
    prompts.selected_data = {1}
    prompts.remove_selected()
    annotator.clear()
    assert len(seen) == 5
    assert annotator.slice_prompts(annotator.current_slice()) == (None, None, None)


def test_click_outside_the_image_is_refused(setup, messages):
    viewer, image, annotator = setup
    encode(annotator)
    click(annotator.prompts_layer, here(viewer, image, 40, 64))
    click(annotator.prompts_layer, here(viewer, image, 200, 64))
    click(annotator.prompts_layer, here(viewer, image, -3, 64))
    assert len(annotator.prompts_layer.data) == 1
    assert [lvl for lvl, _ in messages] == ["warning", "warning"]
    assert "inside the image" in messages[0][1]
    assert annotator.preview_mask is not None


def test_box_prompt_newest_wins(setup):
    viewer, image, annotator = setup
    encode(annotator)
    annotator.add_box(here(viewer, image, 10, 10), here(viewer, image, 60, 90))
    first = annotator.preview_mask.copy()
    annotator.add_box(here(viewer, image, 30, 30), here(viewer, image, 90, 120))
    box = annotator.box_layer
    assert box.name == BOX_NAME and len(box.data) == 1
    np.testing.assert_allclose(box.data[0][:, 1:].min(axis=0), [30, 30])
    assert not np.array_equal(first, annotator.preview_mask)
    annotator.add_point(here(viewer, image, 50, 50))  # box + point together
    assert annotator.preview_mask is not None


def test_2d_position_in_a_3d_viewer(setup):
    viewer, image, annotator = setup
    viewer.dims.set_current_step(0, 1)
    encode(annotator)
    displayed = world(image, 1, 40, 60)[1:]
    annotator.add_point(displayed)
    np.testing.assert_allclose(annotator.prompts_layer.data[0], [1, 40, 60])
    with pytest.raises(ValueError, match="coordinates"):
        annotator.add_point([1.0])


# -- encoding, slices, cache ----------------------------------------------------------------------


def test_prompts_before_encoding(setup, messages):
    viewer, image, annotator = setup
    annotator.add_point(here(viewer, image, 40, 60))
    assert annotator.preview_mask is None
    assert messages and "not encoded" in messages[-1][1]
    calls = []
    annotator.auto_encode = lambda: calls.append(1)
    annotator.add_point(here(viewer, image, 42, 62))
    assert calls == [1]
    annotator.auto_encode = None
    encode(annotator)  # the points were kept: decoded as soon as the slice is encoded
    assert annotator.preview_mask is not None


def test_no_model_loaded(messages):
    viewer = ViewerModel()
    image = viewer.add_image(blob_image(64, 64)[..., 0])
    annotator = Annotator(viewer)
    annotator.set_image_layer(image)
    annotator.add_point([30, 30])
    assert "No SAM2 model" in messages[-1][1]
    assert len(annotator.prompts_layer.data) == 1


def test_stepping_through_slices_reuses_embeddings(setup):
    viewer, image, annotator = setup
    for z in range(3):
        viewer.dims.set_current_step(0, z)
        assert not annotator.is_ready
        encode(annotator)
    assert len(annotator.cache) == 3
    hits = annotator.cache.hits
    for z in (0, 2, 1):
        viewer.dims.set_current_step(0, z)
        assert annotator.is_ready
    assert annotator.cache.hits == hits + 3
    viewer.dims.set_current_step(0, 3)
    assert not annotator.is_ready


def test_cache_is_bounded_and_drops_least_recent(setup):
    viewer, image, annotator = setup
    annotator.cache.max_bytes = 2 * (16 << 20)
    for z in range(4):
        viewer.dims.set_current_step(0, z)
        encode(annotator)
    assert len(annotator.cache) == 2
    viewer.dims.set_current_step(0, 0)
    assert not annotator.is_ready  # dropped
    viewer.dims.set_current_step(0, 3)
    assert annotator.is_ready


def test_contrast_change_keeps_the_embedding_but_keys_differ(setup):
    viewer, image, annotator = setup
    encode(annotator)
    assert annotator.has_exact_embedding()
    image.contrast_limits = (0, 1000)
    assert annotator.is_ready and not annotator.has_exact_embedding()
    request = annotator.encode_request()
    assert request.key(annotator.model_key) not in annotator.cache


def test_image_data_change_drops_its_embeddings(setup):
    viewer, image, annotator = setup
    encode(annotator)
    image.data = image.data[:, ::-1].copy()
    assert len(annotator.cache) == 0 and not annotator.is_ready


def test_bad_images_get_clear_messages():
    viewer = ViewerModel()
    annotator = Annotator(viewer)
    with pytest.raises(AnnotatorError, match="Open an image"):
        annotator.encode_request()
    tiny = viewer.add_image(np.zeros((1, 1), np.uint8))
    annotator.set_image_layer(tiny)
    with pytest.raises(ImageError, match="at least"):
        annotator.encode_request()
    with pytest.raises(AnnotatorError, match="not an image"):
        annotator.set_image_layer(viewer.add_labels(np.zeros((4, 4), np.uint8)))


def test_huge_image_warns_without_reading_pixels(messages):
    viewer = ViewerModel()
    huge = np.broadcast_to(np.uint8(7), (20_000, 20_000))  # 400 MB that take no memory
    image = viewer.add_image(huge, contrast_limits=(0, 255))
    annotator = Annotator(viewer)
    annotator.set_image_layer(image)
    request = annotator.encode_request()
    assert request.slice.shape == (20_000, 20_000)
    assert any("20,000 x 20,000" in msg for _, msg in messages)
    annotator.encode_request()
    assert sum("20,000" in msg for _, msg in messages) == 1  # warned once


# -- commit, undo, labels layers ------------------------------------------------------------------


def test_commit_two_objects_keeps_existing_labels(setup):
    viewer, image, annotator = setup
    viewer.dims.set_current_step(0, 1)
    existing = np.zeros(image.data.shape, np.uint16)
    existing[1, 30:60, 40:90] = 7
    existing[0] = 3
    labels = viewer.add_labels(existing.copy(), name="manual")
    annotator.set_labels_layer(labels)
    assert annotator.object_id == 8
    encode(annotator)
    annotator.add_box(world(image, 1, 0, 0), world(image, 1, 95, 127))
    mask = annotator.preview_mask.copy()
    assert (mask & (existing[1] == 7)).any()
    painted = annotator.commit()
    assert painted == int((mask & (existing[1] == 0)).sum())
    np.testing.assert_array_equal(labels.data[1][existing[1] == 7], 7)  # survived
    np.testing.assert_array_equal(labels.data[0], existing[0])  # other slices untouched
    np.testing.assert_array_equal(labels.data[2:], 0)
    assert annotator.object_id == 9 and len(annotator.prompts_layer.data) == 0
    assert annotator.preview_mask is None

    annotator.add_point(world(image, 1, 5, 5))
    second = annotator.preview_mask.copy()
    annotator.commit()
    assert set(np.unique(labels.data[1])) <= {0, 7, 8, 9}
    assert (labels.data[1] == 9).sum() == (second & (existing[1] == 0) & ~mask).sum()

    assert annotator.undo()
    assert not (labels.data == 9).any() and annotator.object_id == 9
    assert annotator.undo()
    np.testing.assert_array_equal(labels.data, existing)
    assert annotator.object_id == 8


def test_overwrite_option(setup):
    viewer, image, annotator = setup
    labels = viewer.add_labels(np.full(image.data.shape, 5, np.uint8))
    annotator.set_labels_layer(labels)
    encode(annotator)
    annotator.add_point(here(viewer, image, 48, 64))
    with pytest.raises(AnnotatorError, match="Overwrite"):
        annotator.commit()
    assert (labels.data == 5).all() and annotator.preview_mask is not None  # prompts kept
    annotator.overwrite = True
    painted = annotator.commit()
    assert painted > 0 and (labels.data == 6).sum() == painted


def test_new_labels_layer_is_created_under_the_prompts(setup):
    viewer, image, annotator = setup
    encode(annotator)
    annotator.add_point(here(viewer, image, 48, 64))
    annotator.commit()
    labels = annotator.labels_layer
    assert labels.data.shape == image.data.shape and labels.data.dtype == np.uint32
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    names = [layer.name for layer in viewer.layers]
    assert names.index(labels.name) < names.index(PREVIEW_NAME) < names.index(PROMPTS_NAME)
    assert viewer.layers.selection.active is annotator.prompts_layer


def test_labels_of_another_shape_are_refused(setup):
    viewer, image, annotator = setup
    wrong = viewer.add_labels(np.zeros((4, 50, 50), np.uint8), name="wrong")
    with pytest.raises(AnnotatorError, match="shape"):
        annotator.set_labels_layer(wrong)
    assert annotator.labels_layer is None
    with pytest.raises(AnnotatorError, match="Labels layer"):
        annotator.set_labels_layer(image)


def test_commit_without_mask_and_id_overflow(setup):
    viewer, image, annotator = setup
    with pytest.raises(AnnotatorError, match="Nothing to commit"):
        annotator.commit()
    labels = viewer.add_labels(np.zeros(image.data.shape, np.uint8))
    annotator.set_labels_layer(labels)
    encode(annotator)
    annotator.add_point(here(viewer, image, 48, 64))
    annotator.object_id = 300
    with pytest.raises(AnnotatorError, match="does not fit"):
        annotator.commit()
    assert not labels.data.any()
    with pytest.raises(ValueError):
        annotator.object_id = 0


def test_removing_layers(setup, messages):
    viewer, image, annotator = setup
    encode(annotator)
    annotator.add_point(here(viewer, image, 48, 64))
    annotator.commit()
    labels = annotator.labels_layer
    viewer.layers.remove(labels)
    assert annotator.labels_layer is None and annotator.object_id == 1
    assert "removed" in messages[-1][1]
    annotator.add_point(here(viewer, image, 48, 64))
    annotator.commit()  # a new layer; the removed one still holds its labels
    assert annotator.labels_layer is not labels and labels.data.any()
    kept = annotator.labels_layer
    viewer.layers.remove(image)
    assert annotator.image_layer is None
    assert annotator.prompts_layer is None and annotator.box_layer is None
    assert [layer.name for layer in viewer.layers] == [kept.name]
    assert "image layer" in messages[-1][1]
    assert not annotator.cache.keys()


def test_ndisplay_3_refuses_clicks(setup, messages):
    viewer, image, annotator = setup
    encode(annotator)
    viewer.dims.ndisplay = 3
    annotator.prompts_layer.add([0, 40, 40])
    assert len(annotator.prompts_layer.data) == 0
    assert "2D" in messages[-1][1]


class StepClock:
    """A clock that advances ``step`` seconds at every reading: each decode "takes" ``step``."""

    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_fast_decodes_inline_slow_ones_in_the_worker(micro_predictor):
    """Where a decode runs follows the previous decode's time, read from an injected clock
    (never the machine's speed: on a busy machine real decodes take any time)."""
    viewer = ViewerModel()
    image = viewer.add_image(blob_image(96, 128)[..., 0])
    queued = []
    clock = StepClock(0.01)  # every decode takes 10 ms
    annotator = Annotator(viewer, run_async=lambda fn, done: queued.append((fn, done)), clock=clock)
    annotator.inline_decode_seconds = 0.15
    annotator.set_image_layer(image)
    annotator.set_predictor(micro_predictor)
    encode(annotator)
    annotator.add_point([40, 60])  # small slice, first decode: on the calling thread
    assert not queued and annotator.preview_mask is not None
    assert annotator.last_decode_seconds == pytest.approx(0.01)
    clock.step = 1.0  # the machine gets slow: this decode is inline (10 ms expected), takes 1 s
    annotator.add_point([45, 65])
    assert not queued and annotator.last_decode_seconds == pytest.approx(1.0)
    annotator.add_point([50, 70])  # 1 s expected: queued for the worker
    assert len(queued) == 1 and annotator.decoding
    annotator.add_point([60, 80])  # while one runs: only marked pending (latest wins)
    assert len(queued) == 1
    stale = annotator.preview_mask.copy()
    clock.step = 0.01
    fn, done = queued.pop()
    done(fn())  # the stale result is dropped; it was fast, so the newest decodes inline
    assert not queued and not annotator.decoding
    assert len(annotator.prompts_layer.data) == 4
    assert not np.array_equal(stale, annotator.preview_mask)
    annotator.inline_decode_seconds = 0
    annotator.clear()
    annotator.add_point([40, 60])
    assert len(queued) == 1  # 0 forces the worker
    annotator.close()


def test_rotated_and_sheared_layers(micro_predictor):
    viewer = ViewerModel()
    image = viewer.add_image(
        blob_image(80, 100)[..., 0], rotate=30, shear=[0.2], scale=(2, 1), translate=(5, -7)
    )
    annotator = Annotator(viewer)
    annotator.set_image_layer(image)
    annotator.set_predictor(micro_predictor)
    encode(annotator)
    annotator.add_point(image.data_to_world([30, 60]))
    np.testing.assert_allclose(annotator.prompts_layer.data[0], [30, 60], atol=1e-6)
    for layer in (annotator.prompts_layer, annotator.preview_layer):
        np.testing.assert_allclose(
            layer.data_to_world([10, 20]), image.data_to_world([10, 20]), atol=1e-6
        )


# -- object ids, layer names, exception types -----------------------------------------------------


def test_object_id_follows_the_target_labels_layer(micro_predictor):
    """A new image's new Labels layer starts at 1 and is named after the image; choosing a
    Labels layer continues after its largest label."""
    viewer = ViewerModel()
    first = viewer.add_image(blob_image(64, 80)[..., 0], name="first")
    annotator = Annotator(viewer)
    annotator.set_image_layer(first)
    annotator.set_predictor(micro_predictor)
    encode(annotator)
    annotator.object_id = 5
    annotator.add_point([30, 40])
    annotator.commit()
    labels = annotator.labels_layer
    assert labels.name == "first labels" and annotator.object_id == 6

    second = viewer.add_image(blob_image(48, 56, seed=2)[..., 0], name="second")
    annotator.set_image_layer(second)  # another shape: the next commit makes a new layer
    assert annotator.labels_layer is None and annotator.object_id == 1
    encode(annotator)
    annotator.add_point([20, 20])
    annotator.commit()
    assert annotator.labels_layer.name == "second labels"
    assert int(annotator.labels_layer.data.max()) == 1 and annotator.object_id == 2

    manual = np.zeros((48, 56), np.uint16)
    manual[:5, :5] = 7
    other = viewer.add_labels(manual, name="manual")
    annotator.set_labels_layer(other)
    assert annotator.object_id == 8
    da = pytest.importorskip("dask.array")
    lazy = viewer.add_labels(da.from_array(manual * 2, chunks=16), name="lazy")
    annotator.set_labels_layer(lazy)  # lazy data is read once, when it becomes the target
    assert annotator.object_id == 15
    annotator.set_labels_layer(None)  # "New Labels layer"
    assert annotator.object_id == 1
    annotator.add_point([20, 30])
    annotator.commit()  # "second labels" is taken: napari makes the name unique
    assert annotator.labels_layer.name.startswith("second labels [")
    annotator.close()


def test_annotator_errors_are_value_errors(setup):
    """The user guide promises ValueError for wrong arguments from the console."""
    viewer, image, annotator = setup
    assert issubclass(AnnotatorError, ValueError)
    wrong = viewer.add_labels(np.zeros((4, 50, 50), np.uint8), name="wrong")
    with pytest.raises(ValueError, match="shape"):
        annotator.set_labels_layer(wrong)
    with pytest.raises(ValueError, match="not an image layer"):
        annotator.set_image_layer(wrong)
    with pytest.raises(ValueError, match="not an image layer"):
        annotator.set_image_layer("cells")  # a name instead of a layer
    with pytest.raises(ValueError, match="Labels layer"):
        annotator.set_labels_layer("wrong")
    with pytest.raises(ValueError):
        annotator.object_id = 0
    with pytest.raises(ValueError, match="coordinates"):
        annotator.add_point([1.0])
    assert annotator.image_layer is image and annotator.labels_layer is None


def test_problems_are_emitted_for_the_widget(setup, messages):
    """Every problem shown to the user is also an ``error`` event (the widget's dock shows it);
    a decoded mask is a ``decoded`` event (it clears the dock's error)."""
    viewer, image, annotator = setup
    errors, decoded = [], []
    annotator.events.error.connect(lambda event: errors.append(event.message))
    annotator.events.decoded.connect(lambda event: decoded.append(1))
    encode(annotator)
    click(annotator.prompts_layer, here(viewer, image, 200, 64))  # outside the image
    assert len(errors) == 1 and errors[0] == messages[-1][1] and "inside the image" in errors[0]
    annotator.add_point(here(viewer, image, 40, 60))
    assert decoded == [1]


def test_a_queued_decode_uses_the_embedding_of_its_request(micro_predictor):
    """The worker decodes against the embedding taken with the click, even if the predictor's
    current image changes before it runs (a mask must never mix two images)."""
    viewer = ViewerModel()
    image = viewer.add_image(blob_image(96, 128)[..., 0])
    queued = []
    annotator = Annotator(viewer, run_async=lambda fn, done: queued.append((fn, done)))
    annotator.inline_decode_seconds = 0  # every decode goes to the worker
    annotator.set_image_layer(image)
    annotator.set_predictor(micro_predictor)
    encode(annotator)
    clicked = micro_predictor.embedding
    annotator.add_point([40, 60])
    assert len(queued) == 1
    other = micro_predictor.compute_embedding(blob_image(96, 128, seed=9)[..., 0])
    micro_predictor.set_embedding(other)  # another slice became current meanwhile
    fn, done = queued.pop()
    result = fn()
    expected, _, _ = micro_predictor.predict_best(
        point_coords=[[60, 40]], point_labels=[1], embedding=clicked
    )
    np.testing.assert_array_equal(result.mask, expected)
    done(result)
