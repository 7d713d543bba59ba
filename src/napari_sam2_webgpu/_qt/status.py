"""The dock's texts, as pure functions of plain values (no Qt, no widget).

What the status label, the Device row, the Propagate button and the error messages say is
decided here, so that it can be tested without a viewer; the widget gathers the values
(:class:`StatusFacts`) and shows the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._napari import AnnotatorError
from .._napari.prompt_layers import describe as describe_object
from ..image import ImageError

__all__ = [
    "PROPAGATE_HELP",
    "StatusFacts",
    "describe_object",
    "device_details",
    "device_line",
    "error_message",
    "gather_facts",
    "polarity_text",
    "propagate_button_state",
    "status_text",
    "with_error",
]

PROPAGATE_HELP = (
    "Track the current object through the stack from its prompted slices into the Labels layer "
    "(background pixels only, unless overwrite is on). Add a point where it drifts and "
    "propagate again. C afterwards: done, next object."
)

#: Failures whose message is meant for the user as it is (no traceback in the log).
EXPECTED_ERRORS = (ImageError, AnnotatorError, FileNotFoundError, ValueError)


@dataclass(frozen=True)
class StatusFacts:
    """What the status label reports, gathered by the widget.

    Attributes
    ----------
    model : str or None
        ``"<name> on <device>"`` of the loaded model; None when none is loaded.
    job : str or None
        The running load or encode's progress text (``""``: one without a bar yet); None
        when none runs.
    has_image : bool
        Whether an image layer is chosen.
    ready : bool
        Whether the displayed slice is encoded.
    last_encode_seconds : float or None
    last_decode_seconds, last_latency_seconds, last_score : float or None
        The last decode's time, click-to-mask latency and IoU score.
    propagation : str or None
        The running (or last) propagation's one-line description.
    propagation_unavailable : str or None
        Why propagation is unavailable with this model, in one line.
    cache_slices, cache_bytes : int
        The embedding cache's size.
    """

    model: str | None = None
    job: str | None = None
    has_image: bool = False
    ready: bool = False
    last_encode_seconds: float | None = None
    last_decode_seconds: float | None = None
    last_latency_seconds: float | None = None
    last_score: float | None = None
    propagation: str | None = None
    propagation_unavailable: str | None = None
    cache_slices: int = 0
    cache_bytes: int = 0


def status_text(facts: StatusFacts) -> str:
    """The status label's lines: model, what to do next, timings, propagation, cache.

    Parameters
    ----------
    facts : StatusFacts

    Returns
    -------
    str
    """
    lines = [f"Model: {facts.model}" if facts.model is not None else "Model: none loaded"]
    if facts.job is not None:
        lines.append(facts.job or "working…")
    elif not facts.has_image:
        lines.append("Open an image layer.")
    elif facts.ready:
        lines.append("Slice encoded: click on the objects.")
    else:
        lines.append("Slice not encoded: press Encode (or just click).")
    if facts.last_encode_seconds is not None:
        lines.append(f"Last encode {facts.last_encode_seconds:.2f} s")
    if facts.last_decode_seconds is not None:
        score = f", IoU {facts.last_score:.2f}" if facts.last_score is not None else ""
        latency = facts.last_latency_seconds or 0.0
        lines.append(
            f"Last decode {facts.last_decode_seconds * 1e3:.0f} ms "
            f"(click to mask {latency * 1e3:.0f} ms{score})"
        )
    if facts.propagation is not None:
        lines.append(facts.propagation)
    elif facts.model is not None and facts.propagation_unavailable:
        # One line; the Propagate button's tooltip has the whole explanation.
        lines.append(facts.propagation_unavailable)
    lines.append(f"Cache: {facts.cache_slices} slices, {facts.cache_bytes / 2**20:.0f} MiB")
    return "\n".join(lines)


def with_error(last_error: str | None, status: str) -> str:
    """The status as the console reads it: the last error (if any) in full, then ``status``."""
    return f"{last_error}\n{status}" if last_error else status


def propagate_button_state(running: bool, reason: str | None) -> tuple[str, bool, str]:
    """The Propagate button's ``(text, enabled, tooltip)``.

    Parameters
    ----------
    running : bool
        Whether a propagation runs (the button then cancels it).
    reason : str or None
        Why propagation cannot start now (None: it can).
    """
    if running:
        return "Cancel propagation", True, PROPAGATE_HELP
    return "Propagate", reason is None, reason or PROPAGATE_HELP


def polarity_text(positive: bool) -> str:
    """The polarity button's text: what a plain left click adds."""
    return "positive point (green) · T" if positive else "negative point (red) · T"


def error_message(exc: BaseException) -> str:
    """A one-paragraph message for a failed load, encode or propagation."""
    name = type(exc).__name__
    if isinstance(exc, MemoryError):
        return "SAM2 ran out of memory. Close other programs, or crop the image."
    if name == "WebGPUUnavailableError":
        return f"WebGPU is not available: {exc} Choose backend 'auto' or 'cpu'."
    if isinstance(exc, EXPECTED_ERRORS) or name.startswith("Model"):
        return str(exc)
    return f"SAM2 failed: {name}: {exc}"


def device_line(info: Any) -> str:
    """One short line for the Device row: where the model runs (the details go in a tooltip).

    Parameters
    ----------
    info : napari_sam2_webgpu.runtime.BackendInfo
        The loaded predictor's ``backend_info`` (any object with its attributes).
    """
    provider = getattr(info, "provider", None)
    adapter = getattr(info, "adapter", None)
    if provider == "webgpu":
        if adapter is None:
            return "WebGPU"
        backend = f" ({adapter.backend})" if getattr(adapter, "backend", "") else ""
        return f"WebGPU: {adapter.name}{backend}"
    if provider == "cpu":
        return "CPU (WebGPU unavailable)" if getattr(info, "fallback_reason", None) else "CPU"
    return str(info).splitlines()[0] if str(info) else "unknown"


def device_details(info: Any) -> str:
    """The Device row's tooltip: the execution provider in full, and where to learn more."""
    lines = [info.describe() if hasattr(info, "describe") else str(info)]
    reason = getattr(info, "fallback_reason", None)
    if reason:
        lines.append(f"Why not WebGPU: {reason}")
    requested = getattr(info, "requested", None)
    if requested:
        lines.append(f"Backend asked for: {requested}")
    lines.append("'napari-sam2-webgpu doctor' prints the full report.")
    return "\n".join(lines)


def gather_facts(
    annotator: Any, session: Any, jobs: Any, propagation: Any, cache: Any
) -> StatusFacts:
    """The :class:`StatusFacts` of the annotator, the model session, the job runner, the
    propagation controller and the embedding cache (read through their public attributes)."""
    p = session.predictor
    run = propagation.run or propagation.last_run
    return StatusFacts(
        model=f"{p.name} on {p.device}" if p is not None else None,
        job=jobs.progress_text,
        has_image=annotator.image_layer is not None,
        ready=annotator.is_ready,
        last_encode_seconds=session.last_encode_seconds,
        last_decode_seconds=annotator.last_decode_seconds,
        last_latency_seconds=annotator.last_latency_seconds,
        last_score=annotator.last_score,
        propagation=run.describe() if run is not None else None,
        propagation_unavailable=propagation.unavailable_summary,
        cache_slices=len(cache),
        cache_bytes=cache.nbytes,
    )
