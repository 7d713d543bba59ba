"""Segment every object of an image layer into a new Labels layer, slice by slice (no Qt).

The napari side of :mod:`napari_sam2_webgpu.image.automatic`. :class:`SegmentAllController`

- decides the slices: the displayed one (``scope="slice"``), or every slice along one axis that
  is not displayed (``scope="stack"``: a z-stack or time series; on 4D data the other axes stay
  at the displayed step, as for propagation),
- makes the output layer: a new Labels layer ``"<image> instances"`` of the image's shape and
  transform, just above the image. It never writes into any other Labels layer; a later run on
  the same image (another slice, other parameters) writes into that same layer as long as it is
  in the viewer, replacing only the slices it segments,
- runs :class:`AutomaticMaskGenerator` per slice as a generator of :class:`SegmentAllStep`
  (:meth:`SegmentAllRun.steps`, which the widget iterates in a worker thread) with the image
  layer's contrast limits and rgb flag, as a click encodes the slice, and the loaded model;
  the slice's embedding comes from (and goes to) the annotator's embedding cache under the key
  a click on that slice uses, so a slice is never encoded twice, and
- writes each slice on the calling (GUI) thread (:meth:`SegmentAllController.apply`) with its
  labels offset above every label already in the layer, so ids are unique across slices. A
  slice that was empty is written directly; replacing a slice that had labels (a re-run) is one
  undo step of the layer. After a run the layer becomes the annotator's target: clicks correct
  its objects, and the object id starts above its largest label.

Scripts without Qt call :meth:`SegmentAllController.segment`, which runs on the calling thread.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels

from ..image import (
    AutomaticMaskGenerator,
    ImageError,
    SegmentationCancelled,
)
from ..image.tiling import TiledEmbedding, TileSpec
from .embeddings import EncodeRequest, model_key
from .errors import NO_IMAGE, AnnotatorError
from .labels import max_label, separate_undo_step
from .slices import SliceInfo, check_plane, contrast_limits, layer_id, layer_shape, transform_kwargs

if TYPE_CHECKING:  # pragma: no cover
    from napari.layers import Image

    from ..image import EmbeddingCache, ImageEmbedding, Sam2Predictor
    from .annotator import Annotator

__all__ = [
    "INSTANCES_NAME",
    "ORDERS",
    "SCOPES",
    "SegmentAllController",
    "SegmentAllParams",
    "SegmentAllPlan",
    "SegmentAllRun",
    "SegmentAllStep",
]

#: ``"slice"``: the displayed slice; ``"stack"``: every slice along a not-displayed axis.
SCOPES = ("slice", "stack")
#: Which mask wins where masks overlap (see :func:`~napari_sam2_webgpu.image.masks_to_labels`).
ORDERS = ("area", "score")
#: The name of the output layer.
INSTANCES_NAME = "{image} instances"

#: ``progress(done, total, text)``, in decoder batches over the whole run (worker thread).
ProgressHook = Callable[[int, int, str], None]


# ------------------------------------------------------------------------------------------------
# parameters

_UNIT = ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_nms_thresh")
_AT_LEAST = {
    "points_per_side": 1,
    "points_per_batch": 1,
    "crop_n_layers": 0,
    "min_mask_region_area": 0,
    "crop_n_points_downscale_factor": 1,
}


@dataclass(frozen=True)
class SegmentAllParams:
    """The automatic mask generator's parameters, with defaults for microscopy.

    The first eight are in the dock's "Advanced" part; the others keep the official defaults.
    Microscopy images hold many small objects with soft edges, hence:

    - ``points_per_side=32``: 1,024 prompts, one every 1/32 of the image side (32 pixels at
      1024²); raise it for crowded objects smaller than that spacing (the time grows with its
      square);
    - ``pred_iou_thresh=0.8``: the official value;
    - ``stability_score_thresh=0.9`` (official 0.95): the blurred boundaries of fluorescence and
      bright-field objects make their masks change more with the binarisation threshold, and
      0.95 drops many true cells;
    - ``box_nms_thresh=0.7``, ``crop_n_layers=0`` (crops cost 5x: ``1`` helps small objects in
      large images), ``min_mask_region_area=0`` (in the decoder's 256 x 256 low-resolution
      pixels, as SAM2 does), ``use_m2m=False`` (twice the decoder time): the official values;
    - ``order="area"``: where masks overlap the smaller one is drawn on top, so a nucleus inside
      a cell survives.
    """

    points_per_side: int = 32
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.9
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    min_mask_region_area: int = 0
    use_m2m: bool = False
    order: str = "area"
    points_per_batch: int = 64
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    multimask_output: bool = True

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every parameter's name."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> SegmentAllParams:
        """A copy with ``changes``, checked.

        Raises
        ------
        ValueError
            An unknown name, or a value out of range (thresholds in [0, 1], counts at least 1
            or 0, ``order`` not in :data:`ORDERS`).
        """
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise ValueError(
                f"unknown segment-all parameter(s) {', '.join(unknown)}; "
                f"the parameters are {', '.join(self.names())}"
            )
        values = dataclasses.asdict(self)
        for name, value in changes.items():
            kind = type(values[name])
            if kind is bool:
                values[name] = bool(value)
            elif kind is int:
                if isinstance(value, bool) or float(value) != int(value):
                    raise ValueError(f"{name} must be an integer, got {value!r}")
                values[name] = int(value)
            else:
                values[name] = kind(value)
        for name, low in _AT_LEAST.items():
            if values[name] < low:
                raise ValueError(f"{name} must be at least {low}, got {values[name]}")
        for name in (*_UNIT, "crop_overlap_ratio"):
            if not 0.0 <= values[name] <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {values[name]}")
        if values["order"] not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {values['order']!r}")
        return SegmentAllParams(**values)

    def generator_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :class:`AutomaticMaskGenerator` (all but ``order``)."""
        kwargs = dataclasses.asdict(self)
        del kwargs["order"]
        return kwargs


