"""The ``napari-sam2-webgpu`` command, run in-process."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from napari_sam2_webgpu.cli import main
from napari_sam2_webgpu.models import ENV_CACHE_DIR, ENV_OFFLINE, MODEL_SIZES, get_spec
from napari_sam2_webgpu.runtime import ENV_BACKEND

from .conftest import blob_image
from .models.helpers import safetensors_bytes

H, W = 60, 80
POINTS = ["--point", "40,30,1", "--point", "70,50,0"]
BOX = ["--box", "20,15,60,45"]


@pytest.fixture(scope="module")
def model_args(micro_model_files):
    _, files = micro_model_files
    return ["--encoder", str(files.encoder), "--decoder", str(files.decoder), "--backend", "cpu"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    # Never look at (or write to) the user's model cache, nor obey a backend set outside.
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "cache"))
    monkeypatch.delenv(ENV_BACKEND, raising=False)


def _expected(micro_predictor, image, label):
    """What ``segment`` should write: the predictor's answer to the same prompts."""
    micro_predictor.set_image(image)
    masks, scores, _ = micro_predictor.predict(
        point_coords=[[40.0, 30.0], [70.0, 50.0]],
        point_labels=[1, 0],
        box=[20.0, 15.0, 60.0, 45.0],
        multimask_output=False,
    )
    return np.where(masks[0], label, 0)


def test_segment_png(model_args, micro_predictor, tmp_path, capsys):
    import skimage.io

    image = blob_image(H, W, seed=8)
    src, out = tmp_path / "cells.png", tmp_path / "labels" / "cells_labels.png"
    skimage.io.imsave(src, image, check_contrast=False)
    args = ["segment", str(src), *model_args, *POINTS, *BOX, "--label", "7", "--out", str(out)]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"wrote {out}" in err and "CPU" in err
    labels = skimage.io.imread(out)
    assert labels.shape == (H, W)
    assert labels.dtype == np.uint8
    assert set(np.unique(labels).tolist()) == {0, 7}
    np.testing.assert_array_equal(labels, _expected(micro_predictor, image, 7))


def test_segment_tiff_uint16_with_big_label(model_args, micro_predictor, tmp_path, capsys):
    import tifffile

    image = blob_image(H, W, seed=9)[..., 0].astype(np.uint16) * 200  # 16-bit grayscale
    src, out = tmp_path / "cells.tif", tmp_path / "cells_labels.tif"
    tifffile.imwrite(src, image)
    args = ["segment", str(src), *model_args, *POINTS, *BOX, "--label", "300", "--out", str(out)]
    code = main([*args, "--contrast", "0,51000"])
    assert code == 0, capsys.readouterr().err
    labels = tifffile.imread(out)
    assert labels.shape == (H, W)
    assert labels.dtype == np.uint16  # labels above 255 do not fit uint8
    assert set(np.unique(labels).tolist()) == {0, 300}
    micro_predictor.set_image(image, contrast_limits=(0, 51000))
    masks, scores, _ = micro_predictor.predict(
        point_coords=[[40.0, 30.0], [70.0, 50.0]],
        point_labels=[1, 0],
        box=[20.0, 15.0, 60.0, 45.0],
        multimask_output=False,
    )
    np.testing.assert_array_equal(labels, np.where(masks[0], 300, 0))


def test_segment_tiled_tiff(model_args, micro_predictor, tmp_path, capsys):
    """--tiles on: the click decodes in its tile, as the core's tiled embedding does."""
    import tifffile

    from napari_sam2_webgpu.image.tiling import TileSpec

    image = np.tile(blob_image(H, W, seed=9)[..., 0], (2, 2))
    src, out = tmp_path / "big.tif", tmp_path / "big_labels.tif"
    tifffile.imwrite(src, image, tile=(32, 32))  # read lazily, a tile at a time
    args = ["segment", str(src), *model_args, "--point", "150,100", "--out", str(out)]
    assert main([*args, "--tiles", "on", "--tile-size", "128", "--halo", "32"]) == 0
    err = capsys.readouterr().err
    assert "tiled: 1 x 2 tiles (tiles 128 halo 32)" in err and "(tiled)" in err
    tiled = micro_predictor.compute_tiled_embedding(image, spec=TileSpec(128, 32))
    masks, _, _ = micro_predictor.predict(
        [[150.0, 100.0]], [1], multimask_output=False, embedding=tiled
    )
    np.testing.assert_array_equal(tifffile.imread(out), np.where(masks[0], 1, 0))


