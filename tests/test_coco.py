"""Label images to COCO instance JSON and back (core and CLI; no Qt)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from napari_sam2_webgpu import coco as cc
from napari_sam2_webgpu.cli import main

try:
    from pycocotools import mask as coco_mask
except ImportError:  # pycocotools is optional: only the comparisons with it are skipped
    coco_mask = None

needs_pycocotools = pytest.mark.skipif(coco_mask is None, reason="pycocotools not installed")


def _random_labels(seed: int, shape=(48, 64), count: int = 12) -> np.ndarray:
    """Touching objects (a Voronoi split of random seeds), nested ones (a square inside a
    disc-like object, a ring around a hole) and label ids that are not contiguous."""
    rng = np.random.default_rng(seed)
    height, width = shape
    points = rng.integers(0, [height, width], size=(count, 2))
    rows, cols = np.mgrid[:height, :width]
    nearest = np.argmin(
        (rows[..., None] - points[:, 0]) ** 2 + (cols[..., None] - points[:, 1]) ** 2, axis=-1
    )
    ids = rng.choice(np.arange(1, 5000), size=count, replace=False)
    labels = ids[nearest].astype(np.uint16)
    labels[rng.random(shape) < 0.15] = 0  # background holes and specks
    labels[10:30, 10:30] = 4001  # a block with an object inside it
    labels[15:25, 15:25] = 4002
    labels[18:22, 18:22] = 0  # and a hole inside that one
    labels[0, 0] = 65000  # a one-pixel object in the corner
    labels[-1, -1] = 2  # and one in the last pixel
    return labels


def _fortran(mask: np.ndarray) -> np.ndarray:
    return np.asfortranarray(mask.astype(np.uint8))


# --------------------------------------------------------------------------------------------
# RLE


@pytest.mark.parametrize(
    "counts",
    [[0], [12], [0, 5], [3, 1, 2], [1, 2, 3, 4, 5, 6], [100, 1, 1000, 20, 7, 300000, 2]],
)
def test_rle_string_round_trip(counts):
    assert cc.rle_from_string(cc.rle_to_string(counts)) == counts


@pytest.mark.parametrize("bad", ["\x7f", "0(", "!"])
def test_rle_string_rejects_bad_characters(bad):
    with pytest.raises(cc.CocoError, match="RLE string"):
        cc.rle_from_string(bad)


def test_rle_string_that_ends_inside_a_number():
    with pytest.raises(cc.CocoError, match="ends inside a number"):
        cc.rle_from_string("0P")  # 'P' - 48 = 32: "more" bit set, then nothing


def test_encode_decode_masks():
    rng = np.random.default_rng(3)
    for shape in [(1, 1), (1, 7), (7, 1), (5, 9), (16, 3)]:
        for density in (0.0, 0.3, 1.0):
            mask = rng.random(shape) < density
            rle = cc.encode_rle(mask)
            assert rle["size"] == list(shape)
            np.testing.assert_array_equal(cc.decode_rle(rle), mask)
            counts = cc.rle_from_string(rle["counts"])
            assert sum(counts) == mask.size
            np.testing.assert_array_equal(
                cc.decode_rle({"size": list(shape), "counts": counts}), mask
            )


def test_decode_rejects_size_mismatch():
    with pytest.raises(cc.CocoError, match="cover 5 pixels"):
        cc.decode_rle({"size": [2, 3], "counts": [2, 3]})
    with pytest.raises(cc.CocoError, match="size"):
        cc.decode_rle({"size": [2], "counts": [2]})
    with pytest.raises(cc.CocoError, match="counts"):
        cc.decode_rle({"size": [1, 2], "counts": [1.5, 0.5]})


@needs_pycocotools
def test_rle_matches_pycocotools():
    labels = _random_labels(0)
    coco = cc.labels_to_coco(labels)
    assert coco["annotations"]
    for annotation in coco["annotations"]:
        mask = _fortran(labels == annotation["label_id"])
        expected = coco_mask.encode(mask)
        assert annotation["segmentation"]["counts"] == expected["counts"].decode("ascii")
        assert annotation["segmentation"]["size"] == list(expected["size"])
        assert annotation["area"] == int(coco_mask.area(expected))
        assert annotation["bbox"] == coco_mask.toBbox(expected).tolist()
        # and pycocotools reads ours back
        ours = dict(annotation["segmentation"], counts=annotation["segmentation"]["counts"])
        ours["counts"] = ours["counts"].encode("ascii")
        np.testing.assert_array_equal(coco_mask.decode(ours), mask)


@needs_pycocotools
def test_decode_matches_pycocotools_on_random_masks():
    rng = np.random.default_rng(5)
    for _ in range(20):
        shape = tuple(int(v) for v in rng.integers(1, 30, size=2))
        mask = rng.random(shape) < rng.random()
        rle = coco_mask.encode(_fortran(mask))
        assert cc.encode_rle(mask)["counts"] == rle["counts"].decode("ascii")
        ours = cc.decode_rle({"size": rle["size"], "counts": rle["counts"].decode("ascii")})
        np.testing.assert_array_equal(ours, coco_mask.decode(rle).astype(bool))
        # uncompressed counts, as frPyObjects writes them for iscrowd=1 ground truth
        counts = cc.rle_from_string(rle["counts"].decode("ascii"))
        back = coco_mask.frPyObjects({"size": list(shape), "counts": counts}, *shape)
        assert back["counts"] == rle["counts"]


# --------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_2d(seed):
    labels = _random_labels(seed)
    coco = cc.labels_to_coco(labels, file_names=["cells.tif"])
    back = cc.coco_to_labels(json.loads(json.dumps(coco)))
    assert back.shape == labels.shape and back.dtype == np.uint16
    np.testing.assert_array_equal(back, labels)
    present = set(np.unique(labels)) - {0}
    assert {a["label_id"] for a in coco["annotations"]} == present
    assert [a["id"] for a in coco["annotations"]] == list(range(1, len(present) + 1))
    assert coco["images"] == [{"id": 1, "file_name": "cells.tif", "height": 48, "width": 64}]
    assert coco["categories"] == [{"id": 1, "name": "object", "supercategory": "object"}]
    for annotation in coco["annotations"]:
        mask = labels == annotation["label_id"]
        rows, cols = np.nonzero(mask)
        x, y = cols.min(), rows.min()
        assert annotation["bbox"] == [x, y, cols.max() - x + 1, rows.max() - y + 1]
        assert annotation["area"] == mask.sum()
        assert annotation["iscrowd"] == 0 and annotation["image_id"] == 1
        assert annotation["category_id"] == 1


def test_round_trip_stack_and_empty_slice():
    stack = np.stack([_random_labels(3), np.zeros((48, 64), np.uint16), _random_labels(4)])
    coco = cc.labels_to_coco(stack, file_names=cc.slice_file_names("stack.tif", 3))
    assert [i["file_name"] for i in coco["images"]] == [
        "stack_0000.tif",
        "stack_0001.tif",
        "stack_0002.tif",
    ]
    assert not [a for a in coco["annotations"] if a["image_id"] == 2]
    back = cc.coco_to_labels(coco)
    assert back.shape == stack.shape
    np.testing.assert_array_equal(back, stack)
    np.testing.assert_array_equal(cc.coco_to_labels(coco, 3), stack[2])


def test_round_trip_empty_label_image():
    labels = np.zeros((5, 7), dtype=np.int32)
    coco = cc.labels_to_coco(labels)
    assert coco["annotations"] == [] and len(coco["images"]) == 1
    back = cc.coco_to_labels(coco)
    assert back.shape == (5, 7) and back.dtype == np.uint8 and not back.any()


def test_round_trip_one_pixel_images_and_objects():
    for labels in (np.array([[9]]), np.array([[0, 0], [0, 1]], dtype=np.uint8)):
        coco = cc.labels_to_coco(labels)
        np.testing.assert_array_equal(cc.coco_to_labels(coco), labels)
    coco = cc.labels_to_coco(np.array([[0, 0, 0], [0, 0, 3]]))
    (annotation,) = coco["annotations"]
    assert annotation["bbox"] == [2.0, 1.0, 1.0, 1.0] and annotation["area"] == 1


def test_several_arrays_of_different_sizes():
    a, b = _random_labels(5, (20, 30)), _random_labels(6, (31, 17))
    coco = cc.labels_to_coco([a, b[None]], file_names=["a.png", "b.png"], first_image_id=10)
    assert [i["id"] for i in coco["images"]] == [10, 11]
    images = cc.coco_to_label_images(coco)
    assert [i.file_name for i in images] == ["a.png", "b.png"]
    np.testing.assert_array_equal(images[0].labels, a)
    np.testing.assert_array_equal(images[1].labels, b)
    with pytest.raises(cc.CocoError, match="different sizes"):
        cc.coco_to_labels(coco)
    np.testing.assert_array_equal(cc.coco_to_labels(coco, 11), b)


def test_large_label_ids_and_dtypes():
    labels = np.zeros((6, 6), dtype=np.uint32)
    labels[1:3, 1:3] = 2**32 - 1
    labels[4:, 4:] = 70000
    back = cc.coco_to_labels(cc.labels_to_coco(labels))
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, labels)
    back = cc.coco_to_labels(cc.labels_to_coco(labels), dtype=np.int64)
    assert back.dtype == np.int64
    with pytest.raises(cc.CocoError, match="cannot hold"):
        cc.coco_to_labels(cc.labels_to_coco(labels), dtype=np.uint16)
    bools = np.eye(3, dtype=bool)
    np.testing.assert_array_equal(cc.coco_to_labels(cc.labels_to_coco(bools)), bools)


def test_categories():
    labels = np.array([[1, 2, 3]])
    coco = cc.labels_to_coco(
        labels, categories={1: "nucleus", 2: "cell"}, label_categories={2: 2, 3: 2}
    )
    assert [c["name"] for c in coco["categories"]] == ["nucleus", "cell"]
    assert [a["category_id"] for a in coco["annotations"]] == [1, 2, 2]
    (image,) = cc.coco_to_label_images(coco)
    assert image.label_categories == {1: 1, 2: 2, 3: 2}
    named = cc.labels_to_coco(labels, category="nucleus")
    assert named["categories"] == [{"id": 1, "name": "nucleus", "supercategory": "nucleus"}]
    with pytest.raises(cc.CocoError, match="not one of the categories"):
        cc.labels_to_coco(labels, label_categories={1: 5})
    with pytest.raises(cc.CocoError, match="non-empty"):
        cc.labels_to_coco(labels, category="")


# --------------------------------------------------------------------------------------------
# Reading files written elsewhere


def _foreign(annotations, height=4, width=5):
    return {
        "images": [{"id": 7, "file_name": "x.jpg", "height": height, "width": width}],
        "annotations": annotations,
        "categories": [{"id": 3, "name": "cell"}],
    }


def _rle(mask):
    return cc.encode_rle(mask)


def test_without_label_ids_numbered_in_annotation_order():
    a = np.zeros((4, 5), bool)
    a[0, :] = True
    b = np.zeros((4, 5), bool)
    b[3, :] = True
    annotations = [
        {"id": 10, "image_id": 7, "category_id": 3, "segmentation": _rle(b)},
        {"id": 11, "image_id": 7, "category_id": 3, "segmentation": _rle(a)},
    ]
    labels = cc.coco_to_labels(_foreign(annotations))
    assert labels[3, 0] == 1 and labels[0, 0] == 2
    # mixed: those without an id come after the largest label_id, CVAT's attributes read too
    column = np.zeros((4, 5), bool)
    column[:, 1] = True
    annotations.append(
        {"id": 12, "image_id": 7, "attributes": {"label_id": 40}, "segmentation": _rle(column)}
    )
    labels = cc.coco_to_labels(_foreign(annotations), overlap="first")
    assert set(np.unique(labels)) == {0, 40, 41, 42}
    assert labels[3, 1] == 41


def test_overlap_rules():
    big = np.zeros((4, 5), bool)
    big[:, :4] = True
    small = np.zeros((4, 5), bool)
    small[1:3, 1:3] = True
    annotations = [
        {"id": 1, "image_id": 7, "label_id": 5, "segmentation": _rle(small)},
        {"id": 2, "image_id": 7, "label_id": 6, "segmentation": _rle(big)},
    ]
    coco = _foreign(annotations)
    assert cc.coco_to_labels(coco)[1, 1] == 6  # later on top
    assert cc.coco_to_labels(coco, overlap="first")[1, 1] == 5
    smallest = cc.coco_to_labels(coco, overlap="smallest")
    assert smallest[1, 1] == 5 and smallest[0, 0] == 6
    with pytest.raises(cc.CocoError, match="overlap must be"):
        cc.coco_to_labels(coco, overlap="largest")


def test_uncompressed_rle_and_polygons():
    square = np.zeros((10, 12), bool)
    square[2:6, 3:9] = True
    counts = cc.rle_from_string(_rle(square)["counts"])
    polygon = [[3.0, 2.0, 9.0, 2.0, 9.0, 6.0, 3.0, 6.0]]  # pixel edges around the square
    annotations = [
        {"id": 1, "image_id": 7, "segmentation": {"size": [10, 12], "counts": counts}},
        {"id": 2, "image_id": 7, "segmentation": polygon},
    ]
    labels = cc.coco_to_labels(_foreign(annotations, 10, 12), overlap="first")
    np.testing.assert_array_equal(labels, square.astype(np.uint8))
    labels = cc.coco_to_labels(_foreign(annotations, 10, 12))
    np.testing.assert_array_equal(labels, square * 2)


@needs_pycocotools
def test_polygon_close_to_pycocotools():
    polygon = [[5.2, 3.1, 30.7, 8.4, 22.0, 27.9, 4.4, 20.3]]
    expected = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(polygon, 32, 36)))
    annotations = [{"id": 1, "image_id": 7, "segmentation": polygon}]
    ours = cc.coco_to_labels(_foreign(annotations, 32, 36)) > 0
    iou = (ours & (expected > 0)).sum() / (ours | (expected > 0)).sum()
    assert iou > 0.95


# --------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.zeros((3, 3), np.float32), "whole numbers"),
        (np.zeros(5, np.uint8), "2D"),
        (np.zeros((2, 2, 2, 2), np.uint8), "2D"),
        (np.zeros((0, 4), np.uint8), "empty"),
        (np.array([[-1, 0]]), "negative"),
        (np.array([[2**33]], dtype=np.int64), "labels go up to"),
        ([], "No label images"),
    ],
)
def test_bad_labels(labels, match):
    with pytest.raises(cc.CocoError, match=match):
        cc.labels_to_coco(labels)


def test_bad_file_names():
    with pytest.raises(cc.CocoError, match="2 file names for 3 images"):
        cc.labels_to_coco(np.zeros((3, 2, 2), np.uint8), file_names=["a", "b"])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([1, 2], "not COCO"),
        ({"type": "FeatureCollection"}, "no 'images' or 'annotations'"),
        ({"images": [], "annotations": {}}, "'annotations'"),
        ({"images": [{"id": 1, "height": 2}], "annotations": []}, "'width'"),
        ({"images": [{"id": "a", "height": 2, "width": 2}], "annotations": []}, "'id'"),
        (
            {
                "images": [{"id": 1, "height": 2, "width": 2}, {"id": 1, "height": 2, "width": 2}],
                "annotations": [],
            },
            "twice",
        ),
    ],
)
def test_not_coco(data, match):
    with pytest.raises(cc.CocoError, match=match):
        cc.coco_to_labels(data)


def test_missing_image_and_bad_annotations():
    coco = cc.labels_to_coco(np.eye(4, dtype=np.uint8))
    with pytest.raises(cc.CocoError, match="No image with id 5: the ids are 1"):
        cc.coco_to_labels(coco, 5)
    orphan = json.loads(json.dumps(coco))
    orphan["annotations"][0]["image_id"] = 9
    with pytest.raises(cc.CocoError, match="refers to image id 9"):
        cc.coco_to_labels(orphan)
    wrong = json.loads(json.dumps(coco))
    wrong["images"][0]["height"] = 5
    with pytest.raises(cc.CocoError, match=r"RLE size \[4, 4\] disagrees"):
        cc.coco_to_labels(wrong)
    bad_label = json.loads(json.dumps(coco))
    bad_label["annotations"][0]["label_id"] = 0
    with pytest.raises(cc.CocoError, match="'label_id' must be"):
        cc.coco_to_labels(bad_label)
    no_mask = json.loads(json.dumps(coco))
    del no_mask["annotations"][0]["segmentation"]
    with pytest.raises(cc.CocoError, match="'segmentation' must be"):
        cc.coco_to_labels(no_mask)
    empty = {"images": [], "annotations": []}
    with pytest.raises(cc.CocoError, match="no image entries"):
        cc.coco_to_labels(empty)
    assert cc.coco_to_label_images(empty) == []


# --------------------------------------------------------------------------------------------
# Files


def test_save_and_load(tmp_path):
    labels = _random_labels(7)
    path = cc.save_coco(tmp_path / "sub" / "labels.json", labels, category="nucleus", indent=1)
    assert path.is_file() and os.listdir(path.parent) == ["labels.json"]
    np.testing.assert_array_equal(cc.load_coco(path), labels)
    assert cc.read_coco(path)["categories"][0]["name"] == "nucleus"


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "labels.json"
    path.write_text('{"old": true}')

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cc.json, "dump", fail)
    with pytest.raises(cc.CocoError, match="No space left"):
        cc.save_coco(path, np.eye(3, dtype=np.uint8))
    assert path.read_text() == '{"old": true}'
    assert os.listdir(tmp_path) == ["labels.json"]


def test_read_errors(tmp_path):
    with pytest.raises(cc.CocoError, match="not found"):
        cc.read_coco(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(cc.CocoError, match="not valid JSON"):
        cc.read_coco(tmp_path / "broken.json")
    (tmp_path / "geo.json").write_text('{"type": "FeatureCollection"}')
    with pytest.raises(cc.CocoError, match="geo.json is not COCO"):
        cc.load_coco(tmp_path / "geo.json")
    with pytest.raises(cc.CocoError, match="is a folder"):
        cc.read_coco(tmp_path)


# --------------------------------------------------------------------------------------------
# CLI


def test_cli_round_trip(tmp_path, capsys):
    import skimage.io
    import tifffile

    a = _random_labels(8, (24, 32)).astype(np.uint16)
    stack = np.stack([_random_labels(9, (20, 30)), _random_labels(10, (20, 30))])
    skimage.io.imsave(tmp_path / "a.png", a, check_contrast=False)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    out = tmp_path / "coco.json"
    code = main(
        ["to-coco", str(tmp_path / "a.png"), str(tmp_path / "stack.tif"), "--out", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    assert f"wrote {out}: 3 images" in capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["a.png", "stack_0000.tif", "stack_0001.tif"]
    assert [a["id"] for a in coco["annotations"]] == list(range(1, len(coco["annotations"]) + 1))

    folder = tmp_path / "back"
    assert main(["from-coco", str(out), "--out-dir", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "a.tif",
        "stack_0000.tif",
        "stack_0001.tif",
    ]
    np.testing.assert_array_equal(tifffile.imread(folder / "a.tif"), a)
    np.testing.assert_array_equal(tifffile.imread(folder / "stack_0001.tif"), stack[1])

    # outputs exist: refused without --overwrite, nothing changed
    capsys.readouterr()
    assert main(["from-coco", str(out), "--out-dir", str(folder)]) == 1
    assert "already exist" in capsys.readouterr().err
    assert main(["from-coco", str(out), "--out-dir", str(folder), "--overwrite"]) == 0
    assert main(["to-coco", str(tmp_path / "a.png"), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["to-coco", str(tmp_path / "a.png"), "--out", str(out), "--overwrite"]) == 0
    assert len(json.loads(out.read_text())["images"]) == 1


def test_cli_from_coco_png_and_duplicate_names(tmp_path):
    import skimage.io

    labels = np.stack([_random_labels(11, (16, 16)), _random_labels(12, (16, 16))])
    coco = cc.labels_to_coco(labels, file_names=["dir1/x.jpg", "dir2/x.jpg"])
    path = cc.write_coco(tmp_path / "in.json", coco)
    folder = tmp_path / "out"
    assert main(["from-coco", str(path), "--out-dir", str(folder), "--format", "png"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["x.png", "x_id2.png"]
    np.testing.assert_array_equal(skimage.io.imread(folder / "x_id2.png"), labels[1])


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (lambda d: np.save(d / "f.npy", np.ones((4, 4))), ["f.npy"], "f.npy: The labels must"),
        (lambda d: np.save(d / "v.npy", np.ones(4, np.uint8)), ["v.npy"], "must be 2D"),
        (lambda d: None, ["missing.tif"], "not found"),
        (lambda d: np.save(d / "a.npy", np.eye(2, dtype=np.uint8)), ["a.npy", "--bad"], None),
    ],
)
def test_cli_to_coco_errors(tmp_path, capsys, make, args, message):
    make(tmp_path)
    argv = ["to-coco", *[str(tmp_path / a) if not a.startswith("-") else a for a in args]]
    if message is None:
        with pytest.raises(SystemExit):  # argparse usage error
            main([*argv, "--out", str(tmp_path / "o.json")])
        return
    assert main([*argv, "--out", str(tmp_path / "o.json")]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_cli_to_coco_refuses_other_suffixes_and_rgb(tmp_path, capsys):
    import skimage.io

    np.save(tmp_path / "a.npy", np.eye(3, dtype=np.uint8))
    assert main(["to-coco", str(tmp_path / "a.npy"), "--out", str(tmp_path / "a.txt")]) == 1
    assert "ending in .json" in capsys.readouterr().err
    skimage.io.imsave(tmp_path / "rgb.png", np.zeros((6, 6, 3), np.uint8), check_contrast=False)
    assert main(["to-coco", str(tmp_path / "rgb.png"), "--out", str(tmp_path / "o.json")]) == 1
    assert "color image" in capsys.readouterr().err


def test_cli_from_coco_errors(tmp_path, capsys):
    (tmp_path / "geo.json").write_text('{"type": "FeatureCollection"}')
    assert main(["from-coco", str(tmp_path / "geo.json"), "--out-dir", str(tmp_path)]) == 1
    assert "is not COCO" in capsys.readouterr().err
    coco = cc.labels_to_coco(np.eye(3, dtype=np.uint8))
    coco["annotations"][0]["segmentation"]["size"] = [3, 4]
    cc.write_coco(tmp_path / "bad.json", coco)
    assert main(["from-coco", str(tmp_path / "bad.json"), "--out-dir", str(tmp_path / "o")]) == 1
    assert "disagrees" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    cc.write_coco(tmp_path / "ok.json", cc.labels_to_coco(np.eye(3, dtype=np.uint8)))
    assert main(["from-coco", str(tmp_path / "ok.json"), "--out-dir", str(tmp_path / "file")]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err
