"""Tiled embeddings (image/tiling.py): the layout's geometry, routing prompts to a tile, lazy
and order-independent encoding, the memory bound, lazy input, stores and segment-everything
across tile borders.

Every tile is encoded at 1024² whatever its size, so the model tests use small images with
small tiles (64-128 pixels) to keep the number of encodes low (~1 s each on two CPU cores).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu.image import automatic
from napari_sam2_webgpu.image.automatic import AutomaticMaskGenerator
from napari_sam2_webgpu.image.mask_candidates import Candidates
from napari_sam2_webgpu.image.predictor import Sam2Predictor
from napari_sam2_webgpu.image.preprocess import ImageError, intensity_range
from napari_sam2_webgpu.image.prompts import PromptError
from napari_sam2_webgpu.image.tiling import (
    TiledEmbedding,
    TileSpec,
    needs_tiling,
    whole_image_window,
)

from ..conftest import blob_image

SPEC = TileSpec(tile_size=96, halo=16)


# -- geometry (no model) ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "hw", [(100, 100), (96, 300), (301, 97), (1000, 1500), (4096, 4096), (8192, 8192), (70, 70)]
)
@pytest.mark.parametrize("spec", [TileSpec(96, 16), TileSpec(1024, 128), TileSpec(256, 64)])
def test_layout_geometry(hw, spec):
    layout = spec.layout(hw)
    height, width = hw
    cover = np.zeros(hw, np.int32)
    for tile in layout.tiles:
        x0, y0, x1, y1 = tile.box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert tile.hw == (min(spec.tile_size, height), min(spec.tile_size, width))
        ix0, iy0, ix1, iy1 = tile.inner
        assert x0 <= ix0 < ix1 <= x1 and y0 <= iy0 < iy1 <= y1
        cover[iy0:iy1, ix0:ix1] += 1
        # The inner part keeps ``halo`` pixels (less one of rounding) from cutting edges.
        for inner_edge, window_edge, image_edge in (
            (ix0, x0, 0),
            (iy0, y0, 0),
            (ix1, x1, width),
            (iy1, y1, height),
        ):
            if window_edge != image_edge:
                assert abs(inner_edge - window_edge) >= spec.halo - 1
    np.testing.assert_array_equal(cover, 1)  # inner parts partition the image
    rows, cols = layout.grid
    assert len(layout) == rows * cols
    # Fewest tiles for that overlap: one tile fewer per axis would overlap less than 2 * halo.
    for count, length in ((rows, height), (cols, width)):
        if count > 1:
            stride = (length - spec.tile_size) / (count - 2) if count > 2 else np.inf
            assert stride > spec.tile_size - 2 * spec.halo


def test_layout_at_default_sizes():
    assert TileSpec().layout((8192, 8192)).grid == (11, 11)
    assert TileSpec().layout((4096, 4096)).grid == (5, 5)
    assert TileSpec().layout((1024, 1024)).grid == (1, 1)
    assert TileSpec().scale == 1.0 and TileSpec(2048, 256).scale == 0.5
    assert needs_tiling((4096, 100)) and not needs_tiling((2048, 2048))


def test_spec_checks_and_round_trip():
    assert TileSpec.parse(TileSpec(512, 64).describe()) == TileSpec(512, 64)
    with pytest.raises(ValueError, match="at least 64"):
        TileSpec(32, 0)
    with pytest.raises(ValueError, match="halo"):
        TileSpec(256, 65)
    with pytest.raises(ValueError, match="not a tile spec"):
        TileSpec.parse("none")
    with pytest.raises(ValueError, match="Cannot tile"):
        TileSpec().layout((0, 10))


def test_choose_centres_prompts_and_falls_back_to_the_overview():
    layout = TileSpec(1024, 128).layout((3000, 5000))
    rng = np.random.default_rng(0)
    for x, y in rng.uniform([0, 0], [4999, 2999], size=(200, 2)):
        tile = layout.choose((x, y, x, y))
        x0, y0, x1, y1 = tile.box
        assert x0 <= x < x1 and y0 <= y < y1
        # A click is at least about a halo from the edges that cut its tile.
        assert layout.margins((x, y, x, y))[tile.index] >= 128 - 1.5
        assert (
            tile == layout.tile_at(x, y)
            or layout.margins((x, y, x, y))[tile.index]
            >= (layout.margins((x, y, x, y))[layout.tile_at(x, y).index])
        )
    assert layout.choose((100, 100, 2000, 300)) is None  # wider than a tile: the overview
    # Image edges do not cut: a click in a corner picks the corner tile.
    assert layout.choose((2, 2, 2, 2)).index == 0


# -- with a model ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def predictor(micro_model_files):
    _, files = micro_model_files
    return Sam2Predictor.from_files(files.encoder, files.decoder, "cpu")


@pytest.fixture(scope="module")
def image():
    return blob_image(160, 230, seed=3)[..., 0]


class CountingEncoder:
    """``compute_embedding`` that records the windows it encodes."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.shapes = []

    def __call__(self, pixels, **kwargs):
        self.shapes.append(pixels.shape)
        return self.predictor.compute_embedding(pixels, **kwargs)


