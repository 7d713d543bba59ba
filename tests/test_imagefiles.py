"""Opening images lazily (imagefiles.open_image): OME-Zarr, zarr arrays, TIFF, .npy."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam2_webgpu.imagefiles import ImageFileError, open_image

zarr = pytest.importorskip("zarr")


def ome(path, data, axes, version="0.5"):
    group = zarr.open_group(str(path), mode="w")
    level = group.create_array("0", shape=data.shape, chunks=(1,) * (data.ndim - 2) + (32, 32),
                               dtype=data.dtype)  # fmt: skip
    level[:] = data
    group.create_array("1", shape=(1, 1), dtype=data.dtype)  # a coarser level, unused
    multiscales = [
        {"axes": [{"name": n} for n in axes], "datasets": [{"path": "0"}, {"path": "1"}]}
    ]
    if version == "0.5":
        group.attrs["ome"] = {"version": "0.5", "multiscales": multiscales}
    else:
        group.attrs["multiscales"] = multiscales
    return path


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_ome_zarr_axes(tmp_path, version):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (1, 3, 4, 50, 60), dtype=np.uint16)
    image = open_image(ome(tmp_path / "a.zarr", data, "tczyx", version))
    # Singleton t dropped, the three channels moved last: (z, y, x, c).
    assert image.shape == (4, 50, 60, 3)
    np.testing.assert_array_equal(
        np.asarray(image[2, 5:9, 7:20]), data[0, :, 2, 5:9, 7:20].T.swapaxes(0, 1)
    )
    gray = open_image(ome(tmp_path / "g.zarr", data[:, :1], "tczyx", version))
    assert gray.shape == (4, 50, 60)
    with pytest.raises(ImageFileError, match="5 channels"):
        open_image(ome(tmp_path / "c5.zarr", rng.integers(0, 9, (5, 40, 40), np.uint8), "cyx"))
    with pytest.raises(ImageFileError, match="more than one frame axis"):
        open_image(ome(tmp_path / "tz.zarr", rng.integers(0, 9, (2, 2, 40, 40), np.uint8), "tzyx"))


def test_zarr_arrays_tiff_and_npy_are_lazy(tmp_path):
    data = np.arange(3 * 40 * 50, dtype=np.uint16).reshape(3, 40, 50)
    zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=data.shape, dtype=data.dtype)[
        :
    ] = data
    tifffile.imwrite(tmp_path / "s.tif", data, tile=(16, 16))
    np.save(tmp_path / "s.npy", data)
    for name in ("plain.zarr", "s.tif", "s.npy"):
        image = open_image(tmp_path / name)
        assert not isinstance(image, np.ndarray) or isinstance(image, np.memmap), name
        assert image.shape == data.shape
        np.testing.assert_array_equal(np.asarray(image[1, 3:9, 4:30]), data[1, 3:9, 4:30])
    group = zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    group.create_array("raw", shape=(4, 4), dtype="uint8")
    with pytest.raises(ImageFileError, match="not OME-Zarr.*raw"):
        open_image(tmp_path / "group.zarr")
    with pytest.raises(ImageFileError, match="not found"):
        open_image(tmp_path / "missing.zarr")
    (tmp_path / "bad.tif").write_bytes(b"nope")
    with pytest.raises(ImageFileError, match="Cannot read"):
        open_image(tmp_path / "bad.tif")
