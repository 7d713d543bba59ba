"""The decode scheduler: the newest prompt wins, fast decodes inline, slow ones in a worker.

A click must show its mask within tens of milliseconds, and a burst of clicks (or a dragged
point) must not queue decodes. :class:`DecodeScheduler` keeps one decode in flight; a request
made meanwhile marks it *pending*, and only the newest is decoded once the running one returns.
Every request carries a *generation*: a result of an older generation is dropped.

Where a decode runs depends on how long the previous decode of the image took (measured with an
injected clock, so that tests decide it): short ones run on the calling (GUI) thread, which is
quicker than a round trip through a worker thread competing with napari's redraw; long ones go to
``run_async``.

A :class:`DecodeRequest` carries the embedding it is decoded against, taken on the GUI thread
when the request is made: a mask can never mix two images when the displayed slice changes
while a worker decodes.

:class:`PreviewDecoder` is the annotator's side of the scheduler: which prompts a decode takes
(or why there is nothing to decode), and what a result does (the preview, timings, events).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.notifications import show_error, show_info

from ..image import PromptError
from ..image.tiling import TiledEmbedding
from .errors import NO_IMAGE, AnnotatorError
from .slices import LARGE_IMAGE_PIXELS, SliceInfo

if TYPE_CHECKING:  # pragma: no cover
    from ..image import ImageEmbedding, Sam2Predictor
    from .annotator import Annotator

logger = logging.getLogger("napari_sam2_webgpu")

__all__ = [
    "INLINE_DECODE_PIXELS",
    "INLINE_DECODE_SECONDS",
    "DecodeRequest",
    "DecodeResult",
    "DecodeScheduler",
    "PreviewDecoder",
    "decode",
    "needs_encoding",
    "run_now",
]

#: Decodes expected to take at most this long run on the GUI thread; longer ones in a worker.
#: A decode in a worker thread competes with napari's redraw for the CPU cores, so it is slower
#: from click to mask than the same decode on the GUI thread (docs/benchmarks.md).
INLINE_DECODE_SECONDS = 0.15
#: Before the first decode of an image, slices up to this size are decoded on the GUI thread.
INLINE_DECODE_PIXELS = 2048 * 2048


@dataclass
class DecodeRequest:
    """The prompts of one slice, and what to decode them against.

    Attributes
    ----------
    generation : int
        Set by the scheduler: a result whose generation is not the newest is dropped.
    slice : SliceInfo
        The slice the prompts are on (the mask is shown there).
    points, labels, box
        SAM ``(x, y)`` points ``(N, 2)``, their 1/0 labels ``(N,)``, the box ``(4,)``; None
        where absent.
    multimask : bool
        Ask for three candidates and keep the best.
    started : float
        Clock time of the request (for the click-to-mask latency).
    inline : bool
        Whether it ran on the calling thread.
    embedding : ImageEmbedding or None
        The slice's embedding, taken when the request is made: the worker decodes against it.
    predictor : Sam2Predictor or None
        The model that decodes it.
    mask_input : numpy.ndarray or None
        ``(1, 256, 256)`` logits of a mask prompt (a label being refined).
    conditioned : callable or None
        On a slice of a propagated stack: computes the object's memory-conditioned mask (what
        the next propagation keeps there) instead of decoding the prompts alone.
    """

    generation: int
    slice: SliceInfo
    points: np.ndarray | None
    labels: np.ndarray | None
    box: np.ndarray | None
    multimask: bool
    started: float = 0.0
    inline: bool = False
    embedding: ImageEmbedding | None = None
    predictor: Sam2Predictor | None = None
    mask_input: np.ndarray | None = None  # a mask prompt (refining a label), else None
    conditioned: Callable[[], np.ndarray] | None = None


@dataclass
class DecodeResult:
    """A decoded mask (or the reason there is none)."""

    request: DecodeRequest
    mask: np.ndarray | None = None
    score: float | None = None
    seconds: float = 0.0
    error: str | None = None
    encoded: bool = False  # a tile was encoded first (its time says nothing of decoding)


def run_now(fn: Callable[[], Any], on_done: Callable[[Any], None]) -> None:
    """``run_async`` that runs ``fn`` at once on the calling thread."""
    on_done(fn())


def needs_encoding(request: DecodeRequest) -> bool:
    """Whether decoding ``request`` first encodes a tile of a tiled slice (seconds on a CPU)."""
    embedding = request.embedding
    if not isinstance(embedding, TiledEmbedding):
        return False
    return not embedding.ready_for(request.points, request.labels, request.box)


def decode(request: DecodeRequest, clock: Callable[[], float]) -> DecodeResult:
    """Decode a request (on any thread); never raises: a failure is the result's ``error``."""
    start = clock()
    encodes = needs_encoding(request)
    try:
        if request.conditioned is not None:
            return DecodeResult(request, request.conditioned(), None, clock() - start, None)
        # Only the best mask is upsampled to full size: what the preview shows.
        mask, score, _ = request.predictor.predict_best(
            point_coords=request.points,
            point_labels=request.labels,
            box=request.box,
            mask_input=request.mask_input,
            multimask_output=request.multimask,
            embedding=request.embedding,
        )
        return DecodeResult(request, mask, score, clock() - start, None, encodes)
    except (PromptError, ValueError) as exc:
        return DecodeResult(request, error=str(exc))
    except Exception as exc:
        logger.exception("napari-sam2-webgpu: decoding failed")
        return DecodeResult(request, error=f"Decoding failed: {type(exc).__name__}: {exc}")