def test_a_click_decodes_in_its_tile_like_the_window_encoded_alone(predictor, image):
    tiled = predictor.compute_tiled_embedding(image, spec=SPEC)
    assert tiled.encoded == [] and tiled.image_hw == image.shape
    point = [[150.0, 90.0]]
    masks, scores, low_res = predictor.predict(point, [1], embedding=tiled)
    tile = tiled.window_for(point, [1])
    assert tiled.encoded == [tile.index]  # only the tile under the click was encoded
    assert masks.shape == (3, *image.shape) and low_res.shape == (3, 256, 256)
    # The same as encoding the window alone with the whole image's intensity window.
    limits = intensity_range(image)
    window = predictor.compute_embedding(image[tile.slices], contrast_limits=limits)
    x0, y0 = tile.box[:2]
    expected, expected_scores, expected_low = predictor.predict(
        [[150.0 - x0, 90.0 - y0]], [1], embedding=window
    )
    np.testing.assert_array_equal(masks[:, tile.slices[0], tile.slices[1]], expected)
    assert not masks.sum() - masks[:, tile.slices[0], tile.slices[1]].sum()  # nothing outside
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
    np.testing.assert_allclose(low_res, expected_low, rtol=1e-5, atol=1e-5)
    best, score, _ = predictor.predict_best(point, [1], embedding=tiled)
    np.testing.assert_array_equal(best, masks[int(np.argmax(scores))])
    assert score == pytest.approx(float(scores.max()), rel=1e-6)


def test_a_box_larger_than_a_tile_decodes_on_the_overview(predictor, image):
    tiled = predictor.compute_tiled_embedding(image, spec=SPEC)
    box = [5, 5, 220, 150]
    assert tiled.window_for(box=box) is None and not tiled.ready_for(box=box)
    masks, scores, _ = predictor.predict(box=box, embedding=tiled)
    assert tiled.is_encoded(None) and tiled.encoded == []
    # The overview of a numpy image is the image encoded whole.
    whole = predictor.compute_embedding(image)
    expected, expected_scores, _ = predictor.predict(box=box, embedding=whole)
    np.testing.assert_array_equal(masks, expected)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
    assert tiled.ready_for(box=box)


def test_batched_prompts_route_each_set(predictor, image):
    tiled = predictor.compute_tiled_embedding(image, spec=SPEC)
    points = np.array([[[20.0, 20.0]], [[200.0, 140.0]]])
    masks, scores, low_res = predictor.predict(
        points, [[1], [1]], multimask_output=False, embedding=tiled
    )
    assert masks.shape == (2, 1, *image.shape) and scores.shape == (2, 1)
    assert len(tiled.encoded) == 2
    for i in range(2):
        one, one_score, _ = predictor.predict(
            points[i], [1], multimask_output=False, embedding=tiled
        )
        np.testing.assert_array_equal(masks[i], one)
    with pytest.raises(PromptError, match="one prompt set"):
        predictor.predict_best(points, [[1], [1]], embedding=tiled)
    with pytest.raises(PromptError, match="outside"):
        predictor.predict([[500.0, 10.0]], [1], embedding=tiled)


def test_tiles_do_not_depend_on_the_order_they_are_encoded_in(predictor, image):
    forward = predictor.compute_tiled_embedding(image, spec=SPEC)
    forward.encode_all(overview=False)
    backward = predictor.compute_tiled_embedding(image, spec=SPEC)
    backward.encode_all(tiles=list(reversed(range(len(backward.layout)))), overview=False)
    for index in range(len(forward.layout)):
        for a, b in zip(forward.tile(index).tensors, backward.tile(index).tensors, strict=True):
            np.testing.assert_array_equal(a, b)


