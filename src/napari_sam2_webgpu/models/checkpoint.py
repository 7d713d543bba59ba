"""Read PyTorch (zip) and safetensors checkpoints into numpy, without torch and without pickle code.

Threat model: a checkpoint downloaded from the internet may be hostile. ``torch.load`` (without
``weights_only``) runs whatever the pickle inside asks for, so a ``.pt`` file can execute code;
this reader unpickles ``data.pkl`` with an :class:`pickle.Unpickler` whose ``find_class`` only
accepts the handful of globals a state dict of tensors needs, each mapped to an inert stand-in
written here (nothing from torch is imported or called), and refuses anything else before it can
run. Tensor bytes are only ever read as numbers, within bounds checked against the archive; a
hostile file can make reading fail (or use memory), never run code.

Formats:

* the zip-based PyTorch format (``torch.save`` since PyTorch 1.6): ``<prefix>/data.pkl`` (the
  pickled object), ``<prefix>/data/<key>`` (one member per storage, normally stored uncompressed
  and aligned), ``<prefix>/byteorder`` (``little``/``big``; little when absent) and
  ``<prefix>/version``. Accepted layouts: ``{"model": state_dict}`` (Meta's official SAM2
  checkpoints), ``{"state_dict": state_dict}`` and a bare state dict; the other top-level
  entries of a training checkpoint are unpickled (with the same restrictions) and ignored.
* safetensors: an 8-byte little-endian header length, a JSON header (``dtype``, ``shape``,
  ``data_offsets`` per tensor, optional ``__metadata__``) and the raw little-endian bytes.

The legacy (pre-1.6) non-zip PyTorch format is refused with instructions to re-save it.

:func:`read_checkpoint` returns a :class:`Checkpoint`, a read-only mapping of the state dict
whose arrays are read from the file only when a key is looked up. ``float16`` stays
``float16``, ``bfloat16`` becomes ``float32`` exactly, integers and ``bool`` keep their type.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import pickletools
import re
import struct
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "ALLOWED_GLOBALS",
    "KNOWN_PREFIXES",
    "Checkpoint",
    "CheckpointError",
    "TensorEntry",
    "read_checkpoint",
    "strip_prefix",
]


class CheckpointError(ValueError):
    """A checkpoint file cannot be read: wrong format, damaged, or refused as unsafe."""


# --------------------------------------------------------------------------------------------
# dtypes


@dataclass(frozen=True)
class _DType:
    """How one element type is stored in a file and what array it becomes.

    ``name`` is torch's name (``bfloat16``); ``code`` the numpy type of the stored bytes
    without byte order; ``supported`` is False for types torch knows but we cannot represent
    (float8, complex, quantized), which are errors only if the state dict uses them.
    """

    name: str
    code: str = ""
    supported: bool = True

    @property
    def itemsize(self) -> int:
        return np.dtype(self.code).itemsize

    @property
    def out(self) -> np.dtype:
        """The dtype of the arrays handed out."""
        if self.name == "bfloat16":
            return np.dtype(np.float32)
        if self.name == "bool":
            return np.dtype(np.bool_)
        return np.dtype(self.code)

    def __setstate__(self, state: Any) -> None:
        # Pickle's BUILD would otherwise write into this shared marker's __dict__.
        raise CheckpointError("data.pkl tries to modify a dtype; refused")


_DTYPES: dict[str, _DType] = {
    d.name: d
    for d in (
        _DType("float32", "f4"),
        _DType("float64", "f8"),
        _DType("float16", "f2"),
        _DType("bfloat16", "u2"),
        _DType("int64", "i8"),
        _DType("int32", "i4"),
        _DType("int16", "i2"),
        _DType("int8", "i1"),
        _DType("uint8", "u1"),
        _DType("uint16", "u2"),
        _DType("uint32", "u4"),
        _DType("uint64", "u8"),
        _DType("bool", "u1"),
    )
}

# torch's aliases of the same dtypes (torch.float is torch.float32, ...).
_DTYPE_ALIASES = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "long": "int64",
    "int": "int32",
    "short": "int16",
}

# Names of torch dtypes that we recognise but cannot convert.
_UNSUPPORTED_DTYPE = re.compile(
    r"(float8_\w+|float4_\w+|complex\d*|cfloat|cdouble|chalf|bits\w+|u?int[1-7]|qu?int\w+)\Z"
)

# The typed storage classes torch pickles for tensors (torch.<Name>Storage).
_TYPED_STORAGES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}
_UNSUPPORTED_STORAGES = {
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "ComplexHalfStorage": "complex32",
    "QInt8Storage": "qint8",
    "QUInt8Storage": "quint8",
    "QInt32Storage": "qint32",
    "QUInt4x2Storage": "quint4x2",
    "QUInt2x4Storage": "quint2x4",
}

_SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}


# --------------------------------------------------------------------------------------------
# Inert stand-ins for the allowed globals


class _StorageKind:
    """What ``torch.FloatStorage`` (etc.) unpickles to: a marker, not a class."""

    __slots__ = ("dtype", "name", "untyped")

    def __init__(self, name: str, dtype: _DType | None, untyped: bool = False) -> None:
        self.name = name
        self.dtype = dtype
        self.untyped = untyped

    def __repr__(self) -> str:
        return f"<storage kind {self.name}>"

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError("data.pkl tries to modify a storage type; refused")


class _StorageRef:
    """A storage of the archive (``<prefix>/data/<key>``), not read yet."""

    __slots__ = ("dtype", "key", "kind", "member", "nbytes")

    def __init__(self, kind: _StorageKind, key: str, member: str, nbytes: int | None) -> None:
        self.kind = kind
        self.key = key
        self.member = member
        self.nbytes = nbytes  # None when the dtype is unsupported (size unknown)

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError("data.pkl tries to modify a storage; refused")


class _TensorRef:
    """A tensor of the pickle: where its elements are, not the elements."""

    __slots__ = ("dtype", "neg", "offset", "shape", "storage", "strides")

    def __init__(
        self,
        storage: _StorageRef,
        dtype: _DType,
        offset: int,
        shape: tuple[int, ...],
        strides: tuple[int, ...],
        neg: bool,
    ) -> None:
        self.storage = storage
        self.dtype = dtype
        self.offset = offset
        self.shape = shape
        self.strides = strides
        self.neg = neg

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError("data.pkl tries to modify a tensor; refused")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(_is_int(v) and v >= 0 for v in value):
        raise CheckpointError(f"data.pkl holds a tensor with an invalid {what}: {value!r}")
    return tuple(value)


def _make_tensor(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    dtype: _DType,
    metadata: Any,
) -> _TensorRef:
    if not isinstance(storage, _StorageRef):
        raise CheckpointError("data.pkl rebuilds a tensor from something that is not a storage")
    if not _is_int(storage_offset) or storage_offset < 0:
        raise CheckpointError(f"data.pkl holds a tensor with storage offset {storage_offset!r}")
    shape = _int_tuple(size, "shape")
    strides = _int_tuple(stride, "stride")
    if len(shape) != len(strides):
        raise CheckpointError(f"data.pkl holds a tensor with shape {shape} but strides {strides}")
    neg = False
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise CheckpointError(f"data.pkl holds tensor metadata {metadata!r}")
        for key, value in metadata.items():
            if key == "neg":
                neg = bool(value)
            elif value:  # "conj" (complex only) or anything newer: we cannot honour it
                raise CheckpointError(f"unsupported tensor metadata {key!r} in data.pkl")
    if dtype.supported and storage.nbytes is not None and math.prod(shape) > 0:
        last = storage_offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
        if (last + 1) * dtype.itemsize > storage.nbytes:
            raise CheckpointError(
                f"data.pkl holds a tensor of shape {shape} that extends past the end of its "
                f"storage {storage.member!r} ({storage.nbytes} bytes): the file is damaged"
            )
    return _TensorRef(storage, dtype, storage_offset, shape, strides, neg)


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None
):
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a typed storage's tensor."""
    if not isinstance(storage, _StorageRef) or storage.kind.untyped:
        raise CheckpointError("data.pkl calls _rebuild_tensor_v2 without a typed storage")
    return _make_tensor(storage, storage_offset, size, stride, storage.kind.dtype, metadata)


