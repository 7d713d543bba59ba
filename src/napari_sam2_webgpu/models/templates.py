"""Weightless graph templates: our exported ONNX graphs with the checkpoint's tensors taken out.

A template is the ONNX file our torch exporter writes for one size and component, in which each
initializer that comes from the checkpoint carries no data but a reference instead, stored in
ONNX's own ``external_data`` entries of the tensor:

``location = "sam2-checkpoint"``
    ``key`` (a state-dict key) or ``keys`` (comma-separated keys whose rows are concatenated,
    e.g. the decoder's output tokens), and optionally ``transpose`` (the axis order applied
    before reshaping to the tensor's dims, e.g. ``1,0`` for a linear layer's weight).
``location = "constants"``
    ``sha256``: a large constant that does not depend on the weights (rotary tables, sine
    position encodings), stored once for every size in ``constants.npz``.

Small constants (shapes, scalars) stay inline. Templates are named by size: ``tiny``,
``small``, ``base_plus`` and ``large`` are SAM2.1; ``sam2.0_<size>`` are the original SAM2
checkpoints of July 2024 (:data:`SAM2_0_PREFIX`), whose tracking lacks two SAM2.1 additions and
so whose state dicts and video graphs differ. Each template also has ``<size>.json``: the state
dict it expects (every key with its shape and dtype) and its component files. Templates are
generated from the torch exporter by :mod:`napari_sam2_webgpu.export.templates`; building from
them (:mod:`.convert`) gives byte-for-byte the files the exporter writes for the same weights.

Pure Python; ``onnx`` is imported by the functions that parse graphs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import COMPONENTS

__all__ = [
    "CHECKPOINT_LOCATION",
    "COMPONENTS",
    "CONSTANTS_FILE",
    "CONSTANTS_LOCATION",
    "SAM2_0_PREFIX",
    "TEMPLATE_DIR",
    "TEMPLATE_FORMAT",
    "TemplateIndex",
    "TensorSource",
    "describe_template",
    "load_index",
    "template_sizes",
    "template_variants",
]

#: Where the templates of the shipped sizes live.
TEMPLATE_DIR = Path(__file__).parent / "templates"
#: Version of the template format; a builder refuses templates of another version.
TEMPLATE_FORMAT = 1
#: ``external_data`` location of a tensor read from the checkpoint.
CHECKPOINT_LOCATION = "sam2-checkpoint"
#: ``external_data`` location of a shared constant.
CONSTANTS_LOCATION = "constants"
#: File holding the shared constants, by SHA-256 of their bytes.
CONSTANTS_FILE = "constants.npz"
#: Prefix of the templates (and export configs) of the original SAM2 (2.0) checkpoints.
SAM2_0_PREFIX = "sam2.0_"


@dataclass(frozen=True)
class TensorSource:
    """Where one initializer's values come from.

    Attributes
    ----------
    keys : tuple of str
        State-dict keys: one, or several whose rows (first axis) are concatenated.
    transpose : tuple of int or None
        Axis order applied to the (single) key's tensor before reshaping.
    sha256 : str or None
        For a shared constant instead of checkpoint keys: its digest in ``constants.npz``.
    """

    keys: tuple[str, ...] = ()
    transpose: tuple[int, ...] | None = None
    sha256: str | None = None

    def entries(self) -> dict[str, str]:
        """The ``external_data`` entries that record this source."""
        if self.sha256 is not None:
            return {"location": CONSTANTS_LOCATION, "sha256": self.sha256}
        out = {"location": CHECKPOINT_LOCATION}
        if len(self.keys) == 1:
            out["key"] = self.keys[0]
        else:
            out["keys"] = ",".join(self.keys)
        if self.transpose is not None:
            out["transpose"] = ",".join(map(str, self.transpose))
        return out

    @classmethod
    def from_entries(cls, entries: Mapping[str, str]) -> TensorSource | None:
        """The source recorded in a tensor's ``external_data`` (None for an inline tensor).

        Raises
        ------
        ValueError
            For a location this format does not know.
        """
        location = entries.get("location")
        if location is None:
            return None
        if location == CONSTANTS_LOCATION:
            return cls(sha256=entries["sha256"])
        if location != CHECKPOINT_LOCATION:
            raise ValueError(f"unknown template tensor location {location!r}")
        keys = (entries["key"],) if "key" in entries else tuple(entries["keys"].split(","))
        order = entries.get("transpose")
        return cls(keys=keys, transpose=tuple(map(int, order.split(","))) if order else None)

    @classmethod
    def of(cls, tensor: Any) -> TensorSource | None:
        """The source of an ONNX ``TensorProto`` (None when its data is inline)."""
        if not tensor.external_data:
            return None
        return cls.from_entries({e.key: e.value for e in tensor.external_data})


@dataclass(frozen=True)
class TemplateIndex:
    """What ``<size>.json`` says: the expected state dict and the component templates.

    Attributes
    ----------
    size : str
        The model size.
    folder : Path
        Where the templates are.
    keys : dict
        State-dict key -> ``(shape, dtype name)`` of the checkpoint this size reads.
    components : dict
        Component name -> template file name.
    metadata : dict
        Written by the generator: the sam2 config, the package and torch versions.
    """

    size: str
    folder: Path
    keys: dict[str, tuple[tuple[int, ...], str]]
    components: dict[str, str]
    metadata: dict[str, Any]

    def template(self, component: str) -> Path:
        """The template file of ``component``."""
        return self.folder / self.components[component]

    def to_json(self) -> str:
        """The index as written to ``<size>.json``."""
        return json.dumps(
            {
                "format": TEMPLATE_FORMAT,
                "size": self.size,
                "components": self.components,
                "metadata": self.metadata,
                "keys": {k: [list(shape), dtype] for k, (shape, dtype) in self.keys.items()},
            },
            indent=1,
            sort_keys=False,
        )


def load_index(size: str, folder: str | os.PathLike | None = None) -> TemplateIndex:
    """Read the template index of ``size``.

    Parameters
    ----------
    size : str
        A size with templates (see :func:`template_sizes`).
    folder : path, optional
        Template folder; the package's own by default.

    Returns
    -------
    TemplateIndex

    Raises
    ------
    ValueError
        When there is no template for ``size`` or it has another format version.
    """
    root = Path(folder) if folder is not None else TEMPLATE_DIR
    path = root / f"{size}.json"
    if not path.is_file():
        known = ", ".join(template_sizes(root)) or "none"
        raise ValueError(f"No graph templates for size {size!r} (available: {known}).")
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != TEMPLATE_FORMAT:
        raise ValueError(
            f"{path} has template format {data.get('format')!r}; this version reads"
            f" {TEMPLATE_FORMAT}. Reinstall napari-sam2-webgpu."
        )
    keys = {k: (tuple(shape), dtype) for k, (shape, dtype) in data["keys"].items()}
    return TemplateIndex(size, root, keys, dict(data["components"]), dict(data["metadata"]))


def template_sizes(folder: str | os.PathLike | None = None) -> list[str]:
    """Sizes that have templates in ``folder`` (the package's own by default)."""
    root = Path(folder) if folder is not None else TEMPLATE_DIR
    return sorted(p.stem for p in root.glob("*.json")) if root.is_dir() else []


def template_variants(size: str, folder: str | os.PathLike | None = None) -> list[str]:
    """The templates a checkpoint of ``size`` may fit: SAM2.1's, then the original SAM2's.

    Parameters
    ----------
    size : str
        A model size (``"tiny"``) or a template name (``"sam2.0_tiny"``, which is its own only
        variant).
    folder : path, optional
        Template folder; the package's own by default.

    Returns
    -------
    list of str
        Template names that exist in ``folder``; ``[size]`` when none does (so that loading it
        raises the error that lists what exists).
    """
    names = [size] if size.startswith(SAM2_0_PREFIX) else [size, SAM2_0_PREFIX + size]
    known = set(template_sizes(folder))
    return [n for n in names if n in known] or [size]


def describe_template(name: str) -> str:
    """How messages name a template: ``"SAM2.1 tiny"`` or ``"SAM2 (2.0) tiny"``."""
    if name.startswith(SAM2_0_PREFIX):
        return f"SAM2 (2.0) {name.removeprefix(SAM2_0_PREFIX)}"
    return f"SAM2.1 {name}"
