"""Tests of the ``napari_sam2_webgpu.models`` package as a whole."""

from __future__ import annotations


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, napari_sam2_webgpu.models as m; m.get_spec('tiny'); m.cache_dir();"
        "bad = [n for n in ('onnxruntime', 'pooch', 'requests', 'filelock', 'qtpy', 'napari')"
        " if n in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# Every public name of the module before it became a package, and what other modules import.
_OLD_PUBLIC = """
    ENV_ALLOW_UNVERIFIED ENV_BASE_URL ENV_CACHE_DIR ENV_DOWNLOAD_TIMEOUT ENV_OFFLINE MODEL_SIZES
    REGISTRY UNVERIFIED ModelArchive ModelDownloadError ModelError ModelFile
    ModelNotAvailableError VideoModelPaths companion_video_files exported_dir find_video_model
    ModelPaths ModelSpec ModelUnverifiedError ProgressCallback cache_dir cache_status
    ensure_model get_spec is_cached model_paths_from_files sha256_file verify_file
    DOWNLOAD_TIMEOUT STALL_SECONDS STALL_MIN_BYTES DOWNLOAD_CHUNK PROGRESS_SECONDS LOCK_TIMEOUT
    HASH_CHUNK STALE_PART_SECONDS VIDEO_SUFFIXES
""".split()


def test_old_public_names_are_re_exported() -> None:
    import napari_sam2_webgpu.models as models

    missing = [name for name in _OLD_PUBLIC if not hasattr(models, name)]
    assert missing == []
    assert all(hasattr(models, name) for name in models.__all__)


def test_modules_use_only_public_names_of_each_other() -> None:
    import ast
    from pathlib import Path

    import napari_sam2_webgpu.models as models

    for path in Path(models.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert private == [], f"{path.name} imports {private} from {node.module}"