class DecodeScheduler:
    """One decode at a time, newest wins, inline when fast.

    Parameters
    ----------
    prepare : callable
        ``prepare(generation)`` returns the :class:`DecodeRequest` of the displayed prompts, or
        None when there is nothing to decode (it clears the preview, or asks for an encode).
    deliver : callable
        ``deliver(result)`` is called with each result of the newest generation (GUI thread).
    run_async : callable, optional
        ``run_async(fn, on_done)`` runs ``fn()`` and calls ``on_done(result)`` on the GUI
        thread. Default: :func:`run_now`.
    clock : callable
        Seconds as a float.

    Attributes
    ----------
    generation : int
        Bumped by every request and by :meth:`invalidate`.
    inline_decode_seconds : float
        Decodes expected to be faster than this run on the calling thread; 0 sends every decode
        to ``run_async``.
    estimate : float or None
        Duration of the last successful decode (None: unknown; then small slices run inline).
    """

    def __init__(
        self,
        prepare: Callable[[int], DecodeRequest | None],
        deliver: Callable[[DecodeResult], None],
        run_async: Callable[[Callable[[], Any], Callable[[Any], None]], None] | None,
        clock: Callable[[], float],
    ) -> None:
        self._prepare = prepare
        self._deliver = deliver
        self._run_async = run_async or run_now
        self.clock = clock
        self.generation = 0
        self.inline_decode_seconds = INLINE_DECODE_SECONDS
        self.estimate: float | None = None
        self.in_flight = False
        self.pending = False
        self.closed = False

    @property
    def busy(self) -> bool:
        """Whether a decode is running or waiting."""
        return self.in_flight or self.pending

    def invalidate(self) -> None:
        """Make any decode in flight stale (its result is dropped)."""
        self.generation += 1

    def request(self) -> None:
        """Decode the newest prompts: now, or after the decode in flight returns."""
        if self.closed:
            return
        self.generation += 1
        if self.in_flight:
            self.pending = True
            return
        self._start()

    def is_inline(self, request: DecodeRequest) -> bool:
        """Whether this decode is fast enough to run on the calling (GUI) thread."""
        if self.inline_decode_seconds <= 0 or needs_encoding(request):
            return False  # a tile to encode first: seconds, never on the GUI thread
        if self.estimate is None:
            height, width = request.slice.shape
            return height * width <= INLINE_DECODE_PIXELS
        return self.estimate <= self.inline_decode_seconds

    def _start(self) -> None:
        request = self._prepare(self.generation)
        if request is None:
            return
        self.in_flight = True
        request.inline = self.is_inline(request)
        run = run_now if request.inline else self._run_async
        clock = self.clock
        run(lambda: decode(request, clock), self._done)

    def _done(self, result: DecodeResult) -> None:
        self.in_flight = False
        if self.closed:
            return
        if result.mask is not None and not result.encoded:
            self.estimate = result.seconds
        if self.pending:
            self.pending = False
            self._start()
            return
        if result.request.generation != self.generation:
            return
        self._deliver(result)


