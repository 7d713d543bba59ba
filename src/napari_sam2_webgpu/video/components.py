"""The video components of an exported model: memory attention and memory encoder.

:func:`open_components` creates their sessions on the image model's provider;
:func:`check_components` makes sure they, and the image decoder, are what propagation needs,
and reads the model's :class:`~.memory.VideoConfig` from the memory attention's metadata.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..models.interface import (
    MEMORY_ATTENTION_INPUTS,
    MEMORY_ENCODER_INPUTS,
    MEMORY_ENCODER_OPTIONAL_INPUTS,
)
from .memory import VideoConfig

if TYPE_CHECKING:  # pragma: no cover
    from ..image import PromptDecoder
    from ..runtime import BackendInfo

__all__ = ["check_components", "open_components"]


def open_components(
    memory_attention: str | os.PathLike,
    memory_encoder: str | os.PathLike,
    backend_info: BackendInfo,
) -> tuple[Any, Any]:
    """The memory attention and memory encoder sessions, on ``backend_info``'s provider.

    Raises
    ------
    FileNotFoundError
        A file does not exist.
    ValueError
        A file is not a valid ONNX model.
    """
    from ..runtime import create_session

    for label, path in (
        ("memory attention", memory_attention),
        ("memory encoder", memory_encoder),
    ):
        if not Path(path).is_file():
            raise FileNotFoundError(f"The {label} file does not exist: {path}")
    # Memory attention's buffers grow with the memory bank (the score matrix alone is
    # hundreds of MB at 1024²) and the memory encoder works at full 1024² resolution: an arena
    # would hold the largest run's buffers for good.
    attention, _ = create_session(memory_attention, backend_info, cpu_memory_arena=False)
    encoder, _ = create_session(memory_encoder, backend_info, cpu_memory_arena=False)
    return attention, encoder


def check_components(
    decoder: PromptDecoder, memory_attention: Any, memory_encoder: Any
) -> VideoConfig:
    """The video config of the model, once the three sessions are known to fit propagation.

    Raises
    ------
    ValueError
        The decoder has no object pointers (not this plugin's export), a session has other
        inputs than its component's, or the memory attention lacks the ``video_config``
        metadata.
    """
    if not decoder.has_object_pointers:
        raise ValueError(
            "This decoder has no 'obj_ptrs' output, which propagation needs: use a model this "
            "plugin built (a size, or `napari-sam2-webgpu convert`), which writes the encoder, "
            "decoder, memory attention and memory encoder together."
        )
    inputs = {i.name for i in memory_attention.get_inputs()}
    if inputs != set(MEMORY_ATTENTION_INPUTS):  # the order of inputs does not matter
        raise ValueError(f"Not a memory-attention model (inputs {sorted(inputs)}).")
    inputs = {i.name for i in memory_encoder.get_inputs()}
    required = set(MEMORY_ENCODER_INPUTS) - set(MEMORY_ENCODER_OPTIONAL_INPUTS)
    if not required <= inputs <= set(MEMORY_ENCODER_INPUTS):
        raise ValueError(f"Not a memory-encoder model (inputs {sorted(inputs)}).")
    meta = dict(memory_attention.get_modelmeta().custom_metadata_map)
    if "video_config" not in meta:
        raise ValueError("The memory-attention model has no 'video_config' metadata.")
    return VideoConfig.from_metadata(meta)
