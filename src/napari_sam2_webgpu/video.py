"""Propagate masks through a z-stack or time series with SAM2's memory, on ONNX Runtime.

This follows the official ``SAM2VideoPredictor``: prompts on one or more frames make
*conditioning* frames; tracking a frame conditions its image features on a memory bank (the
conditioning frames plus the ``num_maskmem - 1`` most recent tracked frames, and up to 16 object
pointers) before decoding; each tracked frame's mask is then encoded into the bank. Objects are
tracked independently, as in the official predictor.

>>> video = Sam2Propagator.from_files(enc, dec, attn, mem)             # doctest: +SKIP
>>> state = video.init_state(stack)                                    # (T, Y, X[, C])
>>> video.add_prompts(state, frame=3, obj_id=1, points=[[40, 52]], labels=[1])
>>> for frame, masks in video.propagate(state, direction="both"):
...     labels[frame][masks[1]] = 1

Coordinates are ``(x, y)`` pixels of a frame, as for :class:`~.predictor.Sam2Predictor`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import postprocess
from .embedding_cache import EmbeddingCache, EmbeddingKey
from .predictor import LOW_RES, ImageEmbedding, PromptError, Sam2Predictor, check_prompts
from .preprocess import ImageError
from .runtime.iobinding import is_device_value, run_bound

if TYPE_CHECKING:  # pragma: no cover
    from .runtime import BackendInfo

logger = logging.getLogger("napari_sam2_webgpu")

__all__ = ["DIRECTIONS", "PropagationCancelled", "Sam2Propagator", "StackState", "fill_holes"]

#: ``propagate`` directions: from the first prompted frame to the end, to the start, or both.
DIRECTIONS = ("forward", "backward", "both")
#: Mask logit the official predictor gives frames where the object is judged absent.
NO_OBJECT_SCORE = -1024.0
#: Holes up to this many low-resolution pixels are filled, as ``build_sam2_video_predictor``.
FILL_HOLE_AREA = 8


class PropagationCancelled(RuntimeError):
    """Raised by :meth:`Sam2Propagator.propagate_all` when its ``cancel`` callback says so."""


def to_bfloat16(values: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (nearest, ties to even), stored as uint16.

    The official predictor keeps memory features in bfloat16; doing the same halves the memory
    bank and keeps the numbers identical.
    """
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def from_bfloat16(values: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 bits -> float32."""
    return (values.astype(np.uint32) << np.uint32(16)).view(np.float32)


def fill_holes(logits: np.ndarray, max_area: int = FILL_HOLE_AREA) -> np.ndarray:
    """Fill background holes of at most ``max_area`` pixels in ``(..., h, w)`` mask logits.

    A hole is an 8-connected region of logits <= 0; filled pixels get 0.1, as in SAM2's
    ``fill_holes_in_mask_scores``.
    """
    if max_area <= 0:
        return logits
    from scipy import ndimage  # imported here: a dependency of scikit-image, needed only now

    out = np.array(logits, dtype=np.float32, copy=True)
    flat = out.reshape(-1, *out.shape[-2:])
    structure = np.ones((3, 3), dtype=bool)
    for plane in flat:
        labels, count = ndimage.label(plane <= 0, structure=structure)
        if count == 0:
            continue
        areas = np.bincount(labels.ravel())
        small = areas <= max_area
        small[0] = False
        plane[small[labels]] = 0.1
    return out


@dataclass(frozen=True)
class VideoConfig:
    """Tracking settings stored in the exported memory attention's metadata.

    See ``SAM2Base`` for the meaning of each; the defaults are SAM2.1's.
    """

    image_size: int = 1024
    num_maskmem: int = 7
    max_obj_ptrs_in_encoder: int = 16
    memory_temporal_stride_for_eval: int = 1
    max_cond_frames_in_attn: int = -1
    use_obj_ptrs_in_encoder: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True
    only_obj_ptrs_in_the_past_for_eval: bool = True
    multimask_output_in_sam: bool = True
    multimask_output_for_tracking: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    use_multimask_token_for_obj_ptr: bool = True
    add_all_frames_to_correct_as_cond: bool = False
    directly_add_no_mem_embed: bool = True
    binarize_mask_from_pts_for_mem_enc: bool = True
    pred_obj_scores: bool = True

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> VideoConfig:
        raw = json.loads(meta["video_config"])
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class _FrameOutput:
    """One object's result on one frame: what the memory bank and the display need."""

    low_res: np.ndarray  # (1, 1, 256, 256) logits, holes filled
    obj_ptr: np.ndarray  # (256,)
    object_score: float
    maskmem: np.ndarray | None = None  # (64, h, w) bfloat16 bits; None until encoded
    from_points: bool = False


@dataclass
class _ObjectTrack:
    """Prompts, memory bank and results of one object."""

    points: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    cond: dict[int, _FrameOutput] = field(default_factory=dict)
    non_cond: dict[int, _FrameOutput] = field(default_factory=dict)
    # Outputs of add_prompts not yet encoded into memory: frame -> (output, is_cond).
    pending: dict[int, tuple[_FrameOutput, bool]] = field(default_factory=dict)
    # Frames tracked so far and whether in reverse.
    tracked: dict[int, bool] = field(default_factory=dict)

    def latest(self, frame: int) -> _FrameOutput | None:
        if frame in self.pending:
            return self.pending[frame][0]
        return self.cond.get(frame) or self.non_cond.get(frame)


class StackState:
    """One stack being segmented: its frames, embeddings and the objects' memory banks.

    Made by :meth:`Sam2Propagator.init_state`; pass it to the propagator's other methods.

    Attributes
    ----------
    num_frames : int
        Length of the stack.
    frame_hw : (int, int)
        Height and width of a frame.
    """

    def __init__(
        self,
        frames: Any,
        *,
        contrast_limits: Sequence[float] | None,
        embed: Callable[[np.ndarray], ImageEmbedding],
        embedding_provider: Callable[[int], ImageEmbedding] | None,
        cache: EmbeddingCache,
        model_name: str,
    ) -> None:
        self.frames = frames
        self.contrast_limits = None if contrast_limits is None else tuple(contrast_limits)
        self.num_frames = int(frames.shape[0])
        self.frame_hw = (int(frames.shape[1]), int(frames.shape[2]))
        self._embed = embed
        self._provider = embedding_provider
        self._cache = cache
        self._model = model_name
        self.objects: dict[int, _ObjectTrack] = {}
        #: Frames encoded by this state (embeddings computed, not taken from the cache).
        self.frames_encoded = 0

    @property
    def obj_ids(self) -> list[int]:
        """Object ids with prompts, in the order they were added."""
        return list(self.objects)

    def prompted_frames(self, obj_id: int) -> list[int]:
        """Frames where ``obj_id`` has prompts, sorted."""
        track = self.objects.get(obj_id)
        return sorted(track.points) if track else []

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as a numpy array (lazy stacks are read here)."""
        return np.asarray(self.frames[index])

    def embedding(self, index: int) -> ImageEmbedding:
        """The frame's image embedding, computed once and cached."""
        if self._provider is not None:
            return self._provider(index)
        key = EmbeddingKey(id(self), (index,), self.contrast_limits, self._model)
        emb = self._cache.get(key)
        if emb is None:
            emb = self._embed(self.frame(index))
            self.frames_encoded += 1
            self._cache.put(key, emb)
        return emb

    def masks(self, frame: int) -> dict[int, np.ndarray]:
        """Current boolean masks ``(H, W)`` of every object with a result on ``frame``."""
        out = {}
        for obj_id, track in self.objects.items():
            result = track.latest(frame)
            if result is not None:
                out[obj_id] = postprocess.logits_to_masks(result.low_res[0], self.frame_hw)[0]
        return out


class Sam2Propagator:
    """SAM2 mask propagation through stacks, on WebGPU or the CPU.

    Parameters
    ----------
    predictor : Sam2Predictor
        Encoder and decoder (the decoder must be this plugin's export, which outputs object
        pointers).
    memory_attention, memory_encoder : onnxruntime.InferenceSession
        The exported video components of the same model.
    fill_hole_area : int
        Fill mask holes up to this many low-resolution pixels (8, as the official predictor;
        0 turns it off).
    correction_as_conditioning : bool
        A prompt added on an already tracked frame makes it a conditioning frame, so the
        correction holds when propagating again (SAM2's ``add_all_frames_to_correct_as_cond``).
        ``False`` follows the library default, where a later propagation re-tracks that frame.
    """

    def __init__(
        self,
        predictor: Sam2Predictor,
        memory_attention: Any,
        memory_encoder: Any,
        *,
        fill_hole_area: int = FILL_HOLE_AREA,
        correction_as_conditioning: bool = True,
    ) -> None:
        if "obj_ptrs" not in predictor._decoder_outputs:
            raise ValueError(
                "This decoder has no 'obj_ptrs' output, which propagation needs: export the "
                "model with this plugin (`napari-sam2-webgpu export`), which writes the encoder, "
                "decoder, memory attention and memory encoder together."
            )
        inputs = {i.name for i in memory_attention.get_inputs()}
        if inputs != {"image_embed", "memory", "memory_tpos", "obj_ptrs", "obj_ptr_offsets"}:
            raise ValueError(f"Not a memory-attention model (inputs {sorted(inputs)}).")
        inputs = {i.name for i in memory_encoder.get_inputs()}
        if inputs != {"image_embed", "mask_logits", "object_score_logits", "binarize"}:
            raise ValueError(f"Not a memory-encoder model (inputs {sorted(inputs)}).")
        meta = dict(memory_attention.get_modelmeta().custom_metadata_map)
        if "video_config" not in meta:
            raise ValueError("The memory-attention model has no 'video_config' metadata.")
        self.predictor = predictor
        self.config = VideoConfig.from_metadata(meta)
        self._attention = memory_attention
        self._memory_encoder = memory_encoder
        self.fill_hole_area = int(fill_hole_area)
        self.add_corrections_as_cond = bool(correction_as_conditioning)
        self.last_frame_seconds: float | None = None
        #: Wall time spent per step since :meth:`reset_timings`: ``encode`` (frame embeddings,
        #: including cache look-ups), ``memory_attention``, ``decoder``, ``memory_encoder``.
        self.stage_seconds: dict[str, float] = {}

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_files(
        cls,
        encoder: str | os.PathLike,
        decoder: str | os.PathLike,
        memory_attention: str | os.PathLike,
        memory_encoder: str | os.PathLike,
        backend: str | BackendInfo = "auto",
        **options: Any,
    ) -> Sam2Propagator:
        """Load the four files of one exported model.

        Parameters
        ----------
        encoder, decoder, memory_attention, memory_encoder : path
            The files written by ``napari-sam2-webgpu export``.
        backend : {"auto", "webgpu", "cpu"}
            As for :meth:`Sam2Predictor.from_files`.
        **options
            ``fill_hole_area`` and ``correction_as_conditioning`` for the propagator; the rest
            goes to :meth:`Sam2Predictor.from_files`.

        Returns
        -------
        Sam2Propagator
        """
        own = {
            k: options.pop(k)
            for k in ("fill_hole_area", "correction_as_conditioning")
            if k in options
        }
        predictor = Sam2Predictor.from_files(encoder, decoder, backend, **options)
        return cls.from_predictor(predictor, memory_attention, memory_encoder, **own)

    @classmethod
    def from_predictor(
        cls,
        predictor: Sam2Predictor,
        memory_attention: str | os.PathLike,
        memory_encoder: str | os.PathLike,
        **options: Any,
    ) -> Sam2Propagator:
        """Add the video components to a loaded predictor (sharing its sessions)."""
        from .runtime import create_session

        for label, path in (
            ("memory attention", memory_attention),
            ("memory encoder", memory_encoder),
        ):
            if not Path(path).is_file():
                raise FileNotFoundError(f"The {label} file does not exist: {path}")
        info = predictor.backend_info
        attention, _ = create_session(memory_attention, info)
        encoder, _ = create_session(memory_encoder, info)
        return cls(predictor, attention, encoder, **options)

    @classmethod
    def from_pretrained(
        cls,
        size: str = "tiny",
        backend: str = "auto",
        *,
        cache: str | os.PathLike | None = None,
        **options: Any,
    ) -> Sam2Propagator:
        """Load the exported video model of ``size`` from the model cache.

        The files come from ``napari-sam2-webgpu export --size SIZE --checkpoint ... --install``
        (SAM2's memory components are not published as ONNX anywhere); they are found by
        :func:`napari_sam2_webgpu.models.resolve_model` with ``video=True``, so the image part is
        the same model :meth:`Sam2Predictor.from_pretrained` loads for that size.

        Raises
        ------
        napari_sam2_webgpu.models.ModelNotAvailableError
            ``size`` was not exported; the message gives the command that does it.
        """
        from .models import resolve_model

        paths = resolve_model(size, video=True, cache=Path(cache) if cache else None)
        return cls.from_files(*paths.files, backend, name=f"sam2.1 {size}", **options)

    def reset_timings(self) -> None:
        """Zero :attr:`stage_seconds`."""
        self.stage_seconds = {}

    @contextlib.contextmanager
    def _timing(self, stage: str) -> Iterator[None]:
        """Add the wall time of the block to :attr:`stage_seconds`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + elapsed

    def _timed(
        self, stage: str, session: Any, feeds: dict[str, Any], device_outputs: Any = None
    ) -> list[Any]:
        with self._timing(stage):
            return run_bound(session, feeds, device_outputs)

    @property
    def backend(self) -> str:
        """``"webgpu"`` or ``"cpu"``."""
        return self.predictor.backend

    def __repr__(self) -> str:
        return f"Sam2Propagator({self.predictor!r})"

    # -- state ----------------------------------------------------------------------------------
    def init_state(
        self,
        frames: Any,
        *,
        rgb: bool | None = None,
        contrast_limits: Sequence[float] | None = None,
        embedding_provider: Callable[[int], ImageEmbedding] | None = None,
        max_cache_bytes: int | None = None,
    ) -> StackState:
        """Start segmenting a stack.

        Parameters
        ----------
        frames : array-like
            ``(T, H, W)`` or ``(T, H, W, C)`` (Z or T first); numpy, dask or zarr. Frames are read
            one at a time, when first needed.
        rgb : bool, optional
            Whether the last axis is colour (napari's ``layer.rgb``); guessed when ``None``.
        contrast_limits : (float, float), optional
            Intensities mapped to black and white, the same for every frame. Default: per frame,
            as :func:`napari_sam2_webgpu.preprocess.prepare_image`.
        embedding_provider : callable, optional
            ``provider(frame_index) -> ImageEmbedding``, e.g. to share the napari widget's cache.
        max_cache_bytes : int, optional
            Memory bound of this state's embedding cache (default: as
            :class:`~.embedding_cache.EmbeddingCache`). Frames that do not fit are encoded again
            when next needed.

        Returns
        -------
        StackState
        """
        shape = getattr(frames, "shape", None)
        if shape is None:
            frames = np.asarray(frames)
            shape = frames.shape
        if (
            len(shape) not in (3, 4)
            or (len(shape) == 4 and rgb is False)
            or (len(shape) == 3 and rgb)
        ):
            raise ImageError(
                f"Propagation needs a stack (frames, height, width[, channels]); got shape "
                f"{tuple(shape)}. Use Sam2Predictor for a single image."
            )
        if len(shape) == 4 and shape[-1] not in (1, 3, 4):
            raise ImageError(
                f"The last axis of a 4D stack must be colour channels (1, 3 or 4); got shape "
                f"{tuple(shape)}. Pass one 3D stack (frames, height, width) at a time."
            )
        if shape[0] < 1:
            raise ImageError("The stack has no frames.")
        predictor = self.predictor

        def embed(image: np.ndarray) -> ImageEmbedding:
            return predictor.compute_embedding(
                image, contrast_limits=contrast_limits, rgb=len(shape) == 4 or None
            )

        cache = EmbeddingCache(max_bytes=max_cache_bytes)
        return StackState(
            frames,
            contrast_limits=contrast_limits,
            embed=embed,
            embedding_provider=embedding_provider,
            cache=cache,
            model_name=predictor.name,
        )

    def reset_state(self, state: StackState) -> None:
        """Forget every prompt and result (embeddings stay cached)."""
        state.objects.clear()

    def remove_object(self, state: StackState, obj_id: int) -> None:
        """Forget one object's prompts and results."""
        state.objects.pop(int(obj_id), None)

    def clear_prompts(self, state: StackState, frame: int, obj_id: int) -> None:
        """Remove an object's prompts and result on one frame.

        Like the official predictor, this drops what was tracked for the object: propagate again
        afterwards.
        """
        track = state.objects.get(int(obj_id))
        if track is None:
            return
        frame = int(frame)
        track.points.pop(frame, None)
        track.pending.pop(frame, None)
        track.cond.pop(frame, None)
        track.non_cond.clear()
        track.tracked.clear()
        if not track.points:
            state.objects.pop(int(obj_id))

    # -- prompting ------------------------------------------------------------------------------
    def add_prompts(
        self,
        state: StackState,
        frame: int,
        obj_id: int,
        points: Any = None,
        labels: Any = None,
        box: Any = None,
    ) -> np.ndarray:
        """Set an object's prompts on one frame (replacing earlier ones there) and segment it.

        On a frame not tracked yet this starts the object there, like an image prompt; on a
        tracked frame it corrects the tracked mask, using the memory and the previous mask.

        Parameters
        ----------
        state : StackState
        frame : int
            Frame index.
        obj_id : int
            Any integer naming the object (the napari widget uses the label value).
        points : array-like, optional
            ``(N, 2)`` as (x, y) pixels of the frame.
        labels : array-like, optional
            ``(N,)``: 1 foreground, 0 background.
        box : array-like, optional
            ``(4,)`` as x0, y0, x1, y1.

        Returns
        -------
        numpy.ndarray
            ``(H, W)`` boolean mask of the object on that frame.

        Raises
        ------
        PromptError
            Malformed prompts, or a frame outside the stack.
        """
        frame = self._check_frame(state, frame)
        obj_id = int(obj_id)
        coords, point_labels = self._prompt_arrays(state, points, labels, box)
        track = state.objects.setdefault(obj_id, _ObjectTrack())
        is_init = frame not in track.tracked
        reverse = False if is_init else track.tracked[frame]
        is_cond = is_init or self.add_corrections_as_cond
        prev = None
        if frame in track.pending and track.pending[frame][1] == is_cond:
            prev = track.pending[frame][0]
        else:
            prev = track.cond.get(frame) or track.non_cond.get(frame)
        mask_input = None
        if prev is not None:
            mask_input = np.clip(prev.low_res, -postprocess.LOGIT_CLAMP, postprocess.LOGIT_CLAMP)
        result = self._track_frame(
            state,
            track,
            frame,
            is_init=is_init,
            points=(coords, point_labels),
            mask_input=mask_input,
            reverse=reverse,
            encode_memory=False,
        )
        track.points[frame] = (coords, point_labels)
        track.pending[frame] = (result, is_cond)
        return postprocess.logits_to_masks(result.low_res[0], state.frame_hw)[0]

    def _check_frame(self, state: StackState, frame: Any) -> int:
        index = int(frame)
        if not 0 <= index < state.num_frames:
            raise PromptError(f"Frame {frame} is outside the stack (0 to {state.num_frames - 1}).")
        return index

    @staticmethod
    def _prompt_arrays(state: StackState, points: Any, labels: Any, box: Any) -> tuple:
        coords, point_labels, batched = check_prompts(points, labels, box, state.frame_hw)
        coords = postprocess.to_model_coords(coords, state.frame_hw)
        if batched:
            raise PromptError("add_prompts() takes one object's prompts: points (N, 2), box (4,).")
        return coords, point_labels.astype(np.float32)

    # -- propagation ----------------------------------------------------------------------------
    def propagate(
        self,
        state: StackState,
        direction: str = "forward",
        *,
        start_frame: int | None = None,
        max_frames: int | None = None,
    ) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
        """Track every prompted object through the stack, one frame at a time.

        Parameters
        ----------
        state : StackState
        direction : {"forward", "backward", "both"}
            From ``start_frame`` towards the end, towards the start, or forward then backward.
        start_frame : int, optional
            Default: the first frame with prompts (of any object), as the official predictor.
        max_frames : int, optional
            Track at most this many frames past the start in each direction.

        Yields
        ------
        (int, dict)
            The frame index and ``{obj_id: (H, W) boolean mask}``. Stop iterating to cancel:
            frames already yielded keep their results.

        Raises
        ------
        RuntimeError
            No object has prompts.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        self._commit_prompts(state)
        passes = [False, True] if direction == "both" else [direction == "backward"]
        for reverse in passes:
            for index in self.frame_order(state, reverse, start_frame, max_frames):
                start = time.perf_counter()
                masks = {}
                for obj_id, track in state.objects.items():
                    result = track.cond.get(index)
                    if result is None:
                        result = self._track_frame(
                            state,
                            track,
                            index,
                            is_init=False,
                            points=None,
                            mask_input=None,
                            reverse=reverse,
                            encode_memory=True,
                        )
                        track.non_cond[index] = result
                    track.tracked[index] = reverse
                    masks[obj_id] = postprocess.logits_to_masks(result.low_res[0], state.frame_hw)[
                        0
                    ]
                self.last_frame_seconds = time.perf_counter() - start
                yield index, masks

    def frame_order(
        self,
        state: StackState,
        reverse: bool,
        start_frame: int | None = None,
        max_frames: int | None = None,
    ) -> list[int]:
        """The frames one propagation pass visits, in order."""
        cond = [t for track in state.objects.values() for t in (*track.cond, *track.pending)]
        if not cond:
            raise RuntimeError("No prompts yet: add points or a box on a frame first.")
        start = min(cond) if start_frame is None else self._check_frame(state, start_frame)
        limit = state.num_frames if max_frames is None else int(max_frames)
        if reverse:
            end = max(start - limit, 0)
            return list(range(start, end - 1, -1)) if start > 0 else []
        end = min(start + limit, state.num_frames - 1)
        return list(range(start, end + 1))

    def propagate_all(
        self,
        state: StackState,
        direction: str = "both",
        *,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        **options: Any,
    ) -> dict[int, dict[int, np.ndarray]]:
        """Run :meth:`propagate` to the end and collect ``{frame: {obj_id: mask}}``.

        ``progress(done, total)`` is called after each frame; when ``cancel()`` returns true the
        run stops with :class:`PropagationCancelled` (frames done so far stay in ``state``).
        """
        passes = [False, True] if direction == "both" else [direction == "backward"]
        total = sum(
            len(self.frame_order(state, r, options.get("start_frame"), options.get("max_frames")))
            for r in passes
        )
        results: dict[int, dict[int, np.ndarray]] = {}
        for done, (frame, masks) in enumerate(self.propagate(state, direction, **options), 1):
            results[frame] = masks
            if progress is not None:
                progress(done, total)
            if cancel is not None and cancel() and done < total:
                raise PropagationCancelled(f"Propagation cancelled after {done} of {total} frames.")
        return results

    # -- the per-frame model steps --------------------------------------------------------------
    def _commit_prompts(self, state: StackState) -> None:
        """Encode prompted frames into memory (the official ``propagate_in_video_preflight``)."""
        if not state.objects:
            raise RuntimeError("No prompts yet: add points or a box on a frame first.")
        for obj_id, track in state.objects.items():
            for want_cond in (False, True):
                for frame, (result, is_cond) in list(track.pending.items()):
                    if is_cond != want_cond:
                        continue
                    if result.maskmem is None:
                        result.maskmem = self._encode_memory(
                            state.embedding(frame), result.low_res, result.object_score, True
                        )
                    (track.cond if is_cond else track.non_cond)[frame] = result
                    del track.pending[frame]
            if not track.cond:
                raise RuntimeError(f"Object {obj_id} has no prompted frame to start from.")
            for frame in track.cond:
                track.non_cond.pop(frame, None)

    def _use_multimask(self, is_init: bool, num_points: int) -> bool:
        c = self.config
        return (
            c.multimask_output_in_sam
            and (is_init or c.multimask_output_for_tracking)
            and c.multimask_min_pt_num <= num_points <= c.multimask_max_pt_num
        )

    def _track_frame(
        self,
        state: StackState,
        track: _ObjectTrack,
        frame: int,
        *,
        is_init: bool,
        points: tuple[np.ndarray, np.ndarray] | None,
        mask_input: np.ndarray | None,
        reverse: bool,
        encode_memory: bool,
    ) -> _FrameOutput:
        """SAM2's ``track_step`` for one object on one frame."""
        with self._timing("encode"):
            emb = state.embedding(frame)
        if is_init:
            features = emb.image_embed  # no_mem_embed is already added by the encoder
        else:
            features = self._condition(state, track, frame, reverse, emb)
        if points is None:  # no prompt: one padding point, as the official predictor
            coords = np.zeros((1, 1, 2), dtype=np.float32)
            labels = -np.ones((1, 1), dtype=np.float32)
        else:
            coords, labels = points
        if mask_input is None:
            mask = np.zeros((1, 1, LOW_RES, LOW_RES), dtype=np.float32)
            has_mask = np.zeros(1, dtype=np.float32)
        else:
            mask = np.ascontiguousarray(mask_input, dtype=np.float32).reshape(
                1, 1, LOW_RES, LOW_RES
            )
            has_mask = np.ones(1, dtype=np.float32)
        feeds = {
            "image_embed": features,
            "high_res_feats_0": emb.high_res_feats_0,
            "high_res_feats_1": emb.high_res_feats_1,
            "point_coords": coords.astype(np.float32),
            "point_labels": labels.astype(np.float32),
            "mask_input": mask,
            "has_mask_input": has_mask,
        }
        predictor = self.predictor
        out = dict(
            zip(
                predictor._decoder_outputs,
                self._timed("decoder", predictor._decoder, feeds),
                strict=True,
            )
        )
        if self._use_multimask(is_init, labels.shape[1] if points is not None else 0):
            best = int(np.argmax(out["iou_predictions"][0]))
            low_res = out["masks"][:, best : best + 1]
            token = 1 + best if self.config.use_multimask_token_for_obj_ptr else 0
        else:
            low_res, _ = predictor._select(out, multimask=False)
            token = 0
        score = float(out["object_score_logits"][0, 0])
        if self.config.pred_obj_scores and not score > 0:
            low_res = np.full_like(low_res, NO_OBJECT_SCORE)
        low_res = np.ascontiguousarray(low_res, dtype=np.float32)
        result = _FrameOutput(
            low_res=fill_holes(low_res, self.fill_hole_area),
            obj_ptr=np.array(out["obj_ptrs"][0, token], dtype=np.float32),
            object_score=score,
            from_points=points is not None,
        )
        if encode_memory:
            # The memory sees the mask before hole filling, as in the official track_step.
            result.maskmem = self._encode_memory(emb, low_res, score, points is not None)
        return result

    def _encode_memory(
        self, emb: ImageEmbedding, low_res: np.ndarray, score: float, from_points: bool
    ) -> np.ndarray:
        binarize = from_points and self.config.binarize_mask_from_pts_for_mem_enc
        feeds = {
            "image_embed": emb.image_embed,
            "mask_logits": np.ascontiguousarray(low_res, dtype=np.float32),
            "object_score_logits": np.array([[score]], dtype=np.float32),
            "binarize": np.array([1.0 if binarize else 0.0], dtype=np.float32),
        }
        (features,) = self._timed("memory_encoder", self._memory_encoder, feeds)
        return to_bfloat16(features[0])

    def _condition(
        self, state: StackState, track: _ObjectTrack, frame: int, reverse: bool, emb: ImageEmbedding
    ) -> np.ndarray:
        """The frame's features attended to the object's memory bank."""
        c = self.config
        selected, unselected = _closest_cond_frames(frame, track.cond, c.max_cond_frames_in_attn)
        slots: list[tuple[int, _FrameOutput | None]] = [(0, out) for out in selected.values()]
        stride = c.memory_temporal_stride_for_eval
        for t_pos in range(1, c.num_maskmem):
            t_rel = c.num_maskmem - t_pos  # frames before this one (in tracking order)
            if t_rel == 1:
                prev = frame + 1 if reverse else frame - 1
            elif not reverse:
                prev = ((frame - 2) // stride) * stride - (t_rel - 2) * stride
            else:
                prev = -(-(frame + 2) // stride) * stride + (t_rel - 2) * stride
            out = track.non_cond.get(prev)
            slots.append((t_pos, out if out is not None else unselected.get(prev)))
        memories = [
            (from_bfloat16(out.maskmem), c.num_maskmem - t_pos - 1)
            for t_pos, out in slots
            if out is not None and out.maskmem is not None
        ]
        if not memories:
            raise RuntimeError(f"Frame {frame}: no memory to track from (propagate from a prompt).")

        max_ptrs = min(state.num_frames, c.max_obj_ptrs_in_encoder)
        if c.only_obj_ptrs_in_the_past_for_eval:
            ptr_cond = {
                t: o for t, o in selected.items() if (t >= frame if reverse else t <= frame)
            }
        else:
            ptr_cond = selected
        sign = -1 if reverse else 1
        pointers = [
            ((frame - t) * sign if c.use_signed_tpos_enc_to_obj_ptrs else abs(frame - t), o.obj_ptr)
            for t, o in ptr_cond.items()
        ]
        for t_diff in range(1, max_ptrs):
            t = frame + t_diff if reverse else frame - t_diff
            if t < 0 or t >= state.num_frames:
                break
            out = track.non_cond.get(t, unselected.get(t))
            if out is not None:
                pointers.append((t_diff, out.obj_ptr))
        if not c.use_obj_ptrs_in_encoder:
            pointers = []
        t_diff_max = max(max_ptrs - 1, 1)
        feeds = {
            "image_embed": emb.image_embed,
            "memory": np.stack([m for m, _ in memories]).astype(np.float32, copy=False),
            "memory_tpos": np.array([t for _, t in memories], dtype=np.int64),
            "obj_ptrs": np.array([p for _, p in pointers], dtype=np.float32).reshape(-1, 256),
            "obj_ptr_offsets": np.array([d / t_diff_max for d, _ in pointers], dtype=np.float32),
        }
        bound = self.predictor._bound_encoder
        if bound is not None and is_device_value(emb.image_embed):
            # On the GPU the result stays there for the decoder (4 MiB less each way per frame).
            name = self._attention.get_outputs()[0].name
            output = {name: bound.device.empty(emb.image_embed.shape())}
            (conditioned,) = self._timed("memory_attention", self._attention, feeds, output)
        else:
            (conditioned,) = self._timed("memory_attention", self._attention, feeds)
        return conditioned


def _closest_cond_frames(
    frame: int, cond: dict[int, _FrameOutput], max_num: int
) -> tuple[dict[int, _FrameOutput], dict[int, _FrameOutput]]:
    """SAM2's ``select_closest_cond_frames``: at most ``max_num`` conditioning frames."""
    if max_num == -1 or len(cond) <= max_num:
        return dict(cond), {}
    selected: dict[int, _FrameOutput] = {}
    before = max((t for t in cond if t < frame), default=None)
    if before is not None:
        selected[before] = cond[before]
    after = min((t for t in cond if t >= frame), default=None)
    if after is not None:
        selected[after] = cond[after]
    rest = sorted((t for t in cond if t not in selected), key=lambda t: abs(t - frame))
    for t in rest[: max_num - len(selected)]:
        selected[t] = cond[t]
    return selected, {t: v for t, v in cond.items() if t not in selected}
