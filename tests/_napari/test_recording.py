"""Prompts recorded with the Labels layer, and replayed headless (replay.py, _napari/recording.py).

A session on the micro model (commits, a refinement, an undo, two propagations of two objects
with a correction, a finished object) is recorded in the Labels layer's metadata; replaying the
recording on the CPU with a fresh predictor gives exactly the same labels.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu.replay import (
    METADATA_KEY,
    PromptRecording,
    compare_labels,
    replay,
    sidecar_path,
)

from .stacks import OBJECT, OTHER
from .test_propagation import point_on, stack_setup  # noqa: F401 - the fixture


def test_a_recorded_session_replays_exactly(stack_setup, micro_model_files, tmp_path):  # noqa: F811
    from napari_sam2_webgpu._napari.recording import recording_of
    from napari_sam2_webgpu.predictor import Sam2Predictor
    from napari_sam2_webgpu.video import Sam2Propagator

    viewer, image, labels, before, annotator, controller = stack_setup
    assert recording_of(labels) is None
    # 1. a commit, and one undone
    point_on(viewer, image, annotator, 0, row=10, col=10)
    annotator.commit()
    point_on(viewer, image, annotator, 0, row=40, col=20)
    annotator.commit()
    assert annotator.undo()
    # 2. refine the first commit's label
    annotator.refine(OBJECT, labels)
    point_on(viewer, image, annotator, 0, row=12, col=14)
    annotator.commit()
    # 3. two objects propagated, a correction, propagated again; one finished
    annotator.object_id = 20
    point_on(viewer, image, annotator, 1)
    annotator.next_object()
    point_on(viewer, image, annotator, 2, row=50, col=12)
    controller.propagate("both")
    point_on(viewer, image, annotator, 4, row=5, col=5, positive=False)
    controller.propagate("forward")
    controller.finish_object()
    point_on(viewer, image, annotator, 3, row=30, col=60)
    controller.propagate("backward")

    recording = recording_of(labels)
    counts = {"commit": 2, "undo": 1, "refine": 1, "propagate": 3, "forget": 1}
    assert recording.counts() == counts
    assert recording.header["initial_labelled"] == int((before != 0).sum())
    assert recording.header["image"]["shape"] == list(image.data.shape)
    assert recording.header["backend"] == "cpu"
    path = recording.save(sidecar_path(tmp_path / "manual.tif"))
    assert path.name == "manual.prompts.json"
    loaded = PromptRecording.load(path)
    assert loaded.events == recording.events

    # Replayed on the CPU with freshly loaded models: the same labels, pixel for pixel.
    _, files = micro_model_files
    predictor = Sam2Predictor.from_files(files.encoder, files.decoder, backend="cpu")
    video = Sam2Propagator.from_predictor(predictor, files.memory_attention, files.memory_encoder)
    steps = []
    replayed = replay(
        loaded,
        image.data,
        predictor,
        propagator=video,
        initial=before,
        progress=lambda d, t: steps.append((d, t)),
    )
    assert steps[-1] == (8, 8)
    difference = compare_labels(replayed, labels.data)
    assert difference.identical, difference.describe()
    assert {OBJECT, 20, OTHER} <= set(np.unique(replayed))

    # Without the labels that were there before, their pixels differ: reported (the steps
    # before the first propagation show it; replaying the propagations again would too).
    first = next(k for k, e in enumerate(loaded.events) if e["kind"] == "propagate")
    head = PromptRecording(loaded.header, loaded.events[:first])
    bare = replay(head, image.data, predictor)
    difference = compare_labels(bare, replay(head, image.data, predictor, initial=before))
    assert not difference.identical and OTHER in difference.labels
    assert "pixels differ" in difference.describe()
    with pytest.raises(ValueError, match="propagator"):
        replay(loaded, image.data, predictor)
    with pytest.raises(ValueError, match="same image"):
        replay(loaded, image.data[:2], predictor, propagator=video)


def test_bad_recordings_are_named(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="x.json.*not a"):
        PromptRecording.load(path)
    path.write_text('{"format": "napari-sam2-webgpu prompts", "version": 99}')
    with pytest.raises(ValueError, match="newer"):
        PromptRecording.load(path)
    path.write_text(
        '{"format": "napari-sam2-webgpu prompts", "version": 1, "events": [{"kind": "paint"}]}'
    )
    with pytest.raises(ValueError, match="unknown kind"):
        PromptRecording.load(path)
    assert METADATA_KEY == "napari_sam2_webgpu_prompts"


def test_writer_saves_the_sidecar_and_the_cli_replays_it(tmp_path, micro_model_files, capsys):
    """The npe2 writer saves labels + prompts; `replay` reproduces them and compares."""
    from napari.components import ViewerModel

    from napari_sam2_webgpu._napari.annotator import Annotator
    from napari_sam2_webgpu._napari.recording import write_labels_with_prompts
    from napari_sam2_webgpu.cli import main
    from napari_sam2_webgpu.imagefiles import read_image
    from napari_sam2_webgpu.predictor import Sam2Predictor

    from ..conftest import blob_image

    _, files = micro_model_files
    predictor = Sam2Predictor.from_files(files.encoder, files.decoder, backend="cpu")
    viewer = ViewerModel()
    data = blob_image(64, 80, seed=3)[..., 0]
    image = viewer.add_image(data, name="cells")
    annotator = Annotator(viewer)
    annotator.set_image_layer(image)
    annotator.set_predictor(predictor)
    request = annotator.encode_request()
    annotator.finish_encode(request, request.compute(predictor), predictor)
    annotator.add_point([20, 30])
    annotator.add_point([50, 60], positive=False)
    annotator.commit()
    annotator.overwrite = True  # the random model's masks may cover object 1: recorded too
    annotator.add_box([5, 40], [40, 75])
    annotator.commit()
    labels = annotator.labels_layer
    assert set(np.unique(labels.data)) >= {1, 2}
    out = tmp_path / "cells labels.tif"
    written = write_labels_with_prompts(str(out), labels.data, {"metadata": labels.metadata})
    assert [p.rsplit("/", 1)[-1] for p in written] == [
        "cells labels.tif",
        "cells labels.prompts.json",
    ]
    assert PromptRecording.load(written[1]).header["initial_labelled"] == 0
    np.save(tmp_path / "cells.npy", data)
    args = [
        "replay",
        written[1],
        str(tmp_path / "cells.npy"),
        "--out",
        str(tmp_path / "again.tif"),
        "--encoder",
        str(files.encoder),
        "--decoder",
        str(files.decoder),
        "--backend",
        "cpu",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "identical" in printed and "cells labels.tif" in printed
    np.testing.assert_array_equal(read_image(tmp_path / "again.tif"), labels.data)
    # A reference that differs: reported, exit status 3.
    other = labels.data.copy()
    other[:3, :3] = 9
    np.save(tmp_path / "edited.npy", other)
    args[4] = str(tmp_path / "again2.tif")
    assert main([*args, "--reference", str(tmp_path / "edited.npy")]) == 3
    assert "9 of" in capsys.readouterr().out
    annotator.close()


def test_a_memory_made_mask_is_replayed_as_recorded():
    """A commit of a corrected slice's memory-conditioned preview keeps the mask itself (it
    depends on the whole propagation): replay paints it without a model, by the commit rule."""
    from napari_sam2_webgpu.coco import encode_rle
    from napari_sam2_webgpu.replay import slice_record

    mask = np.zeros((6, 7), bool)
    mask[1:4, 2:5] = True
    before = np.zeros((2, 6, 7), np.uint8)
    before[1, 1, 2] = 9  # another label: kept (no overwrite)
    event = {
        "kind": "commit",
        "slice": slice_record((2, 6, 7), 1, 2, [(0, 1)]),
        "object_id": 4,
        "overwrite": False,
        "conditioned_mask": encode_rle(mask),
    }
    recording = PromptRecording({"image": {"shape": [2, 6, 7]}}, [event, {"kind": "undo"}, event])
    out = replay(recording, np.zeros((2, 6, 7)), predictor=None, initial=before)
    expected = before.copy()
    expected[1][mask & (before[1] == 0)] = 4
    np.testing.assert_array_equal(out, expected)
