"""Large images in napari (_napari/large_images.py, _napari/tiling.py): tiled slices decode in
their tile off the GUI thread, the tile grid, tiled stores, precomputing, segment all on tiles,
and dask data read a tile at a time."""

from __future__ import annotations

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_sam2_webgpu._napari import SegmentAllController
from napari_sam2_webgpu._napari.annotator import Annotator
from napari_sam2_webgpu._napari.decoding import needs_encoding
from napari_sam2_webgpu._napari.tiling import TILE_GRID_NAME, TilingSettings
from napari_sam2_webgpu.image.automatic import AutomaticMaskGenerator
from napari_sam2_webgpu.image.preprocess import intensity_range
from napari_sam2_webgpu.image.tiling import TiledEmbedding, TileSpec

from ..conftest import blob_image
from .test_stores import encode

pytest.importorskip("zarr")

SPEC = TileSpec(96, 16)
HW = (120, 150)  # 2 x 2 tiles


def stack(frames: int = 2) -> np.ndarray:
    return np.stack([blob_image(*HW, seed=z)[..., 0] for z in range(frames)])


class RecordingRunner:
    """``run_async`` that runs at once but records that a worker was asked for."""

    def __init__(self):
        self.calls = 0

    def __call__(self, fn, on_done):
        self.calls += 1
        on_done(fn())


def tiled_annotator(viewer, image, predictor, **kwargs):
    annotator = Annotator(viewer, **kwargs)
    annotator.set_image_layer(image)
    annotator.set_predictor(predictor)
    annotator.large.set_tiling("on", tile_size=SPEC.tile_size, halo=SPEC.halo)
    return annotator


def test_settings():
    settings = TilingSettings()
    assert settings.spec_for((2048, 2048)) is None and settings.spec_for((2049, 10)) == TileSpec()
    assert TilingSettings("on").spec_for((100, 100)) == TileSpec()
    assert TilingSettings("off").spec_for((9000, 9000)) is None
    assert "tiled, 5 x 5 tiles of 1024 px" in settings.describe((4096, 4096))
    assert "encoded whole (small enough)" in settings.describe((512, 512))
    with pytest.raises(ValueError, match="tiling mode"):
        TilingSettings("sometimes")


def test_a_click_on_a_tiled_slice_encodes_its_tile_in_a_worker(micro_predictor):
    viewer = ViewerModel()
    image = viewer.add_image(stack(1)[0], name="big")
    runner = RecordingRunner()
    annotator = tiled_annotator(viewer, image, micro_predictor, run_async=runner)
    request, embedding = encode(annotator)
    assert request.tiles == SPEC and isinstance(embedding, TiledEmbedding)
    assert embedding.encoded == [] and annotator.is_ready  # nothing encoded yet, clicks work
    assert "tiled, 2 x 2 tiles of 96 px" in annotator.large.describe()
    annotator.add_point((100.0, 130.0))  # row, col
    assert runner.calls == 1  # the tile is encoded off the GUI thread
    assert len(embedding.encoded) == 1
    mask = annotator.preview_mask
    expected, _, _ = micro_predictor.predict_best([[130.0, 100.0]], [1], embedding=embedding)
    np.testing.assert_array_equal(mask, expected)
    assert "1 of 4 in memory" in annotator.large.describe()
    # A second click in the same tile decodes at once, where it was asked.
    annotator.add_point((95.0, 125.0))
    assert runner.calls == 1
    # Tiling off: another embedding of the slice (cached apart), encoded whole.
    annotator.large.set_tiling("off")
    assert not annotator.is_ready
    request, whole = encode(annotator)
    assert request.tiles is None and not isinstance(whole, TiledEmbedding)
    annotator.large.set_tiling("on")
    assert annotator.is_ready and micro_predictor.embedding is embedding  # found in the cache
    annotator.close()


