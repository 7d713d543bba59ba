"""Writing ONNX files: tracing a torch module, float16 weights, metadata, replacing files together.

torch and onnx are imported only by the functions that use them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["FP16_KEEP_FP32_OPS", "OnnxSettings", "replaced_together", "write_onnx"]

#: Operator types kept in float32 when weights are converted to float16: Resize (Hiera's bicubic
#: position-embedding interpolation) fails in fp16 on the WebGPU EP
#: ("Resize ... raw_hash_map::at").
FP16_KEEP_FP32_OPS: tuple[str, ...] = ("Resize",)


@dataclass(frozen=True)
class OnnxSettings:
    """How every graph of one export is written.

    Attributes
    ----------
    opset : int
        ONNX opset.
    fp16 : bool
        Store weights in float16; inputs and outputs stay float32.
    fp32_ops : tuple of str
        With ``fp16``, operator types kept in float32.
    metadata : mapping of str to str
        Written into each file's ``metadata_props``.
    """

    opset: int = 17
    fp16: bool = False
    fp32_ops: tuple[str, ...] = FP16_KEEP_FP32_OPS
    metadata: Mapping[str, str] = field(default_factory=dict)

    def with_metadata(self, **extra: str) -> OnnxSettings:
        """These settings with more metadata entries."""
        return replace(self, metadata={**self.metadata, **extra})


def write_onnx(
    module: Any,
    args: tuple,
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    settings: OnnxSettings,
    dynamic_axes: dict | None = None,
) -> None:
    """Trace ``module`` on ``args`` into the ONNX file ``path``.

    Parameters
    ----------
    module : torch.nn.Module
        In eval mode.
    args : tuple of torch.Tensor
        Example inputs, in the order of ``input_names``.
    path : Path
        The file to write (overwritten).
    input_names, output_names : sequence of str
        The graph's names.
    settings : OnnxSettings
        Opset, float16 conversion and metadata.
    dynamic_axes : dict, optional
        ``torch.onnx.export``'s dynamic axes, by input or output name.
    """
    import onnx
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=settings.opset,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    if settings.fp16:
        proto = _to_float16(proto, settings.fp32_ops)
    for key, value in settings.metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _to_float16(proto: Any, fp32_ops: tuple[str, ...]) -> Any:
    """Float16 weights, float32 inputs and outputs; ``fp32_ops`` stay in float32."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    return convert_float_to_float16(
        proto, keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *fp32_ops]
    )


@contextmanager
def replaced_together(targets: Sequence[Path]) -> Iterator[list[Path]]:
    """Write a set of files under temporary names and move them into place only all at once.

    Yields one ``<target>.part`` path per target. When the block completes, every part replaces
    its target; when it raises (or is interrupted), the parts are deleted and the targets are
    left as they were. An export interrupted at the decoder thus never leaves a new encoder
    beside no decoder, or beside an older one.

    Parameters
    ----------
    targets : sequence of Path
        The final file names.

    Yields
    ------
    list of Path
        The part files to write, in the order of ``targets``.
    """
    parts = [p.with_name(p.name + ".part") for p in targets]
    try:
        yield parts
        for part, target in zip(parts, targets, strict=True):
            os.replace(part, target)
    finally:
        for part in parts:
            part.unlink(missing_ok=True)
