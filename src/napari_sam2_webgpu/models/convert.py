"""Build the four ONNX files of a SAM2 model from a checkpoint, without PyTorch.

The graph templates (:mod:`.templates`) hold our exporter's graphs without their weights; this
module fills them from a state dict (a checkpoint read by :mod:`.checkpoint`, or any mapping of
names to numpy arrays) and writes each file tensor by tensor, so that memory holds the graph
and one tensor at a time, never a whole model. The bytes written are those ``onnx.save`` writes
for the filled model, which is what the torch exporter writes from the same weights.

Nothing is written when the state dict does not fit the size: :func:`check_state_dict` lists the
missing and unexpected keys and the shapes that differ, and names the size that does fit. A size
covers SAM2.1 and the original SAM2 (2.0): :func:`pick_template` chooses the one the checkpoint
fits.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .cache import new_hidden_file
from .checkpoint import read_checkpoint, strip_prefix
from .files import COMPONENTS, VideoModelPaths, component_filename, model_stem
from .templates import (
    CONSTANTS_FILE,
    SAM2_0_PREFIX,
    TemplateIndex,
    TensorSource,
    describe_template,
    load_index,
    template_sizes,
    template_variants,
)
from .transfer import ProgressCallback

__all__ = [
    "ConversionError",
    "ComponentWriter",
    "build_model",
    "check_state_dict",
    "default_stem",
    "guess_size",
    "match_keys",
    "pick_template",
]

#: Progress is reported after this many bytes are written.
_PROGRESS_BYTES = 4 << 20
#: How many names an error message lists before it says "and N more".
_LISTED = 8


class ConversionError(ValueError):
    """A checkpoint that does not fit the size's graph; nothing was written."""


def match_keys(keys: Sequence[str], expected: Mapping[str, Any]) -> dict[str, str]:
    """Map each expected key to the checkpoint key that holds it.

    Wrapper prefixes (``module.``, ``_orig_mod.``, ``model.``, ...) are removed as
    :func:`~.checkpoint.strip_prefix` does.

    Parameters
    ----------
    keys : sequence of str
        The checkpoint's keys.
    expected : mapping
        The keys the graph needs.

    Returns
    -------
    dict of str to str
        Expected key -> checkpoint key, for the expected keys found.
    """
    return {new: old for old, new in strip_prefix(keys, expected).items() if new in expected}


def _shape_of(state: Mapping[str, Any], key: str) -> tuple[int, ...]:
    shape = getattr(state, "shape", None)
    if callable(shape):  # a lazy checkpoint knows shapes without reading data
        return tuple(shape(key))
    return tuple(np.shape(state[key]))


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    more = len(names) - _LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def guess_size(
    state: Mapping[str, Any], folder: Path | None = None, not_size: str | None = None
) -> str | None:
    """The size whose keys and shapes the state dict has exactly, if any.

    Parameters
    ----------
    state : mapping of str to array
        A checkpoint's state dict (wrapper prefixes are allowed).
    folder : Path, optional
        Template folder; the package's own by default.
    not_size : str, optional
        A size not to consider.

    Returns
    -------
    str or None
        A template name: a SAM2.1 size, or ``sam2.0_<size>`` for an original SAM2 checkpoint.
    """
    for size in template_sizes(folder):
        if size != not_size and _fits(state, load_index(size, folder)):
            return size
    return None


def _fits(state: Mapping[str, Any], index: TemplateIndex) -> bool:
    found = match_keys(list(state), index.keys)
    return (
        len(found) == len(index.keys)
        and len(set(found.values())) == len(state)
        and all(_shape_of(state, found[k]) == shape for k, (shape, _) in index.keys.items())
    )


def pick_template(state: Mapping[str, Any], size: str, folder: Path | None = None) -> str:
    """The template of ``size`` that ``state`` fits: SAM2.1's or the original SAM2's.

    Parameters
    ----------
    state : mapping of str to array
        A checkpoint's state dict.
    size : str
        A model size (``"tiny"``), or a template name (``"sam2.0_tiny"``) to use as is.
    folder : Path, optional
        Template folder; the package's own by default.

    Returns
    -------
    str
        The template name.

    Raises
    ------
    ConversionError
        The state dict fits neither; the message lists what differs from the SAM2.1 size.
    ValueError
        There is no template for ``size``.
    """
    variants = template_variants(size, folder)
    for name in variants:
        if _fits(state, load_index(name, folder)):
            return name
    check_state_dict(state, load_index(variants[0], folder), folder)  # raises, saying why
    raise AssertionError("unreachable: check_state_dict accepted a state dict _fits refused")


def default_stem(template: str) -> str:
    """The file stem of a model built from ``template`` when the user gives no name.

    Meta's own names: ``sam2.1_hiera_tiny`` for SAM2.1, ``sam2_hiera_tiny`` for SAM2 (2.0).
    """
    if template.startswith(SAM2_0_PREFIX):
        return "sam2_hiera_" + template.removeprefix(SAM2_0_PREFIX)
    return model_stem(template)


