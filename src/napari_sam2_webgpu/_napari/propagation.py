"""Propagating objects through a stack: prompts layers -> propagator -> Labels layer.

The napari side of :mod:`.video`, without Qt (like :mod:`.annotator`, which it works with).
:class:`PropagationController`

- decides the stack (:mod:`.stack`): the image's frames along one not-displayed axis (the
  first one by default), with any other not-displayed axes fixed at the displayed step,
- keeps one :class:`~.video.StackState` for that stack (rebuilt when the layer, axis, fixed steps,
  contrast limits or model change) across runs, so that a point added on a slice where the mask
  drifted is a correction that uses the tracking memory,
- sends every object's prompts on every slice of the stack (read from the annotator's Points
  and Shapes layers, where each prompt carries its object's id) to the propagator, only for
  slices whose prompts changed since the last run; the objects are tracked together,
- runs :meth:`~.video.Sam2Propagator.propagate` as a generator of :class:`PropagationStep`
  (the widget iterates it in a worker thread), and
- writes each frame's masks into the target Labels layer under the objects' ids on the calling
  (GUI) thread, with the commit rule: only background pixels, or pixels already carrying the
  object's id, unless the annotator's ``overwrite`` is on; objects of one run never paint over
  each other (a pixel two masks claim goes to the smaller id). An object's earlier pixels on a
  re-tracked frame are replaced, and a whole run is one step of the Labels layer's undo history,
- records each object's :class:`~napari_sam2_webgpu.video.FrameScore` per frame and lists the
  frames to check (:meth:`PropagationController.review`); a correction on a listed frame
  propagates again from it in both directions.

Frame embeddings come from, and go to, the annotator's embedding cache under the key a click
on that slice uses: a slice is never encoded twice.

Scripts without Qt call :meth:`PropagationController.propagate`, which runs everything on the
calling thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..image.tiling import TiledEmbedding
from ..video import DIRECTIONS
from ..video.review import IOU_DROP, MIN_IOU, FrameScore, ReviewFlag, review_flags
from .embeddings import model_key
from .errors import AnnotatorError
from .labels import check_label_value, undo_history, write_objects
from .propagation_run import PropagationRun, PropagationStep
from .stack import (
    Prompts,
    StackSpec,
    _LayerFrames,
    _signature,
    _window,
    stack_objects,
    stack_prompts,
    stack_spec,
    tracking_window,
)
from .video_models import video_components, video_components_with_summary

if TYPE_CHECKING:  # pragma: no cover
    from ..image import ImageEmbedding, Sam2Predictor
    from ..video import Sam2Propagator, StackState
    from .annotator import Annotator

__all__ = [
    "DIRECTIONS",
    "PropagationController",
    "PropagationRun",
    "PropagationStep",
    "StackSpec",
    "stack_objects",
    "stack_prompts",
    "stack_spec",
    "tracking_window",
    "video_components",
]


class PropagationController:
    """Propagates the annotator's prompted objects through the displayed stack, together.

    Parameters
    ----------
    annotator : Annotator
        Its image, prompt layers, Labels layer, object id, overwrite option, model and embedding
        cache are used.

    Attributes
    ----------
    stop_after_lost : int or None
        Stop tracking an object for the rest of a pass once it has been absent this many
        slices in a row (None: track to the end of the stack).
    min_iou, iou_drop : float
        :func:`~napari_sam2_webgpu.video.review_flags` thresholds of :meth:`review`.
    run : PropagationRun or None
        The run in progress.
    last_run : PropagationRun or None
        The last finished run.
    unavailable_reason : str or None
        Why the loaded model cannot propagate (None: it can), with what to do about it.
    unavailable_summary : str or None
        The same in one short line (the widget's status).
    """

    def __init__(self, annotator: Annotator) -> None:
        self.annotator = annotator
        self.run: PropagationRun | None = None
        self.last_run: PropagationRun | None = None
        self.unavailable_reason: str | None = "Load a model first (press Encode)."
        self.unavailable_summary: str | None = self.unavailable_reason
        self.stop_after_lost: int | None = None
        self.min_iou = MIN_IOU
        self.iou_drop = IOU_DROP
        # Object -> frame -> its scores in the current tracking state (for the review).
        self.scores: dict[int, dict[int, FrameScore]] = {}
        self._video_files: tuple[Path, Path] | None = None
        self._predictor: Sam2Predictor | None = None
        self._propagator: Sam2Propagator | None = None
        self._state: StackState | None = None
        self._state_key: tuple | None = None
        # Object id -> {frame: prompt signature} that the tracking state holds.
        self._synced: dict[int, dict[int, tuple]] = {}
        self._encoded = 0
        self._state_number = 0  # counts the tracking states made (a new one: fresh memory)
        # Held while the state changes or is read: runs and previews use different threads.
        self._state_lock = threading.Lock()
        annotator.memory_preview = self.memory_preview

    # -- the model ------------------------------------------------------------------------------
    def set_model(self, predictor: Sam2Predictor | None, size: str | None = None) -> None:
        """A model was loaded: find its video components (the propagator is built at first use)."""
        if self.run is not None:
            self.run.cancel()
        self._predictor = predictor
        self._propagator = None
        self._drop_state()
        found = video_components_with_summary(predictor, size)
        self._video_files, self.unavailable_reason, self.unavailable_summary = found

    @property
    def available(self) -> bool:
        """Whether the loaded model has video components."""
        return self._video_files is not None

    def _ensure_propagator(self) -> Sam2Propagator:
        predictor, files, propagator = self._predictor, self._video_files, self._propagator
        if propagator is None or propagator.predictor is not predictor:
            from ..video import Sam2Propagator

            if predictor is None or files is None:
                raise AnnotatorError(self.unavailable_reason or "No model with video components.")
            propagator = Sam2Propagator.from_predictor(predictor, *files)
            self._propagator = propagator
        return propagator

    def _ensure_state(self, spec: StackSpec, propagator: Sam2Propagator) -> StackState:
        if self._state is None or self._state_key != spec.key:
            self._drop_state()
            self._state_number += 1
            self._state = propagator.init_state(
                _LayerFrames(spec),
                rgb=spec.rgb,
                contrast_limits=spec.contrast_limits,
                embedding_provider=self._embedding_provider(spec, propagator.predictor),
            )
            self._state_key = spec.key
        return self._state

    def _embedding_provider(self, spec: StackSpec, predictor: Sam2Predictor) -> Any:
        cache = self.annotator.cache

        def provide(index: int) -> ImageEmbedding:  # worker thread
            request = spec.encode_request(index)
            key = request.key(model_key(predictor))
            embedding = cache.get(key)
            if embedding is None:
                embedding = request.compute(predictor)
                cache.put(key, embedding)
                self._encoded += 1
            if isinstance(embedding, TiledEmbedding):
                window = spec.window
                part = embedding.overview() if window is None else embedding.tile(window.index)
                cache.refresh(key)  # it holds one tile (or its overview) more now
                return part
            return embedding

        return provide

    def _drop_state(self) -> None:
        self._state = self._state_key = None
        self._synced.clear()
        self.scores.clear()

    # -- checks ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self.run is not None

    def check(self, axis: int | None = None) -> str | None:
        """Why :meth:`start` cannot run now, or None when it can (for the button's state)."""
        if self.run is not None:
            return "A propagation is running."
        if self.unavailable_reason is not None:
            return self.unavailable_reason
        try:
            spec = stack_spec(self.annotator, axis)
        except AnnotatorError as exc:
            return str(exc)
        if spec.num_frames < 2:
            return f"'{spec.layer.name}' has a single slice along axis {spec.axis}."
        if not stack_objects(self.annotator, spec):
            return (
                f"Object {self.annotator.object_id} has no prompts yet: click on it (or draw a "
                "box) on one or more slices, then propagate."
            )
        return None

    def is_propagated(self) -> bool:
        """Whether the current object was propagated with exactly the prompts shown now."""
        if self.run is not None or self._state is None:
            return False
        synced = self._synced.get(self.annotator.object_id)
        if not synced:
            return False
        try:
            spec = stack_spec(self.annotator)
        except AnnotatorError:
            return False
        spec = replace(spec, window=_window(spec, stack_objects(self.annotator, spec)))
        if spec.key != self._state_key:
            return False
        run = self.last_run
        if run is None or self.annotator.object_id not in run.object_ids:
            return False
        history = undo_history(run.labels)
        if history is not None and not any(item is run._history_item for item in history):
            return False  # its labels were undone (or it wrote nothing)
        now = {f: _signature(p) for f, p in stack_prompts(self.annotator, spec).items()}
        return now == synced

    def is_last_undo_step(self) -> bool:
        """Whether the Labels layer's next undo takes back the current object's propagation."""
        run = self.last_run
        if run is None or self.annotator.object_id not in run.object_ids or self.run is not None:
            return False
        history = undo_history(run.labels)
        return bool(history) and history[-1] is run._history_item

    def forget_object(self, obj_id: int) -> None:
        """Drop an object's tracking (it is finished; a later object may reuse its id)."""
        self._synced.pop(int(obj_id), None)
        self.scores.pop(int(obj_id), None)
        if self._state is not None and self._propagator is not None and self.run is None:
            if int(obj_id) in self._state.objects:
                labels = None if self.last_run is None else self.last_run.labels
                self.annotator.recorder.forget(labels, int(obj_id), self._state_number)
            self._propagator.remove_object(self._state, int(obj_id))

    def finish_object(self) -> int:
        """The current object is done: forget its tracking, clear its prompts, next free id
        (the other objects keep their prompts and tracking).

        Returns
        -------
        int
            The new object id.
        """
        self.forget_object(self.annotator.object_id)
        self.annotator.clear()
        return self.annotator.next_object()

    # -- runs -----------------------------------------------------------------------------------
    def start(self, direction: str = "both", axis: int | None = None) -> PropagationRun:
        """Plan a run of every prompted object (GUI thread; nothing slow happens here).

        Parameters
        ----------
        direction : {"forward", "backward", "both"}
            From the first prompted slice towards the end, the start, or both. A correction
            on a slice that :meth:`review` lists propagates from that slice both ways.
        axis : int, optional
            Data axis to propagate along (default: the first one not displayed).

        Returns
        -------
        PropagationRun
            Iterate its :meth:`~PropagationRun.steps`, :meth:`apply` each, then :meth:`finish`.

        Raises
        ------
        AnnotatorError
            Why it cannot start (no video components, no stack, no prompts, an id the Labels
            layer cannot hold, ...).
        ValueError
            Unknown direction.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        reason = self.check(axis)
        if reason is not None:
            raise AnnotatorError(reason)
        annotator = self.annotator
        spec = stack_spec(annotator, axis)
        labels = annotator.ensure_labels_layer()
        wanted = stack_objects(annotator, spec)
        for obj_id in wanted:
            check_label_value(labels, obj_id)
        # Tiled frames: the objects are tracked in the tile that holds their prompts (a new
        # window is a new tracking state).
        spec = replace(spec, window=_window(spec, wanted))
        synced = self._synced if spec.key == self._state_key else {}
        updates = {
            obj_id: {
                f: p for f, p in prompts.items() if synced.get(obj_id, {}).get(f) != _signature(p)
            }
            for obj_id, prompts in wanted.items()
        }
        clears = {
            obj_id: [f for f in synced.get(obj_id, {}) if f not in prompts]
            for obj_id, prompts in wanted.items()
        }
        start_frame = self._flagged_correction(updates, synced)
        run = PropagationRun(
            object_id=annotator.object_id,
            object_ids=tuple(sorted(wanted)),
            direction="both" if start_frame is not None else direction,
            spec=spec,
            labels=labels,
            overwrite=bool(annotator.overwrite),
            prompt_clears={o: frames for o, frames in clears.items() if frames},
            prompt_updates={o: frames for o, frames in updates.items() if frames},
            controller=self,
            start_frame=start_frame,
            stop_after_lost=self.stop_after_lost,
        )
        run._encoded_before = self._encoded
        annotator.recorder.begin(labels)
        self.run = run
        return run

    def _flagged_correction(
        self, updates: dict[int, dict[int, Prompts]], synced: dict[int, dict[int, tuple]]
    ) -> int | None:
        """The first slice where a tracked object got new prompts on a slice the review lists
        (the run then starts there, both ways); None when there is none."""
        if not synced:
            return None
        flagged = {
            (flag.object_id, frame)
            for flag in self.review()
            for frame in range(flag.frame, flag.last_frame + 1)
        }
        frames = [
            frame
            for obj_id, frames in updates.items()
            if synced.get(obj_id)
            for frame in frames
            if (obj_id, frame) in flagged
        ]
        return min(frames) if frames else None

    def go_to(self, flag: ReviewFlag) -> None:
        """Show a review flag: step the viewer to its slice (of the last run's stack) and make
        its object the current one (a click there corrects it).

        Raises
        ------
        AnnotatorError
            No propagation ran, or its image is gone.
        """
        run = self.last_run
        annotator = self.annotator
        if run is None or run.spec.layer not in annotator.viewer.layers:
            raise AnnotatorError("Nothing to review: propagate first.")
        layer, axis = run.spec.layer, run.spec.axis
        viewer = annotator.viewer
        data = np.asarray(layer.world_to_data(viewer.dims.point), dtype=float)
        data[axis] = int(flag.frame)
        world = layer.data_to_world(data)
        offset = viewer.dims.ndim - layer.ndim  # the layer's axes are the last world axes
        viewer.dims.set_point(offset + axis, world[axis])
        annotator.object_id = int(flag.object_id)

    def tracks(self, ids: Any = None) -> np.ndarray:
        """The tracks of the last run's stack, read from its Labels layer: ``(N, 5)`` rows of
        object id, slice, centroid row and column (of the displayed slice), area (see
        :func:`napari_sam2_webgpu.tracks.label_tracks`).

        Parameters
        ----------
        ids : iterable of int, optional
            Only these objects (default: every label on the stack, propagated or not).

        Raises
        ------
        AnnotatorError
            No propagation ran, its layers are gone, or no object is on the stack.
        """
        from .tracks import stack_tracks

        run = self.last_run
        viewer = self.annotator.viewer
        if run is None or run.labels not in viewer.layers:
            raise AnnotatorError("No tracks yet: propagate first (the tracks are its objects).")
        tracks = stack_tracks(run.labels, run.spec, ids)
        if not len(tracks):
            raise AnnotatorError(f"No object on the stack of '{run.labels.name}' to track.")
        return tracks

    def show_tracks(self, ids: Any = None) -> Any:
        """Add (or update) the Tracks layer "<labels> tracks" of :meth:`tracks`: one track
        per object id, centroids per slice. Returns the layer."""
        from .tracks import show_tracks

        run = self.last_run
        tracks = self.tracks(ids)
        return show_tracks(self.annotator.viewer, run.labels, run.spec, tracks)

    def memory_preview(
        self, sl: Any, points: Any, labels: Any, box: Any
    ) -> Callable[[], np.ndarray] | None:
        """The preview of a slice of the propagated stack, as the tracking memory sees it.

        For the current object on a slice it was tracked on: its mask there when the slice's
        prompts are those it was propagated with, else the memory-conditioned correction (what
        the next propagation keeps on that slice). None elsewhere (the prompts are decoded
        alone), and while a run goes on.

        Returns
        -------
        callable or None
            Computes the ``(H, W)`` mask of the slice (on a worker thread if slow).
        """
        state, propagator = self._state, self._propagator
        if self.run is not None or state is None or propagator is None:
            return None
        obj_id = self.annotator.object_id
        track = state.objects.get(obj_id)
        if track is None:
            return None
        try:
            spec = stack_spec(self.annotator)
        except AnnotatorError:
            return None
        spec = replace(spec, window=_window(spec, stack_objects(self.annotator, spec)))
        frame = dict(sl.indices).get(spec.axis)
        if spec.key != self._state_key or frame is None or spec.frame_slice(frame).key != sl.key:
            return None
        if frame not in track.tracked and frame not in track.cond:
            return None
        prompts = (points, labels, box)
        unchanged = self._synced.get(obj_id, {}).get(frame) == _signature(prompts)
        window_prompts = spec.to_window(prompts)

        def compute() -> np.ndarray:
            with self._state_lock:
                if unchanged:
                    mask = state.masks(frame)[obj_id]
                else:
                    mask = propagator.preview_prompts(state, frame, obj_id, *window_prompts)
            return spec.to_frame(mask)

        return compute

    def review(self) -> list[ReviewFlag]:
        """The slices to check of every tracked object: where it is lost, reappears or its
        predicted IoU is low or drops (:func:`~napari_sam2_webgpu.video.review_flags` with
        :attr:`min_iou` and :attr:`iou_drop`), sorted by object, then slice."""
        return review_flags(self.scores, min_iou=self.min_iou, iou_drop=self.iou_drop)

    def apply(self, run: PropagationRun, step: PropagationStep) -> bool:
        """Write a step's mask into the Labels layer (GUI thread); whether it was written."""
        if run.cancelled or run.finished or step.frame is None:
            return False
        viewer = self.annotator.viewer
        if run.labels not in viewer.layers or run.spec.layer not in viewer.layers:
            run.cancel()  # the layers are gone: nothing more to write
            return False
        if step.masks is None:
            return False
        write_objects(run._undo_group, run.spec.frame_slice(step.frame), step.masks, run.overwrite)
        run.frames_written.append(step.frame)
        return True

    def finish(self, run: PropagationRun) -> PropagationRun:
        """End a run (GUI thread): remember which prompts the tracking state now holds."""
        if run.finished:
            return run
        run.finished = True
        run._undo_group.close()  # the frames written, also of a cancelled or failed run: one step
        run._history_item = run._undo_group.item
        run.seconds = time.perf_counter() - run.started
        run.frames_encoded = self._encoded - run._encoded_before
        if run.state_number:  # it reached the tracking state: replayable
            self.annotator.recorder.propagation(run)
        if self.run is run:
            self.run = None
        if run.error is not None:
            # The state may hold half-applied prompts: start afresh next time.
            self._drop_state()
        elif self._state is not None and self._state_key == run.spec.key:
            for obj_id, applied in run.applied.items():
                synced = self._synced.setdefault(obj_id, {})
                for frame, signature in applied.items():
                    if signature is None:
                        synced.pop(frame, None)
                    else:
                        synced[frame] = signature
            for obj_id in list(self._synced):
                if obj_id not in run.object_ids:
                    del self._synced[obj_id]  # no prompts any more: removed from the state
            for obj_id in list(self.scores):
                if obj_id not in run.object_ids:
                    del self.scores[obj_id]
            for obj_id, scores in run.scores.items():
                self.scores.setdefault(obj_id, {}).update(scores)
        previous, self.last_run = self.last_run, run
        if run._history_item is None and previous is not None and previous.labels is run.labels:
            # Nothing changed: the labels are still those of the previous run (for undo checks).
            run._history_item = previous._history_item
        annotator = self.annotator
        # The run may have encoded the displayed slice: its prompts can be decoded now.
        if annotator.sync_embedding() and annotator.preview_mask is None:
            annotator.request_decode()
        return run

    def cancel(self) -> None:
        """Cancel the run in progress, if any."""
        if self.run is not None:
            self.run.cancel()

    def propagate(self, direction: str = "both", axis: int | None = None) -> PropagationRun:
        """Start, run and finish on the calling thread (for scripts; the widget uses a worker).

        Raises
        ------
        AnnotatorError
            It cannot start.
        Exception
            What failed during the run (the frames written so far stay).
        """
        run = self.start(direction, axis)
        try:
            for step in run.steps():
                self.apply(run, step)
        finally:
            self.finish(run)
        if run.error is not None:
            raise run.error
        return run