class PreviewDecoder:
    """Decodes the annotator's displayed prompts into its preview, through a scheduler.

    Parameters
    ----------
    annotator : Annotator
        Read through its public API: the image, displayed slice and its prompts, the model and
        whether the slice is encoded; written through its preview, events and
        ``report_problem``.
    run_async : callable or None
        How slow decodes run (see :class:`DecodeScheduler`).
    clock : callable
        Seconds as a float.

    Attributes
    ----------
    scheduler : DecodeScheduler
        Calls :meth:`prepare` and :meth:`deliver`.
    last_decode_seconds, last_latency_seconds : float or None
        Time of the most recent decode (decoder and upsampling), and from the prompt change to
        the preview being updated.
    last_score : float or None
        Predicted IoU of the mask in the preview.
    """

    def __init__(
        self,
        annotator: Annotator,
        run_async: Callable[[Callable[[], Any], Callable[[Any], None]], None] | None,
        clock: Callable[[], float],
    ) -> None:
        self.annotator = annotator
        self.scheduler = DecodeScheduler(self.prepare, self.deliver, run_async, clock)
        self.last_decode_seconds: float | None = None
        self.last_latency_seconds: float | None = None
        self.last_score: float | None = None
        self.last_request: DecodeRequest | None = None  # of the mask in the preview

    def request(self) -> None:
        """Decode the displayed prompts (the newest request wins)."""
        self.scheduler.request()

    def clear_preview(self) -> None:
        """Show no mask (and no score for it)."""
        self.annotator.preview.clear()
        self.last_score = None
        self.last_request = None

    def prepare(self, generation: int) -> DecodeRequest | None:
        """The scheduler's ``prepare``: the displayed prompts, or None (and say why)."""
        a = self.annotator
        try:
            sl = a.current_slice() if a.image_layer is not None else None
        except AnnotatorError:
            sl = None
        points, labels, box = a.slice_prompts(sl) if sl is not None else (None, None, None)
        refinement = a.refinement
        if refinement is not None and not refinement.applies_to(sl):
            refinement = None
        if points is None and box is None and refinement is None:
            self.clear_preview()
            return None
        if not a.is_ready:
            self.clear_preview()
            self._ask_for_encode()
            return None
        height, width = sl.shape
        embedding, mask_input, conditioned = a.predictor.embedding, None, None
        if refinement is not None:  # the label's mask and box, and the clicks that correct it
            points, labels, box, mask_input = refinement.prompts(points, labels, embedding)
        elif getattr(a, "memory_preview", None) is not None:  # a propagated object
            conditioned = a.memory_preview(sl, points, labels, box)  # its memory decides
        return DecodeRequest(
            generation,
            sl,
            points,
            labels,
            box,
            # SAM2 answers a mask prompt with one mask.
            multimask=a.multimask and refinement is None and height * width <= LARGE_IMAGE_PIXELS,
            started=self.scheduler.clock(),
            embedding=embedding,
            predictor=a.predictor,
            mask_input=mask_input,
            conditioned=conditioned,
        )

    def _ask_for_encode(self) -> None:
        """There are prompts but no embedding of the slice: encode, or say how to."""
        a = self.annotator
        if a.auto_encode is not None:
            a.auto_encode()  # the widget encodes, or says why it cannot
        elif a.predictor is None:
            a.report_problem(
                "No SAM2 model is loaded yet: choose one in the SAM2 widget and press "
                "Encode. Your prompts are kept and decoded once the image is encoded."
            )
        else:
            show_info("This slice is not encoded yet: press Encode in the SAM2 widget.")

    def deliver(self, result: DecodeResult) -> None:
        """The scheduler's ``deliver``: show the newest mask, or the problem."""
        if result.error:
            self.annotator.report_problem(result.error)
            self.clear_preview()
            return
        try:
            self.show(result)
            if result.encoded:  # a tile more is encoded: the cache and the grid see it
                self.annotator.embeddings.refresh_current()
                self.annotator.large.refresh_grid()
        except Exception as exc:  # e.g. the image was removed in the meantime
            logger.exception("napari-sam2-webgpu: preview update failed")
            self.annotator.report_problem(
                f"SAM2: could not show the mask ({type(exc).__name__}: {exc}).", show_error
            )

    def show(self, result: DecodeResult) -> None:
        """Put a decoded mask into the preview; emit ``status`` and ``decoded``."""
        a = self.annotator
        image = a.image_layer
        if image is None:
            raise AnnotatorError(NO_IMAGE)
        if a.preview.show(image, result.request.slice, result.mask, self.insert_index):
            a.events.layers()
        self.last_request = result.request  # what the preview shows: recorded at commit
        self.last_score = result.score
        self.last_decode_seconds = result.seconds
        self.last_latency_seconds = self.scheduler.clock() - result.request.started
        a.events.status()
        a.events.decoded()

    def insert_index(self) -> int:
        """Where a new preview layer goes: above the image and the target Labels layer."""
        a = self.annotator
        layers = a.viewer.layers
        index = 0
        for layer in (a.image_layer, a.labels_layer):
            if layer is not None and layer in layers:
                index = max(index, layers.index(layer) + 1)
        return index