def check_state_dict(
    state: Mapping[str, Any], index: TemplateIndex, folder: Path | None = None
) -> dict[str, str]:
    """Check that ``state`` has exactly the tensors of ``index``'s size, with their shapes.

    Parameters
    ----------
    state : mapping of str to array
        The checkpoint's state dict.
    index : TemplateIndex
        The size's templates.
    folder : Path, optional
        Template folder searched for the size that fits instead (in the error message).

    Returns
    -------
    dict of str to str
        Expected key -> checkpoint key (see :func:`match_keys`).

    Raises
    ------
    ConversionError
        Listing the missing keys, the unexpected ones and the shapes that differ.
    """
    found = match_keys(list(state), index.keys)
    missing = [k for k in index.keys if k not in found]
    used = set(found.values())
    unexpected = [k for k in state if k not in used]
    wrong = [
        f"{k} {_shape_of(state, found[k])} (expected {shape})"
        for k, (shape, _) in index.keys.items()
        if k in found and _shape_of(state, found[k]) != shape
    ]
    if not (missing or unexpected or wrong):
        return found
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_listed(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} of another shape: {_listed(wrong)}")
    what = describe_template(index.size)
    message = f"This checkpoint is not a {what} model: " + "; ".join(problems) + "."
    other = guess_size(state, folder, index.size)
    if other is not None:
        base = other.removeprefix(SAM2_0_PREFIX)
        message += f" It is a {describe_template(other)} model: convert it with --size {base}."
    raise ConversionError(message)


# --------------------------------------------------------------------------------------------
# Filling a template
# --------------------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number: int, payload_size: int) -> bytes:
    """Tag and length of a length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(payload_size)


def _split(message: Any, number: int) -> tuple[bytes, bytes]:
    """``message`` serialised without field ``number``: the bytes before it and after it.

    protobuf writes known fields in field-number order, so the field's occurrences go between.
    """
    before, after = type(message)(), type(message)()
    before.CopyFrom(message)
    after.CopyFrom(message)
    for field, _ in message.ListFields():
        if field.number <= number:
            after.ClearField(field.name)
        if field.number >= number:
            before.ClearField(field.name)
    return before.SerializeToString(), after.SerializeToString()


class _Values:
    """Arrays for :class:`TensorSource` records: checkpoint tensors and shared constants."""

    def __init__(self, state: Mapping[str, Any], keys: Mapping[str, str], folder: Path) -> None:
        self.state, self.keys, self.folder = state, keys, folder
        self._constants: Any = None

    def array(self, source: TensorSource, dims: Sequence[int], dtype: np.dtype) -> np.ndarray:
        if source.sha256 is not None:
            if self._constants is None:
                self._constants = np.load(self.folder / CONSTANTS_FILE)
            value = self._constants[source.sha256]
        else:
            parts = [np.asarray(self.state[self.keys[k]]) for k in source.keys]
            if len(parts) == 1:
                value = parts[0]
                if source.transpose is not None:
                    value = value.transpose(source.transpose)
            else:
                value = np.concatenate([p.reshape(-1, p.shape[-1]) for p in parts])
        return np.ascontiguousarray(value, dtype=dtype.newbyteorder("<")).reshape(tuple(dims))

    def close(self) -> None:
        if self._constants is not None:
            self._constants.close()


class _Initializer:
    """One initializer to write: its serialised fields, with the referenced data between.

    A ``TensorProto`` with data is its other fields plus ``raw_data`` (field 9); the data's
    length is known from dims and dtype, so the file's lengths are computed before any tensor
    is read, and each tensor is read once and written straight from numpy.
    """

    def __init__(self, template: Any) -> None:
        from onnx import TensorProto, helper

        self.source = TensorSource.of(template)
        if self.source is None:
            self.before, self.after, self.nbytes = template.SerializeToString(), b"", 0
            return
        tensor = TensorProto()
        tensor.CopyFrom(template)
        tensor.ClearField("external_data")
        tensor.ClearField("data_location")
        self.dims = tuple(template.dims)
        self.dtype = np.dtype(helper.tensor_dtype_to_np_dtype(template.data_type))
        self.nbytes = int(np.prod(self.dims, dtype=np.int64)) * self.dtype.itemsize
        before, after = _split(tensor, 9)  # TensorProto.raw_data
        self.before, self.after = before + _field(9, self.nbytes), after

    @property
    def size(self) -> int:
        return len(self.before) + self.nbytes + len(self.after)

    def chunks(self, values: _Values) -> Iterator[bytes | memoryview]:
        yield _field(5, self.size)  # GraphProto.initializer
        yield self.before
        if self.source is not None:
            array = values.array(self.source, self.dims, self.dtype)
            yield memoryview(array).cast("B")
        yield self.after


class ComponentWriter:
    """Writes one component's ONNX file from its template.

    Parameters
    ----------
    template : path
        The component's template.
    """

    def __init__(self, template: str | os.PathLike) -> None:
        import onnx

        model = onnx.load(str(template), load_external_data=False)
        self.initializers = [_Initializer(t) for t in model.graph.initializer]
        self.model_before, self.model_after = _split(model, 7)  # ModelProto.graph
        self.graph_before, self.graph_after = _split(model.graph, 5)  # GraphProto.initializer
        inner = sum(len(_field(5, i.size)) + i.size for i in self.initializers)
        self.graph_size = len(self.graph_before) + inner + len(self.graph_after)

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        return (
            len(self.model_before)
            + len(_field(7, self.graph_size))
            + self.graph_size
            + len(self.model_after)
        )

    def chunks(self, values: _Values) -> Iterator[bytes | memoryview]:
        """The file's bytes, in pieces of at most one tensor."""
        yield self.model_before
        yield _field(7, self.graph_size)
        yield self.graph_before
        for init in self.initializers:
            yield from init.chunks(values)
        yield self.graph_after
        yield self.model_after

    def write(
        self, values: _Values, out: BinaryIO, on_bytes: Callable[[int], None] | None = None
    ) -> str:
        """Write the file to ``out``; return its SHA-256."""
        digest = hashlib.sha256()
        for chunk in self.chunks(values):
            out.write(chunk)
            digest.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
        return digest.hexdigest()