def test_memory_bound_drops_and_reencodes_tiles(predictor, image):
    counting = CountingEncoder(predictor)
    from napari_sam2_webgpu.image.tiling import tiled_embedding

    tiled = tiled_embedding(counting, image, spec=SPEC, max_bytes=1)
    first = tiled.tile(0).image_embed.copy()
    tiled.tile(1)
    assert tiled.encoded == [1] and tiled.nbytes > 0  # tile 0 was dropped
    np.testing.assert_array_equal(tiled.tile(0).image_embed, first)
    assert len(counting.shapes) == 3
    seen = []
    tiled.encode_all(progress=lambda d, t: seen.append((d, t)), cancelled=lambda: len(seen) > 2)
    assert seen[0] == (0, len(tiled.layout) + 1) and seen[-1][0] == 2


class RecordingArray:
    """An array-like (as dask or zarr are) that records every region read."""

    def __init__(self, data):
        self.data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.reads = []

    def __getitem__(self, key):
        out = np.asarray(self.data[key])
        self.reads.append(out.size)
        return out


def test_lazy_input_is_read_a_window_at_a_time(predictor):
    big = np.tile(blob_image(160, 230, seed=4)[..., 0], (2, 2))  # 320 x 460
    lazy = RecordingArray(big)
    tiled = predictor.compute_tiled_embedding(lazy, spec=TileSpec(128, 32))
    predictor.predict([[300.0, 200.0]], [1], embedding=tiled)
    # The intensity sample (strided: at most ~2048² pixels, here the whole small image), then
    # the one tile under the click.
    assert lazy.reads == [big.size, 128 * 128]
    # The same masks as from the numpy array.
    eager = predictor.compute_tiled_embedding(big, spec=TileSpec(128, 32))
    a, _, _ = predictor.predict([[300.0, 200.0]], [1], embedding=tiled)
    b, _, _ = predictor.predict([[300.0, 200.0]], [1], embedding=eager)
    np.testing.assert_array_equal(a, b)


def test_whole_image_window_checks_without_reading(predictor):
    assert whole_image_window(np.zeros((100, 120), np.uint8)) == ((100, 120), (0.0, 255.0))
    assert whole_image_window(np.zeros((100, 120)), (1, 5))[1] == (1.0, 5.0)
    with pytest.raises(ImageError, match="stack"):
        whole_image_window(np.zeros((100, 120, 7)))
    with pytest.raises(ImageError, match="no finite value"):
        whole_image_window(np.full((100, 120), np.nan, np.float32))
    with pytest.raises(ImageError, match="at least"):
        whole_image_window(np.zeros((4, 120), np.uint8))
    with pytest.raises(ImageError):
        predictor.compute_tiled_embedding(np.zeros((100, 120), bool))


