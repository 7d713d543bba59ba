"""The torch-free checkpoint reader (``napari_sam2_webgpu.models.checkpoint``).

Files are written with ``torch.save`` where torch is installed; hostile and damaged archives and
safetensors files are built by hand.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from napari_sam2_webgpu.models import checkpoint as ckpt_module
from napari_sam2_webgpu.models.checkpoint import (
    ALLOWED_GLOBALS,
    KNOWN_PREFIXES,
    Checkpoint,
    CheckpointError,
    TensorEntry,
    read_checkpoint,
    strip_prefix,
)

# --------------------------------------------------------------------------------------------
# Helpers


def _torch():
    return pytest.importorskip("torch")


def _expected(tensor) -> np.ndarray:
    """What the reader should return for a torch tensor: bfloat16 as float32, the rest as is."""
    torch = _torch()
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.resolve_neg().contiguous().numpy()


def _assert_same(array: np.ndarray, tensor) -> None:
    expected = _expected(tensor)
    assert array.dtype == expected.dtype
    assert array.shape == expected.shape
    assert array.flags.c_contiguous
    if array.dtype.kind == "f":
        # Bit-exact, NaN and -0.0 included.
        bits = f"u{array.dtype.itemsize}"
        np.testing.assert_array_equal(array.view(bits), expected.view(bits))
    else:
        np.testing.assert_array_equal(array, expected)


def _state_dict():
    """Tensors covering the dtypes and layouts the reader handles."""
    torch = _torch()
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=gen)
    specials = torch.tensor(
        [0.0, -0.0, 1.0, -2.5, float("inf"), float("-inf"), float("nan"), 1e-40, 3e38, 1e-3]
    )
    shared = torch.arange(24, dtype=torch.float32)
    return {
        "float32": torch.randn(3, 4, generator=gen),
        "float64": torch.randn(5, dtype=torch.float64, generator=gen),
        "float16": torch.randn(4, 2, generator=gen).half(),
        "bfloat16": torch.cat([torch.randn(7, generator=gen), specials]).bfloat16(),
        "int64": torch.arange(-5, 5, dtype=torch.int64),
        "int32": torch.tensor([-(2**31), 0, 2**31 - 1], dtype=torch.int32),
        "int8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "uint8": torch.tensor([0, 1, 255], dtype=torch.uint8),
        "uint16": torch.tensor([0, 1, 65535], dtype=torch.uint16),  # _rebuild_tensor_v3
        "bool": torch.tensor([True, False, True]),
        "transposed": base.t(),  # saved as a non-contiguous view
        "sliced": base[1:5:2, 1::2],  # storage offset and strides
        "shared_a": shared.view(4, 6),  # two tensors of one storage
        "shared_b": shared[6:12],
        "expanded": torch.arange(3.0).expand(2, 3),  # stride 0
        "negated": torch._neg_view(torch.arange(1.0, 4.0)),  # saved with {"neg": True}
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(2.5),
        "scalar_int": torch.tensor(7),
    }


def _save(obj, path: Path, **kwargs) -> Path:
    torch = _torch()
    torch.save(obj, path, **kwargs)
    return path


def _write_archive(
    path: Path,
    pkl: bytes,
    storages: dict[str, bytes] | None = None,
    *,
    prefix: str = "archive",
    byteorder: str | None = "little",
    compression: int = zipfile.ZIP_STORED,
) -> Path:
    """A zip archive in torch's layout around a hand-made data.pkl."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr(f"{prefix}/data.pkl", pkl)
        if byteorder is not None:
            archive.writestr(f"{prefix}/byteorder", byteorder)
        for key, data in (storages or {}).items():
            archive.writestr(f"{prefix}/data/{key}", data)
        archive.writestr(f"{prefix}/version", "3\n")
    return path


def _rewrite(src: Path, dst: Path, *, compression=zipfile.ZIP_STORED, big_endian=False) -> Path:
    """Copy a torch archive, optionally compressed or converted to big-endian storages."""
    sizes = _storage_itemsizes(src) if big_endian else {}
    with zipfile.ZipFile(src) as archive, zipfile.ZipFile(dst, "w", compression) as out:
        for info in archive.infolist():
            data = archive.read(info)
            key = info.filename.rsplit("/", 1)[-1]
            if big_endian and info.filename.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in info.filename and sizes.get(key, 1) > 1:
                data = np.frombuffer(data, f"<u{sizes[key]}").byteswap().tobytes()
            out.writestr(info.filename, data)
    return dst


