"""Segment Anything 2 for napari on any GPU, through ONNX Runtime's WebGPU execution provider.

The core (``models``, ``runtime``, ``image``, ``video``, ``export``,
``cli``) is pure Python + numpy; importing this package stays fast because ONNX Runtime, torch and
Qt are imported only where they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["AutomaticMaskGenerator", "Sam2Predictor", "Sam2Propagator", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .image import AutomaticMaskGenerator, Sam2Predictor
    from .video import Sam2Propagator


def __getattr__(name: str):
    # Lazy so that `import napari_sam2_webgpu` does not pull in onnxruntime.
    if name == "Sam2Predictor":
        from .image import Sam2Predictor

        return Sam2Predictor
    if name == "AutomaticMaskGenerator":
        from .image import AutomaticMaskGenerator

        return AutomaticMaskGenerator
    if name == "Sam2Propagator":
        from .video import Sam2Propagator

        return Sam2Propagator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