@pytest.mark.parametrize(
    "point,message",
    [
        ("1,2,3,4", r"--point X,Y\[,LABEL\] needs 2 or 3 comma-separated numbers"),
        ("a,b", r"needs 2 or 3 comma-separated numbers, got 'a,b'"),
        ("10", "needs 2 or 3"),
        ("10,10,2", "point label must be 1 or 0, got 2"),
    ],
)
def test_bad_point_syntax(tmp_path, capsys, point, message):
    with pytest.raises(SystemExit) as exc:
        main(["segment", "x.png", "--point", point, "--out", str(tmp_path / "o.png")])
    assert exc.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_bad_box_syntax(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["segment", "x.png", "--box", "1,2,3", "--out", str(tmp_path / "o.png")])
    assert exc.value.code == 2
    assert "--box X0,Y0,X1,Y1 needs 4 comma-separated numbers" in capsys.readouterr().err


def test_point_outside_the_image(model_args, tmp_path, capsys):
    src, out = tmp_path / "cells.npy", tmp_path / "o.npy"
    np.save(src, blob_image(H, W, seed=1))
    code = main(["segment", str(src), *model_args, "--point", f"{W + 10},5", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "error:" in err and "outside" in err
    assert not out.exists()


def test_missing_image_file(model_args, tmp_path, capsys):
    args = ["segment", str(tmp_path / "nope.tif"), *model_args, "--point", "1,1"]
    code = main([*args, "--out", str(tmp_path / "o.tif")])
    assert code == 1
    assert "Image not found" in capsys.readouterr().err


def test_models_lists_the_sizes_and_cache(tmp_path, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"cache: {tmp_path / 'cache'}" in out
    assert "default source: official" in out
    rows = [line.split() for line in out.splitlines()[3:7]]
    assert [row[0] for row in rows] == list(MODEL_SIZES)
    assert set(MODEL_SIZES) == {"tiny", "small", "base_plus", "large"}
    assert all(row[2:] == ["no", "no"] for row in rows)  # nothing built or cached yet
    assert out.splitlines()[-1] == "installed models: none"


def test_download_offline_fails_with_an_explanation(monkeypatch, capsys):
    monkeypatch.setenv(ENV_OFFLINE, "1")  # conftest sets it too; never reach the network
    code = main(["download", "tiny", "--source", "samexporter"])
    err = capsys.readouterr().err
    assert code == 1
    assert "offline" in err
    for name in (get_spec("tiny").encoder.filename, get_spec("tiny").decoder.filename):
        assert name in err


def test_download_of_the_official_checkpoint_offline_says_where_it_is(monkeypatch, capsys):
    from napari_sam2_webgpu.models import CHECKPOINTS

    monkeypatch.setenv(ENV_OFFLINE, "1")
    assert main(["download", "small"]) == 1
    err = capsys.readouterr().err
    assert CHECKPOINTS["small"].url in err and CHECKPOINTS["small"].sha256 in err


def test_download_checks_every_name_first(capsys):
    assert main(["download", "tiny", "huge"]) == 1
    assert "Unknown SAM2.1 model 'huge'" in capsys.readouterr().err


def test_download_needs_a_size(capsys):
    assert main(["download"]) == 2
    assert "--all" in capsys.readouterr().err


def test_doctor(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime" in out
    assert "Backend:" in out and '"auto" would use' in out


def test_export_random_weights(tmp_path, capsys):
    out_dir = tmp_path / "exported"
    code = main(["export", "--size", "micro", "--random-weights", "--out", str(out_dir)])
    assert code == 0, capsys.readouterr().err
    stem = "sam2.1_hiera_micro"
    encoder = out_dir / f"{stem}.encoder.onnx"
    decoder = out_dir / f"{stem}.decoder.onnx"
    assert sorted(p.name for p in out_dir.iterdir()) == [
        decoder.name,
        encoder.name,
        f"{stem}.memory_attention.onnx",
        f"{stem}.memory_encoder.onnx",
    ]
    stdout = capsys.readouterr().out
    assert f"encoder: {encoder}" in stdout and f"decoder: {decoder}" in stdout
    assert f"memory attention: {out_dir / stem}.memory_attention.onnx" in stdout
    from napari_sam2_webgpu.predictor import Sam2Predictor

    predictor = Sam2Predictor.from_files(encoder, decoder, backend="cpu")
    assert predictor.name == "sam2.1_hiera_micro"


def test_export_install_puts_the_video_model_where_propagation_finds_it(
    tmp_path, monkeypatch, capsys
):
    from napari_sam2_webgpu.models import ModelNotAvailableError, find_video_model

    monkeypatch.setenv("NAPARI_SAM2_WEBGPU_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ModelNotAvailableError, match="convert sam2.1_hiera_micro.pt --size micro"):
        find_video_model("micro")
    code = main(["export", "--size", "micro", "--random-weights", "--install"])
    assert code == 0, capsys.readouterr().err
    paths = find_video_model("micro")
    assert all(p.parent == tmp_path / "cache" / "exported" for p in paths.files)
    from napari_sam2_webgpu.video import Sam2Propagator

    video = Sam2Propagator.from_pretrained("micro", "cpu")
    assert video.predictor.encoder_path == paths.encoder
    assert video.config.num_maskmem == 3 and video.config.max_obj_ptrs_in_encoder == 16


def test_export_images_only_and_install_conflicts(tmp_path, capsys):
    out_dir = tmp_path / "images"
    code = main(
        ["export", "--size", "micro", "--random-weights", "--no-video", "--out", str(out_dir)]
    )
    assert code == 0
    assert len(list(out_dir.iterdir())) == 2
    with pytest.raises(SystemExit, match="--out FOLDER, or --install"):
        main(["export", "--size", "micro", "--random-weights"])
    with pytest.raises(SystemExit, match="leave out --name"):
        main(["export", "--size", "micro", "--random-weights", "--install", "--name", "x"])


def test_export_needs_weights(tmp_path):
    with pytest.raises(SystemExit, match="--checkpoint FILE.pt.*--random-weights"):
        main(["export", "--size", "micro", "--out", str(tmp_path)])


def test_export_missing_checkpoint(tmp_path, capsys):
    missing = tmp_path / "model.pt"
    code = main(["export", "--size", "micro", "--checkpoint", str(missing), "--out", str(tmp_path)])
    assert code == 1
    assert "Checkpoint not found" in capsys.readouterr().err


def test_export_unknown_size(tmp_path, capsys):
    code = main(["export", "--size", "huge", "--random-weights", "--out", str(tmp_path)])
    assert code == 1
    assert "Unknown model size 'huge'" in capsys.readouterr().err


def test_bench(micro_model_files, capsys):
    _, files = micro_model_files
    args = ["bench", "--encoder", str(files.encoder), "--decoder", str(files.decoder)]
    code = main([*args, "--backends", "cpu", "--repeats", "1", "--image-sides", "256"])
    assert code == 0
    out = capsys.readouterr().out
    assert "click" in out
    assert "| custom | cpu | CPU |" in out
    assert "256" in out


def test_import_is_light():
    code = (
        "import napari_sam2_webgpu, sys; "
        "assert not any(m in sys.modules for m in ('onnxruntime','torch','qtpy','napari')), "
        "[m for m in ('onnxruntime','torch','qtpy','napari') if m in sys.modules]"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_propagate_writes_a_label_stack(micro_model_files, tmp_path, capsys):
    from .video.test_propagator import moving_blob_stack

    _, files = micro_model_files
    stack_path, out = tmp_path / "stack.npy", tmp_path / "labels.npy"
    np.save(stack_path, moving_blob_stack(3, (60, 70)))
    args = ["propagate", str(stack_path), "--frame", "1", "--point", "20,22", "--label", "300"]
    args += ["--encoder", str(files.encoder), "--decoder", str(files.decoder)]
    code = main([*args, "--backend", "cpu", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    labels = np.load(out)
    assert labels.shape == (3, 60, 70) and labels.dtype == np.uint16
    assert set(np.unique(labels)) <= {0, 300}
    assert "3 frames in" in capsys.readouterr().out


def test_propagate_tiled_tracks_in_the_prompts_tile_with_a_store(
    micro_model_files, tmp_path, capsys
):
    """--tiles on: the object is tracked in its prompt's tile (as the napari widget does), the
    tiles go to a tiled store, and a second run reads them instead of encoding."""
    from napari_sam2_webgpu.image.tiling import TileSpec
    from napari_sam2_webgpu.video import Sam2Propagator

    from .video.test_propagator import moving_blob_stack

    _, files = micro_model_files
    stack = moving_blob_stack(3, (120, 150))
    stack_path = tmp_path / "stack.npy"
    np.save(stack_path, stack)
    base = ["propagate", str(stack_path), "--frame", "1", "--point", "30,28"]
    base += ["--encoder", str(files.encoder), "--decoder", str(files.decoder), "--backend", "cpu"]
    base += ["--tiles", "on", "--tile-size", "96", "--halo", "16"]
    store = tmp_path / "stack.sam2.zarr"
    for run in ("fills", "reads"):
        out = tmp_path / f"{run}.npy"
        assert main([*base, "--store", str(store), "--out", str(out)]) == 0
        err = capsys.readouterr().err
        assert "tracked in tile 0 (0, 0, 96, 96)" in err
    np.testing.assert_array_equal(np.load(tmp_path / "fills.npy"), np.load(out))
    # The propagator on the window's frames, the prompt shifted (here by 0).
    video = Sam2Propagator.from_files(
        files.encoder, files.decoder, files.memory_attention, files.memory_encoder, "cpu"
    )
    window = TileSpec(96, 16).layout((120, 150)).tiles[0]
    rows, cols = window.slices
    state = video.init_state(np.ascontiguousarray(stack[:, rows, cols]))
    video.add_prompts(state, 1, 1, points=[[30.0, 28.0]], labels=[1])
    expected = np.zeros(stack.shape, np.uint8)
    for frame, masks in video.propagate(state, "both"):
        expected[frame][rows, cols] = masks[1]
    np.testing.assert_array_equal(np.load(out), expected)


def test_propagate_without_video_files_says_how_to_get_them(micro_model_files, tmp_path, capsys):
    import shutil

    _, files = micro_model_files
    encoder = shutil.copy(files.encoder, tmp_path / "m.encoder.onnx")
    decoder = shutil.copy(files.decoder, tmp_path / "m.decoder.onnx")
    np.save(tmp_path / "s.npy", np.zeros((2, 30, 30), np.uint8))
    args = ["propagate", str(tmp_path / "s.npy"), "--frame", "0", "--point", "5,5"]
    with pytest.raises(SystemExit, match="no memory_attention/memory_encoder files next to"):
        main([*args, "--encoder", str(encoder), "--decoder", str(decoder), "--out", "x.npy"])
    code = main([*args, "--model", "micro", "--out", str(tmp_path / "x.npy")])
    assert code == 1
    err = capsys.readouterr().err
    assert "Unknown SAM2.1 model 'micro'" in err and "convert" in err and "--install" in err


# -- never lose data, never a traceback (issue 15) ------------------------------------------------
OFFLINE_TINY = ["--model", "tiny"]  # the cache is empty and offline: loading it would fail


def _image_file(tmp_path, name="cells.npy"):
    src = tmp_path / name
    np.save(src, blob_image(H, W, seed=3))
    return src


def _run(capsys, args):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.err


def test_segment_never_writes_over_its_input(tmp_path, capsys):
    import skimage.io

    src = tmp_path / "cells.png"
    skimage.io.imsave(src, blob_image(H, W, seed=2), check_contrast=False)
    before = src.read_bytes()
    for extra in ([], ["--overwrite"]):
        code, err = _run(
            capsys,
            ["segment", str(src), *OFFLINE_TINY, "--point", "5,5", "--out", str(src)] + extra,
        )
        assert code == 1
        assert "over the input file" in err and "Traceback" not in err
    assert src.read_bytes() == before


def test_segment_refuses_an_existing_output_unless_overwrite(model_args, tmp_path, capsys):
    src, out = _image_file(tmp_path), tmp_path / "labels.tif"
    out.write_bytes(b"precious")
    args = ["segment", str(src), *model_args, "--point", "40,30", "--out", str(out)]
    code, err = _run(capsys, args)
    assert code == 1 and "already exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"precious"
    code, err = _run(capsys, [*args, "--overwrite"])
    assert code == 0, err
    import tifffile

    assert set(np.unique(tifffile.imread(out)).tolist()) <= {0, 1}
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".webp", ".txt", ""])
def test_lossy_or_unknown_output_formats_are_refused_before_loading(suffix, tmp_path, capsys):
    src = _image_file(tmp_path)
    out = tmp_path / f"labels{suffix}"
    code, err = _run(
        capsys, ["segment", str(src), *OFFLINE_TINY, "--point", "5,5", "--out", str(out)]
    )
    assert code == 1
    assert "lossless" in err and ".tif" in err and ".png" in err and ".npy" in err
    assert "offline" not in err  # refused before any model was looked for
    assert not out.exists()


@pytest.mark.parametrize("label", ["0", "-1", "4294967296", "1.5"])
def test_labels_that_cannot_be_stored_are_refused(label, tmp_path, capsys):
    src = _image_file(tmp_path)
    for command in ("segment", "propagate"):
        args = [command, str(src), "--point", "5,5", "--out", str(tmp_path / "o.tif")]
        if command == "propagate":
            args += ["--frame", "0"]
        with pytest.raises(SystemExit) as exc:
            main([*args, f"--label={label}"])
        assert exc.value.code == 2
        assert "--label" in capsys.readouterr().err


@pytest.mark.parametrize(
    "label,suffix,dtype",
    [(255, ".png", np.uint8), (256, ".png", np.uint16), (70000, ".tif", np.uint32)],
)
def test_the_output_dtype_holds_the_label(label, suffix, dtype, model_args, tmp_path, capsys):
    src, out = _image_file(tmp_path), tmp_path / f"labels{suffix}"
    args = ["segment", str(src), *model_args, *POINTS, *BOX, "--label", str(label)]
    code, err = _run(capsys, [*args, "--out", str(out)])
    assert code == 0, err
    from napari_sam2_webgpu.imagefiles import read_image

    labels = read_image(out)
    assert labels.dtype == dtype
    assert set(np.unique(labels).tolist()) == {0, label}  # never wrapped


def test_png_cannot_hold_a_32_bit_label(tmp_path, capsys):
    src = _image_file(tmp_path)
    code, err = _run(
        capsys,
        [
            "segment",
            str(src),
            *OFFLINE_TINY,
            "--point",
            "5,5",
            "--label",
            "70000",
            "--out",
            str(tmp_path / "o.png"),
        ],
    )
    assert code == 1 and ".png holds labels up to 65535" in err


def test_propagate_label_and_stack_format(micro_model_files, tmp_path, capsys):
    stack = tmp_path / "stack.npy"
    np.save(stack, np.zeros((3, 40, 40), np.uint8))
    base = ["propagate", str(stack), "--frame", "0", "--point", "5,5", "--model", "micro"]
    code, err = _run(capsys, [*base, "--out", str(tmp_path / "labels.png")])
    assert code == 1 and "label stacks" in err and ".png" not in err.split("one of")[1]
    code, err = _run(capsys, [*base, "--frame", "3", "--out", str(tmp_path / "labels.tif")])
    assert code == 1 and "--frame 3 is outside the stack" in err


def test_several_boxes_are_refused(tmp_path, capsys):
    src = _image_file(tmp_path)
    args = ["segment", str(src), *OFFLINE_TINY, "--box", "1,1,10,10", "--box", "20,20,30,30"]
    code, err = _run(capsys, [*args, "--out", str(tmp_path / "o.tif")])
    assert code == 1
    assert "--box was given 2 times" in err and "offline" not in err


@pytest.mark.parametrize("contrast", ["200,10", "10,10", "nan,10", "0,inf"])
def test_empty_or_reversed_contrast_is_refused(contrast, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["segment", "x.png", "--point", "1,1", "--contrast", contrast, "--out", "o.tif"])
    assert exc.value.code == 2
    assert "LOW < HIGH" in capsys.readouterr().err


def test_unreadable_image_is_one_line_naming_the_file(tmp_path, capsys):
    fake = tmp_path / "notes.png"
    fake.write_text("this is not a picture")
    code, err = _run(
        capsys,
        ["segment", str(fake), *OFFLINE_TINY, "--point", "5,5", "--out", str(tmp_path / "o.tif")],
    )
    assert code == 1
    assert err.startswith(f"error: Cannot read {fake} as an image")
    assert len(err.strip().splitlines()) == 1


def test_output_that_is_a_folder(tmp_path, capsys):
    src = _image_file(tmp_path)
    folder = tmp_path / "out.tif"
    folder.mkdir()
    code, err = _run(
        capsys, ["segment", str(src), *OFFLINE_TINY, "--point", "5,5", "--out", str(folder)]
    )
    assert code == 1 and "is a folder" in err and "Traceback" not in err


def test_output_folder_not_writable_is_refused_before_loading(tmp_path, capsys, monkeypatch):
    import napari_sam2_webgpu.imagefiles as imagefiles

    src = _image_file(tmp_path)
    monkeypatch.setattr(imagefiles.os, "access", lambda path, mode: False)  # we run as root
    code, err = _run(
        capsys,
        ["segment", str(src), *OFFLINE_TINY, "--point", "5,5", "--out", str(tmp_path / "o.tif")],
    )
    assert code == 1 and "not writable" in err and "offline" not in err


def test_write_failure_is_one_line_and_leaves_nothing(model_args, tmp_path, capsys, monkeypatch):
    import errno

    import napari_sam2_webgpu.imagefiles as imagefiles

    def read_only(src, dst):
        raise OSError(errno.EROFS, "Read-only file system", str(dst))

    monkeypatch.setattr(imagefiles.os, "replace", read_only)
    src, out = _image_file(tmp_path), tmp_path / "labels.tif"
    code, err = _run(capsys, ["segment", str(src), *model_args, *POINTS, "--out", str(out)])
    assert code == 1
    assert err.strip().splitlines()[-1] == f"error: Cannot write {out}: Read-only file system"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.npy"]


@pytest.mark.parametrize(
    "prompt,message",
    [
        (["--point", f"{W + 10},5"], "outside the image"),
        (["--box", f"{W + 5},1,{W + 9},9"], "outside the image"),
        ([], "at least one --point"),
    ],
)
def test_prompts_are_checked_before_loading(prompt, message, tmp_path, capsys):
    src = _image_file(tmp_path)
    code, err = _run(
        capsys, ["segment", str(src), *OFFLINE_TINY, *prompt, "--out", str(tmp_path / "o.tif")]
    )
    assert code == 1 and message in err and "offline" not in err


def test_bad_image_shape_is_checked_before_loading(tmp_path, capsys):
    src = tmp_path / "stack.npy"
    np.save(src, np.zeros((5, 40, 40), np.uint8))
    code, err = _run(
        capsys,
        ["segment", str(src), *OFFLINE_TINY, "--point", "5,5", "--out", str(tmp_path / "o.tif")],
    )
    assert code == 1 and "stack" in err and "offline" not in err


def test_negative_coordinates_need_no_equals_sign(tmp_path, capsys):
    from napari_sam2_webgpu.cli import build_parser
    from napari_sam2_webgpu.cli._common import attach_negative_values

    argv = ["segment", "x.png", "--point", "-5,100", "--box", "-1,-2,30,40", "--out", "o.tif"]
    args = build_parser().parse_args(attach_negative_values(argv))
    assert args.point == [[-5.0, 100.0, 1.0]]
    assert args.box == [[-1.0, -2.0, 30.0, 40.0]]
    src = _image_file(tmp_path)
    code, err = _run(
        capsys,
        ["segment", str(src), *OFFLINE_TINY, "--point", "-5,10", "--out", str(tmp_path / "o.tif")],
    )
    assert code == 1 and "Point (x=-5, y=10) is outside the image" in err


def test_parser_has_every_subcommand_in_help_order():
    from napari_sam2_webgpu.cli import build_parser

    parser = build_parser()
    names = ["models", "download", "doctor", "segment", "propagate", "convert", "export", "bench"]
    names.insert(names.index("segment") + 1, "segment-all")
    names.insert(names.index("segment-all") + 1, "refine")
    names.insert(names.index("propagate") + 1, "embed")
    names[names.index("propagate") + 1 : names.index("propagate") + 1] = ["tracks", "replay"]
    names += ["to-coco", "from-coco"]
    assert "{" + ",".join(names) + "}" in parser.format_help()
    required = {"segment": ["x.png", "--out", "o.npy"], "propagate": ["s.npy", "--frame", "0"]}
    required["propagate"] += ["--out", "o.npy"]
    required["convert"] = ["x.pt"]
    required["segment-all"] = ["x.png", "--out", "o.tif"]
    required["embed"] = ["x.tif", "--out", "x.sam2.zarr"]
    required["refine"] = ["x.tif", "l.tif", "--out", "o.tif"]
    required["to-coco"] = ["x.png", "--out", "o.json"]
    required["from-coco"] = ["c.json", "--out-dir", "d"]
    required["tracks"] = ["l.tif", "--out", "t.csv"]
    required["replay"] = ["l.prompts.json", "x.tif", "--out", "o.tif"]
    for name in names:
        args = parser.parse_args([name, *required.get(name, [])])
        assert args.command == name
        assert args.func.__name__ == f"_cmd_{name.replace('-', '_')}"


def test_segment_and_propagate_share_prompt_model_and_output_options():
    from napari_sam2_webgpu.cli import build_parser

    common = ["--point", "1,2,0", "--box", "0,0,4,4", "--contrast", "0,9", "--label", "3"]
    common += ["--encoder", "e.onnx", "--decoder", "d.onnx", "--backend", "cpu", "--out", "o.npy"]
    segment = build_parser().parse_args(["segment", "x.png", *common, "--multimask"])
    propagate = build_parser().parse_args(["propagate", "s.npy", "--frame", "2", *common])
    for args in (segment, propagate):
        assert args.point == [[1.0, 2.0, 0.0]] and args.box == [[0.0, 0.0, 4.0, 4.0]]
        assert args.contrast == [0.0, 9.0] and args.label == 3 and not args.overwrite
        assert (args.model, args.encoder, args.decoder) == ("tiny", "e.onnx", "d.onnx")
        assert args.backend == "cpu" and args.out == "o.npy"
    assert segment.multimask and propagate.direction == "both" and propagate.frame == 2


# -- convert: checkpoints to the four ONNX files without torch (issue 10) -------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny state dict of random values in the official layout (safetensors bytes; the reader
    goes by content, not by the name)."""
    from napari_sam2_webgpu.models.templates import load_index

    rng = np.random.default_rng(1)
    state = {
        k: (0.02 * rng.standard_normal(shape)).astype(dtype)
        for k, (shape, dtype) in load_index("tiny").keys.items()
    }
    path = tmp_path_factory.mktemp("ckpt") / "finetuned.pt"
    path.write_bytes(safetensors_bytes(state))
    return path


def test_convert_installs_a_named_model(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    from napari_sam2_webgpu.models import installed_models, resolve_model

    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "cache"))
    assert main(["convert", str(tiny_checkpoint), "--name", "cells", "--install"]) == 0
    assert "installed as 'cells'" in capsys.readouterr().out
    assert "cells" in installed_models()
    paths = resolve_model("cells", video=True)  # offline: no download, no build
    assert paths.encoder == tmp_path / "cache" / "exported" / "cells.encoder.onnx"


def test_convert_guesses_the_size_and_writes_to_a_folder(tiny_checkpoint, tmp_path, capsys):
    assert main(["convert", str(tiny_checkpoint), "--out", str(tmp_path / "out")]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(
        f"sam2.1_hiera_tiny.{c}.onnx"
        for c in ("encoder", "decoder", "memory_attention", "memory_encoder")
    )


def test_convert_takes_an_original_sam2_checkpoint(tmp_path, monkeypatch, capsys):
    """A SAM2 (2.0) checkpoint is recognised by its keys and installed under Meta's name."""
    from napari_sam2_webgpu.models import installed_models, resolve_model
    from napari_sam2_webgpu.models.templates import load_index

    state = {
        k: np.zeros(shape, dtype) for k, (shape, dtype) in load_index("sam2.0_tiny").keys.items()
    }
    path = tmp_path / "sam2_hiera_tiny.pt"
    path.write_bytes(safetensors_bytes(state))
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "cache"))
    assert main(["convert", str(path), "--install"]) == 0
    assert "installed as 'sam2_hiera_tiny'" in capsys.readouterr().out
    assert installed_models() == ["sam2_hiera_tiny"]
    paths = resolve_model("sam2_hiera_tiny", video=True)
    assert paths.encoder.name == "sam2_hiera_tiny.encoder.onnx"
    assert main(["convert", str(path), "--size", "tiny", "--out", str(tmp_path / "o")]) == 0


def test_convert_refuses_the_wrong_size_and_writes_nothing(tiny_checkpoint, tmp_path, capsys):
    code = main(["convert", str(tiny_checkpoint), "--size", "small", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1
    assert "not a SAM2.1 small model" in err and "It is a SAM2.1 tiny model" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "give --out FOLDER, or --install"),
        (["--install", "--out", "x"], "choose one"),
        (["--install", "--name", "../up"], "--name"),
    ],
)
def test_convert_argument_errors(tiny_checkpoint, extra, message, capsys):
    assert main(["convert", str(tiny_checkpoint), *extra]) == 1
    assert message in capsys.readouterr().err


def test_convert_refuses_a_pickle_that_runs_code(tmp_path, capsys):
    import io
    import pickle
    import zipfile

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (__import__("os").system, (f"touch {marker}",))

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"model": Payload()}, protocol=2))
        zf.writestr("archive/version", "3\n")
    path = tmp_path / "evil.pt"
    path.write_bytes(buffer.getvalue())
    assert main(["convert", str(path), "--out", str(tmp_path / "o")]) == 1
    assert "refused" in capsys.readouterr().err
    assert not marker.exists()


