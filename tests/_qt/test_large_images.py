"""GUI tests of the dock's "Large images" section with a real napari viewer (run under Xvfb):
tiling from the panel, a click on a tiled slice, the tile grid, the store button and
precomputing a stack with its progress, clicks going on meanwhile."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu._napari.tiling import TILE_GRID_NAME
from napari_sam2_webgpu.image.tiling import TiledEmbedding, TileSpec

from ..conftest import blob_image
from . import test_widget
from .test_widget import click, wait_idle, wait_mask

dock, notes = test_widget.dock, test_widget.notes  # the fixtures of the widget tests

pytestmark = pytest.mark.gui

pytest.importorskip("zarr")


def test_tiling_panel_click_grid_store_and_precompute(dock, qtbot, notes, tmp_path):
    make, docked = dock
    viewer = make()
    data = np.stack([blob_image(120, 150, seed=z)[..., 0] for z in range(2)])
    image = viewer.add_image(data, name="section")
    widget = docked(viewer)
    widget.image_layer = image
    panel = widget.large_images_panel
    assert panel.tiling_combo.currentText() == "auto" and panel.tile_spin.value() == 1024
    # The panel's controls are the settings.
    panel.tile_spin.setValue(96)
    panel.halo_spin.setValue(16)
    panel.tiling_combo.setCurrentText("on")
    assert widget.tiling.mode == "on" and widget.tiling.spec == TileSpec(96, 16)
    panel.halo_spin.setValue(40)  # at most a quarter of the tile
    assert widget.tiling.spec.halo == 24 and panel.halo_spin.value() == 24
    panel.halo_spin.setValue(16)
    with pytest.raises(ValueError, match="halo"):
        widget.set_tiling(halo=40)
    assert widget.tiling.spec == TileSpec(96, 16)

    # Encode: the model loads, the slice is "encoded" (lazily: no tile yet); a click encodes
    # the tile under it.
    assert isinstance(widget.encode(wait=True), TiledEmbedding)
    assert widget.predictor.embedding.encoded == []
    click(widget.prompts_layer, image.data_to_world([0, 40, 30]))
    wait_mask(qtbot, widget)
    embedding = widget.predictor.embedding
    assert isinstance(embedding, TiledEmbedding) and len(embedding.encoded) == 1
    assert "tiled, 2 x 2 tiles of 96 px" in panel.tiling_label.text()
    assert "1 of 4 in memory" in panel.tiling_label.text()

    panel.grid_check.setChecked(True)
    assert len(viewer.layers[TILE_GRID_NAME].data) == 4
    panel.grid_check.setChecked(False)
    assert TILE_GRID_NAME not in viewer.layers

    # The store: the button uses the default place; precompute fills it in a worker.
    widget.use_store(tmp_path / "section.sam2.zarr")
    assert "Store:" in panel.store_label.text() and panel.store_button.text() == "Stop storing"
    panel.precompute_button.click()
    assert widget.busy
    # A click meanwhile still decodes.
    click(widget.prompts_layer, image.data_to_world([0, 100, 120]))
    wait_idle(qtbot, widget)
    report = widget.large_images_runner.last_report
    assert report is not None and not report.failed
    assert widget.annotator.store.done_frames() == [0, 1]
    assert panel.precompute_button.text() == "Precompute stack"
    assert widget.precompute_embeddings(wait=True)
    assert widget.large_images_runner.last_report.skipped == [0, 1]
    panel.store_button.click()
    assert widget.annotator.store is None and panel.store_button.text() == "Store embeddings"


def test_precompute_without_a_model_says_why(dock, qtbot, notes):
    make, docked = dock
    viewer = make()
    image = viewer.add_image(blob_image(64, 80)[..., 0], name="small")
    widget = docked(viewer)
    widget.image_layer = image
    assert not widget.precompute_embeddings()
    assert "Load a model" in widget.last_error
    with pytest.raises(ValueError, match="tiling mode"):
        widget.set_tiling("sometimes")