def _storage_itemsizes(path: Path) -> dict[str, int]:
    """Element size of each storage key, from data.pkl's storage types and v3 dtypes."""
    storage_sizes = {
        "FloatStorage": 4,
        "DoubleStorage": 8,
        "HalfStorage": 2,
        "BFloat16Storage": 2,
        "LongStorage": 8,
        "IntStorage": 4,
        "ShortStorage": 2,
        "CharStorage": 1,
        "ByteStorage": 1,
        "BoolStorage": 1,
    }
    dtype_sizes = {"uint16": 2, "uint32": 4, "uint64": 8}
    found: dict[str, int] = {}

    def rebuild_v3(storage, offset, size, stride, grad, hooks, dtype, metadata=None):
        found[storage] = dtype_sizes[dtype]

    class Scanner(pickle.Unpickler):
        def find_class(self, module, name):
            if name in storage_sizes or name in dtype_sizes or name == "UntypedStorage":
                return name
            if name == "_rebuild_tensor_v3":
                return rebuild_v3
            return lambda *args: None

        def persistent_load(self, pid):
            found[pid[2]] = storage_sizes.get(pid[1], 0)
            return pid[2]

    with zipfile.ZipFile(path) as archive:
        pkl = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        Scanner(io.BytesIO(archive.read(pkl))).load()
    return found


