"""The one exception type of the napari glue: a problem the user can fix."""

from __future__ import annotations

__all__ = ["AnnotatorError"]


class AnnotatorError(ValueError):
    """A user-facing problem (no image, wrong layer, 3D view...); the message says what to do.

    A ``ValueError``: from the console it is what a wrong argument (a Labels layer of another
    shape, a layer that is not an image) raises, as the user guide promises.
    """
