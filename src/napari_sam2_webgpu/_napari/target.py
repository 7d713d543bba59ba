"""The target of an annotator's commits: which Labels layer, and the id of the object in work.

:class:`LabelsTarget` checks a chosen Labels layer against the image's shape, creates one beside
the image when none is chosen, keeps the object id at the layer's next free id, and makes a
commit and an undo (through :mod:`.labels`: one click's commit is one undo step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from napari.layers import Image, Labels

from . import labels as labels_
from . import prompt_layers
from .errors import NO_IMAGE, AnnotatorError
from .slices import SliceInfo, layer_shape

__all__ = ["LabelsTarget"]


class LabelsTarget:
    """The Labels layer commits go to, and the label value (object id) they write.

    Parameters
    ----------
    viewer : napari.components.ViewerModel
        Where the layer is (or is created).
    on_object_id : callable
        ``on_object_id(value=new_id)``, after every change of :attr:`object_id` (an event
        emitter fits).
    on_created : callable
        Called with no argument after a new Labels layer was added to the viewer.
    reserved : callable, optional
        ``reserved()`` gives ids taken although not in the layer yet (objects with prompts):
        :meth:`next_free_id` goes past them.

    Attributes
    ----------
    layer : napari.layers.Labels or None
        The chosen layer; None means a new one is created at the next commit.
    """

    def __init__(
        self,
        viewer: Any,
        *,
        on_object_id: Callable[..., Any],
        on_created: Callable[[], None],
        reserved: Callable[[], set[int]] | None = None,
    ) -> None:
        self.viewer = viewer
        self.layer: Labels | None = None
        self._object_id = 1
        self._on_object_id = on_object_id
        self._on_created = on_created
        self._reserved = reserved or set

    # -- the layer --------------------------------------------------------------------------------
    @staticmethod
    def fits(layer: Labels, image: Image | None) -> bool:
        """Whether ``layer`` has the image's shape (any layer fits without an image)."""
        return image is None or tuple(layer.data.shape) == layer_shape(image)

    @staticmethod
    def shape_mismatch(layer: Labels, image: Image) -> str:
        """What to tell the user when ``layer`` does not fit ``image``."""
        return (
            f"The Labels layer '{layer.name}' has shape {tuple(layer.data.shape)} but the image "
            f"'{image.name}' has shape {layer_shape(image)}: choose a Labels layer of "
            "the image's shape, or 'New Labels layer'. Nothing was written."
        )

    def choose(self, layer: Labels | None, image: Image | None, preview: Labels | None) -> None:
        """Commit into ``layer`` from now on (None: a new layer at the next commit).

        The object id moves to the layer's next free id.

        Raises
        ------
        AnnotatorError
            ``layer`` is not a Labels layer (or is the ``preview`` layer), or its shape differs
            from the image's; nothing changes then.
        """
        if layer is not None:
            if not isinstance(layer, Labels) or layer is preview:
                raise AnnotatorError(
                    f"{prompt_layers.describe(layer)} cannot receive labels: pick a Labels layer."
                )
            if not self.fits(layer, image):
                raise AnnotatorError(self.shape_mismatch(layer, image))
        self.layer = layer
        # Another target: its own next free id, scanning lazy (dask, zarr) data once here.
        self._set_object_id(self.next_free_id(scan=True))

    def release_if_unfit(self, image: Image | None) -> None:
        """The image changed: drop a layer of another shape (the next commit creates one)."""
        if self.layer is not None and image is not None and not self.fits(self.layer, image):
            self.layer = None
            self._set_object_id(1)  # a new target: its object ids start afresh

    def forget(self, layer: Any) -> bool:
        """``layer`` was removed from the viewer: whether it was the target (ids restart at 1)."""
        if layer is None or layer is not self.layer:
            return False
        self.layer = None
        self._set_object_id(1)
        return True

    def in_viewer(self) -> Labels | None:
        """The layer, if it is in the viewer (a removed one is never written)."""
        layer = self.layer
        return layer if layer is not None and layer in self.viewer.layers else None

    def ensure(self, image: Image) -> Labels:
        """The layer, created just above ``image`` (same shape and transform) if needed.

        Raises
        ------
        AnnotatorError
            The chosen layer no longer has the image's shape.
        """
        if self.in_viewer() is not None:
            if not self.fits(self.layer, image):
                raise AnnotatorError(self.shape_mismatch(self.layer, image))
            return self.layer
        layers = self.viewer.layers
        labels = prompt_layers.make_labels_layer(image)
        active = layers.selection.active
        layers.insert(layers.index(image) + 1, labels)
        if active is not None and active in layers:
            layers.selection.active = active  # creating it must not steal the prompts' clicks
        self.layer = labels
        self._on_created()
        return labels

    # -- object ids -------------------------------------------------------------------------------
    @property
    def object_id(self) -> int:
        """The label value the next commit writes (1 or more; 0 is background)."""
        return self._object_id

    @object_id.setter
    def object_id(self, value: int) -> None:
        value = int(value)
        if value < 1:
            raise ValueError(f"object ids start at 1 (0 is background), got {value}")
        self._set_object_id(value)

    def _set_object_id(self, value: int) -> None:
        self._object_id = int(value)
        self._on_object_id(value=self._object_id)

    def next_free_id(self, scan: bool = False) -> int:
        """One more than the largest label in the layer (1 when there is none), and past the
        reserved ids.

        Parameters
        ----------
        scan : bool
            Also read Labels data that is not a numpy array (dask, zarr; up to
            :data:`~.labels.SCAN_PIXELS`) to find its largest label; otherwise such a layer
            gets the current id + 1.
        """
        free = labels_.next_free_id(self.in_viewer(), self._object_id, scan)
        return max(free, max(self._reserved(), default=0) + 1)

    def next_object(self) -> int:
        """Move the object id to the next free id; returns it."""
        self.object_id = self.next_free_id()
        return self._object_id

    # -- writing ----------------------------------------------------------------------------------
    def commit(
        self, mask: np.ndarray | None, sl: SliceInfo, image: Image | None, overwrite: bool
    ) -> int:
        """Write ``mask`` of slice ``sl`` of ``image`` under :attr:`object_id`, as one undo step.

        Only background pixels are painted unless ``overwrite``. The layer is created if
        needed. The object id does not move (the caller decides).

        Returns
        -------
        int
            Number of pixels written (more than 0).

        Raises
        ------
        AnnotatorError
            No mask (or an empty one), no image, a layer of another shape, an id its dtype
            cannot hold, or no pixel to write (nothing is written).
        """
        if mask is None or not mask.any():
            raise AnnotatorError(
                "Nothing to commit: click on an object (or draw a box) and wait for the mask."
            )
        if image is None:
            raise AnnotatorError(NO_IMAGE)
        labels = self.ensure(image)
        value = self._object_id
        labels_.check_label_value(labels, value)
        with labels_.separate_undo_step(labels):
            painted = labels_.paint_mask(labels, sl, mask, value, overwrite)
        if painted == 0:
            raise AnnotatorError(
                "Nothing was written: every pixel of the mask already has a label. Tick "
                "'Overwrite existing labels' to replace them."
            )
        return painted

    def undo(self) -> bool:
        """Undo the layer's last change (napari's own undo history); whether there was one.

        The object id moves to the next free id afterwards.
        """
        labels = self.in_viewer()
        if labels is None:
            return False
        # A propagation run writing into the layer now: its frames so far are the last step.
        with labels_.paused_undo_group(labels):
            history = labels_.undo_history(labels)
            if history is not None and len(history) == 0:
                return False
            labels.undo()
        self.next_object()
        return True
