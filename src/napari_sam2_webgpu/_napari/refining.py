"""Refining an existing label in napari: its mask becomes the preview's mask prompt.

:class:`Refinement` is what :meth:`Annotator.refine` starts: one label of a Labels layer on one
slice, with its box and ``mask_input`` (:func:`napari_sam2_webgpu.image.refine.mask_prompt`).
While it holds, the preview decodes the label's refinement, and clicks on that slice correct it
(the points join the label's box and mask); commit then replaces exactly that label's pixels on
the slice (background and the label's own pixels only: other labels are untouched), as one undo
step. Nothing here imports Qt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..image.refine import mask_prompt
from ..image.tiling import TiledEmbedding
from .errors import AnnotatorError
from .labels import UndoGroup, write_frame

if TYPE_CHECKING:  # pragma: no cover
    from napari.layers import Labels

    from .slices import SliceInfo

__all__ = ["Refinement", "start_refinement"]


@dataclass
class Refinement:
    """One label being refined.

    Attributes
    ----------
    label : int
    layer : napari.layers.Labels
        Where the label is, and where the commit writes.
    slice : SliceInfo
        The slice it is refined on.
    mask : numpy.ndarray
        The label's pixels there when refining started (the mask prompt).
    box : numpy.ndarray
        ``(4,)`` its box, the prompt's box.
    mask_input : numpy.ndarray
        ``(1, 256, 256)`` its logits in the whole slice's model frame.
    """

    label: int
    layer: Labels
    slice: SliceInfo
    mask: np.ndarray
    box: np.ndarray
    mask_input: np.ndarray

    def applies_to(self, sl: SliceInfo | None) -> bool:
        """Whether the refinement is of slice ``sl``."""
        return sl is not None and sl.key == self.slice.key

    def prompts(
        self, points: Any, labels: Any, embedding: Any
    ) -> tuple[Any, Any, np.ndarray, np.ndarray]:
        """``(points, labels, box, mask_input)`` of a decode: the label's box and mask, plus
        the correction points. On a tiled slice the mask input is that of the tile the
        prompts decode in."""
        mask_input = self.mask_input
        if isinstance(embedding, TiledEmbedding):
            tile = embedding.window_for(points, labels, self.box)
            if tile is not None:
                mask_input = mask_prompt(self.mask[tile.slices])[1]
        return points, labels, self.box, mask_input

    def commit(self, mask: np.ndarray) -> int:
        """Make ``mask`` the label's pixels on the slice (other labels untouched), as one undo
        step; the number of pixels that changed."""
        if mask is None or not mask.any():
            raise AnnotatorError("Nothing to commit: the refined mask is empty.")
        before = np.asarray(self.layer.data[self.slice.indexer()]).copy()
        group = UndoGroup(self.layer)
        try:
            write_frame(group, self.slice, mask, self.label, overwrite=False)
        finally:
            group.close()
        after = np.asarray(self.layer.data[self.slice.indexer()])
        return int(np.count_nonzero(after != before))


def start_refinement(layer: Labels, sl: SliceInfo, label: int) -> Refinement:
    """A :class:`Refinement` of ``label`` of ``layer`` on slice ``sl``.

    Raises
    ------
    AnnotatorError
        The label has no pixel on the slice.
    """
    label = int(label)
    plane = np.asarray(layer.data[sl.indexer()])
    mask = plane == label
    if label < 1 or not mask.any():
        raise AnnotatorError(
            f"Label {label} has no pixels on this slice of '{layer.name}': choose a label that "
            "is shown (or step to a slice where it is)."
        )
    box, mask_input = mask_prompt(mask)
    return Refinement(label, layer, sl, mask, box, mask_input)
