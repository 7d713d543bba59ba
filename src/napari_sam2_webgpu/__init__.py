"""Segment Anything 2 for napari on any GPU, through ONNX Runtime's WebGPU execution provider.

The core (``models``, ``runtime``, ``image``, ``video``, ``export``,
``cli``) is pure Python + numpy; importing this package stays fast because ONNX Runtime, torch and
Qt are imported only where they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = [
    "AutomaticMaskGenerator",
    "Sam2Predictor",
    "Sam2Propagator",
    "TileSpec",
    "__version__",
    "refine_labels",
]

if TYPE_CHECKING:  # pragma: no cover
    from .image import AutomaticMaskGenerator, Sam2Predictor, TileSpec, refine_labels
    from .video import Sam2Propagator

#: Names of the image package imported on first use.
_IMAGE = ("Sam2Predictor", "AutomaticMaskGenerator", "TileSpec", "refine_labels")


def __getattr__(name: str):
    # Lazy so that `import napari_sam2_webgpu` does not pull in onnxruntime.
    if name in _IMAGE:
        from . import image

        return getattr(image, name)
    if name == "Sam2Propagator":
        from .video import Sam2Propagator

        return Sam2Propagator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