def _rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None
):
    """Stand-in for ``torch._utils._rebuild_tensor_v3``: an untyped storage plus a dtype."""
    if not isinstance(storage, _StorageRef) or not storage.kind.untyped:
        raise CheckpointError("data.pkl calls _rebuild_tensor_v3 without an untyped storage")
    if not isinstance(dtype, _DType):
        raise CheckpointError(f"data.pkl calls _rebuild_tensor_v3 with dtype {dtype!r}")
    return _make_tensor(storage, storage_offset, size, stride, dtype, metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    """Stand-in for ``torch._utils._rebuild_parameter``: the parameter's tensor."""
    if not isinstance(data, _TensorRef):
        raise CheckpointError("data.pkl rebuilds a parameter from something that is not a tensor")
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    """Stand-in for ``torch._utils._rebuild_parameter_with_state`` (state is ignored)."""
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _ordered_dict(*args, **kwargs):
    """Stand-in for ``collections.OrderedDict``: pickles call it without arguments."""
    if args or kwargs:
        raise CheckpointError("data.pkl calls OrderedDict with arguments; refused")
    return OrderedDict()


class _Global:
    """A callable stand-in handed to the unpickler: not a class (so NEWOBJ cannot use it) and
    immune to pickle's BUILD."""

    __slots__ = ("_function", "_name")

    def __init__(self, name: str, function: Any) -> None:
        self._name = name
        self._function = function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise CheckpointError(f"data.pkl calls {self._name} with keyword arguments")
        try:
            return self._function(*args)
        except TypeError as exc:
            raise CheckpointError(f"data.pkl calls {self._name} with wrong arguments") from exc

    def __repr__(self) -> str:
        return f"<stand-in for {self._name}>"

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError(f"data.pkl tries to modify {self._name}; refused")


def _build_allowed() -> dict[tuple[str, str], Any]:
    functions = {
        ("collections", "OrderedDict"): _ordered_dict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    }
    allowed: dict[tuple[str, str], Any] = {
        key: _Global(".".join(key), function) for key, function in functions.items()
    }
    allowed.update(
        {
            ("torch", "UntypedStorage"): _StorageKind("UntypedStorage", _DTYPES["uint8"], True),
        }
    )
    allowed[("torch.storage", "UntypedStorage")] = allowed[("torch", "UntypedStorage")]
    for name, dtype in _TYPED_STORAGES.items():
        allowed[("torch", name)] = _StorageKind(name, _DTYPES[dtype])
    for name, dtype in _UNSUPPORTED_STORAGES.items():
        allowed[("torch", name)] = _StorageKind(name, _DType(dtype, supported=False))
    for name, dtype in _DTYPES.items():
        allowed[("torch", name)] = dtype
    for alias, name in _DTYPE_ALIASES.items():
        allowed[("torch", alias)] = _DTYPES[name]
    return allowed


_ALLOWED = _build_allowed()

#: The globals a checkpoint's ``data.pkl`` may name, as ``module.name`` strings. Each maps to
#: an inert stand-in in this module (never to the real object). Besides these, the names of
#: torch dtypes numpy cannot represent (``torch.float8_e4m3fn``, ``torch.complex64``, ...) map
#: to markers that are refused only if a state-dict tensor uses them.
ALLOWED_GLOBALS: frozenset[str] = frozenset(f"{m}.{n}" for m, n in _ALLOWED)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl``: allowed globals become stand-ins, storages lazy references."""

    def __init__(self, data: bytes, prefix: str, members: Mapping[str, zipfile.ZipInfo]):
        super().__init__(io.BytesIO(data))
        self._prefix = prefix
        self._members = members
        self._storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        if module == "torch" and _UNSUPPORTED_DTYPE.match(name):
            return _DType(name, supported=False)
        raise CheckpointError(
            f"refused global {module}.{name} in data.pkl: a checkpoint of tensors never needs "
            "it, and loading it could run code. Only state dicts of tensors are read."
        )

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageKind)
            and isinstance(pid[2], str)
            and _is_int(pid[4])
            and pid[4] >= 0
        ):
            raise CheckpointError(f"data.pkl holds an invalid persistent id {pid!r}")
        _, kind, key, _location, numel = pid
        known = self._storages.get(key)
        if known is not None:
            if known.kind is not kind:
                raise CheckpointError(f"storage {key!r} is declared as two different types")
            return known
        member = f"{self._prefix}/data/{key}"
        info = self._members.get(member)
        if info is None:
            raise CheckpointError(f"missing storage member {member!r}: the archive is damaged")
        nbytes = None
        if kind.dtype is not None and kind.dtype.supported:
            nbytes = numel if kind.untyped else numel * kind.dtype.itemsize
            if info.file_size < nbytes:
                raise CheckpointError(
                    f"storage member {member!r} holds {info.file_size} bytes, "
                    f"{nbytes} expected: the archive is damaged"
                )
        ref = _StorageRef(kind, key, member, nbytes)
        self._storages[key] = ref
        return ref


# --------------------------------------------------------------------------------------------
# Public records


@dataclass(frozen=True)
class TensorEntry:
    """What is known about one tensor of a checkpoint without reading its data.

    Attributes
    ----------
    name : str
        The state-dict key.
    shape : tuple of int
        The tensor's shape.
    dtype : numpy.dtype
        The dtype of the array :class:`Checkpoint` returns (``float32`` for ``bfloat16``).
    source_dtype : str
        The dtype in the file, in torch's spelling (``"bfloat16"``, ``"float16"``, ...).
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    source_dtype: str

    @property
    def nbytes(self) -> int:
        """Bytes of the array :class:`Checkpoint` returns for this entry."""
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True)
class _Location:
    member: str  # zip member, or "" for safetensors
    base: int  # byte offset of the storage inside its member (safetensors: in the file)
    dtype: _DType
    offset: int  # elements
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    neg: bool = False