def build_model(
    checkpoint: str | os.PathLike | Mapping[str, Any],
    size: str,
    out_dir: str | os.PathLike,
    *,
    stem: str,
    templates: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[VideoModelPaths, dict[str, str]]:
    """Write the encoder, decoder, memory attention and memory encoder of a checkpoint.

    The files appear together: each is written under a hidden name and all four are moved
    into place only once every one is complete. On any error nothing is left behind.

    Parameters
    ----------
    checkpoint : path or mapping
        A ``.pt`` or ``.safetensors`` file (read without torch), or a state dict of arrays.
    size : str
        The model size: its SAM2.1 or original SAM2 template is filled, whichever the checkpoint
        fits (see :func:`pick_template`); or a template name such as ``"sam2.0_tiny"``.
    out_dir : path
        Where the files go (created if needed).
    stem : str
        File stem (see :func:`~.files.component_filename`).
    templates : path, optional
        Template folder; the package's own by default.
    progress : callable, optional
        ``progress(done_bytes, total_bytes, description)`` while writing.

    Returns
    -------
    paths : VideoModelPaths
    sha256 : dict of str to str
        Each written file's SHA-256, by file name.

    Raises
    ------
    ConversionError
        The checkpoint does not fit the size; nothing was written.
    """
    folder = Path(templates) if templates is not None else None
    load_index(size, folder)  # an unknown size fails before the checkpoint is read
    if isinstance(checkpoint, Mapping):
        index = load_index(pick_template(checkpoint, size, folder), folder)
        return _build(checkpoint, index, folder, Path(out_dir), stem, progress)
    with read_checkpoint(checkpoint) as state:
        index = load_index(pick_template(state, size, folder), folder)
        return _build(state, index, folder, Path(out_dir), stem, progress)


def _build(
    state: Mapping[str, Any],
    index: TemplateIndex,
    folder: Path | None,
    out_dir: Path,
    stem: str,
    progress: ProgressCallback | None,
) -> tuple[VideoModelPaths, dict[str, str]]:
    keys = check_state_dict(state, index, folder)
    writers = {c: ComponentWriter(index.template(c)) for c in COMPONENTS}
    total = sum(w.size for w in writers.values())
    done = reported = 0
    values = _Values(state, keys, index.folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = VideoModelPaths.in_folder(out_dir, stem)
    parts: dict[Path, Path] = {}
    digests: dict[str, str] = {}
    try:
        for component, target in zip(COMPONENTS, paths.files, strict=True):
            description = f"Building {component_filename(stem, component)}"

            def advance(n: int, description: str = description) -> None:
                nonlocal done, reported
                done += n
                # Thousands of small pieces: report every few MiB and at the end only.
                if progress is not None and (done - reported >= _PROGRESS_BYTES or done == total):
                    reported = done
                    progress(done, total, description)

            part = new_hidden_file(out_dir, target.name, ".part")
            parts[target] = part
            with open(part, "wb") as out:
                digests[target.name] = writers[component].write(values, out, advance)
                out.flush()
                os.fsync(out.fileno())
        for target, part in parts.items():
            os.replace(part, target)
    finally:
        values.close()
        for part in parts.values():
            part.unlink(missing_ok=True)
    return paths, digests
