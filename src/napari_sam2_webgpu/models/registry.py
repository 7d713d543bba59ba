"""The registry of SAM2.1 sizes: which ONNX pair belongs to each, where it comes from, its checksum.

This is the one definition of :data:`MODEL_SIZES`; file names follow
:mod:`napari_sam2_webgpu.models.files`.

Where the registry values come from
-----------------------------------
Meta publishes SAM2.1 as PyTorch checkpoints only. The ONNX pairs below are the SAM2.1 exports
made with samexporter by its author, Viet-Anh Nguyen (the exports AnyLabeling uses), published as
one zip per size in https://huggingface.co/vietanhdev/segment-anything-2.1-onnx-models. URLs are
pinned to revision ``6a3ac868340a3196a349050a6efae22a5acc0330`` so the bytes cannot change under
a checksum. None of the sizes and SHA-256 values below was computed by this project; each was
read in public material:

* tiny: archive 116,507,723 B / ``c602cb3f…``; encoder 109,471,931 B / ``667384d1…``; decoder
  16,519,561 B / ``c40f5aa7…``. Read in a pinned-model table of a public C# project (GitHub,
  ``SamModels`` record for ``Sam21Tiny``, revision 6a3ac868); the encoder and decoder hashes are
  confirmed independently by ``models/manifest.json`` of github.com/n3o4po11o/simple-automosaic.
* small: archive 142,896,844 B / ``7c232acd…``; encoder 138,018,779 B / ``275013f3…``; decoder
  16,519,569 B / ``d158eb26…``. Read in a public project's model notes ("SAM 2.1 Hiera-S (Object
  Selection)", download URL pinned to revision 6a3ac868).
* large: encoder ``f1853873…`` and decoder ``014ac31e…`` from
  github.com/n3o4po11o/simple-automosaic ``models/manifest.json`` (files it extracts from
  ``sam2.1_hiera_large_20260221.zip``). Exact byte sizes and the archive checksum were not
  published there (only "813.0" and "15.8" MB), so ``size`` is 0 (unknown).
* base_plus: no published checksum found anywhere. Marked :data:`UNVERIFIED`.

docs/models.md has the full table with URLs. Input/output names (encoder ``image`` ->
``high_res_feats_0, high_res_feats_1, image_embed``; decoder ``image_embed, high_res_feats_0,
high_res_feats_1, point_coords, point_labels, mask_input, has_mask_input`` -> ``masks,
iou_predictions``) are samexporter's ``export_sam2.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from .files import component_filename, model_stem
from .settings import ENV_ALLOW_UNVERIFIED

__all__ = [
    "MODEL_SIZES",
    "REGISTRY",
    "UNVERIFIED",
    "FileSet",
    "ModelArchive",
    "ModelFile",
    "ModelSpec",
    "as_spec",
    "get_spec",
    "is_sha256",
    "registry_key",
]

#: The SAM2.1 sizes the registry publishes, smallest first.
MODEL_SIZES: tuple[str, ...] = ("tiny", "small", "base_plus", "large")

#: Placed in a ``sha256`` field when no checksum was published for that file.
UNVERIFIED = "unverified"

_HEX64 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: str) -> bool:
    """Whether `value` is a lower-case hex SHA-256 digest (not :data:`UNVERIFIED`).

    Parameters
    ----------
    value : str
        A ``sha256`` field of the registry, or a digest read from a stamp.

    Returns
    -------
    bool
    """
    return bool(_HEX64.fullmatch(value))


@dataclass(frozen=True)
class ModelArchive:
    """A zip archive that holds one or more model files.

    Parameters
    ----------
    filename : str
        Name of the archive file, e.g. ``"sam2.1_hiera_tiny_20260221.zip"``.
    url : str
        Where the archive is downloaded from.
    sha256 : str
        Lower-case hex SHA-256 of the archive, or :data:`UNVERIFIED`.
    size : int
        Size in bytes, or 0 when unknown.
    """

    filename: str
    url: str
    sha256: str = UNVERIFIED
    size: int = 0


@dataclass(frozen=True)
class ModelFile:
    """One ONNX file of a model pair.

    Parameters
    ----------
    filename : str
        File name in the cache folder (and in a zip archive, and on a mirror).
    url : str
        Where the bytes come from: the file itself, or the archive holding it when `archive` is
        set.
    sha256 : str
        Lower-case hex SHA-256 of the file, or :data:`UNVERIFIED` when none was published.
    size : int
        Size in bytes, or 0 when unknown.
    archive : ModelArchive or None
        The zip archive the file is extracted from, if it is not published as a single file.
    """

    filename: str
    url: str
    sha256: str
    size: int
    archive: ModelArchive | None = None

    @property
    def has_checksum(self) -> bool:
        """bool: Whether a published SHA-256 exists for this file."""
        return is_sha256(self.sha256)


@dataclass(frozen=True)
class ModelSpec:
    """An encoder/decoder ONNX pair and where it comes from.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"tiny"``.
    encoder, decoder : ModelFile
        The image encoder (``image`` -> ``high_res_feats_0, high_res_feats_1, image_embed``) and
        the prompt decoder (-> ``masks, iou_predictions``).
    description : str
        One line for menus and the CLI.
    source : str
        Who exported the ONNX files, from what, and where they are published.
    license : str
        SPDX identifier of the weights' license.
    params_millions : float
        Parameter count of the whole SAM2.1 model (0 when unknown).
    checkpoint_url : str
        The official PyTorch checkpoint the pair can be re-exported from.
    notes : str
        Anything a user should know before trusting the files (e.g. missing checksums).
    """

    name: str
    encoder: ModelFile
    decoder: ModelFile
    description: str
    source: str
    license: str
    params_millions: float = 0.0
    checkpoint_url: str = ""
    notes: str = ""

    @property
    def files(self) -> tuple[ModelFile, ModelFile]:
        """tuple of ModelFile: ``(encoder, decoder)``."""
        return (self.encoder, self.decoder)

    @property
    def fully_verified(self) -> bool:
        """bool: Whether both files have a published checksum."""
        return self.encoder.has_checksum and self.decoder.has_checksum


class FileSet(Protocol):
    """What the download machinery needs of a set of published files (a :class:`ModelSpec`, or
    an official checkpoint): a name for messages, the files, and the conversion hint."""

    name: str
    checkpoint_url: str

    @property
    def files(self) -> tuple[ModelFile, ...]: ...

    @property
    def fully_verified(self) -> bool: ...


_HF_REPO = "https://huggingface.co/vietanhdev/segment-anything-2.1-onnx-models"
_HF_REVISION = "6a3ac868340a3196a349050a6efae22a5acc0330"
_CHECKPOINT_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"
_SOURCE = (
    "SAM2.1 (Meta FAIR) exported to ONNX with samexporter by Viet-Anh Nguyen (AnyLabeling); "
    f"{_HF_REPO} at revision {_HF_REVISION[:8]}"
)


def _hf_spec(
    size: str,
    *,
    description: str,
    params_millions: float,
    archive_sha256: str = UNVERIFIED,
    archive_size: int = 0,
    encoder_sha256: str = UNVERIFIED,
    encoder_size: int = 0,
    decoder_sha256: str = UNVERIFIED,
    decoder_size: int = 0,
    notes: str = "",
) -> ModelSpec:
    stem = model_stem(size)
    archive_name = f"{stem}_20260221.zip"
    archive = ModelArchive(
        filename=archive_name,
        url=f"{_HF_REPO}/resolve/{_HF_REVISION}/{archive_name}",
        sha256=archive_sha256,
        size=archive_size,
    )
    return ModelSpec(
        name=size,
        encoder=ModelFile(
            component_filename(stem, "encoder"), archive.url, encoder_sha256, encoder_size, archive
        ),
        decoder=ModelFile(
            component_filename(stem, "decoder"), archive.url, decoder_sha256, decoder_size, archive
        ),
        description=description,
        source=_SOURCE,
        license="Apache-2.0",
        params_millions=params_millions,
        checkpoint_url=f"{_CHECKPOINT_BASE}/{stem}.pt",
        notes=notes,
    )


#: The published model of each of :data:`MODEL_SIZES`, in that order.
REGISTRY: dict[str, ModelSpec] = {
    "tiny": _hf_spec(
        "tiny",
        description="SAM2.1 Hiera-T: fastest, 117 MB download",
        params_millions=38.9,
        archive_sha256="c602cb3f6fd297312a415f885f0df3f0eef9fbb334b069c9d30e828f2ae7c69a",
        archive_size=116_507_723,
        encoder_sha256="667384d1e686de6828b841ac8a24db0fafa2b3452494225f82eeedac56141230",
        encoder_size=109_471_931,
        decoder_sha256="c40f5aa7d37b681cd500481a85d44839fd81c93dce1e86271a2c866470d22105",
        decoder_size=16_519_561,
    ),
    "small": _hf_spec(
        "small",
        description="SAM2.1 Hiera-S: fast, 143 MB download",
        params_millions=46.0,
        archive_sha256="7c232acd0a95053704aa2ae9f9a3e8f9e93899fa51335b14d38e34bb7267973d",
        archive_size=142_896_844,
        encoder_sha256="275013f35a03fcf9d9f32f0490bfb7acd8b8fb86f145ba173123eb3886c8d4b2",
        encoder_size=138_018_779,
        decoder_sha256="d158eb26a43d39eed23ef677d6826d17eb9eda951921f9a252fa5d36d871b57d",
        decoder_size=16_519_569,
    ),
    "base_plus": _hf_spec(
        "base_plus",
        description="SAM2.1 Hiera-B+: balanced, ~272 MB download (no published checksum)",
        params_millions=80.8,
        notes=(
            "No SHA-256 has been published for this pair; it is downloaded only with "
            f"allow_unverified=True or {ENV_ALLOW_UNVERIFIED}=1, and its hash is then recorded."
        ),
    ),
    "large": _hf_spec(
        "large",
        description="SAM2.1 Hiera-L: most accurate, ~805 MB download",
        params_millions=224.4,
        encoder_sha256="f18538735868c076b715d5abbdf1a9d5fb4b0939c00be9db42d6b3808cdd3251",
        decoder_sha256="014ac31e9037238ee027d6399d932dafe80c15ae711aee564976b94383b4ffa1",
        notes="Checksums from a single secondary source; exact byte sizes not published.",
    ),
}

_ALIASES = {
    "t": "tiny",
    "s": "small",
    "b": "base_plus",
    "b+": "base_plus",
    "base": "base_plus",
    "base+": "base_plus",
    "baseplus": "base_plus",
    "l": "large",
}


def registry_key(name: str) -> str | None:
    """The registry key a user-typed size name stands for, or None if it names no registry size.

    Parameters
    ----------
    name : str
        Case, ``-`` vs ``_`` and short forms such as ``"b+"`` or ``"base"`` are accepted.

    Returns
    -------
    str or None
        One of :data:`MODEL_SIZES`, or None.
    """
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    return key if key in REGISTRY else None


def get_spec(name: str) -> ModelSpec:
    """Look up a registry model by name.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_SIZES`; case, ``-`` vs ``_`` and short forms such as ``"b+"`` or
        ``"base"`` are accepted.

    Returns
    -------
    ModelSpec

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the valid names.
    """
    key = registry_key(name)
    if key is None:
        valid = ", ".join(REGISTRY)
        raise ValueError(f"Unknown SAM2.1 model {name!r}; valid names: {valid}.")
    return REGISTRY[key]


def as_spec(model: str | ModelSpec) -> ModelSpec:
    """`model` itself if it is a :class:`ModelSpec`, else the registry spec of that name.

    Parameters
    ----------
    model : str or ModelSpec
        Registry name (see :func:`get_spec`) or any spec, including one not in the registry.

    Returns
    -------
    ModelSpec
    """
    return model if isinstance(model, ModelSpec) else get_spec(model)
