"""What the commands share: option types and groups, prompt and model checks, progress."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..imagefiles import MAX_LABEL
from ..runtime.backend import BACKENDS

LABEL_HELP = f"value written for the object, 1 to {MAX_LABEL}; the output dtype follows it"


class CommandError(ValueError):
    """A command-line usage problem found before any work; printed as one ``error:`` line."""


def parse_floats(text: str, count: Sequence[int], what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in count:
        shape = " or ".join(str(c) for c in count)
        raise argparse.ArgumentTypeError(
            f"{what} needs {shape} comma-separated numbers, got {text!r}"
        )
    return values


def parse_point(text: str) -> list[float]:
    values = parse_floats(text, (2, 3), "--point X,Y[,LABEL]")
    if len(values) == 2:
        values.append(1.0)
    if values[2] not in (0.0, 1.0):
        raise argparse.ArgumentTypeError(f"point label must be 1 or 0, got {values[2]:g}")
    return values


def parse_box(text: str) -> list[float]:
    return parse_floats(text, (4,), "--box X0,Y0,X1,Y1")


def parse_contrast(text: str) -> list[float]:
    low, high = parse_floats(text, (2,), "--contrast LOW,HIGH")
    if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        raise argparse.ArgumentTypeError(
            f"--contrast LOW,HIGH needs finite numbers with LOW < HIGH, got {text!r}"
        )
    return [low, high]


def parse_label(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--label needs a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_LABEL:
        raise argparse.ArgumentTypeError(
            f"--label must be 1 to {MAX_LABEL} (0 is background), got {value}"
        )
    return value


#: Options whose value may start with a minus sign (a negative coordinate).
NUMERIC_OPTIONS = ("--point", "--box", "--contrast")


NEGATIVE_NUMBER = re.compile(r"^-\.?\d")


def attach_negative_values(argv: Sequence[str]) -> list[str]:
    """``--point -5,100`` -> ``--point=-5,100``: argparse takes ``-5,100`` for an option."""
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item in NUMERIC_OPTIONS and i + 1 < len(items) and NEGATIVE_NUMBER.match(items[i + 1]):
            out.append(f"{item}={items[i + 1]}")
            i += 2
            continue
        out.append(item)
        i += 1
    return out


class ProgressPrinter:
    """Download progress on one terminal line."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, done: int, total: int, filename: str) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.2:
            return
        self._last = now
        percent = 100.0 * done / total if total else 0.0
        end = "\n" if total and done >= total else ""
        sys.stderr.write(
            f"\r{filename}: {done / 1e6:8.1f} / {total / 1e6:.1f} MB ({percent:5.1f}%){end}"
        )
        sys.stderr.flush()


def add_source_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--source",
        choices=("official", "samexporter"),
        default=None,
        help="official: Meta's checkpoint, built into ONNX here (default; images and "
        "propagation); samexporter: the published ONNX pair (images only). "
        "Default: $NAPARI_SAM2_WEBGPU_SOURCE, else official",
    )


def add_model_options(p: argparse.ArgumentParser, model_help: str, encoder_help: str) -> None:
    """--model, --encoder, --decoder and --backend of segment and propagate."""
    p.add_argument("--model", default="tiny", help=model_help)
    p.add_argument("--encoder", help=encoder_help)
    p.add_argument("--decoder", help="custom decoder ONNX (with --encoder)")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    add_source_option(p)


def add_prompt_options(p: argparse.ArgumentParser, point_help: str) -> None:
    """--point, --box and --contrast of segment and propagate."""
    p.add_argument(
        "--point", type=parse_point, action="append", metavar="X,Y[,LABEL]", help=point_help
    )
    p.add_argument(
        "--box",
        type=parse_box,
        action="append",
        metavar="X0,Y0,X1,Y1",
        help="a box prompt in pixels",
    )
    p.add_argument(
        "--contrast", type=parse_contrast, metavar="LOW,HIGH", help="intensity range, LOW < HIGH"
    )


