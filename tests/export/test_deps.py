"""The check for the ``export`` extra (``napari_sam2_webgpu.export.deps``)."""

from __future__ import annotations

import pytest

from napari_sam2_webgpu.export import deps


def test_missing_modules_are_named_with_the_install_command(monkeypatch) -> None:
    monkeypatch.setattr(deps, "EXPORT_MODULES", ("json", "no_such_module_a", "no_such_module_b"))
    with pytest.raises(ImportError, match="no_such_module_a, no_such_module_b") as info:
        deps.require_export_deps()
    assert "napari-sam2-webgpu[export]" in str(info.value)
    assert "json" not in str(info.value).split(":")[0]


def test_nothing_missing_passes(monkeypatch) -> None:
    monkeypatch.setattr(deps, "EXPORT_MODULES", ("json",))
    deps.require_export_deps()
