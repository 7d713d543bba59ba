"""``Sam2Propagator``: propagate masks through a z-stack or time series with SAM2's memory.

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

The propagator is the public API; the state lives in :mod:`.state`, the memory selection in
:mod:`.memory` (held in device memory on a GPU by :mod:`.device_bank`), the predictor's steps
(prompting, preflight, a frame of a pass) in :mod:`.steps`, the per-frame model runs in
:mod:`.tracker`, and the loading and checking of the video components in
:mod:`.components`. It uses the image model only through the public
:class:`~napari_sam2_webgpu.image.predictor.Sam2Predictor` (its encoder and decoder).
Coordinates are ``(x, y)`` pixels of a frame, as for the image predictor.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..image.embedding_cache import EmbeddingCache
from ..image.encoder import ImageEmbedding
from ..image.predictor import Sam2Predictor
from .components import check_components, open_components
from .device_bank import DeviceMemoryBank
from .memory import FILL_HOLE_AREA
from .review import FrameScore
from .state import DIRECTIONS, StackState, check_stack, direction_passes
from .steps import commit_prompts, model_prompts, prompt_frame, track_frame
from .tracker import FrameTracker

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import BackendInfo

__all__ = ["DIRECTIONS", "PropagationCancelled", "Sam2Propagator"]


class _AbsenceWatch:
    """Which objects a pass stops tracking: absent ``limit`` frames in a row after being seen."""

    def __init__(self, limit: int | None) -> None:
        self.limit = None if limit is None else int(limit)
        self.stopped: set[int] = set()
        self._seen: set[int] = set()
        self._absent: dict[int, int] = {}

    def update(self, scores: dict[int, FrameScore]) -> None:
        if self.limit is None:
            return
        for obj_id, score in scores.items():
            if score.present:
                self._seen.add(obj_id)
                self._absent[obj_id] = 0
            elif obj_id in self._seen:
                self._absent[obj_id] = self._absent.get(obj_id, 0) + 1
                if self._absent[obj_id] >= self.limit:
                    self.stopped.add(obj_id)


class PropagationCancelled(RuntimeError):
    """Raised by :meth:`Sam2Propagator.propagate_all` when its ``cancel`` callback says so."""


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

    Attributes
    ----------
    last_frame_seconds : float or None
        Wall time of the last frame :meth:`propagate` yielded.
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
        self.config = check_components(predictor.decoder, memory_attention, memory_encoder)
        self.predictor = predictor
        self.tracker = FrameTracker(
            predictor.decoder,
            memory_attention,
            memory_encoder,
            self.config,
            fill_hole_area=fill_hole_area,
            device_bank=DeviceMemoryBank.on_backend(predictor.backend_info),
        )
        self.add_corrections_as_cond = bool(correction_as_conditioning)
        self.last_frame_seconds: float | None = None

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
        attention, encoder = open_components(
            memory_attention, memory_encoder, predictor.backend_info
        )
        return cls(predictor, attention, encoder, **options)

    @classmethod
    def from_pretrained(
        cls,
        size: str = "tiny",
        backend: str = "auto",
        *,
        progress: Callable[[int, int, str], None] | None = None,
        cache: str | os.PathLike | None = None,
        source: str | None = None,
        **options: Any,
    ) -> Sam2Propagator:
        """Load the four-file model of ``size``, downloading and building it on first use.

        The files are found by :func:`napari_sam2_webgpu.models.resolve_model` with
        ``video=True``: an installed model (``napari-sam2-webgpu convert ... --install``), else
        the model built here from Meta's checkpoint, so the image part is the same model
        :meth:`Sam2Predictor.from_pretrained` loads for that size. Arguments as there.

        Raises
        ------
        napari_sam2_webgpu.models.ModelNotAvailableError
            The checkpoint cannot be downloaded (offline, unreachable), or ``source`` is
            ``"samexporter"``, which has no video components; the message says what to do.
        """
        from ..models import resolve_model

        cache = Path(cache) if cache else None
        paths = resolve_model(size, video=True, progress=progress, cache=cache, source=source)
        return cls.from_files(*paths.files, backend, name=f"sam2.1 {size}", **options)

    @property
    def fill_hole_area(self) -> int:
        """Mask holes up to this many low-resolution pixels are filled (0: off)."""
        return self.tracker.fill_hole_area

    @fill_hole_area.setter
    def fill_hole_area(self, value: int) -> None:
        self.tracker.fill_hole_area = int(value)

    @property
    def stage_seconds(self) -> dict[str, float]:
        """Wall time spent per step since :meth:`reset_timings`: ``encode`` (frame embeddings,
        including cache look-ups), ``memory_attention``, ``decoder``, ``memory_encoder``."""
        return self.tracker.stage_seconds

    def reset_timings(self) -> None:
        """Zero :attr:`stage_seconds`."""
        self.tracker.reset_timings()

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
            as :func:`napari_sam2_webgpu.image.preprocess.prepare_image`.
        embedding_provider : callable, optional
            ``provider(frame_index) -> ImageEmbedding``, e.g. to share the napari widget's cache.
        max_cache_bytes : int, optional
            Memory bound of this state's embedding cache (default: as
            :class:`~napari_sam2_webgpu.image.embedding_cache.EmbeddingCache`). Frames that do
            not fit are encoded again when next needed.

        Returns
        -------
        StackState
        """
        shape = getattr(frames, "shape", None)
        if shape is None:
            frames = np.asarray(frames)
            shape = frames.shape
        check_stack(shape, rgb)
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
            # On WebGPU tracked masks are upsampled where the decoder ran (docs/benchmarks.md).
            to_masks=predictor.decoder.to_masks,
        )

    def reset_state(self, state: StackState) -> None:
        """Forget every prompt and result (embeddings stay cached)."""
        state.reset()

    def remove_object(self, state: StackState, obj_id: int) -> None:
        """Forget one object's prompts and results."""
        state.remove_object(obj_id)

    def clear_prompts(self, state: StackState, frame: int, obj_id: int) -> None:
        """Remove an object's prompts and result on one frame.

        Like the official predictor, this drops what was tracked for the object: propagate again
        afterwards.
        """
        state.clear_prompts(frame, obj_id)

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
        return self._prompt(state, frame, obj_id, points, labels, box, keep=True)

    def preview_prompts(
        self,
        state: StackState,
        frame: int,
        obj_id: int,
        points: Any = None,
        labels: Any = None,
        box: Any = None,
    ) -> np.ndarray:
        """The mask :meth:`add_prompts` would give, without changing ``state``.

        On a frame the object was tracked on, that is the memory-conditioned correction (what
        the next propagation keeps on that frame), not the prompts decoded alone.

        Raises
        ------
        KeyError
            ``obj_id`` is not in the state.
        PromptError
            As :meth:`add_prompts`.
        """
        return self._prompt(state, frame, obj_id, points, labels, box, keep=False)

    def _prompt(
        self,
        state: StackState,
        frame: int,
        obj_id: int,
        points: Any,
        labels: Any,
        box: Any,
        *,
        keep: bool,
    ) -> np.ndarray:
        """:meth:`add_prompts` (``keep``) or :meth:`preview_prompts`."""
        frame = state.check_frame(frame)
        prompts = model_prompts(state, points, labels, box)
        result = prompt_frame(
            self.tracker,
            state,
            frame,
            obj_id,
            prompts,
            corrections_as_cond=self.add_corrections_as_cond,
            keep=keep,
        )
        return state.mask_of(result)

    # -- propagation ----------------------------------------------------------------------------
    def propagate(
        self,
        state: StackState,
        direction: str = "forward",
        *,
        start_frame: int | None = None,
        max_frames: int | None = None,
        stop_after_lost: int | None = None,
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
        stop_after_lost : int, optional
            Stop tracking an object for the rest of a pass once it has been absent (presence
            score <= 0) on this many consecutive frames after being present in that pass; a
            pass ends when every object has stopped. Default: track to the end (as the
            official predictor).

        Yields
        ------
        (int, dict)
            The frame index and ``{obj_id: (H, W) boolean mask}`` (objects stopped by
            ``stop_after_lost`` are left out). Stop iterating to cancel: frames already
            yielded keep their results.

        Raises
        ------
        RuntimeError
            No object has prompts.
        ValueError
            ``stop_after_lost`` below 1.
        """
        if stop_after_lost is not None and int(stop_after_lost) < 1:
            raise ValueError(f"stop_after_lost must be at least 1, got {stop_after_lost}")
        passes = direction_passes(direction)
        commit_prompts(self.tracker, state)
        for reverse in passes:
            watch = _AbsenceWatch(stop_after_lost)
            for index in state.frame_order(reverse, start_frame, max_frames):
                start = time.perf_counter()
                masks = track_frame(self.tracker, state, index, reverse, watch.stopped)
                self.last_frame_seconds = time.perf_counter() - start
                watch.update(self.frame_scores(state, index, masks))
                yield index, masks
                if watch.stopped and watch.stopped >= set(state.objects):
                    break

    def frame_scores(
        self, state: StackState, frame: int, masks: dict[int, np.ndarray] | None = None
    ) -> dict[int, FrameScore]:
        """Each object's :class:`~.review.FrameScore` on ``frame`` (its newest result there).

        Parameters
        ----------
        state : StackState
        frame : int
        masks : dict, optional
            The masks :meth:`propagate` yielded for the frame: their areas are recorded, and
            only these objects are scored. Default: every object with a result on the frame,
            areas from its logits.
        """
        out = {}
        for obj_id, track in state.objects.items():
            if masks is not None and obj_id not in masks:
                continue
            result = track.latest(frame)
            if result is None:
                continue
            mask = masks[obj_id] if masks is not None else state.mask_of(result)
            out[obj_id] = FrameScore(result.object_score, result.iou, int(np.count_nonzero(mask)))
        return out

    def frame_order(
        self,
        state: StackState,
        reverse: bool,
        start_frame: int | None = None,
        max_frames: int | None = None,
    ) -> list[int]:
        """The frames one propagation pass visits, in order (see :meth:`StackState.frame_order`)."""
        return state.frame_order(reverse, start_frame, max_frames)

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
        start, limit = options.get("start_frame"), options.get("max_frames")
        total = sum(len(state.frame_order(r, start, limit)) for r in direction_passes(direction))
        results: dict[int, dict[int, np.ndarray]] = {}
        for done, (frame, masks) in enumerate(self.propagate(state, direction, **options), 1):
            results[frame] = masks
            if progress is not None:
                progress(done, total)
            if cancel is not None and cancel() and done < total:
                raise PropagationCancelled(f"Propagation cancelled after {done} of {total} frames.")
        return results
