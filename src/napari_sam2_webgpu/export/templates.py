"""Generate the weightless graph templates that users' machines fill without torch.

Development tool (needs the ``export`` extra). For a size, the model is built with every
floating-point tensor of its state dict set to distinct random values, exported as usual, and
each initializer of the exported graphs is matched by value to where it comes from:

- a state-dict tensor, possibly with its axes reordered (a linear layer's weight is stored
  transposed for MatMul): a reference to the key;
- several state-dict tensors whose rows were concatenated by constant folding (the decoder's
  output tokens): a reference to the keys;
- anything else is a constant of the architecture (rotary tables, sine position encodings,
  shapes): stored in the template, or once in ``constants.npz`` when large.

A constant that in fact depends on the weights would be wrong for other checkpoints, so
:func:`verify_templates` exports a second model with other random weights and checks that
building from the templates gives the same bytes. Run::

    python -m napari_sam2_webgpu.export.templates [SIZES...] \
        --out src/napari_sam2_webgpu/models/templates
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..models.convert import build_model
from ..models.files import COMPONENTS, component_filename
from ..models.templates import CONSTANTS_FILE, TemplateIndex, TensorSource, template_sizes
from .api import export_onnx
from .checkpoint import build_sam2_model
from .configs import CONFIGS, hydra_config

__all__ = ["distinct_weights", "make_templates", "verify_templates", "write_constants"]

#: Constants at least this large go to ``constants.npz`` (shared by all sizes) instead of
#: staying in each template.
SHARED_CONSTANT_BYTES = 64 << 10


def distinct_weights(model: Any, seed: int) -> dict[str, np.ndarray]:
    """Give every floating-point state-dict tensor of ``model`` its own random values.

    Returns
    -------
    dict of str to numpy.ndarray
        The state dict as numpy arrays (copies).
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    with torch.no_grad():
        for value in state.values():
            if value.is_floating_point():
                value.copy_(torch.randn(value.shape, generator=generator) * 0.1)
    return {k: v.detach().cpu().numpy().copy() for k, v in state.items()}


def _multiset(array: np.ndarray) -> bytes:
    """A digest of the values regardless of their order and shape."""
    return hashlib.sha1(np.sort(array, axis=None).astype("<f4").tobytes()).digest()


class _Matcher:
    """Finds the state-dict tensors an exported initializer was made of."""

    def __init__(self, state: Mapping[str, np.ndarray]) -> None:
        self.state = {k: v for k, v in state.items() if v.dtype.kind == "f" and v.size}
        self.by_values: dict[bytes, list[str]] = {}
        self.by_first_row: dict[bytes, list[str]] = {}
        for key, value in self.state.items():
            self.by_values.setdefault(_multiset(value), []).append(key)
            rows = value.reshape(-1, value.shape[-1]) if value.ndim else value.reshape(1, 1)
            self.by_first_row.setdefault(rows[0].astype("<f4").tobytes(), []).append(key)

    def source(self, array: np.ndarray) -> TensorSource | None:
        if array.dtype.kind != "f" or not array.size:
            return None
        for key in self.by_values.get(_multiset(array), []):
            value = self.state[key]
            identity = tuple(range(value.ndim))
            for order in itertools.permutations(identity):
                if np.array_equal(value.transpose(order).reshape(array.shape), array):
                    return TensorSource((key,), None if order == identity else order)
        return self._concatenation(array)

    def _concatenation(self, array: np.ndarray) -> TensorSource | None:
        rows = array.reshape(-1, array.shape[-1])
        keys, row = [], 0
        while row < len(rows):
            candidates = self.by_first_row.get(rows[row].astype("<f4").tobytes(), [])
            for key in candidates:
                part = self.state[key].reshape(-1, array.shape[-1])
                if np.array_equal(rows[row : row + len(part)], part):
                    keys.append(key)
                    row += len(part)
                    break
            else:
                return None
        return TensorSource(keys=tuple(keys)) if len(keys) > 1 else None