# -- segment everything across tiles ------------------------------------------------------------
def disc_image(hw, centres, radius):
    yy, xx = np.mgrid[: hw[0], : hw[1]]
    truth = np.zeros(hw, np.int32)
    for i, (cy, cx) in enumerate(centres, start=1):
        truth[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = i
    return truth


class WindowSegmenter(AutomaticMaskGenerator):
    """Segments the ground-truth objects visible in each window, as a perfect model would:
    an object crossing the window's edge comes back cut. Isolates the merging of tiles."""

    truth: np.ndarray

    def _generate_masks(self, image, hw, contrast_limits, rgb, progress, cancelled, embedding,
                        counter=None):  # fmt: skip
        window = self._window(image)
        boxes, patches = [], []
        for label in np.unique(window)[1:]:
            mask = window == label
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            boxes.append((cols[0], rows[0], cols[-1], rows[-1]))
            patches.append(mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
        if counter is not None:
            counter.advance(1)
        n = len(patches)
        return Candidates(
            np.asarray(boxes, np.int64).reshape(-1, 4),
            patches,
            np.linspace(0.9, 0.8, n).astype(np.float32),
            np.ones(n, np.float32),
            np.zeros((n, 2), np.float32),
            np.tile(np.array([0, 0, hw[1], hw[0]], np.int64), (n, 1)),
        )

    def _window(self, pixels):
        # The window's place in the image: its pixels are the image's (unique, random).
        h, w = pixels.shape
        for y in range(self.image.shape[0] - h + 1):
            row = np.flatnonzero(self.image[y, : self.image.shape[1] - w + 1] == pixels[0, 0])
            for x in row:
                if np.array_equal(self.image[y : y + h, x : x + w], pixels):
                    return self.truth[y : y + h, x : x + w]
        raise AssertionError("window not found")


def test_segment_everything_across_tiles_keeps_each_object_once_and_whole(predictor, monkeypatch):
    hw = (300, 420)
    centres = [(40, 40), (150, 100), (150, 210), (90, 300), (250, 380), (260, 60), (70, 160)]
    truth = disc_image(hw, centres, radius=22)  # 45 pixels across < 2 * halo
    rng = np.random.default_rng(1)
    image = rng.integers(0, 2**16, hw, dtype=np.uint16)  # unique windows to locate
    generator = WindowSegmenter(predictor, points_per_side=2)
    generator.truth, generator.image = truth, image
    spec = TileSpec(128, 32)
    monkeypatch.setattr(
        predictor, "compute_tiled_embedding", lambda *a, **k: FakeTiles(spec.layout(hw))
    )
    labels, count = generator.generate_labels(image, tiles=spec)
    assert count == len(centres)  # no duplicates, none lost
    for label in range(1, len(centres) + 1):
        found = np.unique(labels[truth == label])
        assert len(found) == 1 and found[0] > 0  # each object whole, one label
        assert np.array_equal(labels == found[0], truth == label)
    records = generator.generate(image, tiles=spec)
    np.testing.assert_array_equal(automatic.masks_to_labels(records, hw), labels)
    assert all(len(r["crop_box"]) == 4 for r in records)


class FakeTiles(TiledEmbedding):
    """A tiled embedding whose tiles are never needed (the segmenter above ignores them)."""

    def __init__(self, layout):
        super().__init__(layout, lambda tile: None)

    def tile(self, index):
        return None


def test_tiled_segment_everything_runs_on_the_model(predictor, image):
    generator = AutomaticMaskGenerator(
        predictor, points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    seen = []
    labels, count = generator.generate_labels(
        image, tiles=TileSpec(128, 32), progress=lambda d, t: seen.append((d, t))
    )
    assert labels.shape == image.shape and labels.max() <= count
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] == 6  # 2 x 3 tiles, 1 batch each
    # Untiled labels and records agree too (the labels path paints the same masks).
    records = generator.generate(image)
    plain, n = generator.generate_labels(image)
    assert n == len(records)
    np.testing.assert_array_equal(plain, automatic.masks_to_labels(records, image.shape))


def test_threads_share_an_encode_and_never_wait_for_another_tile():
    import threading

    from napari_sam2_webgpu.image.encoder import ImageEmbedding

    layout = SPEC.layout((200, 200))
    release = threading.Event()
    calls = []

    def encode(tile):
        calls.append(None if tile is None else tile.index)
        if tile is not None and tile.index == 1:
            release.wait(10)  # a slow encode
        z = np.zeros((1, 1), np.float32)
        return ImageEmbedding(z, z, z, (1, 1) if tile is None else tile.hw)

    tiled = TiledEmbedding(layout, encode)
    tiled.tile(0)
    slow = [threading.Thread(target=tiled.tile, args=(1,)) for _ in range(2)]
    for thread in slow:
        thread.start()
    # While tile 1 encodes, tile 0 (in memory) and the overview come at once.
    assert tiled.tile(0) is not None and tiled.overview() is not None
    assert not release.is_set()
    release.set()
    for thread in slow:
        thread.join(10)
    assert sorted(calls, key=str) == [0, 1, None] and tiled.encoded == [0, 1]


def test_a_failed_encode_can_be_tried_again():
    from napari_sam2_webgpu.image.encoder import ImageEmbedding

    attempts = []

    def encode(tile):
        attempts.append(tile.index)
        if len(attempts) == 1:
            raise RuntimeError("device lost")
        z = np.zeros((1, 1), np.float32)
        return ImageEmbedding(z, z, z, tile.hw)

    tiled = TiledEmbedding(SPEC.layout((100, 100)), encode)
    with pytest.raises(RuntimeError, match="device lost"):
        tiled.tile(0)
    assert tiled.tile(0).image_hw == (96, 96) and attempts == [0, 0]
