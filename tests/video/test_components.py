"""The video components: their sessions, and the checks that they fit propagation.

The sessions are the ``micro`` model's on the CPU; the checks also run on stand-in sessions.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from napari_sam2_webgpu.models.interface import MEMORY_ATTENTION_INPUTS, MEMORY_ENCODER_INPUTS
from napari_sam2_webgpu.runtime import resolve_backend
from napari_sam2_webgpu.video.components import (
    check_components,
    open_components,
)
from napari_sam2_webgpu.video.memory import VideoConfig

WITH_POINTERS = SimpleNamespace(has_object_pointers=True)


def _session(inputs, metadata=None):
    return SimpleNamespace(
        get_inputs=lambda: [SimpleNamespace(name=name) for name in sorted(inputs)],
        get_modelmeta=lambda: SimpleNamespace(custom_metadata_map=metadata or {}),
    )


@pytest.fixture(scope="module")
def components(micro_model_files):
    _, files = micro_model_files
    return open_components(files.memory_attention, files.memory_encoder, resolve_backend("cpu"))


def test_open_components_gives_both_sessions(components):
    attention, encoder = components
    assert {i.name for i in attention.get_inputs()} == set(MEMORY_ATTENTION_INPUTS)
    assert {i.name for i in encoder.get_inputs()} == set(MEMORY_ENCODER_INPUTS)


@pytest.mark.parametrize("which", ["memory attention", "memory encoder"])
def test_open_components_names_a_missing_file(micro_model_files, tmp_path, which):
    _, files = micro_model_files
    paths = {"memory attention": files.memory_attention, "memory encoder": files.memory_encoder}
    paths[which] = tmp_path / "nope.onnx"
    with pytest.raises(FileNotFoundError, match=f"The {which} file does not exist"):
        open_components(*paths.values(), resolve_backend("cpu"))


def test_check_components_reads_the_video_config(components):
    attention, encoder = components
    config = check_components(WITH_POINTERS, attention, encoder)
    assert isinstance(config, VideoConfig)


def test_check_components_refuses_what_propagation_cannot_use(components):
    attention, encoder = components
    with pytest.raises(ValueError, match="no 'obj_ptrs' output"):
        check_components(SimpleNamespace(has_object_pointers=False), attention, encoder)
    with pytest.raises(ValueError, match="Not a memory-attention model"):
        check_components(WITH_POINTERS, encoder, encoder)
    with pytest.raises(ValueError, match="Not a memory-encoder model"):
        check_components(WITH_POINTERS, attention, attention)
    no_metadata = _session(set(MEMORY_ATTENTION_INPUTS))
    with pytest.raises(ValueError, match="no 'video_config' metadata"):
        check_components(WITH_POINTERS, no_metadata, _session(set(MEMORY_ENCODER_INPUTS)))