def _templatise(model: Any, matcher: _Matcher, constants: dict[str, np.ndarray]) -> int:
    """Replace ``model``'s weight initializers by references; return how many were replaced."""
    from onnx import TensorProto, numpy_helper

    replaced = 0
    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        source = matcher.source(array)
        if source is None and array.nbytes >= SHARED_CONSTANT_BYTES:
            digest = hashlib.sha256(array.tobytes()).hexdigest()
            constants[digest] = array
            source = TensorSource(sha256=digest)
        if source is None:
            continue
        for name in ("raw_data", "float_data", "int32_data", "int64_data", "double_data"):
            tensor.ClearField(name)
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in source.entries().items():
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        replaced += 1
    return replaced


def make_templates(
    size: str, out_dir: str | os.PathLike, constants: dict[str, np.ndarray], *, seed: int = 0
) -> TemplateIndex:
    """Export ``size`` with distinct random weights and write its templates to ``out_dir``.

    Parameters
    ----------
    size : str
        A size of :data:`~.configs.CONFIGS` (or ``micro``, for tests).
    out_dir : path
        Template folder; ``<size>.json`` and ``<size>.<component>.onnx`` are written.
    constants : dict
        Collects the shared constants (write them with :func:`write_constants`).
    seed : int
        Seed of the random weights.

    Returns
    -------
    TemplateIndex
    """
    import onnx
    import sam2
    import torch

    from .. import __version__

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = build_sam2_model(size, seed=seed)
    state = distinct_weights(model, seed)
    matcher = _Matcher(state)
    components = {}
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, tmp, name=size, size=size)
        for component in COMPONENTS:
            proto = onnx.load(str(Path(tmp) / component_filename(size, component)))
            _templatise(proto, matcher, constants)
            name = component_filename(size, component)
            (out / name).write_bytes(proto.SerializeToString())
            components[component] = name
    config, overrides = hydra_config(size)
    index = TemplateIndex(
        size=size,
        folder=out,
        keys={k: (tuple(v.shape), v.dtype.name) for k, v in state.items()},
        components=components,
        metadata={
            "sam2_config": config,
            "config_overrides": list(overrides),
            "napari_sam2_webgpu": __version__,
            "sam2": getattr(sam2, "__version__", "unknown"),
            "torch": torch.__version__,
            "onnx": onnx.__version__,
        },
    )
    (out / f"{size}.json").write_text(index.to_json() + "\n", encoding="utf-8")
    return index


def write_constants(out_dir: str | os.PathLike, constants: Mapping[str, np.ndarray]) -> Path:
    """Write the constants every template in ``out_dir`` refers to, and no others."""
    import onnx

    out = Path(out_dir)
    used: set[str] = set()
    for path in out.glob("*.onnx"):
        for tensor in onnx.load(str(path), load_external_data=False).graph.initializer:
            source = TensorSource.of(tensor)
            if source is not None and source.sha256 is not None:
                used.add(source.sha256)
    old = out / CONSTANTS_FILE
    known = dict(constants)
    if old.is_file():
        with np.load(old) as stored:
            known.update({k: stored[k] for k in stored.files if k not in known})
    missing = used - set(known)
    if missing:
        raise RuntimeError(f"constants referenced but not generated: {sorted(missing)}")
    np.savez_compressed(old, **{k: known[k] for k in sorted(used)})
    return old


def verify_templates(size: str, folder: str | os.PathLike, *, seed: int = 1) -> dict[str, bool]:
    """Whether building from the templates gives the exporter's bytes for other weights.

    Returns
    -------
    dict of str to bool
        Component -> files identical.
    """
    model = build_sam2_model(size, seed=seed)
    state = distinct_weights(model, seed)
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_onnx(model, Path(tmp) / "exported", name=size, size=size)
        built, _ = build_model(state, size, Path(tmp) / "built", stem=size, templates=folder)
        return {
            c: Path(a).read_bytes() == Path(b).read_bytes()
            for c, a, b in zip(COMPONENTS, exported.files, built.files, strict=True)
        }


def main(argv: Sequence[str] | None = None) -> int:
    """Generate and verify templates (``python -m napari_sam2_webgpu.export.templates``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sizes", nargs="*", default=list(CONFIGS))
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    constants: dict[str, np.ndarray] = {}
    for size in args.sizes:
        make_templates(size, args.out, constants)
        write_constants(args.out, constants)
        same = verify_templates(size, args.out)
        print(size, " ".join(f"{c}: {'same' if ok else 'DIFFERENT'}" for c, ok in same.items()))
        if not all(same.values()):
            return 1
    print("templates:", ", ".join(template_sizes(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
