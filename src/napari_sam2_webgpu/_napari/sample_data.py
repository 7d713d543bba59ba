"""Sample images for *File > Open Sample > SAM2 on WebGPU*; all of them work offline.

Every image here is built from files that ship inside the scikit-image wheel (``skimage/data``),
so nothing is downloaded. Many other ``skimage.data`` images (``human_mitosis``, ``cells3d``,
``kidney``, ``lily``, ``protein_transport``, ...) are fetched from the network with pooch on first
use, so they are not used here. napari's own builtin samples already offer those with a
download.

Where the data come from, and their licenses (from the ``skimage.data`` docstrings; scikit-image's
own code is BSD-3-Clause, and each data set has its own terms):

- ``skimage.data.cell()`` (``cell.png``): a quantitative phase image of a cell floating in saline,
  retrieved from a digital hologram with ``qpformat``; pixel spacing 0.107 µm. From Müller et al.,
  "Accurate evaluation of size and refractive index for spherical objects in quantitative phase
  imaging", Optics Express 26(8): 10729-10743 (2018), doi:10.1364/OE.26.010729.
  License: CC0 (public domain).
- ``skimage.data.immunohistochemistry()`` (``ihc.png``): colonic glands, IHC staining of the
  FHL2 protein with DAB and hematoxylin counterstain, acquired at the Center for Microscopy and
  Molecular Imaging (CMMI). License: "No known copyright restrictions".

The nuclei images are derived from the IHC image: its hematoxylin (nuclear stain) channel,
separated with scikit-image's color deconvolution (``skimage.color.rgb2hed``, Ruifrok & Johnston
2001), gives a single-channel image with bright nuclei on a dark background, like a fluorescence
nuclear stain. The 3D stack is *pseudo*-3D: the real 2D nuclei are given a depth profile each
(a Gaussian in z around a random depth, fixed seed) over a dim out-of-focus haze, blurred along z
and given shot noise, so that objects appear and fade through the slices as in a widefield
z-stack. Its texture is real, its third dimension is synthetic: it exists to try the
slice-by-slice (z-stack) flow without a download.

Each function returns a list of napari ``LayerData`` tuples ``(data, kwargs, "image")``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LayerData = tuple[np.ndarray, dict[str, Any], str]

_CELL_LICENSE = "CC0 1.0 (public domain)"
_IHC_LICENSE = "No known copyright restrictions"
_CELL_SOURCE = (
    "scikit-image sample data skimage.data.cell() (cell.png); Mueller et al., "
    "Optics Express 26(8):10729 (2018), doi:10.1364/OE.26.010729"
)
_IHC_SOURCE = (
    "scikit-image sample data skimage.data.immunohistochemistry() (ihc.png); "
    "Center for Microscopy and Molecular Imaging (CMMI)"
)

# Crop of the IHC image used for the 3D stack: a round gland and the stroma around it, with many
# well separated nuclei (rows, columns).
_STACK_CROP = (slice(192, 448), slice(128, 384))
_STACK_DEPTH = 32
_STACK_SEED = 0


def _contrast(image: np.ndarray, low: float = 0.5, high: float = 99.8) -> tuple[float, float]:
    """Percentile contrast limits, never an empty range."""
    lo, hi = (float(v) for v in np.percentile(image, [low, high]))
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def _hematoxylin(rgb: np.ndarray) -> np.ndarray:
    """The hematoxylin optical density of an H-DAB image, rescaled to float32 in [0, 1]."""
    from skimage.color import rgb2hed

    h = rgb2hed(rgb)[..., 0]
    lo, hi = np.percentile(h, [0.5, 99.8])
    return np.clip((h - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _nuclei_image() -> np.ndarray:
    from skimage.data import immunohistochemistry

    return _hematoxylin(immunohistochemistry())


def nuclei() -> list[LayerData]:
    """2D nuclear stain (hematoxylin channel of the IHC sample), uint16, 512 x 512."""
    data = np.round(_nuclei_image() * 4095.0).astype(np.uint16)  # a 12-bit camera's range
    return [
        (
            data,
            {
                "name": "nuclei (hematoxylin)",
                "colormap": "gray",
                "contrast_limits": _contrast(data),
                "metadata": {
                    "source": _IHC_SOURCE,
                    "license": _IHC_LICENSE,
                    "description": (
                        "Hematoxylin (nuclear stain) channel of an H-DAB IHC image of colonic "
                        "glands, separated by color deconvolution (skimage.color.rgb2hed) and "
                        "scaled to 12 bits."
                    ),
                },
            },
            "image",
        )
    ]


def nuclei_3d() -> list[LayerData]:
    """Pseudo-3D nuclei stack (z, y, x) = (32, 256, 256), uint16, built from the 2D nuclei."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu
    from skimage.measure import label

    plane = _nuclei_image()[_STACK_CROP]
    smooth = ndi.gaussian_filter(plane, 1.0)
    threshold = 1.3 * threshold_otsu(smooth)  # a little above Otsu: separates touching nuclei
    labels = label(smooth > threshold)
    # Specks of a few pixels stay with the background (works on every scikit-image >= 0.21).
    sizes = np.bincount(labels.ravel())
    keep = np.flatnonzero(sizes >= 16)
    keep = keep[keep > 0]
    lut = np.zeros(sizes.size, dtype=np.int32)
    lut[keep] = np.arange(1, keep.size + 1)
    labels = lut[labels]
    n = int(keep.size)

    rng = np.random.default_rng(_STACK_SEED)
    depth = _STACK_DEPTH
    # Per object: the depth of its centre and its half-thickness, in slices.
    centre = rng.uniform(0.2, 0.8, n + 1).astype(np.float32) * (depth - 1)
    width = rng.uniform(2.0, 4.0, n + 1).astype(np.float32)

    # Every slice keeps a dim, out-of-focus copy of the tissue (the haze of a widefield stack);
    # each object adds its real texture on top of it, in focus around its own depth only.
    haze = 0.4 * ndi.gaussian_filter(plane, 2.5)
    excess = np.where(labels > 0, np.maximum(plane - haze, 0.0), 0.0).astype(np.float32)
    z = np.arange(depth, dtype=np.float32)[:, None, None]
    profile = np.exp(-0.5 * ((z - centre[labels]) / width[labels]) ** 2)
    volume = haze[None] + excess[None] * profile
    volume = ndi.gaussian_filter(volume, sigma=(1.0, 0.6, 0.6))  # axial blur > lateral blur

    photons = volume * 600.0 + 40.0  # peak ~640 photons over a 40-photon offset
    data = rng.poisson(photons).astype(np.uint16)
    return [
        (
            data,
            {
                "name": "nuclei 3D (pseudo-3D)",
                "colormap": "gray",
                "contrast_limits": _contrast(data, 0.5, 99.9),
                "scale": (2.0, 1.0, 1.0),  # anisotropic, as a z-stack's step usually is
                "metadata": {
                    "source": _IHC_SOURCE,
                    "license": _IHC_LICENSE,
                    "description": (
                        "Pseudo-3D stack: the real 2D hematoxylin nuclei of a crop of the IHC "
                        "sample, each given a Gaussian depth profile around a random depth "
                        f"(seed {_STACK_SEED}), blurred along z, with Poisson noise. The z axis "
                        "is synthetic; z step 2 (arbitrary units), pixel 1."
                    ),
                    "axes": "zyx",
                },
            },
            "image",
        )
    ]


