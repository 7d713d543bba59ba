"""Recording the prompts of every commit, refinement, propagation and undo with the Labels layer.

Each Labels layer written by the widget keeps a :class:`~napari_sam2_webgpu.replay.PromptRecording`
in ``layer.metadata[METADATA_KEY]`` (as JSON-ready data, so napari copies and saves it as it
does any metadata). The plugin's writer saves it as ``LABELS.prompts.json`` beside the labels
(:func:`save_labels_with_prompts`); ``napari-sam2-webgpu replay`` reproduces the labels from it.
No Qt.
"""

from __future__ import annotations

import importlib.metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from ..image.tiling import TiledEmbedding
from ..replay import METADATA_KEY, PromptRecording, slice_record
from .slices import base_data

if TYPE_CHECKING:  # pragma: no cover
    from napari.layers import Labels

    from .annotator import Annotator
    from .decoding import DecodeRequest
    from .propagation import PropagationRun
    from .refining import Refinement
    from .slices import SliceInfo

__all__ = ["PromptRecorder", "recording_of"]


def recording_of(labels: Labels) -> PromptRecording | None:
    """The prompts recorded with a Labels layer, or None."""
    data = labels.metadata.get(METADATA_KEY)
    return None if data is None else PromptRecording.from_json(data)


def _listed(value: Any) -> Any:
    return None if value is None else np.asarray(value, dtype=float).tolist()


def _tiles(spec: Any) -> dict[str, int] | None:
    return None if spec is None else {"tile_size": spec.tile_size, "halo": spec.halo}


def _version() -> str:
    try:
        return importlib.metadata.version("napari-sam2-webgpu")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        return "unknown"


