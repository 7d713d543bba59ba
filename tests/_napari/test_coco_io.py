"""The COCO writer and reader contributions: called directly and through npe2 (no Qt)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_sam2_webgpu._napari.coco_io import (
    METADATA_KEY,
    get_coco_reader,
    read_coco_layers,
    write_coco_labels,
)
from napari_sam2_webgpu.coco import CocoError, labels_to_coco, load_coco, write_coco

REPO = Path(__file__).resolve().parents[2]


def _labels(seed: int, shape=(24, 32)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint16)
    for label in rng.choice(np.arange(1, 900), size=6, replace=False):
        r, c = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
        labels[r : r + rng.integers(1, 8), c : c + rng.integers(1, 8)] = label
    return labels


def test_write_and_read_a_stack(tmp_path):
    stack = np.stack([_labels(0), np.zeros((24, 32), np.uint16), _labels(1)])
    path = str(tmp_path / "cells.json")
    assert write_coco_labels(path, [(stack, {"name": "cells"}, "labels")]) == [path]
    coco = json.loads(Path(path).read_text())
    assert [i["file_name"] for i in coco["images"]] == [
        "cells_0000",
        "cells_0001",
        "cells_0002",
    ]
    reader = get_coco_reader(path)
    assert callable(reader)
    ((data, meta, layer_type),) = reader(path)
    assert layer_type == "labels" and meta["name"] == "cells"
    np.testing.assert_array_equal(data, stack)
    stored = meta["metadata"][METADATA_KEY]
    assert stored["image_ids"] == [1, 2, 3]
    assert stored["file_names"] == ["cells_0000", "cells_0001", "cells_0002"]
    assert stored["categories"] == [{"id": 1, "name": "object"}]


def test_several_layers_and_sizes(tmp_path):
    a, b = _labels(2), _labels(3, (17, 40))
    path = str(tmp_path / "two.json")
    layers = [
        (a, {"name": "first"}, "labels"),
        (np.zeros((4, 4)), {"name": "an image"}, "image"),  # skipped
        (b, {"name": "second"}, "labels"),
    ]
    write_coco_labels(path, layers)
    read = read_coco_layers(path)
    assert [meta["name"] for _, meta, _ in read] == ["two: first", "two: second"]
    np.testing.assert_array_equal(read[0][0], a)
    np.testing.assert_array_equal(read[1][0], b)


def test_multiscale_and_nd_layers(tmp_path):
    labels = _labels(4)
    path = tmp_path / "ms.json"
    write_coco_labels(str(path), [([labels, labels[::2, ::2]], {"multiscale": True}, "labels")])
    np.testing.assert_array_equal(load_coco(path), labels)
    four_d = np.stack([np.stack([_labels(5), _labels(6)])] * 2)  # (t, z, y, x)
    write_coco_labels(str(path), [(four_d, {"name": "tz"}, "labels")])
    np.testing.assert_array_equal(load_coco(path), four_d.reshape(4, 24, 32))


def test_metadata_round_trip_keeps_names_and_categories(tmp_path):
    labels = np.array([[1, 2], [0, 3]], dtype=np.uint8)
    coco = labels_to_coco(
        labels,
        file_names=["raw/img.tif"],
        categories={4: "nucleus", 9: "cell"},
        label_categories={3: 9},
    )
    source = write_coco(tmp_path / "in.json", coco)
    ((data, meta, _),) = read_coco_layers(source)
    out = str(tmp_path / "out.json")
    write_coco_labels(out, [(data, meta, "labels")])
    written = json.loads(Path(out).read_text())
    assert written["images"][0]["file_name"] == "raw/img.tif"
    assert [c["name"] for c in written["categories"]] == ["nucleus", "cell"]
    assert [a["category_id"] for a in written["annotations"]] == [4, 4, 9]


def test_reader_leaves_other_files_to_other_readers(tmp_path):
    (tmp_path / "geo.json").write_text('{"type": "FeatureCollection", "features": []}')
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "list.json").write_text("[1, 2]")
    np.save(tmp_path / "a.npy", np.eye(2))
    for name in ("geo.json", "broken.json", "list.json", "a.npy", "missing.json"):
        assert get_coco_reader(str(tmp_path / name)) is None, name
    good = write_coco(tmp_path / "ok.json", labels_to_coco(np.eye(3, dtype=np.uint8)))
    assert get_coco_reader([str(good), str(tmp_path / "geo.json")]) is None
    reader = get_coco_reader([str(good), str(good)])
    assert len(reader([str(good), str(good)])) == 2


def test_reader_on_a_file_without_images(tmp_path):
    path = write_coco(tmp_path / "empty.json", {"images": [], "annotations": []})
    assert get_coco_reader(str(path))(str(path)) == []


def test_reader_errors_name_the_file(tmp_path):
    coco = labels_to_coco(np.eye(3, dtype=np.uint8))
    coco["annotations"][0]["segmentation"]["size"] = [2, 2]
    path = write_coco(tmp_path / "bad.json", coco)
    reader = get_coco_reader(str(path))  # the top level is COCO: this reader takes it
    with pytest.raises(CocoError, match="bad.json.*disagrees"):
        reader(str(path))


def test_writer_errors_name_the_layer(tmp_path):
    with pytest.raises(CocoError, match="'floats'.*whole numbers"):
        write_coco_labels(
            str(tmp_path / "x.json"), [(np.ones((3, 3)), {"name": "floats"}, "labels")]
        )
    assert not (tmp_path / "x.json").exists()
    assert write_coco_labels(str(tmp_path / "x.json"), [(np.ones(3), {}, "image")]) == []


def test_manifest_contributions():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(REPO / "napari.yaml")
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    writer, labels_writer = manifest.contributions.writers
    assert commands[labels_writer.command].endswith("recording:write_labels_with_prompts")
    assert labels_writer.filename_extensions == [".tif", ".tiff", ".npy"]
    assert writer.filename_extensions == [".json"]
    assert writer.display_name == "COCO instances (JSON)"
    assert [str(t) for t in writer.layer_types] == ["labels+"]
    assert commands[writer.command].endswith("coco_io:write_coco_labels")
    (reader,) = manifest.contributions.readers
    assert reader.filename_patterns == ["*.json"]
    assert commands[reader.command].endswith("coco_io:get_coco_reader")


def test_save_and_open_through_npe2(tmp_path):
    """What File > Save Selected Layer(s) and File > Open do, without the Qt dialogs."""
    import napari.layers
    import npe2

    manager = npe2.PluginManager.instance()
    manager.discover()
    if "napari-sam2-webgpu" not in manager._manifests:  # pragma: no cover
        pytest.skip("the plugin is not installed")
    stack = np.stack([_labels(7), _labels(8)])
    layer = napari.layers.Labels(stack, name="nuclei")
    path = tmp_path / "nuclei.json"
    written = npe2.write(str(path), [layer], plugin_name="napari-sam2-webgpu")
    assert written == [str(path)]
    ((data, meta, layer_type),) = npe2.read([str(path)], stack=False)
    assert layer_type == "labels" and meta["name"] == "nuclei"
    np.testing.assert_array_equal(data, stack)
