"""Which model the widget loads, and the work of a load-and/or-encode job (no Qt).

The size -> files policy is the library's one (:func:`napari_sam2_webgpu.models.resolve_model`),
so that the widget, the CLI and ``Sam2Predictor.from_pretrained`` load the same files.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .jobs import Outcome

if TYPE_CHECKING:  # pragma: no cover
    from ..image import Sam2Predictor

__all__ = ["ModelChoice", "job_steps", "load_and_encode", "load_predictor"]


@dataclass(frozen=True)
class ModelChoice:
    """A model as chosen in the widget: a registry ``size``, or an ``encoder``/``decoder`` pair,
    on a ``backend``."""

    size: str | None
    encoder: str | None
    decoder: str | None
    backend: str

    def describe(self) -> str:
        """``"sam2.1 <size>"``, or the encoder's file name."""
        if self.size:
            return f"sam2.1 {self.size}"
        return Path(self.encoder or "?").name


def load_predictor(choice: ModelChoice, report: Callable[..., None]) -> Sam2Predictor:
    """Find (download once) and load ``choice``; ``report(text, done[, total])`` tells how far.

    Steps 0 (looking for the files; downloads count KiB) and 1 (creating the sessions).
    """
    from ..image import Sam2Predictor

    if choice.size is not None:
        from ..models import resolve_model

        report(f"SAM2: looking for {choice.describe()}", 0)

        def download(done: int, total: int, what: str) -> None:
            # A file name while downloading; "Building <file>" while building from a checkpoint.
            action = (
                what[0].lower() + what[1:] if what.startswith("Building") else f"downloading {what}"
            )
            report(f"SAM2: {action}", done >> 10, total >> 10)

        # The library's one policy: an installed model wins, else the size's source.
        paths = resolve_model(choice.size, progress=download)
        encoder, decoder, name = paths.encoder, paths.decoder, choice.describe()
    else:
        encoder, decoder, name = choice.encoder, choice.decoder, None
    report("SAM2: creating ONNX Runtime sessions", 1)
    return Sam2Predictor.from_files(encoder, decoder, choice.backend, name=name)


def job_steps(choice: ModelChoice | None, request: Any) -> int:
    """The progress steps of a job: 2 to load a model, 1 to encode a slice."""
    return (2 if choice is not None else 0) + (1 if request is not None else 0)


def load_and_encode(
    predictor: Sam2Predictor | None,
    choice: ModelChoice | None,
    request: Any,
    report: Callable[..., None],
    cancelled: Callable[[], bool],
) -> Outcome:
    """A job's work, in a worker thread: load ``choice`` (None: use ``predictor``), then
    compute ``request`` (an ``EncodeRequest``; None: load only). Never raises: a failure,
    :class:`~napari_sam2_webgpu._qt.jobs.Cancelled` included, is the outcome's ``error``."""
    steps = job_steps(choice, request)
    try:
        pred = predictor if choice is None else load_predictor(choice, report)
        if request is None or cancelled():
            return Outcome(predictor=pred)
        report(f"SAM2: encoding ({request.slice.describe()})", steps - 1)
        start = time.perf_counter()
        embedding = request.compute(pred)
        return Outcome(pred, embedding, time.perf_counter() - start)
    except BaseException as exc:  # noqa: BLE001 - reported on the GUI thread
        return Outcome(error=exc)