# -- segment-all: every object of every image, resumable (issue 11) ------------------------------

# Random weights give noise masks: keep them all (no score cut-off, no duplicate removal).
LOW_THRESHOLDS = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh"]
LOW_THRESHOLDS += ["0", "--box-nms-thresh", "1"]


def test_segment_all_folder_resumes_and_reports_bad_files(
    model_args, micro_predictor, tmp_path, capsys
):
    """One label image per input (a stack slice by slice); a bad file fails alone; a second
    run skips what exists; the labels are what the core's generator gives."""
    import tifffile

    from napari_sam2_webgpu.image.automatic import AutomaticMaskGenerator, masks_to_labels

    folder = tmp_path / "in"
    folder.mkdir()
    image = blob_image(H, W, seed=3)
    tifffile.imwrite(folder / "a.tif", image)
    tifffile.imwrite(folder / "s.tif", np.stack([image[..., 0], image[..., 1]]))
    (folder / "b.tif").write_bytes(b"broken")
    out = tmp_path / "out"
    args = ["segment-all", str(folder), "--out", str(out), *model_args, *LOW_THRESHOLDS]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "2 written, 0 skipped, 1 failed" in err and "b.tif" in err
    labels = tifffile.imread(out / "a_labels.tif")
    generator = AutomaticMaskGenerator(
        micro_predictor,
        points_per_side=4,
        pred_iou_thresh=0,
        stability_score_thresh=0,
        box_nms_thresh=1,
    )
    expected = masks_to_labels(generator.generate(image), (H, W))
    assert expected.max() > 1, "random weights found nothing: the test would say nothing"
    np.testing.assert_array_equal(labels, expected)
    stack = tifffile.imread(out / "s_labels.tif")
    assert stack.shape == (2, H, W)
    ids = [set(np.unique(s)) - {0} for s in stack]
    assert ids[0] and ids[1] and not ids[0] & ids[1]  # unique through the stack
    (folder / "b.tif").unlink()
    assert main(args) == 0  # all done: nothing recomputed, no model loaded
    assert "2 images, 2 done already" in capsys.readouterr().err


