"""The ``napari-sam2-webgpu`` command: models, download, doctor, segment, segment-all, refine,
propagate, tracks, replay, embed, convert, export, bench, to-coco, from-coco.

One module per group of commands, each command an ``add_*_command`` (its options) beside its
``_cmd_*`` (what it does); ``_common`` holds what they share.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ._common import CommandError, attach_negative_values
from .coco_commands import add_from_coco_command, add_to_coco_command
from .image_commands import add_refine_command, add_segment_all_command, add_segment_command
from .model_commands import (
    add_bench_command,
    add_convert_command,
    add_doctor_command,
    add_download_command,
    add_export_command,
    add_models_command,
)
from .stack_commands import (
    add_embed_command,
    add_propagate_command,
    add_replay_command,
    add_tracks_command,
)

__all__ = ["CommandError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="napari-sam2-webgpu",
        description="Segment Anything 2 on any GPU through ONNX Runtime WebGPU (CPU fallback).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    subcommands = parser.add_subparsers(dest="command", required=True)
    # One function per subcommand, called in the order ``--help`` lists them.
    for add_command in (
        add_models_command,
        add_download_command,
        add_doctor_command,
        add_segment_command,
        add_segment_all_command,
        add_refine_command,
        add_propagate_command,
        add_tracks_command,
        add_replay_command,
        add_embed_command,
        add_convert_command,
        add_export_command,
        add_bench_command,
        add_to_coco_command,
        add_from_coco_command,
    ):
        add_command(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-sam2-webgpu`` command."""
    parser = build_parser()
    args = parser.parse_args(attach_negative_values(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    from ..image.preprocess import ImageError
    from ..image.prompts import PromptError
    from ..imagefiles import ImageFileError
    from ..models import ModelError
    from ..runtime import WebGPUUnavailableError

    try:
        return args.func(args)
    except (
        CommandError,
        ImageFileError,
        ModelError,
        PromptError,
        ImageError,
        WebGPUUnavailableError,
        FileNotFoundError,
        ValueError,
        ImportError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permissions, read-only file systems: name the file
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