class Checkpoint(Mapping[str, np.ndarray]):
    """A read-only, lazy mapping of a checkpoint's state dict to numpy arrays.

    Made by :func:`read_checkpoint`. Looking up a key reads that tensor's bytes from the file
    and returns a new C-contiguous array; nothing is cached, so iterating over a large
    checkpoint holds one tensor at a time unless the caller keeps them.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    format : str
        ``"pytorch"`` (zip archive) or ``"safetensors"``.
    layout : str
        Where the state dict was found: ``"model"`` (``{"model": state_dict}``),
        ``"state_dict"``, or ``"bare"`` (the whole object; always for safetensors).
    entries : Mapping[str, TensorEntry]
        Shape and dtype of each tensor, in file order, without reading any data.
    metadata : Mapping[str, str]
        The ``__metadata__`` of a safetensors file (empty for PyTorch files).
    """

    def __init__(
        self,
        path: Path,
        file: BinaryIO,
        fmt: str,
        layout: str,
        locations: dict[str, _Location],
        *,
        big_endian: bool = False,
        archive: zipfile.ZipFile | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.format = fmt
        self.layout = layout
        self.metadata: Mapping[str, str] = MappingProxyType(dict(metadata or {}))
        self._file: BinaryIO | None = file
        self._zip = archive
        self._locations = locations
        self._big_endian = big_endian
        self._member_offsets: dict[str, int] = {}
        self._lock = threading.Lock()
        self.entries: Mapping[str, TensorEntry] = MappingProxyType(
            {
                name: TensorEntry(name, loc.shape, loc.dtype.out, loc.dtype.name)
                for name, loc in locations.items()
            }
        )

    # Mapping protocol ------------------------------------------------------------------------

    def __getitem__(self, key: str) -> np.ndarray:
        loc = self._locations[key]
        return self._load(key, loc)

    def __iter__(self) -> Iterator[str]:
        return iter(self._locations)

    def __len__(self) -> int:
        return len(self._locations)

    def __contains__(self, key: object) -> bool:
        return key in self._locations

    def __repr__(self) -> str:
        state = ", closed" if self.closed else ""
        return (
            f"<Checkpoint {str(self.path)!r}: {len(self)} tensors, {self.format}, "
            f"layout={self.layout}{state}>"
        )

    # Metadata -----------------------------------------------------------------------------

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of ``key``'s tensor, without reading it.

        Parameters
        ----------
        key : str
            A state-dict key.

        Returns
        -------
        tuple of int
        """
        return self.entries[key].shape

    def dtype(self, key: str) -> np.dtype:
        """The dtype of the array returned for ``key`` (``float32`` for ``bfloat16``).

        Parameters
        ----------
        key : str
            A state-dict key.

        Returns
        -------
        numpy.dtype
        """
        return self.entries[key].dtype

    # Lifetime -----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (no tensor can be read any more)."""
        return self._file is None

    def close(self) -> None:
        """Close the file. Metadata (:attr:`entries`) stays available; reading does not."""
        with self._lock:
            if self._zip is not None:
                self._zip.close()
                self._zip = None
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Reading ------------------------------------------------------------------------------

    def _load(self, key: str, loc: _Location) -> np.ndarray:
        dtype = loc.dtype
        count = math.prod(loc.shape)
        if count == 0:
            return np.zeros(loc.shape, dtype.out)
        span = 1 + sum((n - 1) * s for n, s in zip(loc.shape, loc.strides, strict=True))
        raw = self._read(loc, loc.base + loc.offset * dtype.itemsize, span * dtype.itemsize)
        stored = np.dtype(dtype.code).newbyteorder(">" if self._big_endian else "<")
        flat = raw.view(stored)
        if span == count and loc.strides == _contiguous_strides(loc.shape):
            array = flat.reshape(loc.shape)
        else:
            byte_strides = tuple(s * dtype.itemsize for s in loc.strides)
            view = np.lib.stride_tricks.as_strided(flat, loc.shape, byte_strides, writeable=False)
            array = np.array(view, order="C")
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))
        if dtype.name == "bfloat16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        elif dtype.name == "bool":
            array = array != 0
        if loc.neg:
            np.negative(array, out=array)
        return array

    def _read(self, loc: _Location, start: int, nbytes: int) -> np.ndarray:
        with self._lock:
            if self._file is None:
                raise CheckpointError(f"{self.path} is closed: cannot read tensors any more")
            if not loc.member:
                return _read_exact(self._file, start, nbytes, f"{self.path}")
            assert self._zip is not None
            info = self._zip.getinfo(loc.member)
            if start + nbytes > info.file_size:
                raise CheckpointError(f"storage member {loc.member!r} is too short: damaged")
            if info.compress_type == zipfile.ZIP_STORED:
                base = self._member_offsets.get(loc.member)
                if base is None:
                    base = _member_data_offset(self._file, info, self.path)
                    self._member_offsets[loc.member] = base
                return _read_exact(self._file, base + start, nbytes, repr(loc.member))
            try:
                with self._zip.open(info) as member:
                    member.seek(start)
                    buffer = bytearray(member.read(nbytes))
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise CheckpointError(f"cannot read storage member {loc.member!r}: {exc}") from exc
            if len(buffer) != nbytes:
                raise CheckpointError(f"storage member {loc.member!r} is truncated")
            return np.frombuffer(buffer, np.uint8)


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides = []
    step = 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _read_exact(file: BinaryIO, start: int, nbytes: int, what: str) -> np.ndarray:
    buffer = np.empty(nbytes, np.uint8)
    file.seek(start)
    got = file.readinto(memoryview(buffer))
    if got != nbytes:
        raise CheckpointError(
            f"{what} is truncated: {nbytes} bytes expected at offset {start}, "
            f"{got or 0} available (an interrupted download?)"
        )
    return buffer


