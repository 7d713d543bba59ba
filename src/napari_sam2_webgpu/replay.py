"""Recorded prompts, and replaying them headless: the labels of an annotation session again.

The napari widget records every commit, label refinement, propagation run and undo into the
Labels layer's metadata (:data:`METADATA_KEY`) as a :class:`PromptRecording`; it is saved as a
JSON sidecar next to the labels (``LABELS.prompts.json``). :func:`replay` runs the same steps
on the image with any predictor (WebGPU or CPU) and returns the label image;
:func:`compare_labels` says which pixels differ from the saved labels. On the CPU the replay
reproduces the labels exactly (the same model, preprocessing and decisions).

What is recorded per event (JSON, coordinates in the slice's pixels as the predictor takes
them: points ``(x, y)``, boxes ``x0, y0, x1, y1``):

- ``commit``: the slice (``shape``, ``rows_axis``, ``cols_axis``, ``indices`` of the
  not-displayed axes), ``object_id``, ``points``, ``labels``, ``box``, ``multimask``,
  ``overwrite``, ``contrast_limits``, ``rgb``, ``tiles`` (tile size and halo, or null); a
  mask the tracking memory made (a corrected slice of a propagated object) is kept as
  ``conditioned_mask`` (COCO RLE), as it depends on the whole propagation;
- ``refine``: the same, plus the label's mask prompt (``mask``: COCO RLE of the label's pixels
  on the slice when refining started);
- ``propagate``: the stack (``axis`` and the ``template`` slice), the tracking ``state`` (a new
  number: a fresh tracking memory), ``window`` (the tracked tile, or null), ``objects``, the
  prompt ``updates`` and ``clears`` sent, ``direction``, ``start_frame``, ``stop_after_lost``,
  ``steps`` (frames tracked) and ``frames_written``;
- ``forget``: an object's tracking dropped (``object_id``, ``state``);
- ``undo``: the Labels layer's last recorded change taken back.

Pure Python + numpy: the predictor and propagator are passed in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .image import Sam2Predictor
    from .video import Sam2Propagator

__all__ = [
    "FORMAT",
    "METADATA_KEY",
    "LabelDifference",
    "PromptRecording",
    "compare_labels",
    "paint_plane",
    "replay",
    "sidecar_path",
    "write_objects_plane",
]

#: The ``format`` of a recording, and its version.
FORMAT = "napari-sam2-webgpu prompts"
VERSION = 1
#: Where a Labels layer keeps its recording (``layer.metadata[METADATA_KEY]``).
METADATA_KEY = "napari_sam2_webgpu_prompts"
#: Event kinds.
KINDS = ("commit", "refine", "propagate", "forget", "undo")


def sidecar_path(labels_path: str | os.PathLike) -> Path:
    """The prompts file saved beside a label image: ``cells_labels.tif`` ->
    ``cells_labels.prompts.json``."""
    path = Path(labels_path)
    return path.with_name(f"{path.stem}.prompts.json")


# ------------------------------------------------------------------------------------------------
# writing rules, shared with the napari layer


def paint_plane(region: np.ndarray, mask: np.ndarray, value: int, overwrite: bool) -> np.ndarray:
    """A commit's rule on one plane: ``value`` where ``mask`` is set, on background only unless
    ``overwrite``; returns which pixels change."""
    target = mask & (region != value) if overwrite else mask & (region == 0)
    region[target] = value
    return target


def write_objects_plane(
    region: np.ndarray, masks: Mapping[int, np.ndarray], overwrite: bool
) -> np.ndarray:
    """Propagation's (and refinement's) rule on one plane: each mask becomes its object's pixels.

    Every object's pixels its mask no longer covers are erased first (those of an earlier run),
    then the objects are painted in increasing id: on background only unless ``overwrite``,
    and never over a pixel an object before them took here (a pixel two masks claim goes to
    the smaller id).

    Returns
    -------
    numpy.ndarray
        The new plane (``region`` is not changed).
    """
    new = region.copy()
    for value, mask in masks.items():
        new[(region == value) & ~mask] = 0
    taken = np.zeros(region.shape, dtype=bool)
    for value in sorted(masks):
        mask = masks[value] & ~taken
        allowed = mask if overwrite else mask & ((new == 0) | (new == value))
        new[allowed] = value
        taken |= allowed
    return new


# ------------------------------------------------------------------------------------------------
# the recording


@dataclass
class PromptRecording:
    """A session's prompts: a header (model, backend, image, labels) and the events in order.

    Attributes
    ----------
    header : dict
        ``format``, ``version``, ``model``, ``backend``, ``image`` and ``labels`` (``name``,
        ``shape``, ``dtype``), ``initial_labelled`` (labelled pixels of the Labels layer before
        the first recorded event; None when not counted).
    events : list of dict
        See the module docstring.
    """

    header: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The recording as JSON-ready data."""
        return {**self.header, "format": FORMAT, "version": VERSION, "events": self.events}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PromptRecording:
        """Read :meth:`to_json`'s data.

        Raises
        ------
        ValueError
            Not a recording, a newer version, or an unknown event kind.
        """
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file (no 'format': '{FORMAT}')")
        if int(data.get("version", 0)) > VERSION:
            raise ValueError(
                f"recording version {data['version']} is newer than this plugin's ({VERSION}): "
                "update napari-sam2-webgpu."
            )
        events = list(data.get("events", []))
        for k, event in enumerate(events):
            if event.get("kind") not in KINDS:
                raise ValueError(f"event {k} has an unknown kind {event.get('kind')!r}")
        header = {k: v for k, v in data.items() if k != "events"}
        return cls(header, events)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the recording as JSON (atomically: a half-written file never has the name)."""
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> PromptRecording:
        """Read a recording saved by :meth:`save` (or a napari sidecar).

        Raises
        ------
        ValueError
            Not JSON, or not a recording (the message names the file).
        """
        try:
            data = json.loads(Path(path).read_text())
            return cls.from_json(data)
        except (json.JSONDecodeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def counts(self) -> dict[str, int]:
        """Events per kind."""
        out: dict[str, int] = {}
        for event in self.events:
            out[event["kind"]] = out.get(event["kind"], 0) + 1
        return out


def slice_record(shape_nd: Any, rows_axis: int, cols_axis: int, indices: Any) -> dict[str, Any]:
    """A slice as recorded: the data shape, the displayed axes, the other axes' indices."""
    return {
        "shape": [int(s) for s in shape_nd],
        "rows_axis": int(rows_axis),
        "cols_axis": int(cols_axis),
        "indices": [[int(a), int(i)] for a, i in indices],
    }


