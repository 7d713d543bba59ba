"""The dock widget's old home: it lives in :mod:`napari_sam2_webgpu._qt` now.

Kept so that ``napari_sam2_webgpu._widget.Sam2Widget`` (scripts, older manifests) still works;
the other names are re-exported for the same reason.
"""

from __future__ import annotations

from ._qt.shortcuts import SHORTCUT_HELP, SHORTCUTS  # noqa: F401
from ._qt.status import PROPAGATE_HELP  # noqa: F401
from ._qt.status import device_details as _device_details  # noqa: F401
from ._qt.status import device_line as _device_line  # noqa: F401
from ._qt.status import error_message as _error_message  # noqa: F401
from ._qt.widget import HELP, NEW_LABELS, Sam2Widget  # noqa: F401

__all__ = ["SHORTCUTS", "Sam2Widget"]
