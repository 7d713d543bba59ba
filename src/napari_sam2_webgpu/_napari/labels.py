"""Writing masks into a Labels layer: value checks, painting rules, next free id, undo steps.

Everything that touches a target Labels layer's pixels or its undo history is here, so that a
click's commit and a propagation run follow the same rules: paint background pixels only (or,
with ``overwrite``, any pixel), and make one user action one undo step.

Undo steps are made with napari's public ``Labels.block_history()``, which groups the changes
made inside it into one step: :func:`separate_undo_step` for a commit, and :class:`UndoGroup`
for a propagation run, whose frames arrive in separate GUI events.

napari has no public way to *read* the undo history (whether it is empty, whether a step is
still in it, which step is the last); :func:`undo_history` is the one place that reads it
(``Labels._undo_history``, read-only), and it degrades to None when napari changes.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import numpy as np
from napari.layers import Labels

from ..replay import write_objects_plane
from .errors import AnnotatorError
from .slices import SliceInfo

__all__ = [
    "SCAN_PIXELS",
    "UndoGroup",
    "check_label_value",
    "max_label",
    "next_free_id",
    "paint_mask",
    "paused_undo_group",
    "separate_undo_step",
    "undo_history",
    "write_frame",
    "write_objects",
]

#: Non-numpy Labels data (dask, zarr) up to this many pixels is scanned for its largest label.
SCAN_PIXELS = 2**27


def check_label_value(labels: Labels, value: int) -> None:
    """Raise :class:`AnnotatorError` if ``value`` does not fit the Labels layer's dtype."""
    dtype = np.dtype(labels.data.dtype)
    if np.issubdtype(dtype, np.integer) and value > np.iinfo(dtype).max:
        raise AnnotatorError(
            f"Object id {value} does not fit the Labels layer's {dtype} data: "
            "use a Labels layer with a larger integer type."
        )


def max_label(data: Any) -> int | None:
    """The largest label of a Labels layer's data, or None when it is too costly to find."""
    if isinstance(data, np.ndarray):
        return int(data.max(initial=0))
    size = int(np.prod(getattr(data, "shape", ()), dtype=np.int64))
    if size == 0:
        return 0
    if size > SCAN_PIXELS:
        return None
    return int(np.asarray(data).max())


def next_free_id(labels: Labels | None, current: int, scan: bool = False) -> int:
    """One more than the largest label of ``labels`` (1 without a layer).

    Parameters
    ----------
    labels : napari.layers.Labels or None
        The target layer.
    current : int
        The object id in use: a layer whose data is not scanned gets ``current + 1``.
    scan : bool
        Also read data that is not a numpy array (dask, zarr; up to :data:`SCAN_PIXELS`).
    """
    if labels is None:
        return 1
    data = labels.data
    largest = max_label(data) if scan or isinstance(data, np.ndarray) else None
    if largest is None:  # not scanned: at least past the ids used so far
        return max(current + 1, 1)
    return largest + 1