# ------------------------------------------------------------------------------------------------
# runs


@dataclass(frozen=True)
class SegmentAllPlan:
    """What a run segments, decided on the GUI thread (:meth:`SegmentAllController.plan`).

    Attributes
    ----------
    image : napari.layers.Image
    slices : list of SliceInfo
        In order; one for ``scope="slice"``.
    scope : str
    axis : int or None
        The stack's axis (None for one slice).
    params : SegmentAllParams
    contrast_limits : (float, float) or None
        The image layer's, when planned: the model sees the slices as a click's encode does.
    rgb : bool
    tiles : TileSpec or None
        The slices' tiles (the annotator's tiling settings), None when encoded whole.
    """

    image: Image
    slices: list[SliceInfo]
    scope: str
    axis: int | None
    params: SegmentAllParams
    contrast_limits: tuple[float, float] | None = None
    rgb: bool = False
    tiles: TileSpec | None = None

    def describe(self) -> str:
        """E.g. ``"slice axis 0 = 3"`` or ``"5 slices along axis 0"``."""
        if self.axis is None:
            return f"slice {self.slices[0].describe()}"
        return f"{len(self.slices)} slices along axis {self.axis}"


@dataclass
class SegmentAllStep:
    """One slice's result, yielded by :meth:`SegmentAllRun.steps`.

    Attributes
    ----------
    index : int
        Position of the slice in the run's ``slices``.
    labels : numpy.ndarray or None
        ``(H, W)`` int32 from :func:`masks_to_labels` (label ``i + 1`` is mask ``i``); None when
        the slice could not be segmented (``error`` says why).
    objects : int
        Masks found on the slice.
    error : str or None
    """

    index: int
    labels: np.ndarray | None
    objects: int
    error: str | None = None