def test_segment_all_constant_image_and_a_bad_slice(model_args, tmp_path, capsys):
    """No objects: an empty label image and a message; a stack slice without a finite value is
    left empty and reported while the others are segmented."""
    np.save(tmp_path / "flat.npy", np.full((H, W), 7, np.uint8))
    args = [*model_args, *LOW_THRESHOLDS]
    code = main(
        ["segment-all", str(tmp_path / "flat.npy"), "--out", str(tmp_path / "f.tif"), *args]
    )
    assert code == 0
    assert "no objects found" in capsys.readouterr().err
    import tifffile

    assert not tifffile.imread(tmp_path / "f.tif").any()
    stack = np.stack([blob_image(H, W, seed=1)[..., 0].astype(np.float32)] * 3)
    stack[1] = np.nan
    np.save(tmp_path / "s.npy", stack)
    code = main(["segment-all", str(tmp_path / "s.npy"), "--out", str(tmp_path / "s.tif"), *args])
    err = capsys.readouterr().err
    assert code == 0 and "slice 1 left empty" in err
    labels = tifffile.imread(tmp_path / "s.tif")
    assert labels[0].any() and not labels[1].any() and labels[2].any()


def test_segment_all_refuses_a_file_out_for_a_folder(model_args, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "a.npy", blob_image(H, W))
    np.save(folder / "b.npy", blob_image(H, W))
    code = main(["segment-all", str(folder), "--out", str(tmp_path / "x.tif"), *model_args])
    assert code == 1 and "give a folder" in capsys.readouterr().err


