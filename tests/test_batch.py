"""Batches over image files (``batch``): planning outputs, resuming, going on past bad files."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam2_webgpu.batch import BatchError, plan_batch, run_batch
from napari_sam2_webgpu.imagefiles import read_image


def write_images(folder, names, shape=(12, 16)):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        data = np.full(shape, i + 1, np.uint8)
        if name.endswith(".npy"):
            np.save(folder / name, data)
        else:
            tifffile.imwrite(folder / name, data)
    return folder


def threshold(image, item):
    return (image > 0).astype(np.uint8) * 3


def test_single_file_to_a_file_or_a_folder(tmp_path):
    write_images(tmp_path / "in", ["a.tif"])
    (item,) = plan_batch(tmp_path / "in" / "a.tif", tmp_path / "a.png")
    assert item.output == tmp_path / "a.png"
    (item,) = plan_batch(tmp_path / "in" / "a.tif", tmp_path / "out")
    assert item.output == tmp_path / "out" / "a_labels.tif"


def test_folder_and_pattern_take_image_files_sorted(tmp_path):
    folder = write_images(tmp_path / "in", ["b.tif", "a.npy", "c.tif"])
    (folder / "notes.txt").write_text("not an image")
    items = plan_batch(folder, tmp_path / "out")
    assert [i.source.name for i in items] == ["a.npy", "b.tif", "c.tif"]
    assert [i.output.name for i in items] == ["a_labels.tif", "b_labels.tif", "c_labels.tif"]
    items = plan_batch(str(folder / "*.tif"), tmp_path / "out")
    assert [i.source.name for i in items] == ["b.tif", "c.tif"]


def test_inputs_sharing_a_stem_get_distinct_outputs(tmp_path):
    folder = write_images(tmp_path / "in", ["a.tif", "a.npy"])
    outputs = {i.output.name for i in plan_batch(folder, tmp_path / "out")}
    assert outputs == {"a_tif_labels.tif", "a_npy_labels.tif"}


def test_outputs_written_into_the_input_folder_are_not_read_again(tmp_path):
    folder = write_images(tmp_path / "in", ["a.tif"])
    report = run_batch(plan_batch(folder, folder), threshold)
    assert report.ok and (folder / "a_labels.tif").is_file()
    items = plan_batch(folder, folder)  # a resumed run sees a_labels.tif: not an input
    assert [i.source.name for i in items] == ["a.tif"]


@pytest.mark.parametrize(
    "make, out, message",
    [
        (lambda p: p / "missing", "out", "no such file"),
        (lambda p: write_images(p / "empty", []), "out", "No image files"),
        (lambda p: write_images(p / "two", ["a.tif", "b.tif"]), "labels.tif", "give a folder"),
    ],
)
def test_plan_errors_are_specific(tmp_path, make, out, message):
    source = make(tmp_path)
    with pytest.raises(BatchError, match=message):
        plan_batch(source, tmp_path / out)


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path):
    folder = write_images(tmp_path / "in", ["a.tif", "b.tif"])
    items = plan_batch(folder, tmp_path / "out")
    first = run_batch(items[:1], threshold)
    assert [i.source.name for i in first.written] == ["a.tif"]
    calls = []
    resumed = run_batch(items, lambda im, it: calls.append(it.source.name) or threshold(im, it))
    assert calls == ["b.tif"] and [i.source.name for i in resumed.skipped] == ["a.tif"]
    again = run_batch(items, threshold, overwrite=True)
    assert len(again.written) == 2
    labels = read_image(items[0].output)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {3}


def test_a_bad_file_is_reported_and_the_batch_goes_on(tmp_path):
    folder = write_images(tmp_path / "in", ["a.tif", "c.tif"])
    (folder / "b.tif").write_bytes(b"not a tiff")
    seen = []
    report = run_batch(
        plan_batch(folder, tmp_path / "out"),
        threshold,
        on_item=lambda done, total, item, status: seen.append((done, total, status)),
    )
    assert not report.ok
    assert [i.source.name for i in report.written] == ["a.tif", "c.tif"]
    ((item, reason),) = report.failed
    assert item.source.name == "b.tif" and "Cannot read" in reason
    assert not item.output.exists()
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)]
    assert seen[1][2].startswith("failed: ")


def test_a_failing_segmentation_is_reported_too(tmp_path):
    folder = write_images(tmp_path / "in", ["a.tif", "b.tif"])

    def fails_on_b(image, item):
        if item.source.name == "b.tif":
            raise RuntimeError("out of memory")
        return threshold(image, item)

    report = run_batch(plan_batch(folder, tmp_path / "out"), fails_on_b)
    assert [(i.source.name, r) for i, r in report.failed] == [("b.tif", "out of memory")]


def test_cancel_keeps_what_was_written(tmp_path):
    folder = write_images(tmp_path / "in", ["a.tif", "b.tif", "c.tif"])
    done = []
    report = run_batch(
        plan_batch(folder, tmp_path / "out"),
        lambda im, it: done.append(it) or threshold(im, it),
        cancelled=lambda: len(done) >= 2,
    )
    assert report.cancelled and not report.ok
    assert [i.source.name for i in report.written] == ["a.tif", "b.tif"]


def test_stack_labels_are_written_as_a_stack(tmp_path):
    folder = write_images(tmp_path / "in", ["s.tif"], shape=(3, 10, 12))
    (item,) = plan_batch(folder / "s.tif", tmp_path / "s_labels.tif")
    report = run_batch([item], lambda im, it: np.arange(im.size).reshape(im.shape) % 300)
    assert report.ok
    labels = read_image(item.output)
    assert labels.shape == (3, 10, 12) and labels.dtype == np.uint16


def test_an_image_without_objects_gets_an_empty_label_image(tmp_path):
    folder = write_images(tmp_path / "in", ["a.tif"])
    report = run_batch(plan_batch(folder, tmp_path / "out"), lambda im, it: np.zeros_like(im))
    assert report.ok
    labels = read_image(report.written[0].output)
    assert labels.dtype == np.uint8 and not labels.any()
