"""Building ONNX files from graph templates without torch (``models.convert``, ``.templates``):
key matching, clear refusals that write nothing, atomic output and a runnable result."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu.models.convert import (
    ConversionError,
    build_model,
    check_state_dict,
    default_stem,
    guess_size,
    match_keys,
    pick_template,
)
from napari_sam2_webgpu.models.files import COMPONENTS
from napari_sam2_webgpu.models.templates import (
    CHECKPOINT_LOCATION,
    TensorSource,
    load_index,
    template_sizes,
)


def zeros_state(size: str) -> dict[str, np.ndarray]:
    """A state dict of the size's keys and shapes (values do not matter for the checks)."""
    return {k: np.zeros(shape, dtype) for k, (shape, dtype) in load_index(size).keys.items()}


SIZES = ["tiny", "small", "base_plus", "large"]


def test_the_four_sizes_of_sam21_and_sam2_are_shipped():
    assert set(template_sizes()) == {*SIZES, *(f"sam2.0_{s}" for s in SIZES)}


@pytest.mark.parametrize("name", [*SIZES, *(f"sam2.0_{s}" for s in SIZES)])
def test_each_checkpoint_fits_exactly_one_template(name):
    """SAM2.1 state dicts hold every SAM2 key and two more: unexpected keys must tell them
    apart, whichever is tried first."""
    state = zeros_state(name)
    assert guess_size(state) == name
    size = name.removeprefix("sam2.0_")
    assert pick_template(state, size) == name
    assert pick_template(state, name) == name


def test_sam2_checkpoint_given_as_its_size_builds_the_sam2_graphs(tmp_path):
    """`convert sam2_hiera_tiny.pt --size tiny` needs no other spelling of the size."""
    paths, _ = build_model(zeros_state("sam2.0_tiny"), "tiny", tmp_path, stem="s")
    assert all(p.is_file() for p in paths.files)
    built = paths.memory_encoder.read_bytes()
    assert b"sam2.0_tiny" in built and b"object_score_logits" not in built
    assert default_stem("sam2.0_tiny") == "sam2_hiera_tiny"
    assert default_stem("tiny") == "sam2.1_hiera_tiny"


def test_sam2_template_name_accepts_no_sam21_checkpoint():
    with pytest.raises(ConversionError, match="not a SAM2 \\(2.0\\) small model") as info:
        pick_template(zeros_state("small"), "sam2.0_small")
    assert "3 unexpected: no_obj_embed_spatial" in str(info.value)
    assert "It is a SAM2.1 small model: convert it with --size small" in str(info.value)


def test_import_stays_free_of_torch_and_onnx():
    import subprocess
    import sys

    code = (
        "import sys, napari_sam2_webgpu.models.convert, napari_sam2_webgpu.models.templates;"
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "source",
    [
        TensorSource(keys=("a.weight",)),
        TensorSource(keys=("a.weight",), transpose=(1, 0)),
        TensorSource(keys=("x", "y", "z")),
        TensorSource(sha256="ab" * 32),
    ],
)
def test_tensor_source_round_trip(source):
    assert TensorSource.from_entries(source.entries()) == source


def test_unknown_location_is_refused():
    with pytest.raises(ValueError, match="location"):
        TensorSource.from_entries({"location": "weights.bin"})
    assert TensorSource.from_entries({}) is None
    assert TensorSource.from_entries({"location": CHECKPOINT_LOCATION, "key": "k"}).keys == ("k",)


@pytest.mark.parametrize("prefix", ["", "module.", "model.", "module._orig_mod.", "sam2."])
def test_match_keys_removes_wrapper_prefixes(prefix):
    expected = {"image_encoder.w": 1, "sam_mask_decoder.b": 2}
    keys = [prefix + k for k in expected]
    assert match_keys(keys, expected) == {k: prefix + k for k in expected}