def test_needs_encoding_follows_the_prompts(micro_predictor):
    from napari_sam2_webgpu._napari.decoding import DecodeRequest

    tiled = micro_predictor.compute_tiled_embedding(stack(1)[0], spec=SPEC)
    request = DecodeRequest(0, None, np.array([[10.0, 10.0]]), np.array([1]), None, False)
    request.embedding = tiled
    assert needs_encoding(request)
    tiled.tile(tiled.window_for([[10.0, 10.0]], [1]).index)
    assert not needs_encoding(request)
    request.embedding = micro_predictor.compute_embedding(stack(1)[0])
    assert not needs_encoding(request)


def test_tile_grid_layer(micro_predictor):
    viewer = ViewerModel()
    image = viewer.add_image(stack(2), name="big")
    annotator = tiled_annotator(viewer, image, micro_predictor)
    encode(annotator)
    annotator.large.show_grid(True)
    grid = viewer.layers[TILE_GRID_NAME]
    assert len(grid.data) == 4 and grid.ndim == 3
    assert viewer.layers.index(grid) == viewer.layers.index(image) + 1
    np.testing.assert_allclose(grid.data[0][0], [0, -0.5, -0.5])
    annotator.add_point((0, 10.0, 10.0))
    assert len(annotator.predictor.embedding.encoded) == 1
    edges = [tuple(np.round(c, 3)) for c in grid.edge_color]
    assert edges.count(edges[0]) == 1  # the encoded tile is drawn apart
    viewer.dims.set_point(0, 1)
    np.testing.assert_allclose(grid.data[0][0], [1, -0.5, -0.5])  # follows the slice
    viewer.layers.remove(grid)
    assert not annotator.large.grid_visible
    viewer.dims.set_point(0, 0)
    assert TILE_GRID_NAME not in viewer.layers
    annotator.large.show_grid(True)
    annotator.large.set_tiling("off")
    assert TILE_GRID_NAME not in viewer.layers  # nothing to draw for whole slices
    annotator.close()


def test_tiled_store_precompute_then_clicks_read_it(micro_predictor, tmp_path, monkeypatch):
    import dask.array as da

    data = da.from_array(stack(2), chunks=(1, 64, 64))  # read a chunk at a time
    viewer = ViewerModel()
    image = viewer.add_image(data, name="big", contrast_limits=(0, 255))
    annotator = tiled_annotator(viewer, image, micro_predictor)
    store = annotator.use_store(tmp_path / "big.sam2.zarr")
    assert store.identity.tiles == SPEC.describe() and store.identity.frames == (2,)
    seen = []
    report = annotator.large.precompute(progress=lambda d, t: seen.append((d, t)))
    assert report.computed == [0, 1] and seen[-1] == (10, 10)
    assert annotator.large.precompute().skipped == [0, 1]
    # Reopened: clicks decode from the store, nothing is encoded.
    viewer = ViewerModel()
    image = viewer.add_image(data, name="big", contrast_limits=(0, 255))
    again = tiled_annotator(viewer, image, micro_predictor)
    again.use_store(tmp_path / "big.sam2.zarr")
    viewer.dims.set_point(0, 1)
    fresh = micro_predictor.compute_tiled_embedding(
        np.asarray(data[1]), spec=SPEC, contrast_limits=(0, 255)
    )
    expected, _, _ = micro_predictor.predict_best([[30.0, 40.0]], [1], embedding=fresh)
    monkeypatch.setattr(micro_predictor, "compute_embedding", lambda *a, **k: 1 / 0)
    encode(again)
    again.add_point((1, 40.0, 30.0))
    np.testing.assert_array_equal(again.preview_mask, expected)
    # Whole-slice settings do not read a tiled store.
    again.large.set_tiling("off")
    request = again.encode_request()
    assert request.store is None and request.tiles is None
    annotator.close()
    again.close()


