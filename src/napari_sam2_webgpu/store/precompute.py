"""Encode every frame of a stack into an :class:`~.embeddings.EmbeddingStore` (resumable).

What ``napari-sam2-webgpu embed`` runs: frames already in the store are skipped, a frame that
cannot be encoded (no finite value, ...) is reported and the others go on, and a cancel keeps
what was written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .embeddings import EmbeddingStore, StoreIdentity, encoder_checksum

if TYPE_CHECKING:  # pragma: no cover
    from ..image.predictor import Sam2Predictor

__all__ = ["PrecomputeReport", "open_stack_store", "precompute_embeddings", "stack_layout"]

#: ``progress(done, total)``: called once before the first frame and after each one.
ProgressCallback = Callable[[int, int], None]


def stack_layout(image: np.ndarray) -> tuple[tuple[int, ...], bool]:
    """The stack's leading axes and whether its frames are colour.

    The rule of the CLI: 2D is one grey frame; 3D with a last axis of 1, 3 or 4 is one colour
    frame, else a stack of grey frames; 4D is a stack of colour frames.

    Raises
    ------
    ValueError
        Fewer than 2 or more than 4 axes.
    """
    if image.ndim == 2:
        return (), False
    if image.ndim == 3:
        if image.shape[-1] in (1, 3, 4):
            return (), True
        return (int(image.shape[0]),), False
    if image.ndim == 4:
        return (int(image.shape[0]),), True
    raise ValueError(f"expected an image or a stack of 2 to 4 axes, got shape {tuple(image.shape)}")


def _frames(image: np.ndarray, leading: tuple[int, ...]) -> Sequence[np.ndarray]:
    return [image] if not leading else image.reshape(-1, *image.shape[len(leading) :])


def open_stack_store(
    path: str,
    predictor: Sam2Predictor,
    image: np.ndarray,
    *,
    contrast_limits: tuple[float, float] | None = None,
    dtype: str = "float32",
    mode: str = "a",
) -> EmbeddingStore:
    """The store at ``path`` for ``image`` encoded by ``predictor``'s encoder.

    Parameters are those of :meth:`.EmbeddingStore.open`; the identity is made from the
    predictor's encoder file (checksum), the stack's layout and ``contrast_limits``.
    """
    leading, rgb = stack_layout(image)
    height, width = image.shape[len(leading) : len(leading) + 2]
    identity = StoreIdentity(
        model=predictor.name,
        encoder_sha256=encoder_checksum(predictor.encoder_path),
        frames=leading,
        image_hw=(int(height), int(width)),
        contrast_limits=None if contrast_limits is None else tuple(contrast_limits),
        rgb=rgb,
    )
    return EmbeddingStore.open(path, identity, dtype=dtype, mode=mode)


@dataclass
class PrecomputeReport:
    """What :func:`precompute_embeddings` did.

    Attributes
    ----------
    computed : list of int
        Frames encoded and stored now.
    skipped : list of int
        Frames the store already had.
    failed : list of (int, str)
        Frames that could not be encoded, with the reason.
    cancelled : bool
        Whether it stopped early.
    seconds : float
        Wall time.
    """

    computed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No frame failed."""
        return not self.failed


def precompute_embeddings(
    predictor: Sam2Predictor,
    image: np.ndarray,
    store: EmbeddingStore,
    *,
    contrast_limits: tuple[float, float] | None = None,
    progress: ProgressCallback | None = None,
    cancelled: Callable[[], bool] | threading.Event | None = None,
) -> PrecomputeReport:
    """Encode the frames of ``image`` that ``store`` lacks, and store them.

    Parameters
    ----------
    predictor : Sam2Predictor
        Its encoder must be the store's (see :func:`open_stack_store`).
    image : numpy.ndarray
        The image or stack (:func:`stack_layout`); the store's shape.
    store : EmbeddingStore
    contrast_limits : (float, float), optional
        As recorded in the store.
    progress : callable, optional
        ``progress(done, total)`` in frames.
    cancelled : callable or threading.Event, optional
        Polled before each frame; when it says so, the run stops (what was stored stays).

    Returns
    -------
    PrecomputeReport
    """
    from ..image.preprocess import ImageError

    start = time.perf_counter()
    leading, rgb = stack_layout(image)
    frames = _frames(image, leading)
    if len(frames) != store.num_frames:
        raise ValueError(f"the store has {store.num_frames} frames, the stack {len(frames)}")
    report = PrecomputeReport()
    done = set(store.done_frames())
    total = len(frames)
    if progress is not None:
        progress(0, total)
    stop = cancelled.is_set if isinstance(cancelled, threading.Event) else cancelled
    for index, frame in enumerate(frames):
        if index in done:
            report.skipped.append(index)
        elif stop is not None and stop():
            report.cancelled = True
            break
        else:
            try:
                embedding = predictor.compute_embedding(
                    frame, contrast_limits=contrast_limits, rgb=rgb
                )
            except ImageError as exc:
                report.failed.append((index, str(exc)))
            else:
                if store.put(index, embedding):
                    report.computed.append(index)
                else:  # another process stored it meanwhile
                    report.skipped.append(index)
        if progress is not None:
            progress(index + 1, total)
    report.seconds = time.perf_counter() - start
    return report