class PromptRecorder:
    """Appends the annotator's events to the target Labels layer's recording.

    Parameters
    ----------
    annotator : Annotator

    Attributes
    ----------
    enabled : bool
        Record (default True).
    """

    def __init__(self, annotator: Annotator) -> None:
        self.annotator = annotator
        self.enabled = True

    def _header(self, labels: Labels) -> dict[str, Any]:
        a = self.annotator
        image = a.image_layer
        predictor = a.predictor
        data = labels.data
        labelled = int(np.count_nonzero(data)) if isinstance(data, np.ndarray) else None
        return {
            "plugin_version": _version(),
            "model": None if predictor is None else predictor.name,
            "backend": None if predictor is None else predictor.backend,
            "image": {
                "name": None if image is None else image.name,
                "shape": None if image is None else [int(s) for s in base_data(image).shape],
                "dtype": None if image is None else str(np.dtype(image.dtype)),
            },
            "labels": {
                "name": labels.name,
                "shape": [int(s) for s in data.shape],
                "dtype": str(np.dtype(data.dtype)),
            },
            "initial_labelled": labelled,
        }

    def begin(self, labels: Labels, labelled: int | None = -1) -> None:
        """Before the first write into ``labels``: start its recording. Its labelled pixels are
        counted now (as they were before the session's first event) unless given
        (``labelled``: 0 for a layer the first commit created)."""
        if self.enabled and METADATA_KEY not in labels.metadata:
            header = self._header(labels)
            if labelled != -1:
                header["initial_labelled"] = labelled
            labels.metadata[METADATA_KEY] = PromptRecording(header).to_json()

    def _append(self, labels: Labels, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.begin(labels)
        data = labels.metadata[METADATA_KEY]
        data.setdefault("events", []).append(event)

    def _image_facts(self, embedding: Any) -> dict[str, Any]:
        """Contrast limits, rgb and tiling the displayed slice's embedding was made with."""
        a = self.annotator
        key = a.embeddings.key
        limits = None if key is None else key.contrast_limits
        image = a.image_layer
        spec = embedding.layout.spec if isinstance(embedding, TiledEmbedding) else None
        return {
            "contrast_limits": _listed(limits),
            "rgb": bool(image is not None and image.rgb),
            "tiles": _tiles(spec),
        }

    # -- events -----------------------------------------------------------------------------------
    def commit(
        self,
        labels: Labels,
        request: DecodeRequest,
        value: int,
        overwrite: bool,
        refinement: Refinement | None = None,
        mask: np.ndarray | None = None,
    ) -> None:
        """A commit (or a refinement's commit) of the mask decoded from ``request``.

        A mask the tracking memory made (a corrected slice of a propagated object) is kept
        itself (``conditioned_mask``): it depends on the whole propagation, not only on the
        prompts."""
        from ..coco import encode_rle

        sl: SliceInfo = request.slice
        event = {
            "kind": "refine" if refinement is not None else "commit",
            "slice": slice_record(sl.shape_nd, sl.rows_axis, sl.cols_axis, sl.indices),
            "object_id": int(value),
            "points": _listed(request.points),
            "labels": None if request.labels is None else np.asarray(request.labels).tolist(),
            "box": None if refinement is not None else _listed(request.box),
            "multimask": bool(request.multimask),
            "overwrite": bool(overwrite),
            **self._image_facts(request.embedding),
        }
        if refinement is not None:
            event["mask"] = encode_rle(refinement.mask)
        if request.conditioned is not None and mask is not None:
            event["conditioned_mask"] = encode_rle(mask)
        self._append(labels, event)

    def propagation(self, run: PropagationRun) -> None:
        """A finished (or cancelled, or failed) propagation run."""
        spec = run.spec
        t = spec.template
        updates = [
            [
                int(obj_id),
                int(frame),
                {"points": _listed(p[0]), "labels": _listed(p[1]), "box": _listed(p[2])},
            ]
            for obj_id, frames in run.prompt_updates.items()
            for frame, p in frames.items()
        ]
        event = {
            "kind": "propagate",
            "state": int(run.state_number),
            "axis": int(spec.axis),
            "template": slice_record(t.shape_nd, t.rows_axis, t.cols_axis, t.indices),
            "window": None if spec.window is None else [int(v) for v in spec.window.box],
            "tiles": _tiles(spec.tiles),
            "contrast_limits": _listed(spec.contrast_limits),
            "rgb": bool(spec.rgb),
            "objects": [int(o) for o in run.object_ids],
            "clears": [[int(o), int(f)] for o, frames in run.prompt_clears.items() for f in frames],
            "updates": updates,
            "direction": run.direction,
            "start_frame": run.start_frame,
            "stop_after_lost": run.stop_after_lost,
            "overwrite": bool(run.overwrite),
            "steps": int(run.done),
            "frames_written": [int(f) for f in run.frames_written],
        }
        self._append(run.labels, event)

    def forget(self, labels: Labels | None, obj_id: int, state_number: int) -> None:
        """An object's tracking was dropped (it is finished)."""
        if labels is not None and METADATA_KEY in labels.metadata:
            event = {"kind": "forget", "object_id": int(obj_id), "state": int(state_number)}
            self._append(labels, event)

    def undo(self, labels: Labels | None) -> None:
        """The widget undid the layer's last change."""
        if labels is not None and METADATA_KEY in labels.metadata:
            self._append(labels, {"kind": "undo"})


def write_labels_with_prompts(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer: a Labels layer as a label image, and its recorded prompts beside it.

    ``cells labels.tif`` gets ``cells labels.prompts.json`` (when the layer has a recording),
    which ``napari-sam2-webgpu replay`` reads.

    Returns
    -------
    list of str
        The files written.
    """
    from ..imagefiles import write_labels
    from ..replay import sidecar_path

    written = [str(write_labels(path, np.asarray(data)))]
    recorded = (meta.get("metadata") or {}).get(METADATA_KEY)
    if recorded is not None:
        written.append(str(PromptRecording.from_json(recorded).save(sidecar_path(path))))
    return written
