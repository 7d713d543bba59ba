"""Commands about models: models, download, doctor, convert, export, bench."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..runtime.backend import BACKENDS, PROVIDERS
from ._common import (
    CommandError,
    ProgressPrinter,
    add_source_option,
)


def add_models_command(subcommands: Any) -> None:
    p = subcommands.add_parser("models", help="list model sizes and whether they are cached")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    from .. import models

    print(f"cache: {models.cache_dir()}")
    print(f"default source: {models.check_source(None)}")
    print(f"{'model':<10} {'checkpoint MB':>13} {'built':<6} {'samexporter pair cached':<24}")
    for row in models.cache_status():
        size = row["name"]
        checkpoint = models.CHECKPOINTS[size]
        built = models.built_model(size) is not None
        print(
            f"{size:<10} {checkpoint.size / 1e6:>13.1f} {'yes' if built else 'no':<6} "
            f"{'yes' if row['cached'] else 'no':<24}"
        )
    installed = models.installed_models()
    print("installed models: " + (", ".join(installed) if installed else "none"))
    return 0


def add_download_command(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "download", help="download models into the cache (and build them from the checkpoint)"
    )
    p.add_argument("sizes", nargs="*", help="tiny, small, base_plus, large")
    p.add_argument("--all", action="store_true", help="every model size")
    add_source_option(p)
    p.set_defaults(func=_cmd_download)


def _cmd_download(args: argparse.Namespace) -> int:
    from .. import models

    names = list(models.MODEL_SIZES) if args.all else args.sizes
    if not names:
        print("Name at least one model size, or --all.", file=sys.stderr)
        return 2
    source = models.check_source(args.source)
    sizes = [models.get_spec(name).name for name in names]  # every name checked first
    for size in sizes:
        if source == "official":
            files = models.ensure_built(size, progress=ProgressPrinter()).files
        else:
            pair = models.ensure_model(size, progress=ProgressPrinter())
            files = (pair.encoder, pair.decoder)
        print(f"{size}: " + f"\n{' ' * len(size)}  ".join(map(str, files)))
    return 0


def add_doctor_command(subcommands: Any) -> None:
    p = subcommands.add_parser("doctor", help="what GPU and runtime would be used, and why")
    p.set_defaults(func=_cmd_doctor)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from ..runtime import doctor_report

    print(doctor_report())
    return 0


def add_convert_command(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "convert",
        help="build the four ONNX files from a SAM2.1 or SAM2 checkpoint (official or "
        "fine-tuned), without torch",
    )
    p.add_argument("checkpoint", help="the .pt (or .safetensors) checkpoint")
    p.add_argument(
        "--size",
        help="tiny, small, base_plus, large (SAM2.1 or SAM2, whichever the checkpoint is); "
        "default: the size the checkpoint fits",
    )
    p.add_argument("--name", help="file stem, and the model's name when installed")
    p.add_argument("--out", help="output folder")
    p.add_argument(
        "--install",
        action="store_true",
        help="install into the model cache, where --model NAME and the widget find it",
    )
    p.set_defaults(func=_cmd_convert)


def _cmd_convert(args: argparse.Namespace) -> int:
    from .. import models
    from ..models.convert import default_stem, guess_size, pick_template

    if args.out is None and not args.install:
        raise CommandError("give --out FOLDER, or --install to install into the model cache")
    if args.out is not None and args.install:
        raise CommandError("--out and --install go separately: choose one")
    if args.name is not None:
        check_name(args.name)
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        raise CommandError(f"{checkpoint}: no such file")
    with models.read_checkpoint(checkpoint) as state:
        template = pick_template(state, args.size) if args.size else guess_size(state)
        if template is None:
            raise CommandError(
                f"{checkpoint} fits no SAM2 or SAM2.1 model ({', '.join(models.template_sizes())})"
                "; give --size to see what differs"
            )
        stem = args.name or default_stem(template)
        out = models.exported_dir() if args.install else Path(args.out)
        paths, _ = models.build_model(state, template, out, stem=stem, progress=ProgressPrinter())
    for path in paths.files:
        print(path)
    if args.install:
        name = models.installed_name(stem)
        print(f"installed as {name!r}: `--model {name}`, or choose it in the widget")
    return 0


def check_name(name: str) -> None:
    if not name or any(c in name for c in '/\\:*?"<>|') or name.startswith("."):
        raise CommandError(f"--name {name!r}: use letters, digits, '-', '_' and '.' only")


def add_export_command(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "export",
        help="convert a SAM2/SAM2.1 checkpoint to ONNX (encoder, decoder and video components)",
    )
    p.add_argument(
        "--size",
        default="tiny",
        help="tiny, small, base_plus, large; sam2.0_tiny, ... for SAM2 (2.0) checkpoints "
        "(or micro, sam2.0_micro: test models)",
    )
    p.add_argument("--checkpoint", help="the .pt checkpoint")
    p.add_argument("--config", help="sam2 config name overriding the size's")
    p.add_argument("--fp16", action="store_true", help="float16 weights")
    p.add_argument("--random-weights", action="store_true", help="no checkpoint: test model")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-weights")
    p.add_argument("--name", help="output file stem")
    p.add_argument("--out", help="output folder")
    p.add_argument(
        "--install",
        action="store_true",
        help="write into the model cache, where propagation finds the model by its size",
    )
    p.add_argument(
        "--no-video", action="store_true", help="skip the memory components (images only)"
    )
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from ..export import export_checkpoint

    if args.checkpoint is None and not args.random_weights:
        raise SystemExit(
            "error: give --checkpoint FILE.pt (official or fine-tuned SAM2/SAM2.1), "
            "or --random-weights for a test model"
        )
    if args.out is None and not args.install:
        raise SystemExit("error: give --out FOLDER, or --install to export into the model cache")
    if args.install:
        from ..models import exported_dir

        if args.name is not None:
            raise SystemExit("error: --install names the files itself; leave out --name")
    out = args.out if args.out is not None else exported_dir()
    result = export_checkpoint(
        args.size,
        out,
        checkpoint=args.checkpoint,
        config=args.config,
        fp16=args.fp16,
        seed=args.seed,
        name=args.name,
        video=not args.no_video,
    )
    for label, path in (
        ("encoder", result.encoder),
        ("decoder", result.decoder),
        ("memory attention", result.memory_attention),
        ("memory encoder", result.memory_encoder),
    ):
        if path is not None:
            print(f"{label}: {path}")
    return 0


def add_bench_command(subcommands: Any) -> None:
    p = subcommands.add_parser("bench", help="time session creation, encode and decode per backend")
    p.add_argument("--sizes", nargs="+", default=["tiny"], help="model sizes to time")
    p.add_argument("--backends", nargs="+", default=list(PROVIDERS), choices=BACKENDS)
    p.add_argument(
        "--model-dir",
        help="folder with <name>.encoder.onnx/<name>.decoder.onnx; default: the model cache",
    )
    p.add_argument("--encoder", help="a single custom encoder to time (with --decoder)")
    p.add_argument("--decoder", help="a single custom decoder to time (with --encoder)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs after warm-up")
    p.add_argument(
        "--image-sides",
        type=int,
        nargs="+",
        default=[1024, 2048, 8192],
        help="image sizes for click-to-mask latency",
    )
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from ..benchmark import run_benchmark

    run_benchmark(
        sizes=args.sizes,
        backends=args.backends,
        model_dir=args.model_dir,
        encoder=args.encoder,
        decoder=args.decoder,
        repeats=args.repeats,
        image_sides=args.image_sides,
        out=sys.stdout,
    )
    return 0