def test_check_accepts_the_exact_state_dict():
    index = load_index("tiny")
    state = zeros_state("tiny")
    assert check_state_dict(state, index) == {k: k for k in state}


def test_check_lists_missing_unexpected_and_wrong_shapes():
    index = load_index("tiny")
    state = zeros_state("tiny")
    missing = sorted(state)[0]
    del state[missing]
    state["some_head.weight"] = np.zeros(3)
    key = "sam_mask_decoder.iou_token.weight"
    state[key] = np.zeros((2, 2))
    with pytest.raises(ConversionError) as info:
        check_state_dict(state, index)
    message = str(info.value)
    assert "not a SAM2.1 tiny model" in message
    assert f"1 missing: {missing}" in message
    assert "1 unexpected: some_head.weight" in message
    assert f"{key} (2, 2)" in message


def test_check_names_the_size_that_fits():
    with pytest.raises(ConversionError, match="SAM2.1 large model: convert it with --size large"):
        check_state_dict(zeros_state("large"), load_index("tiny"))
    with pytest.raises(ConversionError, match=r"SAM2 \(2.0\) large model: .* --size large\."):
        pick_template(zeros_state("sam2.0_large"), "tiny")


def test_check_refuses_a_non_sam2_checkpoint():
    state = {"conv1.weight": np.zeros((64, 3, 7, 7)), "fc.bias": np.zeros(1000)}
    with pytest.raises(ConversionError, match="missing") as info:
        check_state_dict(state, load_index("small"))
    assert "It is a" not in str(info.value)


def test_refused_checkpoint_writes_nothing(tmp_path):
    state = zeros_state("tiny")
    state.popitem()
    with pytest.raises(ConversionError):
        build_model(state, "tiny", tmp_path, stem="x")
    assert list(tmp_path.iterdir()) == []


class FailingState(dict):
    """A state dict whose reading fails at one key (a checkpoint cut short, say)."""

    def __init__(self, data, bad):
        super().__init__(data)
        self.bad = bad

    def __getitem__(self, key):
        if key == self.bad:
            raise OSError("read error")
        return super().__getitem__(key)


def test_failure_midway_leaves_no_files(tmp_path):
    state = zeros_state("tiny")
    bad = next(k for k in state if k.startswith("memory_attention."))
    (tmp_path / "x.encoder.onnx").write_bytes(b"old")  # an earlier file stays as it was
    with pytest.raises(OSError, match="read error"):
        build_model(FailingState(state, bad), "tiny", tmp_path, stem="x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.encoder.onnx"]
    assert (tmp_path / "x.encoder.onnx").read_bytes() == b"old"


def test_built_files_run_on_the_cpu(tmp_path):
    """Built from a state dict without torch, the tiny model encodes and decodes."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    state = {
        k: (0.02 * rng.standard_normal(v.shape)).astype(v.dtype)
        for k, v in zeros_state("tiny").items()
    }
    reports = []
    paths, digests = build_model(
        state, "tiny", tmp_path, stem="t", progress=lambda d, t, s: reports.append((d, t, s))
    )
    assert [p.name for p in paths.files] == [f"t.{c}.onnx" for c in COMPONENTS]
    assert set(digests) == {p.name for p in paths.files}
    done, total, _ = reports[-1]
    assert done == total == sum(p.stat().st_size for p in paths.files)
    assert all(a[0] <= b[0] for a, b in zip(reports, reports[1:], strict=False))
    from napari_sam2_webgpu.models.cache import sha256_file

    assert all(sha256_file(p) == digests[p.name] for p in paths.files)
    encoder = ort.InferenceSession(str(paths.encoder), providers=["CPUExecutionProvider"])
    image = rng.standard_normal((1, 3, 1024, 1024)).astype(np.float32)
    outputs = encoder.run(None, {encoder.get_inputs()[0].name: image})
    assert all(np.isfinite(o).all() for o in outputs)
    for path in paths.files[1:]:  # the others load (their inputs are checked elsewhere)
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
