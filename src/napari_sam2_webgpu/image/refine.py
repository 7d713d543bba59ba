"""Refining existing masks with SAM2: a label becomes a mask prompt (``mask_input``) and a box.

Segmentations from other tools (Cellpose, StarDist, a threshold, an earlier annotation) are
often close but coarse. SAM2 takes a mask as a prompt: :func:`mask_prompt` turns a boolean mask
into the decoder's ``mask_input`` (low-resolution logits of the mask in the model's frame) and
its bounding box, :func:`refine_mask` decodes them (with optional correction points), and
:func:`refine_labels` refines every label of a label image, many labels per decoder run.

Pure Python + numpy/scikit-image: nothing here imports napari, Qt or torch.

>>> refined = refine_labels(predictor, image, cellpose_labels)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .postprocess import LOGIT_CLAMP
from .prompts import LOW_RES

if TYPE_CHECKING:  # pragma: no cover
    from .encoder import ImageEmbedding
    from .predictor import Sam2Predictor

__all__ = ["MASK_EPS", "mask_prompt", "refine_labels", "refine_mask"]

#: Area fractions are clipped to [eps, 1 - eps] before the logit: a pixel fully inside the mask
#: gives +6.9, fully outside -6.9 (within SAM2's clamp of 32).
MASK_EPS = 1e-3
#: Labels refined per decoder run.
_BATCH = 16


def mask_prompt(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A boolean mask as SAM2's prompts: its box and its ``mask_input``.

    The image is seen by SAM2 resized to 1024 x 1024 (each axis on its own) and the decoder's
    mask input is 256 x 256 in that frame: the mask is resized the same way, each low-resolution
    pixel holding the mask's area fraction ``p``, and given as the logit ``log(p / (1 - p))``
    (``p`` clipped to ``[MASK_EPS, 1 - MASK_EPS]``).

    Parameters
    ----------
    mask : numpy.ndarray
        ``(H, W)`` boolean (non-zero: inside).

    Returns
    -------
    box : numpy.ndarray
        ``(4,)`` float ``x0, y0, x1, y1``: the mask's first and last pixel columns and rows.
    mask_input : numpy.ndarray
        ``(1, 256, 256)`` float32 logits, for ``Sam2Predictor.predict(mask_input=...)``.

    Raises
    ------
    ValueError
        An empty mask, or not 2D.

    Examples
    --------
    >>> m = np.zeros((40, 60), bool); m[10:20, 15:45] = True
    >>> box, logits = mask_prompt(m)
    >>> box.tolist(), logits.shape
    ([15.0, 10.0, 44.0, 19.0], (1, 256, 256))
    """
    from skimage.transform import resize

    mask = np.asarray(mask) != 0
    if mask.ndim != 2:
        raise ValueError(f"A mask prompt is a 2D mask, got shape {mask.shape}.")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("The mask is empty: there is nothing to refine.")
    box = np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)
    area = resize(
        mask.astype(np.float32), (LOW_RES, LOW_RES), order=1, anti_aliasing=True, mode="edge"
    )
    p = np.clip(area, MASK_EPS, 1.0 - MASK_EPS)
    logits = np.clip(np.log(p / (1.0 - p)), -LOGIT_CLAMP, LOGIT_CLAMP).astype(np.float32)
    return box, logits[None]


def refine_mask(
    predictor: Sam2Predictor,
    mask: np.ndarray,
    *,
    point_coords: Any = None,
    point_labels: Any = None,
    embedding: ImageEmbedding | None = None,
    multimask_output: bool = False,
) -> tuple[np.ndarray, float, np.ndarray]:
    """SAM2's refinement of ``mask``: its box and mask input, plus any correction points.

    Parameters
    ----------
    predictor : Sam2Predictor
        With the image set, or pass ``embedding``.
    mask : numpy.ndarray
        ``(H, W)`` boolean, the image's size.
    point_coords, point_labels : array-like, optional
        Correction points ``(N, 2)`` as (x, y) pixels and their 1/0 labels.
    embedding : ImageEmbedding, optional
        The image's embedding (default: the predictor's current image).
    multimask_output : bool
        Three candidates, the best kept (default: one, as SAM2 answers a mask prompt).

    Returns
    -------
    mask : numpy.ndarray
        ``(H, W)`` boolean refined mask.
    score : float
        Its predicted IoU.
    low_res_logits : numpy.ndarray
        ``(1, 256, 256)``, usable as ``mask_input`` for a further correction.

    Raises
    ------
    ValueError
        An empty mask, or one of another size than the image.
    """
    box, mask_input = mask_prompt(mask)
    _check_size(mask.shape, predictor, embedding)
    return predictor.predict_best(
        point_coords=point_coords,
        point_labels=point_labels,
        box=box,
        mask_input=mask_input,
        multimask_output=multimask_output,
        embedding=embedding,
    )