def test_segment_all_tiles_an_ome_zarr(model_args, micro_predictor, tmp_path, capsys):
    """--tiles on: the labels of the core's tiled generator, from an OME-Zarr read lazily."""
    import tifffile
    import zarr

    from napari_sam2_webgpu.image.automatic import AutomaticMaskGenerator
    from napari_sam2_webgpu.image.tiling import TileSpec

    image = blob_image(120, 150, seed=5)[..., 0]
    group = zarr.open_group(str(tmp_path / "a.ome.zarr"), mode="w")
    group.create_array("0", shape=(1, *image.shape), chunks=(1, 64, 64), dtype="uint8")[:] = image[
        None
    ]
    group.attrs["ome"] = {
        "multiscales": [{"axes": [{"name": n} for n in "cyx"], "datasets": [{"path": "0"}]}]
    }
    tiles = ["--tiles", "on", "--tile-size", "96", "--halo", "16"]
    out = tmp_path / "a.tif"
    args = ["segment-all", str(tmp_path / "a.ome.zarr"), "--out", str(out), *model_args]
    assert main([*args, *LOW_THRESHOLDS, *tiles]) == 0
    generator = AutomaticMaskGenerator(
        micro_predictor, points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0,
        box_nms_thresh=1,
    )  # fmt: skip
    expected, _ = generator.generate_labels(image, tiles=TileSpec(96, 16))
    np.testing.assert_array_equal(tifffile.imread(out), expected)
    capsys.readouterr()
    assert main([*args, "--overwrite", "--tile-size", "96", "--halo", "40", "--tiles", "on"]) == 1
    assert "--tile-size/--halo" in capsys.readouterr().err


def test_refine_a_label_image(model_args, micro_predictor, tmp_path, capsys):
    """Every label (or --ids) refined as the core's refine_labels does; bad input refused."""
    import tifffile

    from napari_sam2_webgpu.image.refine import refine_labels

    image = blob_image(H, W, seed=4)[..., 0]
    labels = np.zeros((H, W), np.uint16)
    labels[10:30, 10:40] = 2
    labels[35:55, 50:90] = 5
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    out = tmp_path / "refined.tif"
    base = ["refine", str(tmp_path / "img.tif"), str(tmp_path / "lab.tif"), *model_args]
    assert main([*base, "--ids", "5", "--out", str(out)]) == 0
    assert "label 1/1" in capsys.readouterr().err
    expected = refine_labels(micro_predictor, image, labels, ids=[5])
    np.testing.assert_array_equal(tifffile.imread(out), expected)
    assert main([*base, "--out", str(out)]) == 1  # exists: not replaced without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    tifffile.imwrite(tmp_path / "small.tif", labels[:20])
    bad = ["refine", str(tmp_path / "img.tif"), str(tmp_path / "small.tif"), *model_args]
    assert main([*bad, "--out", str(tmp_path / "x.tif")]) == 1
    assert "image's size" in capsys.readouterr().err
