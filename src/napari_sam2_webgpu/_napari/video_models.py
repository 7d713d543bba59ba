"""Whether a loaded model can propagate: its memory attention and memory encoder files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..image import Sam2Predictor

__all__ = ["video_components"]


def video_components(
    predictor: Sam2Predictor | None, size: str | None = None
) -> tuple[tuple[Path, Path] | None, str | None]:
    """The memory attention and memory encoder files of a loaded model, or why there are none.

    Parameters
    ----------
    predictor : Sam2Predictor or None
        The loaded model.
    size : str, optional
        The registry size it was chosen as (for the export command in the message).

    Returns
    -------
    (files, reason)
        ``((memory_attention, memory_encoder), None)``, or ``(None, message)`` where the
        message says how to get them.
    """
    files, reason, _ = video_components_with_summary(predictor, size)
    return files, reason


def video_components_with_summary(
    predictor: Sam2Predictor | None, size: str | None = None
) -> tuple[tuple[Path, Path] | None, str | None, str | None]:
    """:func:`video_components`, and the reason in one short line for the widget's status."""
    from ..models import companion_video_files, export_command

    if predictor is None:
        reason = "Load a model first (press Encode)."
        return None, reason, reason
    command = export_command(size or "tiny")
    encoder = getattr(predictor, "encoder_path", None)
    files = companion_video_files(encoder) if encoder is not None else None
    if files is None:
        where = (
            f"then choose '{size}' again"
            if size
            else "or convert your checkpoint with --out FOLDER and choose its encoder and "
            "decoder (the memory files are found next to the encoder, same name stem)"
        )
        return (
            None,
            "Propagation needs the model's video components (memory attention and memory "
            "encoder), which this model does not have (the samexporter pairs have none). "
            "Choose a size from the official source (the default), or convert a checkpoint "
            f"once, without torch:\n  {command}\n{where}.",
            "Propagate: this model has no video components (the button's tooltip says how "
            "to get them).",
        )
    if not _has_object_pointers(predictor):
        return (
            None,
            "This decoder has no object-pointer output, which propagation needs: use the "
            f"encoder and decoder exported together with the video components ({command}).",
            "Propagate: this decoder has no object-pointer output (see the button's tooltip).",
        )
    return files, None, None


def _has_object_pointers(predictor: Any) -> bool:
    """Whether the predictor's decoder outputs ``obj_ptrs`` (which propagation needs)."""
    return bool(predictor.decoder.has_object_pointers)