_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")


def _member_data_offset(file: BinaryIO, info: zipfile.ZipInfo, path: Path) -> int:
    """Where a stored member's bytes start: after its variable-length local header."""
    file.seek(info.header_offset)
    header = file.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size:
        raise CheckpointError(f"{path} is truncated: storage member {info.filename!r} is missing")
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != b"PK\x03\x04":
        raise CheckpointError(f"{path} is damaged: bad local header of {info.filename!r}")
    if fields[2] & 0x1:
        raise CheckpointError(f"{path}: member {info.filename!r} is encrypted")
    name_length, extra_length = fields[9], fields[10]
    name = file.read(name_length)
    if name.decode("utf-8", "replace") != info.filename and name.decode("cp437") != info.filename:
        raise CheckpointError(f"{path} is damaged: local header of {info.filename!r} disagrees")
    return info.header_offset + _LOCAL_HEADER.size + name_length + extra_length


# --------------------------------------------------------------------------------------------
# Opening


_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_SAFETENSORS_MAX_HEADER = 100_000_000


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Open a PyTorch zip checkpoint or a safetensors file without torch and without pickle code.

    The file format is recognised from its first bytes, not its name. Only the small
    ``data.pkl`` (or safetensors header) is read here; tensor bytes are read when a key of the
    returned mapping is looked up.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.pt``/``.pth`` file written by ``torch.save`` (PyTorch >= 1.6) or a
        ``.safetensors`` file.

    Returns
    -------
    Checkpoint
        The state dict: ``checkpoint["model"]`` of Meta's SAM2 checkpoints,
        ``checkpoint["state_dict"]``, or the whole object when it is itself a dict of tensors.
        Close it (or use it as a context manager) when done.

    Raises
    ------
    FileNotFoundError
        When there is no such file.
    CheckpointError
        When the file is not a zip or safetensors checkpoint (the legacy PyTorch format
        included), is truncated or damaged, names a global outside :data:`ALLOWED_GLOBALS`,
        holds no dict of tensors, or uses a dtype numpy cannot represent.

    Examples
    --------
    >>> with read_checkpoint("sam2.1_hiera_tiny.pt") as ckpt:  # doctest: +SKIP
    ...     weight = ckpt["image_encoder.trunk.patch_embed.proj.weight"]
    """
    path = Path(path)
    file = open(path, "rb")  # owned by the Checkpoint from here on
    try:
        head = file.read(64)
        if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            return _open_zip(path, file)
        if _is_safetensors(head):
            return _open_safetensors(path, file)
        if _LEGACY_MAGIC in head[:32]:
            raise CheckpointError(
                f"{path} is in PyTorch's legacy (pre-1.6, non-zip) format, which cannot be read "
                "without running its pickle code. Re-save it once with PyTorch >= 1.6, where you "
                "trust it: torch.save(torch.load(old, map_location='cpu', weights_only=True), new)"
            )
        what = "an empty file" if not head else "neither a zip archive nor a safetensors file"
        raise CheckpointError(
            f"{path} is not a checkpoint this reader knows: {what}. Expected a PyTorch file "
            "written by torch.save (PyTorch >= 1.6) or a .safetensors file."
        )
    except BaseException:
        file.close()
        raise


def _open_zip(path: Path, file: BinaryIO) -> Checkpoint:
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is a truncated or damaged zip archive ({exc}); download or save it again"
        ) from exc
    try:
        members = {info.filename: info for info in archive.infolist()}
        pickles = [n for n in members if n.count("/") == 1 and n.endswith("/data.pkl")]
        if not pickles:
            raise CheckpointError(
                f"{path} is a zip archive but not a PyTorch checkpoint (no <name>/data.pkl)"
            )
        first = archive.infolist()[0].filename.split("/", 1)[0]
        pkl = f"{first}/data.pkl" if f"{first}/data.pkl" in members else pickles[0]
        prefix = pkl.split("/", 1)[0]
        big_endian = False
        order_member = members.get(f"{prefix}/byteorder")
        if order_member is not None:
            order = archive.read(order_member).strip()
            if order not in (b"little", b"big"):
                raise CheckpointError(f"{path}: unknown byte order {order!r} in {prefix}/byteorder")
            big_endian = order == b"big"
        try:
            data = archive.read(members[pkl])
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise CheckpointError(f"{path}: cannot read {pkl}: {exc}") from exc
        obj = _unpickle(data, prefix, members, path)
        layout, state = _select_state_dict(obj, path)
        locations = {}
        for name, ref in state.items():
            dtype = ref.dtype
            if not dtype.supported:
                raise CheckpointError(
                    f"{path}: unsupported storage dtype {dtype.name} for {name!r} (supported: "
                    f"{', '.join(_DTYPES)})"
                )
            locations[name] = _Location(
                ref.storage.member, 0, dtype, ref.offset, ref.shape, ref.strides, ref.neg
            )
    except BaseException:
        archive.close()
        raise
    return Checkpoint(
        path, file, "pytorch", layout, locations, big_endian=big_endian, archive=archive
    )


def _unpickle(data: bytes, prefix: str, members: Mapping[str, zipfile.ZipInfo], path: Path):
    try:
        # Extension codes resolve through copyreg's process-wide cache, which could bypass
        # find_class; torch never writes them.
        for opcode, _arg, _pos in pickletools.genops(data):
            if opcode.name in ("EXT1", "EXT2", "EXT4"):
                raise CheckpointError(f"{path}: data.pkl uses pickle extension codes; refused")
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path}: data.pkl is not a valid pickle ({exc})") from exc
    try:
        return _RestrictedUnpickler(data, prefix, members).load()
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except Exception as exc:
        raise CheckpointError(f"{path}: data.pkl is damaged or not a checkpoint ({exc})") from exc


def _select_state_dict(obj: Any, path: Path) -> tuple[str, dict[str, _TensorRef]]:
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path}: data.pkl holds a {type(obj).__name__}, not a dict of tensors"
        )
    if isinstance(obj.get("model"), dict):
        layout, state = "model", obj["model"]
    elif isinstance(obj.get("state_dict"), dict):
        layout, state = "state_dict", obj["state_dict"]
    else:
        layout, state = "bare", obj
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, _TensorRef):
            where = "the state dict" if layout == "bare" else f"[{layout!r}]"
            raise CheckpointError(
                f"{path}: data.pkl is not a dict of tensors: {where} maps {key!r} to a "
                f"{type(value).__name__}"
            )
    return layout, state


def _is_safetensors(head: bytes) -> bool:
    return len(head) >= 9 and head[8:9] == b"{"


def _open_safetensors(path: Path, file: BinaryIO) -> Checkpoint:
    # Long on purpose: one pass that checks the format's rules in the order the file states
    # them (header length, JSON, each entry's dtype, shape and byte range, no gaps, the end),
    # each with its own message; split up, the running offset would have to travel along.
    size = os.fstat(file.fileno()).st_size
    file.seek(0)
    (length,) = struct.unpack("<Q", file.read(8))
    if length > _SAFETENSORS_MAX_HEADER:
        raise CheckpointError(f"{path}: safetensors header of {length} bytes is too large")
    if 8 + length > size:
        raise CheckpointError(
            f"{path} is truncated: its safetensors header needs {length} bytes, "
            f"the file has {size - 8}"
        )
    raw = file.read(length)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid safetensors header ({exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CheckpointError(f"{path}: safetensors __metadata__ must map strings to strings")
    data_start = 8 + length
    infos = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise CheckpointError(f"{path}: safetensors entry {name!r} is not an object")
        code = info.get("dtype")
        if code not in _SAFETENSORS_DTYPES:
            raise CheckpointError(
                f"{path}: unsupported storage dtype {code!r} for {name!r} (supported: "
                f"{', '.join(_SAFETENSORS_DTYPES)})"
            )
        shape = info.get("shape")
        offsets = info.get("data_offsets")
        if not isinstance(shape, list) or not all(_is_int(n) and n >= 0 for n in shape):
            raise CheckpointError(f"{path}: invalid shape {shape!r} for {name!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_int(n) and n >= 0 for n in offsets)
            or offsets[1] < offsets[0]
        ):
            raise CheckpointError(f"{path}: invalid data_offsets {offsets!r} for {name!r}")
        dtype = _DTYPES[_SAFETENSORS_DTYPES[code]]
        if offsets[1] - offsets[0] != math.prod(shape) * dtype.itemsize:
            raise CheckpointError(
                f"{path}: {name!r} of shape {shape} and dtype {code} cannot fill "
                f"data_offsets {offsets}"
            )
        infos.append((offsets[0], offsets[1], name, dtype, tuple(shape)))
    # The byte buffer must be entirely indexed, without holes or overlaps.
    end = 0
    for begin, stop, name, _dtype, _shape in sorted(infos, key=lambda i: (i[0], i[1])):
        if begin != end:
            raise CheckpointError(
                f"{path}: safetensors data_offsets of {name!r} leave a hole or overlap"
            )
        end = stop
    if data_start + end != size:
        state = "truncated" if data_start + end > size else "longer than its header describes"
        raise CheckpointError(
            f"{path} is {state}: the header describes {end} bytes of tensor data, the file "
            f"holds {size - data_start}"
        )
    locations = {
        name: _Location("", data_start + begin, dtype, 0, shape, _contiguous_strides(shape))
        for begin, _stop, name, dtype, shape in infos
    }
    return Checkpoint(path, file, "safetensors", "bare", locations, metadata=metadata)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


# --------------------------------------------------------------------------------------------
# Key names

#: Prefixes that training wrappers add to SAM2's key names: ``torch.nn.DataParallel`` /
#: DDP (``module.``), ``torch.compile`` (``_orig_mod.``) and fine-tuning code that holds the
#: SAM2 model as an attribute (``model.``, ``sam.``, ``sam2.``).
KNOWN_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.", "model.", "sam2.", "sam.")


def strip_prefix(
    keys: Iterable[str],
    expected: Collection[str] | None = None,
    prefixes: Sequence[str] = KNOWN_PREFIXES,
) -> dict[str, str]:
    """Map checkpoint keys onto SAM2's key names by removing wrapper prefixes.

    A pure function: it only renames, the caller decides what to do with keys that still do
    not match.

    Parameters
    ----------
    keys : iterable of str
        The checkpoint's keys (e.g. a :class:`Checkpoint`).
    expected : collection of str, optional
        The key names the model needs. When given, each key that is not expected has leading
        ``prefixes`` removed, one at a time in any order, until it is expected; a key that
        never becomes expected keeps its name. When ``None``, a prefix is removed only while
        every key starts with it (a whole checkpoint saved from a wrapper).
    prefixes : sequence of str
        The removable prefixes; :data:`KNOWN_PREFIXES` by default.

    Returns
    -------
    dict of str to str
        Each key of ``keys`` (in order) to its new name, which is the key itself when nothing
        was removed.

    Raises
    ------
    CheckpointError
        When two keys would get the same name (e.g. both ``x`` and ``module.x``).

    Examples
    --------
    >>> strip_prefix(["module.sam2.image_encoder.w", "extra"], {"image_encoder.w"})
    {'module.sam2.image_encoder.w': 'image_encoder.w', 'extra': 'extra'}
    >>> strip_prefix(["module.a", "module.b"])
    {'module.a': 'a', 'module.b': 'b'}
    """
    keys = list(keys)
    mapping: dict[str, str] = {}
    if expected is None:
        names = keys
        changed = True
        while changed and names:
            changed = False
            for prefix in prefixes:
                if all(name.startswith(prefix) and len(name) > len(prefix) for name in names):
                    names = [name[len(prefix) :] for name in names]
                    changed = True
                    break
        mapping = dict(zip(keys, names, strict=True))
    else:
        wanted = expected if isinstance(expected, (set, frozenset, dict)) else set(expected)
        for key in keys:
            mapping[key] = _strip_to_expected(key, wanted, prefixes)
    seen: dict[str, str] = {}
    for key, name in mapping.items():
        if name in seen:
            raise CheckpointError(
                f"checkpoint keys {seen[name]!r} and {key!r} would both be named {name!r}"
            )
        seen[name] = key
    return mapping


def _strip_to_expected(key: str, expected: Collection[str], prefixes: Sequence[str]) -> str:
    if key in expected:
        return key
    # Breadth-first over the ways of removing leading prefixes (keys are short; few steps).
    frontier = [key]
    visited = {key}
    while frontier:
        following = []
        for name in frontier:
            for prefix in prefixes:
                if name.startswith(prefix):
                    shorter = name[len(prefix) :]
                    if shorter in expected:
                        return shorter
                    if shorter and shorter not in visited:
                        visited.add(shorter)
                        following.append(shorter)
        frontier = following
    return key
