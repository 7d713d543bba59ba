"""Compatibility module: the sample data live in :mod:`napari_sam2_webgpu._napari.sample_data`."""

from __future__ import annotations

from ._napari.sample_data import cell, nuclei, nuclei_3d, tissue_rgb

__all__ = ["cell", "nuclei", "nuclei_3d", "tissue_rgb"]