def paint_mask(
    labels: Labels, sl: SliceInfo, mask: np.ndarray, value: int, overwrite: bool = False
) -> int:
    """Write ``value`` where the 2D ``mask`` is set on slice ``sl``; the number of pixels written.

    Only background pixels are painted unless ``overwrite``; pixels already holding ``value``
    are never counted. The write goes through ``Labels.data_setitem`` (one undo step, unless
    inside ``block_history()``: a commit uses :func:`separate_undo_step`).
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return 0
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    window = mask[r0:r1, c0:c1]
    # rows_axis < cols_axis, so the 2D window comes out as (rows, columns).
    region = np.asarray(labels.data[sl.indexer(slice(r0, r1), slice(c0, c1))])
    target = window & (region != value) if overwrite else window & (region == 0)
    rr, cc = np.nonzero(target)
    if rr.size == 0:
        return 0
    labels.data_setitem(sl.fancy_index(rr + r0, cc + c0), value)
    return int(rr.size)


def undo_history(labels: Labels) -> Any:
    """The Labels layer's undo history (a deque of items), or None if napari hides it.

    Read-only: napari's public API can group changes into undo steps (``block_history``) and
    undo them (``undo``), but cannot tell whether there is anything to undo, or whether a given
    step is still in the history; this is the one reader of that private attribute.
    """
    return getattr(labels, "_undo_history", None)


#: The group open on each Labels layer (at most one: one propagation run at a time).
_open_groups: weakref.WeakKeyDictionary[Labels, UndoGroup] = weakref.WeakKeyDictionary()


class UndoGroup:
    """Changes of a Labels layer made over several GUI events, as one undo step.

    napari's ``Labels.block_history()`` makes the changes made inside it one step of the layer's
    undo history. A propagation run writes its frames in separate GUI events, so the group
    enters that context at the first write (:meth:`open`) and leaves it in :meth:`close`, which
    the run calls when it ends (finished, cancelled or failed).

    Other writes while the group is open keep their own step: a commit or an undo goes through
    :func:`separate_undo_step` or :func:`paused_undo_group`, which commit the frames so far as a
    step and go on in a new one. A napari brush drag on the layer is a ``block_history()`` of
    its own, which commits everything staged when the mouse is released (its ``paint`` event
    says so): the frames so far share the drag's step, and the run goes on in a new one.
    napari's own undo (its Labels key binding) cannot be paused: during a run it takes back the
    step before the run, not the frames written so far (the widget's Undo pauses the group).

    Parameters
    ----------
    labels : napari.layers.Labels
        The layer written to.

    Attributes
    ----------
    item : list or None
        The undo step the group committed last (napari's ``paint`` event carries it), None
        before any: the run's changes, as long as that step is in the layer's undo history.
    """

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.item: list | None = None
        self._block: ExitStack | None = None  # holds block_history() open
        self._leaving = False
        self._interrupted = False

    @property
    def is_open(self) -> bool:
        """Whether changes of the layer are being grouped now."""
        return self._block is not None

    def open(self) -> None:
        """Group the changes from now on (call before every write; cheap when open)."""
        if self._block is not None and not self._interrupted:
            return
        self.close()  # napari ended the grouping (a brush stroke): a new step from here
        self._enter()

    def close(self) -> None:
        """Commit the changes made since :meth:`open` as one undo step (if there were any)."""
        if self._block is None:
            return
        block, self._block = self._block, None
        self._leaving = True
        try:
            block.close()  # a normal exit: napari commits the staged changes
        finally:
            self._leaving = False
            self.labels.events.paint.disconnect(self._on_paint)
            if _open_groups.get(self.labels) is self:
                del _open_groups[self.labels]

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Commit the changes so far as a step; group again (a new step) after the block."""
        was_open = self.is_open
        self.close()
        try:
            yield
        finally:
            if was_open:
                self._enter()

    def _enter(self) -> None:
        block = ExitStack()
        block.enter_context(self.labels.block_history())
        self._block = block
        self._interrupted = False
        self.labels.events.paint.connect(self._on_paint)
        _open_groups[self.labels] = self

    def _on_paint(self, event: Any) -> None:
        """napari committed an undo step while the group is open (ours when leaving)."""
        self.item = event.value
        if not self._leaving:
            self._interrupted = True  # a brush stroke took our staged changes along


def paused_undo_group(labels: Labels) -> contextlib.AbstractContextManager:
    """Pause the :class:`UndoGroup` open on ``labels``, if any (see :meth:`UndoGroup.paused`).

    An undo during a propagation run then takes back the run's frames so far, as it would once
    the run ended, rather than the step before the run.
    """
    group = _open_groups.get(labels)
    return group.paused() if group is not None else contextlib.nullcontext()


@contextlib.contextmanager
def separate_undo_step(labels: Labels) -> Iterator[None]:
    """Make the changes inside one undo step of their own, even while a run groups its frames.

    A propagation run's :class:`UndoGroup` open on ``labels`` is paused: its frames so far
    become a step before this one, and the run's next frames a step after it.
    """
    with paused_undo_group(labels), labels.block_history():
        yield


def write_frame(
    group: UndoGroup, sl: SliceInfo, mask: np.ndarray, value: int, overwrite: bool
) -> None:
    """Make ``mask`` the object ``value``'s pixels on slice ``sl`` of ``group.labels``.

    Paints the mask (background only unless ``overwrite``) and erases the object's pixels that
    the mask no longer covers (those of an earlier run). The changes join the group's undo step
    (a propagation run's frames are one step).
    """
    write_objects(group, sl, {value: mask}, overwrite)


def write_objects(
    group: UndoGroup, sl: SliceInfo, masks: dict[int, np.ndarray], overwrite: bool
) -> None:
    """Make each mask its object's pixels on slice ``sl`` (several objects of one frame).

    First every object's pixels that its mask no longer covers are erased (those of an earlier
    run), then the objects are painted in increasing id: on background only unless
    ``overwrite``, and never over a pixel an object before them took in this call (a pixel
    two masks claim goes to the smaller id). The changes join the group's undo step.
    """
    labels = group.labels
    region = np.asarray(labels.data[sl.indexer()])
    new = write_objects_plane(region, masks, overwrite)
    changed = new != region
    group.open()
    for value in np.unique(new[changed]):
        where = changed & (new == value)
        labels.data_setitem(sl.fancy_index(*np.nonzero(where)), value)
