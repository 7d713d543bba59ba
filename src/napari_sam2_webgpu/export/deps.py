"""The ``export`` extra: exporting needs torch, sam2 and onnx, which the plugin itself does not."""

from __future__ import annotations

__all__ = ["EXPORT_MODULES", "require_export_deps"]

#: The modules the ``export`` extra installs.
EXPORT_MODULES: tuple[str, ...] = ("torch", "sam2", "onnx")


def require_export_deps() -> None:
    """Raise an :class:`ImportError` naming the missing modules and how to install them.

    Raises
    ------
    ImportError
        When any of :data:`EXPORT_MODULES` cannot be imported.
    """
    missing = []
    for module in EXPORT_MODULES:
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(
            f"Exporting needs {', '.join(missing)}: install the export extra with "
            '`pip install "napari-sam2-webgpu[export]"` (sam2 itself with SAM2_BUILD_CUDA=0).'
        )