@dataclass
class SegmentAllRun:
    """One segment-all run: made by :meth:`SegmentAllController.start`.

    Iterate :meth:`steps` (in a worker thread if you like), hand each step to
    :meth:`SegmentAllController.apply` on the GUI thread, then call
    :meth:`SegmentAllController.finish`.

    Attributes
    ----------
    plan : SegmentAllPlan
    labels : napari.layers.Labels
        The output layer.
    created : bool
        Whether the layer was made for this run (else an earlier run's layer is reused).
    written : list of int
        Indices (into ``plan.slices``) of the slices written, in order.
    objects : int
        Objects written.
    failed : dict
        Index -> why that slice could not be segmented (a stack goes on).
    slices_encoded : int
        Slices this run encoded (the others came from the cache).
    cancelled, finished : bool
    error : BaseException or None
    seconds : float
        Wall time, set by ``finish``.
    """

    plan: SegmentAllPlan
    labels: Labels
    predictor: Sam2Predictor
    cache: EmbeddingCache
    created: bool = False
    next_id: int = 1
    written: list[int] = field(default_factory=list)
    objects: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    slices_encoded: int = 0
    cancelled: bool = False
    finished: bool = False
    error: BaseException | None = None
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0

    def cancel(self) -> None:
        """Stop before the next decoder batch; slices written so far stay."""
        self.cancelled = True

    def steps(
        self, progress: ProgressHook | None = None, cancelled: Callable[[], bool] | None = None
    ) -> Iterator[SegmentAllStep]:
        """Segment slice after slice (slow: run it in a worker thread).

        ``progress(done, total, text)`` counts decoder batches over the run; ``cancelled()``
        is polled with :attr:`cancelled` before every batch. Never raises: a failure ends the
        iteration and is kept in :attr:`error`; a cancel sets :attr:`cancelled`.
        """
        try:
            yield from self._steps(progress, cancelled)
        except SegmentationCancelled:
            self.cancelled = True
        except Exception as exc:  # noqa: BLE001 - reported by the GUI thread
            self.error = exc

    def _steps(
        self, progress: ProgressHook | None, cancelled: Callable[[], bool] | None
    ) -> Iterator[SegmentAllStep]:
        plan = self.plan

        def stop() -> bool:
            if cancelled is not None and cancelled():
                self.cancelled = True
            return self.cancelled

        count = len(plan.slices)
        per_slice = 0  # decoder batches of one slice, known at the first slice's start
        for index, sl in enumerate(plan.slices):
            if stop():
                return
            text = "SAM2: segment all" + (f", slice {index + 1} / {count}" if count > 1 else "")

            def report(done: int, total: int, index: int = index, text: str = text) -> None:
                nonlocal per_slice
                per_slice = per_slice or total
                if progress is not None:
                    progress(index * per_slice + done, per_slice * count, text)

            request = EncodeRequest(
                plan.image,
                layer_id(plan.image),
                sl,
                plan.contrast_limits,
                plan.rgb,
                tiles=plan.tiles,
            )
            generator = AutomaticMaskGenerator(self.predictor, **plan.params.generator_kwargs())
            try:
                # Tiled slices are read a tile at a time (dask/zarr data never whole).
                image = request.load() if plan.tiles is None else request.lazy()
                labels, found = generator.generate_labels(
                    image,
                    order=plan.params.order,
                    contrast_limits=request.contrast_limits,
                    rgb=request.rgb,
                    progress=report,
                    cancelled=stop,
                    embedding=self._slice_embedding(request, image),
                )
                if plan.tiles is not None:  # its tiles are encoded now: the cache sees them
                    self.cache.refresh(request.key(model_key(self.predictor)))
            except ImageError as exc:
                if count == 1:
                    raise
                yield SegmentAllStep(index, None, 0, str(exc))  # a bad slice: the stack goes on
                continue
            yield SegmentAllStep(index, labels, found)

    def _slice_embedding(
        self, request: EncodeRequest, image: Any
    ) -> ImageEmbedding | TiledEmbedding:
        """The slice's embedding from the clicks' cache, or encoded now and put there, so that
        a slice is never encoded twice and a segmented slice answers clicks at once (tiled: a
        tiled embedding, its tiles encoded as segmenting reaches them)."""
        key = request.key(model_key(self.predictor))
        embedding = self.cache.get(key)
        if embedding is None:
            if request.tiles is not None:
                embedding = request.compute(self.predictor)
            else:
                embedding = self.predictor.compute_embedding(
                    image, contrast_limits=request.contrast_limits, rgb=request.rgb
                )
            self.cache.put(key, embedding)
            self.slices_encoded += 1
        return embedding

    def describe(self) -> str:
        """A one-line summary (progress while running)."""
        what = f"{len(self.written)} / {len(self.plan.slices)} slices, {self.objects} objects"
        if not self.finished:
            return f"Segmenting all: {what}"
        how = "Cancelled" if self.cancelled else "Failed" if self.error else "Segmented"
        text = f"{how}: {what} in {self.seconds:.1f} s"
        if self.slices_encoded:
            text += f", {self.slices_encoded} encoded"
        return text


# ------------------------------------------------------------------------------------------------
# the controller