def _indexer(sl: Mapping[str, Any], frame: tuple[int, int] | None = None) -> tuple:
    """Index of a recorded slice into the data (``frame``: ``(axis, index)`` replaced)."""
    out: list[Any] = [slice(None)] * len(sl["shape"])
    for axis, index in sl["indices"]:
        out[axis] = index
    if frame is not None:
        out[frame[0]] = frame[1]
    return tuple(out)


def _array(value: Any, dtype: Any = np.float64) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=dtype)


def _tiles(record: Any) -> Any:
    if not record:
        return None
    from .image.tiling import TileSpec

    return TileSpec(int(record["tile_size"]), int(record["halo"]))


def _limits(value: Any) -> tuple[float, float] | None:
    return None if value is None else (float(value[0]), float(value[1]))


# ------------------------------------------------------------------------------------------------
# replay


@dataclass
class LabelDifference:
    """How a replayed label image differs from a reference.

    Attributes
    ----------
    pixels : int
        Pixels whose label differs.
    total : int
        Pixels compared.
    labels : dict
        Label id -> pixels where either image has it and they differ.
    """

    pixels: int
    total: int
    labels: dict[int, int]

    @property
    def identical(self) -> bool:
        return self.pixels == 0

    def describe(self, limit: int = 10) -> str:
        """One line: "identical", or the differing pixels and the labels most affected."""
        if self.identical:
            return f"identical ({self.total:,} pixels)"
        worst = sorted(self.labels.items(), key=lambda kv: -kv[1])[:limit]
        by_label = ", ".join(f"{label}: {n}" for label, n in worst)
        return (
            f"{self.pixels:,} of {self.total:,} pixels differ "
            f"({100 * self.pixels / max(self.total, 1):.3f}%); by label: {by_label}"
        )


