"""The napari glue without Qt: what a viewer (or a ``ViewerModel``) needs for SAM2.

========================  ==================================================================
:mod:`.errors`            :class:`AnnotatorError`, a problem the user can fix
:mod:`.slices`            :class:`SliceInfo`: the displayed 2D slice, data <-> SAM pixels,
                          layer shape and transform
:mod:`.prompt_layers`     building the prompts, box, preview and target layers; reading the
                          prompts of a slice
:mod:`.embeddings`        :class:`EncodeRequest`, model keys, cached-embedding lookup
:mod:`.segmented_image`   the image layer in use, its displayed slice and that slice's
                          embedding
:mod:`.preview`           the preview layer and its mask
:mod:`.decoding`          :class:`DecodeScheduler`: newest prompt wins, fast decodes inline,
                          each request carrying its own embedding; the preview's decodes
:mod:`.labels`            writing masks into a Labels layer, next free id, undo steps
                          (``Labels.block_history``)
:mod:`.target`            the target Labels layer, the object id, commit and undo
:mod:`.viewer_events`     reactions to slice changes and removed layers
:mod:`.annotator`         :class:`Annotator`: composes the above for click-to-mask
:mod:`.propagation`       :class:`PropagationController`: an object through a stack
:mod:`.segment_all`       :class:`SegmentAllController`: every object of a slice or a stack
                          into a new Labels layer (the automatic mask generator)
:mod:`.sample_data`       offline sample images (npe2 sample-data contribution)
========================  ==================================================================

The core is used only through the public names of :mod:`napari_sam2_webgpu.image`,
:mod:`napari_sam2_webgpu.video` and :mod:`napari_sam2_webgpu.models`. Nothing here imports Qt.
"""

from __future__ import annotations

from .annotator import Annotator
from .decoding import DecodeRequest, DecodeResult, DecodeScheduler
from .embeddings import EncodeRequest
from .errors import AnnotatorError
from .labels import check_label_value
from .propagation import (
    PropagationController,
    PropagationRun,
    PropagationStep,
    StackSpec,
    stack_prompts,
    stack_spec,
    video_components,
)
from .segment_all import (
    SegmentAllController,
    SegmentAllParams,
    SegmentAllPlan,
    SegmentAllRun,
    SegmentAllStep,
)
from .slices import SliceInfo, displayed_slice

__all__ = [
    "Annotator",
    "AnnotatorError",
    "DecodeRequest",
    "DecodeResult",
    "DecodeScheduler",
    "EncodeRequest",
    "PropagationController",
    "PropagationRun",
    "PropagationStep",
    "SegmentAllController",
    "SegmentAllParams",
    "SegmentAllPlan",
    "SegmentAllRun",
    "SegmentAllStep",
    "SliceInfo",
    "StackSpec",
    "check_label_value",
    "displayed_slice",
    "stack_prompts",
    "stack_spec",
    "video_components",
]
