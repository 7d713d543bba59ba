"""The one exception type of the napari glue: a problem the user can fix."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from napari.utils.notifications import show_error

__all__ = ["NO_IMAGE", "AnnotatorError", "guarded"]

#: What to tell the user when something needs the image being segmented and there is none.
NO_IMAGE = "Open an image and choose it in the SAM2 widget first."

logger = logging.getLogger("napari_sam2_webgpu")


class AnnotatorError(ValueError):
    """A user-facing problem (no image, wrong layer, 3D view...); the message says what to do.

    A ``ValueError``: from the console it is what a wrong argument (a Labels layer of another
    shape, a layer that is not an image) raises, as the user guide promises.
    """


def guarded(method: Callable) -> Callable:
    """Event callbacks: user-facing errors become notifications, never traceback dialogs.

    The decorated method's instance has ``report_problem(message, show=None)``.
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        from ..image import ImageError, PromptError

        try:
            return method(self, *args, **kwargs)
        except (AnnotatorError, ImageError, PromptError) as exc:
            self.report_problem(str(exc))
        except Exception as exc:  # a bug: keep the viewer usable and say what happened
            logger.exception("napari-sam2-webgpu: error in %s", method.__name__)
            self.report_problem(
                f"SAM2: unexpected error ({type(exc).__name__}: {exc}).", show_error
            )
        return None

    return wrapper