def _write_safetensors(path: Path, tensors: dict, metadata=None, *, pad: int = 0) -> Path:
    """A safetensors file from ``{name: (dtype code, shape, raw bytes)}``."""
    header: dict = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    chunks = []
    for name, (code, shape, data) in tensors.items():
        header[name] = {
            "dtype": code,
            "shape": list(shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        chunks.append(data)
    text = json.dumps(header).encode() + b" " * pad
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(chunks))
    return path


def _bf16_bits(values: np.ndarray) -> np.ndarray:
    """Truncate float32 values to bfloat16 bit patterns (uint16)."""
    return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


# --------------------------------------------------------------------------------------------
# Round trips against torch.save


@pytest.mark.parametrize("layout", ["model", "bare", "state_dict", "parameters"])
def test_round_trip(tmp_path: Path, layout: str) -> None:
    torch = _torch()
    sd = _state_dict()
    if layout == "model":
        obj = {"model": sd}
    elif layout == "state_dict":
        # A training checkpoint: other top-level entries are plain data and are ignored.
        obj = {"epoch": 3, "state_dict": OrderedDict(sd), "lr": [0.1, 0.01], "note": "x"}
    elif layout == "parameters":
        params = {}
        for i, (key, value) in enumerate(sd.items()):
            if value.is_floating_point() and not value.is_neg():
                value = torch.nn.Parameter(value.clone(), requires_grad=bool(i % 2))
                if i % 3 == 0:
                    value.note = "python state"  # _rebuild_parameter_with_state
            params[key] = value
        obj = {"model": params}
        sd = params
    else:
        obj = sd
    path = _save(obj, tmp_path / "ckpt.pt")

    with read_checkpoint(path) as ckpt:
        assert isinstance(ckpt, Checkpoint)
        assert ckpt.format == "pytorch"
        assert ckpt.layout == {"parameters": "model"}.get(layout, layout)
        assert ckpt.path == path
        assert list(ckpt) == list(sd)
        assert len(ckpt) == len(sd)
        for key, tensor in sd.items():
            expected = _expected(tensor)
            assert ckpt.shape(key) == expected.shape
            assert ckpt.dtype(key) == expected.dtype
            assert ckpt.entries[key] == TensorEntry(
                key, expected.shape, expected.dtype, str(tensor.dtype).removeprefix("torch.")
            )
            _assert_same(ckpt[key], tensor)
        assert ckpt.entries["bfloat16"].source_dtype == "bfloat16"
        assert ckpt.dtype("bfloat16") == np.float32
        assert ckpt.dtype("float16") == np.float16
        # Every access is a fresh array of its own.
        first = ckpt["shared_a"]
        first[...] = 0
        assert ckpt["shared_a"].any()
        assert ckpt["shared_b"].any()
    assert ckpt.closed


def test_sam2_state_dict(tmp_path: Path) -> None:
    _torch()
    pytest.importorskip("sam2")
    pytest.importorskip("onnx")
    from napari_sam2_webgpu.export import build_sam2_model

    model = build_sam2_model("micro", seed=0)
    state = model.state_dict()
    path = _save({"model": state}, tmp_path / "micro.pt")
    with read_checkpoint(path) as ckpt:
        assert ckpt.layout == "model"
        assert set(ckpt) == set(state)
        for key, tensor in state.items():
            _assert_same(ckpt[key], tensor)


def test_compressed_and_big_endian_archives(tmp_path: Path) -> None:
    sd = _state_dict()
    path = _save({"model": sd}, tmp_path / "ckpt.pt")
    for name, kwargs in {
        "deflated.pt": {"compression": zipfile.ZIP_DEFLATED},
        "big.pt": {"big_endian": True},
        "big_deflated.pt": {"big_endian": True, "compression": zipfile.ZIP_DEFLATED},
    }.items():
        copy = _rewrite(path, tmp_path / name, **kwargs)
        with read_checkpoint(copy) as ckpt:
            for key, tensor in sd.items():
                _assert_same(ckpt[key], tensor)


def test_archive_without_byteorder_and_other_prefix(tmp_path: Path) -> None:
    values = np.arange(6, dtype="<f4")
    pkl = (
        b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n"
        b"((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ"
        b"K\x00K\x02K\x03\x86K\x03K\x01\x86\x89ccollections\nOrderedDict\n)RtRs."
    )
    path = _write_archive(
        tmp_path / "c.pt", pkl, {"0": values.tobytes()}, prefix="my_model", byteorder=None
    )
    with read_checkpoint(path) as ckpt:
        np.testing.assert_array_equal(ckpt["w"], values.reshape(2, 3))


# --------------------------------------------------------------------------------------------
# No torch at run time


def test_works_without_torch(tmp_path: Path) -> None:
    sd = _state_dict()
    path = _save({"model": sd}, tmp_path / "ckpt.pt")
    out = tmp_path / "arrays.npz"
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any "import torch" now fails
        import numpy as np
        from napari_sam2_webgpu.models.checkpoint import read_checkpoint
        with read_checkpoint({str(path)!r}) as ckpt:
            np.savez({str(out)!r}, **dict(ckpt))
        loaded = [m for m, mod in sys.modules.items() if m.split(".")[0] == "torch" and mod]
        assert not loaded, loaded
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    with np.load(out) as arrays:
        assert sorted(arrays.files) == sorted(sd)
        for key, tensor in sd.items():
            _assert_same(arrays[key], tensor)


# --------------------------------------------------------------------------------------------
# Hostile pickles


def _system_pickle(marker: Path) -> bytes:
    command = f"touch {marker}".encode()
    return (
        b"\x80\x02}X\x01\x00\x00\x00xcos\nsystem\nX"
        + struct.pack("<I", len(command))
        + command
        + b"\x85Rs."
    )


def _eval_pickle(marker: Path) -> bytes:
    code = f"open({str(marker)!r}, 'w').close()".encode()
    return b"\x80\x02cbuiltins\neval\nX" + struct.pack("<I", len(code)) + code + b"\x85R."


def test_payloads_would_run_with_plain_pickle(tmp_path: Path) -> None:
    # Guards the tests below: these pickles really do run code when loaded normally.
    marker = tmp_path / "eval-marker"
    pickle.loads(_eval_pickle(marker))
    assert marker.exists()
    if os.name == "posix":
        marker = tmp_path / "system-marker"
        pickle.loads(_system_pickle(marker))
        assert marker.exists()


@pytest.mark.parametrize(
    ("payload", "refused"),
    [(_system_pickle, "os.system"), (_eval_pickle, "builtins.eval")],
)
def test_refuses_code_execution(tmp_path: Path, payload, refused: str) -> None:
    marker = tmp_path / "marker"
    path = _write_archive(tmp_path / "evil.pt", payload(marker))
    with pytest.raises(CheckpointError, match=rf"refused global {refused}\b"):
        read_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "pkl",
    [
        # numpy's array reconstruction (what pickled numpy arrays use)
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n)R.",
        # any class, even a harmless one
        b"\x80\x02cbuiltins\nset\n)R.",
        # torch itself, e.g. torch.load or a tensor subclass rebuild
        b"\x80\x02ctorch\nload\n)R.",
        b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\n)R.",
        # STACK_GLOBAL (protocol 4) goes through find_class too
        b"\x80\x04\x8c\x02os\x8c\x06system\x93)R.",
    ],
)
def test_refuses_other_globals(tmp_path: Path, pkl: bytes) -> None:
    path = _write_archive(tmp_path / "evil.pt", pkl)
    with pytest.raises(CheckpointError, match="refused global"):
        read_checkpoint(path)