def add_output_options(p: argparse.ArgumentParser, out_help: str) -> None:
    """--label, --out and --overwrite of segment and propagate."""
    p.add_argument("--label", type=parse_label, default=1, help=LABEL_HELP)
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def add_tile_options(p: argparse.ArgumentParser) -> None:
    from ..image.tiling import DEFAULT_HALO, DEFAULT_TILE_SIZE, TILING_THRESHOLD

    p.add_argument(
        "--tiles",
        choices=("auto", "on", "off"),
        default="auto",
        help=f"encode as overlapping tiles at full resolution: auto = images longer than "
        f"{TILING_THRESHOLD} pixels on a side (see docs/tiling.md)",
    )
    p.add_argument(
        "--tile-size",
        type=int,
        default=DEFAULT_TILE_SIZE,
        help=f"tile side in pixels (default {DEFAULT_TILE_SIZE}: native scale; 2048 = half)",
    )
    p.add_argument(
        "--halo",
        type=int,
        default=DEFAULT_HALO,
        help=f"overlap kept around each tile, pixels (default {DEFAULT_HALO})",
    )


def tile_spec(args: argparse.Namespace, image_hw: tuple[int, int]) -> Any:
    """The TileSpec the --tiles options ask for on an image of ``image_hw`` (None: whole)."""
    from ..image.tiling import TileSpec, needs_tiling

    if args.tiles == "off" or (args.tiles == "auto" and not needs_tiling(image_hw)):
        return None
    try:
        return TileSpec(args.tile_size, args.halo)
    except ValueError as exc:
        raise CommandError(f"--tile-size/--halo: {exc}") from exc


def check_model_args(args: argparse.Namespace, *, size: bool = True) -> None:
    """Check --encoder/--decoder, and with ``size`` the --model name, before any work."""
    if bool(args.encoder) != bool(args.decoder):
        raise CommandError("--encoder and --decoder go together")
    for option, path in (("--encoder", args.encoder), ("--decoder", args.decoder)):
        if path and not Path(path).is_file():
            raise CommandError(f"{option} {path}: no such file")
    if size and not args.encoder and args.model is not None:
        from ..models import check_size

        check_size(args.model)


def load_predictor(args: argparse.Namespace):
    from ..image.predictor import Sam2Predictor

    if args.encoder:
        return Sam2Predictor.from_files(args.encoder, args.decoder, args.backend)
    return Sam2Predictor.from_pretrained(
        args.model, args.backend, progress=ProgressPrinter(), source=args.source
    )


def load_propagator(args: argparse.Namespace):
    from ..video import Sam2Propagator

    if args.encoder:
        from ..models import companion_video_files

        companions = companion_video_files(args.encoder)
        if companions is None:
            raise SystemExit(
                f"error: no memory_attention/memory_encoder files next to {args.encoder} "
                "(export with this plugin's `export` command, which writes all four)"
            )
        return Sam2Propagator.from_files(args.encoder, args.decoder, *companions, args.backend)
    return Sam2Propagator.from_pretrained(
        args.model, args.backend, progress=ProgressPrinter(), source=args.source
    )


def one_box(args: argparse.Namespace) -> list[float] | None:
    if not args.box:
        return None
    if len(args.box) > 1:
        raise CommandError(
            f"--box was given {len(args.box)} times: {args.command} segments one object per run "
            "(one box, any number of --point); run it once per object with its own --label."
        )
    return args.box[0]


def prompt_arrays(args: argparse.Namespace) -> tuple[np.ndarray | None, np.ndarray | None]:
    if not args.point:
        return None, None
    return np.array([p[:2] for p in args.point]), np.array([int(p[2]) for p in args.point])


def check_prompts_given(args: argparse.Namespace, image_hw: tuple[int, int]) -> None:
    from ..image.prompts import check_prompts

    if not args.point and not args.box:
        raise CommandError("give at least one --point X,Y[,LABEL] or a --box X0,Y0,X1,Y1")
    coords, labels = prompt_arrays(args)
    check_prompts(coords, labels, one_box(args), image_hw)


def same_path(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()


def parse_ids(text: str | None) -> list[int] | None:
    """``--ids 3,5,8`` -> ``[3, 5, 8]`` (``None``: every label)."""
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CommandError(f"--ids needs comma-separated whole numbers, got {text!r}") from None