def test_segment_all_on_a_tiled_slice(micro_predictor):
    viewer = ViewerModel()
    image = viewer.add_image(stack(1)[0], name="big")
    annotator = tiled_annotator(viewer, image, micro_predictor)
    controller = SegmentAllController(annotator)
    params = dict(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    controller.params = controller.params.replace(**params)
    plan = controller.plan("slice")
    assert plan.tiles == SPEC
    run = controller.start(plan)
    steps = list(run.steps(None))
    generator = AutomaticMaskGenerator(micro_predictor, **controller.params.generator_kwargs())
    limits = intensity_range(stack(1)[0], tuple(image.contrast_limits))
    expected, count = generator.generate_labels(
        stack(1)[0], tiles=SPEC, contrast_limits=limits, order=controller.params.order
    )
    np.testing.assert_array_equal(steps[0].labels, expected)
    assert steps[0].objects == count
    # The tiles segmenting encoded are the clicks' tiles now (cached under the same key).
    assert annotator.sync_embedding()
    assert len(micro_predictor.embedding.encoded) == 4
    annotator.close()


def test_propagation_through_tiled_slices_tracks_in_the_prompts_tile(micro_predictor):
    from napari_sam2_webgpu._napari.propagation import PropagationController, stack_spec
    from napari_sam2_webgpu.video import Sam2Propagator

    from .stacks import moving_blob_stack

    data = moving_blob_stack(3, HW)
    viewer = ViewerModel()
    image = viewer.add_image(data, name="big", contrast_limits=(0, 255))
    annotator = tiled_annotator(viewer, image, micro_predictor)
    annotator.inline_decode_seconds = 0.0
    controller = PropagationController(annotator)
    controller.set_model(micro_predictor)
    viewer.dims.set_current_step(0, 1)
    encode(annotator)
    annotator.add_point(image.data_to_world([1, 28.0, 30.0]))  # in the top-left tile
    run = controller.propagate("both")
    window = run.spec.window
    assert window is not None and window.index == 0 and run.spec.frame_hw == window.hw
    # The same as the propagator on the window's frames, with the shifted prompt.
    propagator = Sam2Propagator.from_predictor(micro_predictor, *controller._video_files)
    rows, cols = window.slices
    state = propagator.init_state(data[:, rows, cols], contrast_limits=(0, 255))
    x0, y0 = window.box[:2]
    propagator.add_prompts(state, 1, 1, points=[[30.0 - x0, 28.0 - y0]], labels=[1])
    expected = np.zeros(data.shape, bool)
    for frame, masks in propagator.propagate(state, "both"):
        expected[frame, rows, cols] = masks[1]
    written = annotator.labels_layer.data == annotator.object_id
    assert expected.any()
    np.testing.assert_array_equal(written, expected)
    assert controller.is_propagated()
    # Prompts that fit in no tile: tracked on the whole frames (the overview embeddings).
    annotator.add_point(image.data_to_world([1, 110.0, 140.0]))
    spec = stack_spec(annotator)
    assert spec.tiles == SPEC
    run = controller.propagate("forward")
    assert run.spec.window is None and run.spec.frame_hw == HW
    annotator.close()


def test_a_pyramid_gives_the_overview_from_a_coarser_level(micro_predictor, monkeypatch):
    import dask.array as da

    levels = [
        da.random.randint(0, 255, (2, 4200, 4300), chunks=(1, 1024, 1024)).astype(np.uint8),
        da.random.randint(0, 255, (2, 2100, 2150), chunks=(1, 1024, 1024)).astype(np.uint8),
        da.random.randint(0, 255, (2, 1050, 1075), chunks=(1, 1024, 1024)).astype(np.uint8),
    ]
    viewer = ViewerModel()
    image = viewer.add_image(levels, multiscale=True, name="pyramid", contrast_limits=(0, 255))
    annotator = Annotator(viewer)
    annotator.set_image_layer(image)
    annotator.set_predictor(micro_predictor)
    viewer.dims.set_current_step(0, 1)
    request = annotator.encode_request()
    assert request.tiles == TileSpec()  # 4300 pixels: tiled by default
    assert request.coarse().shape == (2100, 2150)
    seen = []
    encode = micro_predictor.compute_embedding

    def recording(pixels, **kwargs):
        seen.append(pixels.shape)
        return encode(pixels, **kwargs)

    monkeypatch.setattr(micro_predictor, "compute_embedding", recording)
    tiled = request.compute(micro_predictor)
    assert tiled.overview().image_hw == (4200, 4300)  # masks come back full size
    assert seen == [(2100, 2150)]  # from level 1, never level 0 whole
    annotator.close()