def cell() -> list[LayerData]:
    """A cell in saline, quantitative phase image, uint8, 660 x 550, pixel 0.107 µm."""
    from skimage.data import cell as skimage_cell

    data = skimage_cell()
    pixel_um = 0.107
    return [
        (
            data,
            {
                "name": "cell (quantitative phase)",
                "colormap": "gray",
                "contrast_limits": _contrast(data, 0.1, 99.9),
                "scale": (pixel_um, pixel_um),
                "metadata": {
                    "source": _CELL_SOURCE,
                    "license": _CELL_LICENSE,
                    "description": (
                        "Quantitative phase image of a cell floating in saline, retrieved from "
                        "a digital hologram; scale is in micrometres."
                    ),
                    "pixel_size_um": pixel_um,
                },
            },
            "image",
        )
    ]


def tissue_rgb() -> list[LayerData]:
    """Colonic glands, H-DAB immunohistochemistry, RGB uint8, 512 x 512 x 3."""
    from skimage.data import immunohistochemistry

    return [
        (
            immunohistochemistry(),
            {
                "name": "tissue IHC (RGB)",
                "rgb": True,
                "metadata": {
                    "source": _IHC_SOURCE,
                    "license": _IHC_LICENSE,
                    "description": (
                        "Colonic glands: IHC staining of FHL2 with DAB (brown), hematoxylin "
                        "counterstain (blue nuclei). Brightfield RGB."
                    ),
                },
            },
            "image",
        )
    ]