def _check_size(shape: tuple[int, ...], predictor: Any, embedding: Any) -> None:
    hw = embedding.image_hw if embedding is not None else predictor.image_hw
    if hw is not None and tuple(shape) != tuple(hw):
        raise ValueError(f"The mask is {tuple(shape)}, the image {tuple(hw)}: they must match.")


def refine_labels(
    predictor: Sam2Predictor,
    image: np.ndarray,
    labels: np.ndarray,
    *,
    ids: Sequence[int] | None = None,
    contrast_limits: Sequence[float] | None = None,
    rgb: bool | None = None,
    embedding: ImageEmbedding | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Refine every label (or ``ids``) of a label image with SAM2; a new label image.

    Each label's mask is the mask prompt (with its box) of one prompt set; labels are decoded
    16 to a decoder run. Each refined label's pixels are replaced by its refined mask, painted
    largest first, so where two refined masks overlap the smaller one wins (as
    :func:`~.automatic.masks_to_labels` with ``order="area"``). Labels not refined (not in
    ``ids``) keep all their pixels: a refined mask never takes them. Ids are kept.

    Parameters
    ----------
    predictor : Sam2Predictor
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)``, as :meth:`Sam2Predictor.set_image` takes it.
    labels : numpy.ndarray
        ``(H, W)`` integer label image (0: background).
    ids : sequence of int, optional
        Only these labels (default: every non-zero label).
    contrast_limits, rgb
        As for encoding the image.
    embedding : ImageEmbedding, optional
        The image's embedding, already computed (with the same contrast limits).
    progress : callable, optional
        ``progress(done, total)`` in labels, after each decoder run.

    Returns
    -------
    numpy.ndarray
        ``labels``' shape and dtype.

    Raises
    ------
    ValueError
        Labels of another size than the image, non-integer labels, or an id not present.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape != tuple(np.shape(image)[:2]):
        raise ValueError(
            f"The labels are {labels.shape}, the image {np.shape(image)[:2]}: they must match."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"Labels must be integers, got {labels.dtype}.")
    present = np.unique(labels)
    present = present[present != 0]
    wanted = present if ids is None else np.asarray(sorted(set(int(i) for i in ids)))
    missing = sorted(set(wanted.tolist()) - set(present.tolist()))
    if missing:
        raise ValueError(f"Label(s) {missing} are not in the label image.")
    out = labels.copy()
    if wanted.size == 0:
        return out
    if embedding is None:
        embedding = predictor.compute_embedding(image, contrast_limits=contrast_limits, rgb=rgb)
    refined: list[tuple[int, np.ndarray]] = []
    total = len(wanted)
    for start in range(0, total, _BATCH):
        batch = wanted[start : start + _BATCH]
        prompts = [mask_prompt(labels == label) for label in batch]
        masks, scores, _ = predictor.predict(
            box=np.stack([p[0] for p in prompts]),
            mask_input=np.stack([p[1] for p in prompts]),
            multimask_output=False,
            embedding=embedding,
        )
        refined.extend((int(label), m[0]) for label, m in zip(batch, masks, strict=True))
        if progress is not None:
            progress(min(start + _BATCH, total), total)
    # Each refined label is replaced by its refinement, which never takes the pixels of a
    # label that was not refined.
    replaced = np.isin(labels, wanted)
    out[replaced] = 0
    open_pixels = replaced | (labels == 0)
    for label, mask in sorted(refined, key=lambda item: -int(np.count_nonzero(item[1]))):
        out[mask & open_pixels] = label
    return out