class SegmentAllController:
    """Segments every object of the annotator's image into a new Labels layer.

    Parameters
    ----------
    annotator : Annotator
        Its image, displayed slice, model, embedding cache and target Labels layer are used.

    Attributes
    ----------
    params : SegmentAllParams
        The parameters of the next run (settable; :meth:`SegmentAllParams.replace` checks).
    run : SegmentAllRun or None
        The run in progress.
    last_run : SegmentAllRun or None
        The last finished run.
    """

    def __init__(self, annotator: Annotator) -> None:
        self.annotator = annotator
        self.params = SegmentAllParams()
        self.run: SegmentAllRun | None = None
        self.last_run: SegmentAllRun | None = None
        # Image layer id -> the Labels layer segment-all made for it (written again by re-runs).
        self._outputs: dict[Any, Labels] = {}

    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self.run is not None

    # -- what to segment --------------------------------------------------------------------------
    def plan(
        self, scope: str = "slice", axis: int | None = None, params: SegmentAllParams | None = None
    ) -> SegmentAllPlan:
        """The slices a run segments (GUI thread; nothing is read or encoded here).

        Raises
        ------
        ValueError
            ``scope`` not in :data:`SCOPES`.
        AnnotatorError
            No image, a 3D view, ``"stack"`` of a 2D image, ``axis`` displayed.
        ImageError
            Pixels SAM2 cannot use.
        """
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        image = self.annotator.image_layer
        if image is None:
            raise AnnotatorError(NO_IMAGE)
        sl = self.annotator.current_slice()
        check_plane(image, sl)
        params = params if params is not None else self.params
        look = {
            "contrast_limits": contrast_limits(image),
            "rgb": bool(image.rgb),
            "tiles": self.annotator.embeddings.tiling.spec_for(sl.shape),
        }
        if scope == "slice":
            return SegmentAllPlan(image, [sl], scope, None, params, **look)
        free = [a for a, _ in sl.indices]
        if not free:
            raise AnnotatorError(
                f"'{image.name}' is a single 2D image: segment the current slice (scope 'slice')."
            )
        if axis is None:
            axis = free[0]
        elif int(axis) not in free:
            raise AnnotatorError(
                f"Axis {axis} is displayed (or not an axis of '{image.name}'): segment along one "
                f"of the axes that are not displayed, {free}."
            )
        axis = int(axis)
        slices = [
            SliceInfo(
                sl.shape_nd,
                sl.rows_axis,
                sl.cols_axis,
                tuple((a, i if a != axis else frame) for a, i in sl.indices),
            )
            for frame in range(sl.shape_nd[axis])
        ]
        return SegmentAllPlan(image, slices, scope, axis, params, **look)

    # -- the output layer -------------------------------------------------------------------------
    def output_layer(self, image: Image) -> tuple[Labels, bool]:
        """The layer segment-all writes ``image``'s objects to, and whether it is new.

        An earlier run's layer is reused while it is in the viewer with the image's shape;
        otherwise a new one (uint32, the image's transform) is added just above the image.
        """
        viewer = self.annotator.viewer
        layer = self._outputs.get(layer_id(image))
        if (
            layer is not None
            and layer in viewer.layers
            and tuple(layer.data.shape) == layer_shape(image)
        ):
            return layer, False
        layer = Labels(
            np.zeros(layer_shape(image), dtype=np.uint32),
            name=INSTANCES_NAME.format(image=image.name),
            **transform_kwargs(image),
        )
        layers = viewer.layers
        active = layers.selection.active
        layers.insert(layers.index(image) + 1 if image in layers else len(layers), layer)
        if active is not None and active in layers:
            layers.selection.active = active  # the prompts layer keeps the clicks
        self._outputs[layer_id(image)] = layer
        return layer, True

    def is_output(self, layer: Any) -> bool:
        """Whether ``layer`` is a layer segment-all made."""
        return any(layer is out for out in self._outputs.values())

    def discard(self, layer: Labels) -> None:
        """Remove a layer segment-all made that was never written (a run that did not start)."""
        if not self.is_output(layer) or (self.run is not None and self.run.labels is layer):
            return
        if np.asarray(layer.data).any():
            return  # an earlier run's objects: kept, and reused by the next run
        self._outputs = {k: v for k, v in self._outputs.items() if v is not layer}
        viewer = self.annotator.viewer
        if layer in viewer.layers:
            viewer.layers.remove(layer)

    # -- runs -------------------------------------------------------------------------------------
    def start(self, plan: SegmentAllPlan) -> SegmentAllRun:
        """Begin a run of ``plan`` (GUI thread): the output layer is made (or reused) now.

        Raises
        ------
        AnnotatorError
            A run is in progress, no model is loaded, or the image left the viewer.
        """
        if self.run is not None:
            raise AnnotatorError("Segment all is running: wait for it, or cancel it.")
        predictor = self.annotator.predictor
        if predictor is None:
            raise AnnotatorError("Load a model first (press Encode).")
        if plan.image not in self.annotator.viewer.layers:
            raise AnnotatorError(f"The image '{plan.image.name}' is no longer in the viewer.")
        labels, created = self.output_layer(plan.image)
        largest = max_label(labels.data)
        run = SegmentAllRun(
            plan,
            labels,
            predictor,
            self.annotator.cache,
            created=created,
            next_id=(largest or 0) + 1,
        )
        self.run = run
        return run

    def apply(self, run: SegmentAllRun, step: SegmentAllStep) -> bool:
        """Write a step's labels into the output layer (GUI thread); whether it was written.

        Raises
        ------
        AnnotatorError
            The ids no longer fit the layer's dtype (nothing of the slice is written).
        """
        if run.cancelled or run.finished:
            return False
        viewer = self.annotator.viewer
        if run.labels not in viewer.layers or run.plan.image not in viewer.layers:
            run.cancel()  # the layers are gone: nothing more to write
            return False
        if step.labels is None:
            run.failed[step.index] = step.error or "failed"
            return False
        self._write(run, run.plan.slices[step.index], step.labels)
        run.written.append(step.index)
        run.objects += int(np.count_nonzero(np.bincount(step.labels.ravel())[1:]))
        return True

    def _write(self, run: SegmentAllRun, sl: SliceInfo, labels: np.ndarray) -> None:
        """The slice's labels, above every id in the layer; a replaced slice is one undo step."""
        layer = run.labels
        largest = int(labels.max(initial=0))
        dtype = np.dtype(layer.data.dtype)
        if largest and run.next_id - 1 + largest > np.iinfo(dtype).max:
            raise AnnotatorError(
                f"The ids of '{layer.name}' no longer fit its {dtype} data: segment fewer "
                "slices into it, or remove it to start a new layer."
            )
        values = np.where(labels > 0, labels.astype(np.int64) + (run.next_id - 1), 0)
        values = values.astype(dtype)
        index = sl.indexer()
        old = np.asarray(layer.data[index])
        if old.any():  # a re-run: the old labels can come back with undo
            changed = old != values
            with separate_undo_step(layer):
                layer.data_setitem(sl.fancy_index(*np.nonzero(changed)), values[changed])
        else:  # nothing to lose: no undo history (it would hold every pixel of every slice)
            layer.data[index] = values
            layer.refresh()
        run.next_id += largest

    def finish(self, run: SegmentAllRun) -> SegmentAllRun:
        """End a run (GUI thread): its layer becomes the annotator's target Labels layer."""
        if run.finished:
            return run
        run.finished = True
        run.seconds = time.perf_counter() - run.started
        if self.run is run:
            self.run = None
        self.last_run = run
        annotator = self.annotator
        viewer = annotator.viewer
        if run.labels in viewer.layers and run.plan.image is annotator.image_layer:
            try:
                annotator.set_labels_layer(run.labels)  # the next object id is above its labels
            except AnnotatorError:
                pass  # the image changed shape meanwhile: the target stays
            else:
                annotator.ensure_prompt_layers()  # clicks correct the objects at once
        # The run may have encoded the displayed slice: its prompts can be decoded now.
        if annotator.sync_embedding() and annotator.preview_mask is None:
            annotator.request_decode()
        return run

    def cancel(self) -> None:
        """Cancel the run in progress, if any."""
        if self.run is not None:
            self.run.cancel()

    def segment(
        self, scope: str = "slice", axis: int | None = None, **params: Any
    ) -> SegmentAllRun:
        """Plan, run and finish on the calling thread (for scripts; the widget uses a worker).

        ``params`` change :attr:`params` for this run only.

        Raises
        ------
        ValueError, AnnotatorError, ImageError
            It cannot start (see :meth:`plan` and :meth:`start`).
        Exception
            What failed during the run (the slices written so far stay).
        """
        run = self.start(self.plan(scope, axis, self.params.replace(**params)))
        try:
            for step in run.steps():
                self.apply(run, step)
        finally:
            self.finish(run)
        if run.error is not None:
            raise run.error
        return run