class _Payload:
    """Pickles as a call to os.system: what a hostile torch.save would embed."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_refused_global_outside_state_dict(tmp_path: Path) -> None:
    # A real torch.save of a training checkpoint whose optimizer entry carries a payload: the
    # whole pickle is checked, not only the state dict, and nothing runs.
    marker = tmp_path / "marker"
    obj = {"model": {"w": _torch().ones(2)}, "optimizer": _Payload(f"touch {marker}")}
    path = _save(obj, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"refused global (os|posix|nt)\.system"):
        read_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("pkl", "message"),
    [
        # BUILD on a shared dtype marker (would otherwise rewrite it for the whole process)
        (b"\x80\x02ctorch\nfloat32\n}X\x04\x00\x00\x00codeX\x02\x00\x00\x00f8sb.", "modify"),
        # BUILD on an allowed function's stand-in
        (
            b"\x80\x02ctorch._utils\n_rebuild_parameter\n}X\x01\x00\x00\x00aK\x01sb.",
            "modify",
        ),
        # NEWOBJ with a stand-in as the class: not a type, so refused by pickle
        (b"\x80\x02ctorch\nFloatStorage\n)\x81.", "damaged"),
        # OrderedDict called with arguments
        (b"\x80\x02ccollections\nOrderedDict\n]\x85R.", "arguments"),
        # an extension code (copyreg) instead of a global
        (b"\x80\x02\x82\x01.", "extension codes"),
        # a persistent id that is not a storage
        (b"\x80\x02X\x03\x00\x00\x00abcQ.", "persistent id"),
        # a rebuild function called with a non-storage
        (
            b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(K\x00K\x00)))\x89NtR.",
            "not a storage|without a typed storage",
        ),
    ],
)
def test_refuses_abuse_of_allowed_globals(tmp_path: Path, pkl: bytes, message: str) -> None:
    path = _write_archive(tmp_path / "evil.pt", pkl)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)
    # The shared markers are untouched.
    good = _save({"w": _torch().ones(3)}, tmp_path / "good.pt")
    with read_checkpoint(good) as ckpt:
        np.testing.assert_array_equal(ckpt["w"], np.ones(3, np.float32))


def test_allowed_globals() -> None:
    assert "torch._utils._rebuild_tensor_v2" in ALLOWED_GLOBALS
    assert "torch.BFloat16Storage" in ALLOWED_GLOBALS
    assert "collections.OrderedDict" in ALLOWED_GLOBALS
    assert all(name.startswith(("torch.", "collections.OrderedDict")) for name in ALLOWED_GLOBALS)
    assert not any("eval" in name or "system" in name for name in ALLOWED_GLOBALS)


# --------------------------------------------------------------------------------------------
# Damaged and foreign files


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "nope.pt")


def test_truncated_archive(tmp_path: Path) -> None:
    path = _save({"model": _state_dict()}, tmp_path / "ckpt.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or damaged zip"):
        read_checkpoint(path)


def test_random_file(tmp_path: Path) -> None:
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="neither a zip archive nor a safetensors"):
        read_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        read_checkpoint(path)


def test_legacy_format(tmp_path: Path) -> None:
    path = _save({"w": _torch().ones(2)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"legacy \(pre-1\.6, non-zip\).*weights_only=True"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([1, 2], "holds a list, not a dict of tensors"),
        ({"w": [1.0]}, "maps 'w' to a list"),
        ({"model": {"w": 3}}, r"\['model'\] maps 'w' to a int"),
        ({1: 2}, "maps 1 to a int"),
    ],
)
def test_not_a_dict_of_tensors(tmp_path: Path, obj, message: str) -> None:
    path = _write_archive(tmp_path / "c.pt", pickle.dumps(obj, protocol=2))
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


def test_not_a_pickle_and_not_a_checkpoint_zip(tmp_path: Path) -> None:
    path = _write_archive(tmp_path / "c.pt", b"\x80\x02garbage")
    with pytest.raises(CheckpointError, match="data.pkl"):
        read_checkpoint(path)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_checkpoint(other)


def test_missing_and_short_storage_members(tmp_path: Path) -> None:
    path = _save({"model": {"w": _torch().ones(4)}}, tmp_path / "ckpt.pt")
    with zipfile.ZipFile(path) as archive:
        members = {i.filename: archive.read(i) for i in archive.infolist()}
    pkl = members["ckpt/data.pkl"]
    with pytest.raises(CheckpointError, match=r"missing storage member 'archive/data/0'"):
        read_checkpoint(_write_archive(tmp_path / "missing.pt", pkl))
    short = _write_archive(tmp_path / "short.pt", pkl, {"0": b"\x00" * 8})
    with pytest.raises(CheckpointError, match=r"'archive/data/0' holds 8 bytes, 16 expected"):
        read_checkpoint(short)


def test_damaged_local_header(tmp_path: Path) -> None:
    # The zip directory is intact but a member's local header is overwritten.
    path = _save({"w": _torch().ones(1000)}, tmp_path / "ckpt.pt")
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo("ckpt/data/0").header_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 4] = b"\x00" * 4
    path.write_bytes(bytes(data))
    with read_checkpoint(path) as ckpt:  # opening reads no tensor data
        with pytest.raises(CheckpointError, match="damaged: bad local header of 'ckpt/data/0'"):
            ckpt["w"]


def test_view_past_end_of_storage(tmp_path: Path) -> None:
    pkl = (
        b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n"
        b"((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ"
        b"K\x02K\x04\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs."
    )
    path = _write_archive(tmp_path / "c.pt", pkl, {"0": b"\x00" * 16})
    with pytest.raises(CheckpointError, match="extends past the end of its storage"):
        read_checkpoint(path)


def test_unsupported_dtype(tmp_path: Path) -> None:
    torch = _torch()
    path = _save({"w": torch.zeros(2, dtype=torch.complex64)}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="unsupported storage dtype complex64"):
        read_checkpoint(path)
    path = _save({"w": torch.zeros(2, dtype=torch.float8_e4m3fn)}, tmp_path / "f8.pt")
    with pytest.raises(CheckpointError, match="unsupported storage dtype float8_e4m3fn"):
        read_checkpoint(path)
    # Outside the state dict an unsupported dtype is harmless.
    path = _save(
        {"model": {"w": torch.ones(2)}, "extra": torch.zeros(2, dtype=torch.complex64)},
        tmp_path / "ok.pt",
    )
    with read_checkpoint(path) as ckpt:
        assert list(ckpt) == ["w"]


def test_closed_checkpoint(tmp_path: Path) -> None:
    path = _save({"w": _torch().ones(2)}, tmp_path / "c.pt")
    ckpt = read_checkpoint(path)
    ckpt.close()
    ckpt.close()  # idempotent
    assert ckpt.shape("w") == (2,)  # metadata stays
    with pytest.raises(CheckpointError, match="closed"):
        ckpt["w"]
    with read_checkpoint(path) as other, pytest.raises(KeyError):
        other["nope"]
    assert "closed" in repr(ckpt)


# --------------------------------------------------------------------------------------------
# safetensors


def test_safetensors_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    f32 = rng.standard_normal((3, 4)).astype(np.float32)
    f16 = rng.standard_normal(5).astype(np.float16)
    bf16_values = np.array([1.5, -0.0, np.inf, -np.inf, np.nan, 1e-40, 3.0e38], np.float32)
    bits = _bf16_bits(bf16_values)
    i64 = np.arange(-3, 3, dtype=np.int64)
    flags = np.array([True, False, True])
    u8 = np.array([0, 7, 255], np.uint8)
    f64 = np.array(2.25)  # a scalar
    path = _write_safetensors(
        tmp_path / "m.safetensors",
        {
            "f32": ("F32", f32.shape, f32.astype("<f4").tobytes()),
            "f16": ("F16", f16.shape, f16.astype("<f2").tobytes()),
            "bf16": ("BF16", bits.shape, bits.astype("<u2").tobytes()),
            "i64": ("I64", i64.shape, i64.astype("<i8").tobytes()),
            "bool": ("BOOL", flags.shape, flags.astype(np.uint8).tobytes()),
            "u8": ("U8", u8.shape, u8.tobytes()),
            "empty": ("F32", (0, 4), b""),
            "scalar": ("F64", (), f64.astype("<f8").tobytes()),
        },
        metadata={"format": "pt"},
        pad=5,
    )
    with read_checkpoint(path) as ckpt:
        assert ckpt.format == "safetensors"
        assert ckpt.layout == "bare"
        assert dict(ckpt.metadata) == {"format": "pt"}
        assert list(ckpt) == ["f32", "f16", "bf16", "i64", "bool", "u8", "empty", "scalar"]
        assert ckpt.entries["bf16"] == TensorEntry("bf16", (7,), np.dtype(np.float32), "bfloat16")
        np.testing.assert_array_equal(ckpt["f32"], f32)
        assert ckpt["f16"].dtype == np.float16
        np.testing.assert_array_equal(ckpt["f16"], f16)
        expected = (bits.astype(np.uint32) << 16).view(np.float32)
        np.testing.assert_array_equal(ckpt["bf16"].view(np.uint32), expected.view(np.uint32))
        np.testing.assert_array_equal(ckpt["i64"], i64)
        assert ckpt["bool"].dtype == np.bool_
        np.testing.assert_array_equal(ckpt["bool"], flags)
        np.testing.assert_array_equal(ckpt["u8"], u8)
        assert ckpt["empty"].shape == (0, 4)
        assert ckpt["scalar"].shape == ()
        assert ckpt["scalar"] == 2.25


def test_safetensors_matches_torch_bfloat16(tmp_path: Path) -> None:
    torch = _torch()
    tensor = torch.randn(64, generator=torch.Generator().manual_seed(1)).bfloat16()
    raw = tensor.view(torch.int16).numpy().astype("<i2").tobytes()
    path = _write_safetensors(tmp_path / "b.safetensors", {"w": ("BF16", (64,), raw)})
    with read_checkpoint(path) as ckpt:
        _assert_same(ckpt["w"], tensor)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        ("truncate", "truncated: the header describes 48 bytes"),
        ("trailing", "longer than its header describes"),
        ("hole", "leave a hole or overlap"),
        ("dtype", "unsupported storage dtype 'C64'"),
        ("shape", "cannot fill data_offsets"),
        ("duplicate", "duplicate key"),
        ("header_length", "its safetensors header needs"),
        ("metadata", "__metadata__ must map strings to strings"),
    ],
)
def test_bad_safetensors(tmp_path: Path, mutate: str, message: str) -> None:
    a = np.arange(8, dtype="<f4").tobytes()
    b = np.arange(4, dtype="<f4").tobytes()
    tensors = {"a": ("F32", (8,), a), "b": ("F32", (4,), b)}
    path = _write_safetensors(tmp_path / "m.safetensors", tensors)
    data = path.read_bytes()
    if mutate == "truncate":
        path.write_bytes(data[:-10])
    elif mutate == "trailing":
        path.write_bytes(data + b"\x00" * 4)
    elif mutate == "hole":
        header = {
            "a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]},
            "b": {"dtype": "F32", "shape": [4], "data_offsets": [36, 52]},
        }
        text = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", len(text)) + text + a + b"\x00" * 4 + b)
    elif mutate == "dtype":
        _write_safetensors(path, {"a": ("C64", (4,), a)})
    elif mutate == "shape":
        _write_safetensors(path, {"a": ("F32", (3,), a)})
    elif mutate == "duplicate":
        text = (
            b'{"a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]},'
            b' "a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}'
        )
        path.write_bytes(struct.pack("<Q", len(text)) + text + a)
    elif mutate == "header_length":
        path.write_bytes(struct.pack("<Q", 10_000) + data[8:])
    elif mutate == "metadata":
        _write_safetensors(path, tensors, metadata={"epoch": 3})
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


# --------------------------------------------------------------------------------------------
# Laziness


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    original = ckpt_module._read_exact

    def counting(file, start, nbytes, what):
        sizes.append(nbytes)
        return original(file, start, nbytes, what)

    monkeypatch.setattr(ckpt_module, "_read_exact", counting)
    return sizes


def test_lazy_pytorch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = _torch()
    big = torch.ones(4_000_000)  # 16 MB
    small = torch.arange(10.0)
    shared = torch.arange(1000.0)
    path = _save({"model": {"small": small, "big": big, "view": shared[10:20]}}, tmp_path / "c.pt")
    reads = _count_reads(monkeypatch)
    tracemalloc.start()
    try:
        with read_checkpoint(path) as ckpt:
            assert ckpt.shape("big") == (4_000_000,)
            assert reads == []  # opening reads no tensor data
            tracemalloc.reset_peak()
            np.testing.assert_array_equal(ckpt["small"], small.numpy())
            _, peak = tracemalloc.get_traced_memory()
            assert reads == [40]
            assert peak < 1_000_000
            # A view reads its own elements, not the whole storage.
            np.testing.assert_array_equal(ckpt["view"], shared[10:20].numpy())
            assert reads == [40, 40]
            tracemalloc.reset_peak()
            assert ckpt["big"].sum() == 4_000_000
            _, peak = tracemalloc.get_traced_memory()
            assert peak < 1.5 * 16_000_000  # one copy of the tensor, not two
    finally:
        tracemalloc.stop()


def test_lazy_safetensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = np.ones(2_000_000, "<f4")
    path = _write_safetensors(
        tmp_path / "m.safetensors",
        {"big": ("F32", big.shape, big.tobytes()), "small": ("I64", (2,), b"\x01" * 16)},
    )
    del big
    reads = _count_reads(monkeypatch)
    with read_checkpoint(path) as ckpt:
        assert reads == []
        assert ckpt["small"].shape == (2,)
        assert reads == [16]


# --------------------------------------------------------------------------------------------
# Key names


def test_strip_prefix_with_expected() -> None:
    expected = {"image_encoder.w", "sam_mask_decoder.b", "no_mem_embed"}
    keys = [
        "module.image_encoder.w",
        "_orig_mod.sam2.sam_mask_decoder.b",
        "no_mem_embed",
        "model.extra",
    ]
    assert strip_prefix(keys, expected) == {
        "module.image_encoder.w": "image_encoder.w",
        "_orig_mod.sam2.sam_mask_decoder.b": "sam_mask_decoder.b",
        "no_mem_embed": "no_mem_embed",
        "model.extra": "model.extra",
    }
    # sam_ is not the sam. prefix
    assert strip_prefix(["sam_mask_decoder.b"], expected) == {
        "sam_mask_decoder.b": "sam_mask_decoder.b"
    }
    with pytest.raises(CheckpointError, match="would both be named 'no_mem_embed'"):
        strip_prefix(["no_mem_embed", "module.no_mem_embed"], expected)


def test_strip_prefix_without_expected() -> None:
    assert strip_prefix(["module.sam.a", "module.sam.b"]) == {
        "module.sam.a": "a",
        "module.sam.b": "b",
    }
    # Not every key has it: nothing is removed.
    assert strip_prefix(["module.a", "b"]) == {"module.a": "module.a", "b": "b"}
    assert strip_prefix([]) == {}
    assert strip_prefix(["model.a"], prefixes=("module.",)) == {"model.a": "model.a"}
    assert "module." in KNOWN_PREFIXES


def test_import_does_not_import_torch() -> None:
    code = (
        "import sys; import napari_sam2_webgpu.models.checkpoint; "
        "print(any(m.split('.')[0] == 'torch' for m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
