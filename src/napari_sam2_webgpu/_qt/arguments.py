"""Checks of the console API's arguments: Qt-free, ValueError for a wrong argument."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._napari import AnnotatorError
from ..models import MODEL_SIZES, installed_models
from ..runtime import BACKENDS
from ..video import DIRECTIONS
from .loading import ModelChoice

__all__ = ["check_axis", "check_direction", "check_position", "free_axes", "model_choice"]


def check_position(position: Sequence[float], ndim: int) -> np.ndarray:
    """A world position as floats; ValueError unless it has 2 or ``ndim`` coordinates."""
    pos = np.asarray(position, dtype=float).ravel()  # ValueError/TypeError: not numbers
    if len(pos) not in (2, ndim):
        raise ValueError(
            f"position has {len(pos)} coordinates; give the {ndim} world coordinates in "
            "napari's axis order (as event.position), or the 2 displayed ones."
        )
    return pos


def check_direction(direction: str) -> str:
    """``direction`` if it is one of :data:`DIRECTIONS`, else ValueError."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return direction


def check_axis(axis: Any, free: list[int] | None, layer_name: str = "") -> int:
    """``axis`` as an int; ValueError unless it is one of the ``free`` (not displayed) axes.

    ``free`` None: not known (no image, or a 3D view), any integer passes.
    """
    try:
        axis = operator.index(axis)
    except TypeError:
        raise ValueError(f"axis must be an integer, got {axis!r}") from None
    if free is not None and axis not in free:
        raise ValueError(
            f"axis must be a data axis of '{layer_name}' that is not displayed "
            f"({free or 'none: it is a 2D image'}), got {axis}"
        )
    return axis


def free_axes(annotator: Any) -> tuple[list[int] | None, str]:
    """The data axes of the annotator's image that are not displayed, and its name; None if
    not known (no image, or a 3D view: a failure that starting a propagation reports)."""
    try:
        sl = annotator.current_slice()
    except AnnotatorError:
        return None, ""
    return [a for a, _ in sl.indices], annotator.image_layer.name


def model_choice(
    size: str | None,
    encoder: str | Path | None,
    decoder: str | Path | None,
    backend: str = "auto",
) -> ModelChoice:
    """The :class:`ModelChoice` of ``load_model``'s arguments; ValueError for invalid ones."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if (encoder is None) != (decoder is None):
        raise ValueError("Give both encoder= and decoder= (or neither).")
    if encoder is not None:
        if size is not None:
            raise ValueError("Give either size or encoder/decoder files, not both.")
        return ModelChoice(None, str(encoder), str(decoder), backend)
    if size not in MODEL_SIZES and size not in installed_models():
        raise ValueError(
            f"size must be one of {MODEL_SIZES} or the name of an installed model, got {size!r}"
        )
    return ModelChoice(size, None, None, backend)
