"""The sample data and the npe2 manifest: fast, offline, no Qt."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import re
import socket
from pathlib import Path

import numpy as np
import pytest

from napari_sam2_webgpu._napari import sample_data

REPO = Path(__file__).resolve().parents[2]
ROOT_MANIFEST = REPO / "napari.yaml"
PACKAGE_MANIFEST = REPO / "src" / "napari_sam2_webgpu" / "napari.yaml"
PACKAGE = "napari_sam2_webgpu"
PYTHON_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

# key -> (shape, dtype)
EXPECTED = {
    "nuclei": ((512, 512), np.uint16),
    "nuclei_3d": ((32, 256, 256), np.uint16),
    "cell": ((660, 550), np.uint8),
    "tissue_rgb": ((512, 512, 3), np.uint8),
}


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails, as on a machine with no network."""

    def refuse(*args, **kwargs):
        raise OSError("network access in a test that must work offline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_sample_layer_data(key, no_network):
    layers = getattr(sample_data, key)()
    assert isinstance(layers, list) and len(layers) == 1
    data, kwargs, layer_type = layers[0]
    shape, dtype = EXPECTED[key]
    assert layer_type == "image"
    assert isinstance(data, np.ndarray)
    assert data.shape == shape
    assert data.dtype == dtype
    assert data.max() > data.min()
    assert kwargs["name"]
    assert kwargs["metadata"]["source"]
    assert kwargs["metadata"]["license"]
    if "scale" in kwargs:
        assert len(kwargs["scale"]) == data.ndim
    if kwargs.get("rgb"):
        assert data.shape[-1] == 3
    else:
        lo, hi = kwargs["contrast_limits"]
        assert data.min() <= lo < hi <= data.max()


def test_nuclei_3d_is_deterministic_and_varies_in_z():
    ((a, _, _),) = sample_data.nuclei_3d()
    ((b, _, _),) = sample_data.nuclei_3d()
    np.testing.assert_array_equal(a, b)
    # Objects come into focus at different depths: the bright pixels of the middle slice are
    # not all bright in the first and last slices, and the stack is not a copy of one plane.
    per_slice = a.reshape(a.shape[0], -1).astype(np.float64)
    mid = per_slice[a.shape[0] // 2]
    bright = mid > np.percentile(mid, 99)
    assert per_slice[0][bright].mean() < 0.8 * mid[bright].mean()
    assert per_slice[-1][bright].mean() < 0.8 * mid[bright].mean()
    assert np.corrcoef(per_slice[0], per_slice[-1])[0, 1] < 0.95


def _manifest():
    from npe2 import PluginManifest

    return PluginManifest.from_file(ROOT_MANIFEST)


def test_manifest_parses_and_is_consistent():
    manifest = _manifest()
    assert manifest.name == "napari-sam2-webgpu"
    contributions = manifest.contributions
    commands = {c.id: c for c in contributions.commands}
    assert "napari-sam2-webgpu.make_widget" in commands
    for command in commands.values():
        assert command.id.startswith("napari-sam2-webgpu.")
        assert PYTHON_NAME.match(command.python_name), command.python_name
        assert command.python_name.startswith(PACKAGE + ".")
    widgets = contributions.widgets or []
    assert [w.display_name for w in widgets] == ["Segment Anything 2"]
    assert commands[widgets[0].command].python_name == "napari_sam2_webgpu._qt.widget:Sam2Widget"
    samples = contributions.sample_data or []
    assert sorted(s.key for s in samples) == sorted(EXPECTED)
    for sample in samples:
        assert sample.command in commands


def test_manifest_python_names_resolve_to_files():
    """Each python_name's module is a file of the package, or a package directory."""
    for command in _manifest().contributions.commands:
        module = command.python_name.split(":")[0]
        relative = Path("src", *module.split("."))
        assert (REPO / relative.with_suffix(".py")).is_file() or (
            REPO / relative / "__init__.py"
        ).is_file(), f"no module file for {command.python_name}"


def test_sample_commands_resolve():
    manifest = _manifest()
    sample_commands = {s.command for s in manifest.contributions.sample_data or []}
    for command in manifest.contributions.commands:
        if command.id not in sample_commands:
            continue
        module_name, attr = command.python_name.split(":")
        assert callable(getattr(importlib.import_module(module_name), attr))


def test_manifest_ships_inside_the_package():
    """The package's napari.yaml is a real file (a symlink breaks Windows checkouts) with the
    same content as the top-level one, which the napari plugin template keeps at the root."""
    assert not PACKAGE_MANIFEST.is_symlink() and not ROOT_MANIFEST.is_symlink()
    assert PACKAGE_MANIFEST.read_bytes() == ROOT_MANIFEST.read_bytes()
    shipped = importlib.resources.files(PACKAGE) / "napari.yaml"
    assert shipped.is_file()
    assert shipped.read_bytes() == ROOT_MANIFEST.read_bytes()


def test_entry_point_resolves_installed_manifest():
    """The `napari.manifest` entry point finds the manifest, as napari does at startup."""
    from npe2 import PluginManifest

    try:
        dist = importlib.metadata.distribution("napari-sam2-webgpu")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        pytest.skip("napari-sam2-webgpu is not installed")
    entry_points = [ep for ep in dist.entry_points if ep.group == "napari.manifest"]
    assert [ep.value for ep in entry_points] == ["napari_sam2_webgpu:napari.yaml"]
    manifest = PluginManifest.from_distribution("napari-sam2-webgpu")
    assert manifest.name == "napari-sam2-webgpu"
    assert manifest.package_metadata is not None