def compare_labels(replayed: Any, reference: Any) -> LabelDifference:
    """Which pixels of two label images differ, per label.

    Raises
    ------
    ValueError
        Different shapes.
    """
    a, b = np.asarray(replayed), np.asarray(reference)
    if a.shape != b.shape:
        raise ValueError(f"the label images have different shapes: {a.shape} and {b.shape}")
    differ = a != b
    labels: dict[int, int] = {}
    for side in (a[differ], b[differ]):
        values, counts = np.unique(side, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            if value:
                labels[int(value)] = labels.get(int(value), 0) + int(count)
    return LabelDifference(int(differ.sum()), int(a.size), labels)


class _Frames:
    """The frames of a recorded stack (a window of them when tiled), read lazily."""

    def __init__(self, image: Any, event: Mapping[str, Any], rgb: bool) -> None:
        self._image = image
        self._event = event
        template = event["template"]
        window = event.get("window")
        self._window = window
        self._axis = int(event["axis"])
        n = template["shape"][self._axis]
        if window is None:
            hw = tuple(
                int(template["shape"][a]) for a in (template["rows_axis"], template["cols_axis"])
            )
        else:
            hw = (int(window[3] - window[1]), int(window[2] - window[0]))
        channels = (int(image.shape[-1]),) if rgb else ()
        self.shape = (n, *hw, *channels)
        self.dtype = image.dtype

    def plane(self, index: int) -> Any:
        return self._image[_indexer(self._event["template"], (self._axis, int(index)))]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        plane = self.plane(index)
        if self._window is not None:
            x0, y0, x1, y1 = (int(v) for v in self._window)
            plane = plane[y0:y1, x0:x1]
        return np.asarray(plane)


class _Replayer:
    def __init__(
        self,
        predictor: Sam2Predictor,
        propagator: Sam2Propagator | None,
        image: Any,
        labels: np.ndarray,
    ) -> None:
        self.predictor = predictor
        self.propagator = propagator
        self.image = image
        self.labels = labels
        self.history: list[list[tuple[tuple, np.ndarray, np.ndarray]]] = []
        self.states: dict[int, Any] = {}

    # -- writing with undo ------------------------------------------------------------------------
    def _set_plane(self, step: list, index: tuple, new: np.ndarray) -> None:
        old = self.labels[index]
        changed = np.nonzero(old != new)
        if changed[0].size:
            step.append((index, changed, old[changed].copy()))
            plane = self.labels[index]
            plane[changed] = new[changed]

    def undo(self) -> None:
        if not self.history:
            return
        for index, changed, old in reversed(self.history.pop()):
            self.labels[index][changed] = old

    # -- embeddings --------------------------------------------------------------------------------
    def _embedding(self, plane: Any, event: Mapping[str, Any]) -> Any:
        tiles = _tiles(event.get("tiles"))
        limits, rgb = _limits(event.get("contrast_limits")), bool(event.get("rgb"))
        if tiles is not None:
            return self.predictor.compute_tiled_embedding(
                plane, contrast_limits=limits, rgb=rgb, spec=tiles
            )
        return self.predictor.compute_embedding(np.asarray(plane), contrast_limits=limits, rgb=rgb)

    # -- events ------------------------------------------------------------------------------------
    def commit(self, event: Mapping[str, Any]) -> None:
        sl = event["slice"]
        index = _indexer(sl)
        if "conditioned_mask" in event:  # made by the tracking memory: kept as it was
            from .coco import decode_rle

            self._write_commit(index, decode_rle(event["conditioned_mask"]), event)
            return
        embedding = self._embedding(self.image[index], event)
        points, point_labels = _array(event.get("points")), _array(event.get("labels"), np.int64)
        box = _array(event.get("box"))
        mask_input = None
        refine = event["kind"] == "refine"
        if refine:
            from .coco import decode_rle
            from .image.refine import mask_prompt
            from .image.tiling import TiledEmbedding

            label_mask = decode_rle(event["mask"])
            box, mask_input = mask_prompt(label_mask)
            if isinstance(embedding, TiledEmbedding):
                tile = embedding.window_for(points, point_labels, box)
                if tile is not None:
                    mask_input = mask_prompt(label_mask[tile.slices])[1]
        mask, _, _ = self.predictor.predict_best(
            point_coords=points,
            point_labels=point_labels,
            box=box,
            mask_input=mask_input,
            multimask_output=bool(event.get("multimask", True)),
            embedding=embedding,
        )
        self._write_commit(index, mask, event)

    def _write_commit(self, index: tuple, mask: np.ndarray, event: Mapping[str, Any]) -> None:
        region = np.array(self.labels[index])
        value = int(event["object_id"])
        if event["kind"] == "refine":
            new = write_objects_plane(region, {value: mask}, overwrite=False)
        else:
            paint_plane(region, mask, value, bool(event.get("overwrite")))
            new = region
        step: list = []
        self._set_plane(step, index, new)
        self.history.append(step)

    def forget(self, event: Mapping[str, Any]) -> None:
        state = self.states.get(int(event["state"]))
        if state is not None and self.propagator is not None:
            self.propagator.remove_object(state, int(event["object_id"]))

    def propagate(self, event: Mapping[str, Any]) -> None:
        from .image.tiling import TiledEmbedding, paste, to_window

        video = self.propagator
        if video is None:
            raise ValueError(
                "the recording has a propagation: replay it with a propagator (a model with "
                "its video components)"
            )
        rgb = bool(event.get("rgb"))
        frames = _Frames(self.image, event, rgb)
        tiles, window_box = _tiles(event.get("tiles")), event.get("window")
        limits = _limits(event.get("contrast_limits"))
        template = event["template"]
        full_hw = (
            int(template["shape"][template["rows_axis"]]),
            int(template["shape"][template["cols_axis"]]),
        )
        window = None  # the tile the objects are tracked in (None: the whole frames)
        if tiles is not None and window_box is not None:
            layout = tiles.layout(full_hw)
            window = next(t for t in layout.tiles if list(t.box) == list(window_box))
        key = int(event["state"])
        state = self.states.get(key)
        if state is None:
            predictor = self.predictor

            def provide(index: int) -> Any:
                plane = frames.plane(index)
                if tiles is None:
                    return predictor.compute_embedding(
                        np.asarray(plane), contrast_limits=limits, rgb=rgb
                    )
                tiled: TiledEmbedding = predictor.compute_tiled_embedding(
                    plane, contrast_limits=limits, rgb=rgb, spec=tiles
                )
                return tiled.overview() if window is None else tiled.tile(window.index)

            state = video.init_state(frames, contrast_limits=limits, embedding_provider=provide)
            self.states = {key: state}  # napari keeps one tracking state at a time
        objects = [int(o) for o in event["objects"]]
        for other in [o for o in state.obj_ids if o not in objects]:
            video.remove_object(state, other)
        for obj_id, frame in event.get("clears", []):
            video.clear_prompts(state, int(frame), int(obj_id))
        for obj_id, frame, prompts in event.get("updates", []):
            points, box = to_window(
                _array(prompts.get("points")), _array(prompts.get("box")), window
            )
            video.add_prompts(
                state,
                int(frame),
                int(obj_id),
                points=points,
                labels=_array(prompts.get("labels"), np.int64),
                box=box,
            )
        steps, written = int(event.get("steps", 0)), list(event.get("frames_written", []))
        step_log: list = []
        self.history.append(step_log)
        if steps == 0:
            return
        axis = int(event["axis"])
        tracking: Iterator = video.propagate(
            state,
            event.get("direction", "both"),
            start_frame=event.get("start_frame"),
            stop_after_lost=event.get("stop_after_lost"),
        )
        try:
            for done, (frame, masks) in enumerate(tracking, 1):
                if done <= len(written):
                    masks = {o: paste(m[None], window, full_hw)[0] for o, m in masks.items()}
                    index = _indexer(template, (axis, int(frame)))
                    region = np.array(self.labels[index])
                    new = write_objects_plane(region, masks, bool(event.get("overwrite")))
                    self._set_plane(step_log, index, new)
                if done >= steps:
                    break
        finally:
            tracking.close()


def replay(
    recording: PromptRecording,
    image: Any,
    predictor: Sam2Predictor,
    *,
    propagator: Sam2Propagator | None = None,
    initial: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Replay a recording on ``image``: the label image the session made.

    Parameters
    ----------
    recording : PromptRecording
    image : array-like
        The image the session segmented (the napari layer's data: the same shape; numpy,
        dask or zarr).
    predictor : Sam2Predictor
        The model (any backend); the recording's model name is in its header.
    propagator : Sam2Propagator, optional
        Needed when the recording has propagations (the same model's video components).
    initial : array-like, optional
        The Labels layer before the first event (e.g. Cellpose output that was refined);
        default: empty, of the recorded shape and dtype.
    progress : callable, optional
        ``progress(done, total)`` after each event.

    Returns
    -------
    numpy.ndarray
        The labels.

    Raises
    ------
    ValueError
        The image's shape is not the recorded one, or a propagation without ``propagator``.
    """
    header = recording.header
    recorded = header.get("image", {}).get("shape")
    shape = tuple(int(s) for s in getattr(image, "shape", np.shape(image)))
    if recorded is not None and tuple(recorded) != shape:
        raise ValueError(
            f"the image is {shape}, the recording was made on {tuple(recorded)}: replay it on "
            "the same image."
        )
    labels_info = header.get("labels", {})
    if initial is not None:
        labels = np.array(initial)
    else:
        labels_shape = tuple(labels_info.get("shape") or shape)
        labels = np.zeros(labels_shape, dtype=np.dtype(labels_info.get("dtype", "uint32")))
    player = _Replayer(predictor, propagator, image, labels)
    total = len(recording.events)
    for done, event in enumerate(recording.events, 1):
        kind = event["kind"]
        if kind in ("commit", "refine"):
            player.commit(event)
        elif kind == "propagate":
            player.propagate(event)
        elif kind == "forget":
            player.forget(event)
        elif kind == "undo":
            player.undo()
        if progress is not None:
            progress(done, total)
    return labels
