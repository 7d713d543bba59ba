"""The ``napari-sam2-webgpu`` command: models, download, doctor, segment, segment-all, refine,
propagate, embed, export, bench, to-coco, from-coco."""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .imagefiles import MAX_LABEL
from .runtime.backend import BACKENDS, PROVIDERS
from .video import DIRECTIONS

_LABEL_HELP = f"value written for the object, 1 to {MAX_LABEL}; the output dtype follows it"


class CommandError(ValueError):
    """A command-line usage problem found before any work; printed as one ``error:`` line."""


def _floats(text: str, count: Sequence[int], what: str) -> list[float]:
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


def _point(text: str) -> list[float]:
    values = _floats(text, (2, 3), "--point X,Y[,LABEL]")
    if len(values) == 2:
        values.append(1.0)
    if values[2] not in (0.0, 1.0):
        raise argparse.ArgumentTypeError(f"point label must be 1 or 0, got {values[2]:g}")
    return values


def _box(text: str) -> list[float]:
    return _floats(text, (4,), "--box X0,Y0,X1,Y1")


def _contrast(text: str) -> list[float]:
    low, high = _floats(text, (2,), "--contrast LOW,HIGH")
    if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        raise argparse.ArgumentTypeError(
            f"--contrast LOW,HIGH needs finite numbers with LOW < HIGH, got {text!r}"
        )
    return [low, high]


def _label(text: str) -> int:
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
_NUMERIC_OPTIONS = ("--point", "--box", "--contrast")
_NEGATIVE_NUMBER = re.compile(r"^-\.?\d")


def _attach_negative_values(argv: Sequence[str]) -> list[str]:
    """``--point -5,100`` -> ``--point=-5,100``: argparse takes ``-5,100`` for an option."""
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item in _NUMERIC_OPTIONS and i + 1 < len(items) and _NEGATIVE_NUMBER.match(items[i + 1]):
            out.append(f"{item}={items[i + 1]}")
            i += 2
            continue
        out.append(item)
        i += 1
    return out


class _ProgressPrinter:
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


def _cmd_models(args: argparse.Namespace) -> int:
    from . import models

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


def _cmd_download(args: argparse.Namespace) -> int:
    from . import models

    names = list(models.MODEL_SIZES) if args.all else args.sizes
    if not names:
        print("Name at least one model size, or --all.", file=sys.stderr)
        return 2
    source = models.check_source(args.source)
    sizes = [models.get_spec(name).name for name in names]  # every name checked first
    for size in sizes:
        if source == "official":
            files = models.ensure_built(size, progress=_ProgressPrinter()).files
        else:
            pair = models.ensure_model(size, progress=_ProgressPrinter())
            files = (pair.encoder, pair.decoder)
        print(f"{size}: " + f"\n{' ' * len(size)}  ".join(map(str, files)))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from . import models
    from .models.convert import default_stem, guess_size, pick_template

    if args.out is None and not args.install:
        raise CommandError("give --out FOLDER, or --install to install into the model cache")
    if args.out is not None and args.install:
        raise CommandError("--out and --install go separately: choose one")
    if args.name is not None:
        _check_name(args.name)
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
        paths, _ = models.build_model(state, template, out, stem=stem, progress=_ProgressPrinter())
    for path in paths.files:
        print(path)
    if args.install:
        name = models.installed_name(stem)
        print(f"installed as {name!r}: `--model {name}`, or choose it in the widget")
    return 0


def _check_name(name: str) -> None:
    if not name or any(c in name for c in '/\\:*?"<>|') or name.startswith("."):
        raise CommandError(f"--name {name!r}: use letters, digits, '-', '_' and '.' only")


def _cmd_doctor(args: argparse.Namespace) -> int:
    from .runtime import doctor_report

    print(doctor_report())
    return 0


def _one_box(args: argparse.Namespace) -> list[float] | None:
    if not args.box:
        return None
    if len(args.box) > 1:
        raise CommandError(
            f"--box was given {len(args.box)} times: {args.command} segments one object per run "
            "(one box, any number of --point); run it once per object with its own --label."
        )
    return args.box[0]


def _prompt_arrays(args: argparse.Namespace) -> tuple[np.ndarray | None, np.ndarray | None]:
    if not args.point:
        return None, None
    return np.array([p[:2] for p in args.point]), np.array([int(p[2]) for p in args.point])


def _check_prompts(args: argparse.Namespace, image_hw: tuple[int, int]) -> None:
    from .image.prompts import check_prompts

    if not args.point and not args.box:
        raise CommandError("give at least one --point X,Y[,LABEL] or a --box X0,Y0,X1,Y1")
    coords, labels = _prompt_arrays(args)
    check_prompts(coords, labels, _one_box(args), image_hw)


def _check_model_args(args: argparse.Namespace) -> None:
    if bool(args.encoder) != bool(args.decoder):
        raise CommandError("--encoder and --decoder go together")
    for option, path in (("--encoder", args.encoder), ("--decoder", args.decoder)):
        if path and not Path(path).is_file():
            raise CommandError(f"{option} {path}: no such file")


def _load_predictor(args: argparse.Namespace):
    from .image.predictor import Sam2Predictor

    if args.encoder:
        return Sam2Predictor.from_files(args.encoder, args.decoder, args.backend)
    return Sam2Predictor.from_pretrained(
        args.model, args.backend, progress=_ProgressPrinter(), source=args.source
    )


def _cmd_segment(args: argparse.Namespace) -> int:
    from .image.tiling import whole_image_window
    from .imagefiles import check_label_output, label_dtype, open_image, write_labels

    # Everything that can be checked is checked before a model is loaded or downloaded.
    _check_model_args(args)
    if not args.encoder:
        from .models import check_size

        check_size(args.model)  # an unknown size fails here, not after reading the image
    out = check_label_output(
        args.out, max_label=args.label, inputs=[args.image], overwrite=args.overwrite
    )
    image = open_image(args.image)  # lazily where it can: a tiled image is read a tile at a time
    (height, width), _ = whole_image_window(image, args.contrast)
    _check_prompts(args, (height, width))
    spec = _tile_spec(args, (height, width))
    predictor = _load_predictor(args)
    print(f"model {predictor.name} on {predictor.backend_info.describe()}", file=sys.stderr)
    if spec is None:
        predictor.set_image(np.asarray(image), contrast_limits=args.contrast)
    else:
        tiled = predictor.compute_tiled_embedding(image, contrast_limits=args.contrast, spec=spec)
        predictor.set_embedding(tiled)  # the tile under the prompts is encoded when decoding
        rows, cols = tiled.layout.grid
        print(f"tiled: {rows} x {cols} tiles ({spec.describe()})", file=sys.stderr)
    coords, labels = _prompt_arrays(args)
    masks, scores, _ = predictor.predict(
        point_coords=coords,
        point_labels=labels,
        box=_one_box(args),
        multimask_output=args.multimask,
    )
    best = int(np.argmax(scores))
    result = np.where(masks[best], args.label, 0).astype(label_dtype(args.label))
    write_labels(out, result)
    timing = f"decode {predictor.last_decode_seconds * 1e3:.0f} ms"
    if spec is None:
        timing = f"encode {predictor.last_encode_seconds * 1e3:.0f} ms, {timing}"
    else:
        timing = f"encode and {timing} (tiled)"
    print(
        f"wrote {out}: mask {best + 1}/{len(scores)}, score {scores[best]:.3f}, "
        f"{int(masks[best].sum())} pixels; {timing}",
        file=sys.stderr,
    )
    return 0


def _segment_all_params(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "points_per_side": args.points_per_side,
        "points_per_batch": args.points_per_batch,
        "pred_iou_thresh": args.pred_iou_thresh,
        "stability_score_thresh": args.stability_score_thresh,
        "box_nms_thresh": args.box_nms_thresh,
        "crop_n_layers": args.crop_n_layers,
        "min_mask_region_area": args.min_area,
        "use_m2m": args.m2m,
    }


def _tile_spec(args: argparse.Namespace, image_hw: tuple[int, int]) -> Any:
    """The TileSpec the --tiles options ask for on an image of ``image_hw`` (None: whole)."""
    from .image.tiling import TileSpec, needs_tiling

    if args.tiles == "off" or (args.tiles == "auto" and not needs_tiling(image_hw)):
        return None
    try:
        return TileSpec(args.tile_size, args.halo)
    except ValueError as exc:
        raise CommandError(f"--tile-size/--halo: {exc}") from exc


def _add_tile_options(p: argparse.ArgumentParser) -> None:
    from .image.tiling import DEFAULT_HALO, DEFAULT_TILE_SIZE, TILING_THRESHOLD

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


def _segment_stack(image: Any, segment: Any, name: str) -> np.ndarray:
    """Each slice of a stack on its own; ids stay unique through the stack (offset per slice).

    A slice that cannot be segmented (e.g. no finite value) is left empty and reported; the
    other slices are still done.
    """
    from .image.preprocess import ImageError
    from .imagefiles import MAX_LABEL

    out = np.zeros(image.shape[:3], np.uint32)
    offset = 0
    for z in range(image.shape[0]):
        try:
            labels = segment(image[z])
        except ImageError as exc:
            print(f"{name}: slice {z} left empty: {exc}", file=sys.stderr)
            continue
        if offset + int(labels.max(initial=0)) > MAX_LABEL:
            raise CommandError(f"more than {MAX_LABEL} objects in the stack")
        out[z] = np.where(labels > 0, labels.astype(np.int64) + offset, 0)
        offset += int(labels.max(initial=0))
    return out


def _cmd_segment_all(args: argparse.Namespace) -> int:
    from .batch import plan_batch, run_batch
    from .image.automatic import AutomaticMaskGenerator

    _check_model_args(args)
    if not args.encoder:
        from .models import check_size

        check_size(args.model)
    items = plan_batch(args.input, args.out)
    todo = [i for i in items if args.overwrite or not i.output.exists()]
    print(f"{len(items)} images, {len(items) - len(todo)} done already", file=sys.stderr)
    if not todo:
        return 0
    predictor = _load_predictor(args)
    print(f"model {predictor.name} on {predictor.backend_info.describe()}", file=sys.stderr)
    generator = AutomaticMaskGenerator(predictor, **_segment_all_params(args))

    def segment_image(image: Any) -> np.ndarray:
        spec = _tile_spec(args, image.shape[:2])
        if spec is None:
            image = np.asarray(image)
        # Labels straight from the masks' boxes: no image-sized mask per object.
        labels, _ = generator.generate_labels(
            image, order=args.order, contrast_limits=args.contrast, tiles=spec
        )
        return labels

    def segment(image: Any, item: Any) -> np.ndarray:
        # A 3D array whose last axis is not 1, 3 or 4 channels is a stack of slices; 4D is a
        # stack of RGB(A) slices.
        stack = image.ndim == 4 or (image.ndim == 3 and image.shape[-1] not in (1, 3, 4))
        name = str(item.source)
        labels = _segment_stack(image, segment_image, name) if stack else segment_image(image)
        if not labels.any():
            print(f"{name}: no objects found (an empty label image is written)", file=sys.stderr)
        return labels

    def report(done: int, total: int, item: Any, status: str) -> None:
        print(f"[{done}/{total}] {item.source} -> {item.output}: {status}", file=sys.stderr)

    result = run_batch(items, segment, overwrite=args.overwrite, on_item=report)
    print(
        f"{len(result.written)} written, {len(result.skipped)} skipped, "
        f"{len(result.failed)} failed",
        file=sys.stderr,
    )
    for item, reason in result.failed:
        print(f"failed: {item.source}: {reason}", file=sys.stderr)
    return 0 if result.ok else 1


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_checkpoint

    if args.checkpoint is None and not args.random_weights:
        raise SystemExit(
            "error: give --checkpoint FILE.pt (official or fine-tuned SAM2/SAM2.1), "
            "or --random-weights for a test model"
        )
    if args.out is None and not args.install:
        raise SystemExit("error: give --out FOLDER, or --install to export into the model cache")
    if args.install:
        from .models import exported_dir

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


def _cmd_bench(args: argparse.Namespace) -> int:
    from .benchmark import run_benchmark

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


def _load_propagator(args: argparse.Namespace):
    from .video import Sam2Propagator

    if args.encoder:
        from .models import companion_video_files

        companions = companion_video_files(args.encoder)
        if companions is None:
            raise SystemExit(
                f"error: no memory_attention/memory_encoder files next to {args.encoder} "
                "(export with this plugin's `export` command, which writes all four)"
            )
        return Sam2Propagator.from_files(args.encoder, args.decoder, *companions, args.backend)
    return Sam2Propagator.from_pretrained(
        args.model, args.backend, progress=_ProgressPrinter(), source=args.source
    )


def _check_stack(stack: np.ndarray, args: argparse.Namespace) -> tuple[int, int]:
    from .image.preprocess import ImageError, check_image

    if stack.ndim not in (3, 4):
        raise ImageError(
            f"{args.stack} has shape {stack.shape}: propagate needs a stack "
            "(frames, height, width[, channels]); use `segment` for a single image."
        )
    if not 0 <= args.frame < len(stack):
        raise CommandError(
            f"--frame {args.frame} is outside the stack: it has {len(stack)} frames "
            f"(0 to {len(stack) - 1})."
        )
    height, width, _ = check_image(np.asarray(stack[args.frame]), rgb=stack.ndim == 4)
    return height, width


class _WindowFrames:
    """A stack's frames cut to one tile window, read lazily (what a tiled run tracks)."""

    def __init__(self, stack: Any, tile: Any) -> None:
        self._stack, (self._rows, self._cols) = stack, tile.slices
        self.shape = (len(stack), *tile.hw, *stack.shape[3:])
        self.dtype = stack.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self._stack[int(index)][self._rows, self._cols])


def _cmd_propagate(args: argparse.Namespace) -> int:
    from .image.tiling import prompt_extent, to_window
    from .imagefiles import check_label_output, label_dtype, open_image, write_labels

    _check_model_args(args)
    out_path = check_label_output(
        args.out, max_label=args.label, inputs=[args.stack], overwrite=args.overwrite, stack=True
    )
    stack = open_image(args.stack)
    hw = _check_stack(stack, args)
    _check_prompts(args, hw)
    spec = _tile_spec(args, hw)
    if spec is None:
        stack = np.asarray(stack)  # frames encoded whole: read as before
    coords, labels = _prompt_arrays(args)
    box = _one_box(args)
    window = None
    if spec is not None:
        # Tracked in the tile that holds the prompts best (the whole frames, at the overview's
        # resolution, when they fit in no tile): the rule of the napari widget.
        window = spec.layout(hw).choose(prompt_extent(coords, box))
    video = _load_propagator(args)
    print(
        f"model {video.predictor.name} on {video.predictor.backend_info.describe()}",
        file=sys.stderr,
    )
    predictor, rgb = video.predictor, stack.ndim == 4
    store = None
    if args.store:
        from .store import open_stack_store

        # Embeddings from the store; frames (tiles) it lacks are encoded and added to it.
        store = open_stack_store(
            args.store, predictor, stack, contrast_limits=args.contrast, tiles=spec
        )
        print(f"embeddings: {store!r}", file=sys.stderr)

    def encode(frame: int) -> Any:
        if spec is None:
            return predictor.compute_embedding(stack[frame], contrast_limits=args.contrast, rgb=rgb)
        tiled = predictor.compute_tiled_embedding(
            stack[frame],
            contrast_limits=args.contrast,
            rgb=rgb,
            spec=spec,
            store=None if store is None else store.frame_tiles(frame),
            max_bytes=0,
        )
        return tiled.overview() if window is None else tiled.tile(window.index)

    provider = encode if spec is not None else None if store is None else store.provider(encode)
    frames = stack if window is None else _WindowFrames(stack, window)
    if window is not None:
        coords, box = to_window(coords, box, window)
        print(
            f"tiled: tracked in tile {window.index} {window.box} (x0, y0, x1, y1)", file=sys.stderr
        )
    state = video.init_state(frames, contrast_limits=args.contrast, embedding_provider=provider)
    video.add_prompts(state, args.frame, args.label, points=coords, labels=labels, box=box)
    out = np.zeros(stack.shape[:3], dtype=label_dtype(args.label))
    rows, cols = (slice(None), slice(None)) if window is None else window.slices
    start = time.perf_counter()
    done: set[int] = set()  # "both" visits the prompted frame once per direction
    for frame, masks in video.propagate(state, args.direction):
        out[frame][rows, cols] = np.where(masks[args.label], args.label, 0)
        done.add(frame)
        print(f"\rframe {frame} ({len(done)} done)", end="", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    print(file=sys.stderr)
    write_labels(out_path, out)
    covered = int(np.count_nonzero(out.reshape(len(out), -1).any(axis=1)))
    print(
        f"wrote {out_path}: object on {covered} of {len(out)} frames; "
        f"{len(done)} frames in {seconds:.1f} s ({len(done) / max(seconds, 1e-9):.2f} frames/s)"
    )
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    from .imagefiles import open_image
    from .store import open_stack_store, precompute_embeddings, stack_layout

    _check_model_args(args)
    if not args.encoder:
        from .models import check_size

        check_size(args.model)
    image = open_image(args.stack)  # read frame by frame (tile by tile), never whole
    try:
        leading, _ = stack_layout(image)
    except ValueError as exc:
        raise CommandError(f"{args.stack}: {exc}") from exc
    spec = _tile_spec(args, image.shape[len(leading) : len(leading) + 2])
    predictor = _load_predictor(args)
    print(f"model {predictor.name} on {predictor.backend_info.describe()}", file=sys.stderr)
    store = open_stack_store(
        args.out,
        predictor,
        image,
        contrast_limits=args.contrast,
        dtype="float16" if args.float16 else "float32",
        mode="w" if args.overwrite else "a",
        tiles=spec,
    )
    unit = "frame" if spec is None else "tile"
    if spec is not None:
        layout = store.identity.tile_layout
        print(
            f"tiled: {len(layout)} tiles a frame ({layout.grid[0]} x {layout.grid[1]}, "
            f"{spec.describe()}) and an overview",
            file=sys.stderr,
        )

    def progress(done: int, total: int) -> None:
        print(f"\r{unit} {done}/{total}", end="", file=sys.stderr, flush=True)

    report = precompute_embeddings(
        predictor, image, store, contrast_limits=args.contrast, progress=progress
    )
    print(file=sys.stderr)
    for frame, reason in report.failed:
        print(f"frame {frame} not stored: {reason}", file=sys.stderr)
    rate = len(report.computed) / max(report.seconds, 1e-9)
    print(
        f"{store.path}: {len(report.computed)} frames encoded ({rate:.2f} frames/s), "
        f"{len(report.skipped)} stored already, {len(report.failed)} failed; "
        f"{store.dtype}, {store.num_frames} frames of {store.identity.image_hw[0]} x "
        f"{store.identity.image_hw[1]}"
    )
    return 0 if report.ok else 1


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()


def _cmd_refine(args: argparse.Namespace) -> int:
    from .image.refine import refine_labels
    from .imagefiles import check_label_output, read_image, write_labels

    _check_model_args(args)
    if not args.encoder:
        from .models import check_size

        check_size(args.model)
    out = check_label_output(
        args.out,
        max_label=2**32 - 1,
        inputs=[args.image, args.labels],
        overwrite=args.overwrite,
    )
    image, labels = read_image(args.image), read_image(args.labels)
    if labels.shape != image.shape[:2]:
        raise CommandError(
            f"{args.labels} is {labels.shape}, {args.image} {image.shape[:2]}: a label image of "
            "the image's size is needed (one 2D image; for stacks, one slice at a time)."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise CommandError(f"{args.labels} holds {labels.dtype} values, not integer labels.")
    ids = None if args.ids is None else [int(v) for v in args.ids.split(",") if v.strip()]
    predictor = _load_predictor(args)
    print(f"model {predictor.name} on {predictor.backend_info.describe()}", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        print(f"\rlabel {done}/{total}", end="", file=sys.stderr, flush=True)

    start = time.perf_counter()
    refined = refine_labels(
        predictor, image, labels, ids=ids, contrast_limits=args.contrast, progress=progress
    )
    print(file=sys.stderr)
    write_labels(out, refined)
    changed = int(np.count_nonzero(refined != labels))
    print(
        f"wrote {out}: {changed} pixels changed; {time.perf_counter() - start:.1f} s",
        file=sys.stderr,
    )
    return 0


def _cmd_to_coco(args: argparse.Namespace) -> int:
    from .coco import CocoError, labels_to_coco, slice_file_names, write_coco
    from .imagefiles import STACK_FORMATS, read_image

    out = Path(args.out)
    if out.suffix.lower() != ".json":
        raise CommandError(f"--out {out}: a COCO file is JSON; give a name ending in .json")
    if out.is_dir():
        raise CommandError(f"--out {out} is a folder: give a file name, e.g. {out / 'coco.json'}")
    if out.exists() and not args.overwrite:
        raise CommandError(f"{out} already exists: pass --overwrite to replace it")
    for source in args.labels:
        if _same_path(out, Path(source)):
            raise CommandError(f"Refusing to write the COCO file over the input {source}")
    coco: dict[str, Any] | None = None
    for source in map(Path, args.labels):
        labels = read_image(source)
        if labels.ndim == 3 and source.suffix.lower() not in STACK_FORMATS:
            raise CommandError(
                f"{source}: shape {labels.shape} is a color image, not a label image "
                "(stacks are read from .tif or .npy)"
            )
        names = slice_file_names(source.name, labels.shape[0] if labels.ndim == 3 else 0)
        try:
            part = labels_to_coco(
                labels,
                file_names=names if labels.ndim in (2, 3) else None,
                category=args.category,
                first_image_id=1 if coco is None else len(coco["images"]) + 1,
            )
        except CocoError as exc:
            raise CommandError(f"{source}: {exc}") from None
        if coco is None:
            coco = part
            continue
        for annotation in part["annotations"]:
            annotation["id"] = len(coco["annotations"]) + 1
            coco["annotations"].append(annotation)
        coco["images"].extend(part["images"])
    assert coco is not None  # argparse requires one file at least
    write_coco(out, coco, indent=args.indent)
    print(
        f"wrote {out}: {len(coco['images'])} images, {len(coco['annotations'])} objects",
        file=sys.stderr,
    )
    return 0


def _cmd_tracks(args: argparse.Namespace) -> int:
    from .imagefiles import open_image
    from .tracks import label_tracks, write_tracks_csv

    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise CommandError(f"--out {out}: tracks are written as CSV (a .csv file).")
    if out.exists() and not args.overwrite:
        raise CommandError(f"{out} exists: pass --overwrite to replace it.")
    ids = None if args.ids is None else [int(v) for v in args.ids.split(",") if v.strip()]
    labels = open_image(args.labels)
    try:
        tracks = label_tracks(labels, ids)
    except ValueError as exc:
        raise CommandError(f"{args.labels}: {exc}") from exc
    write_tracks_csv(out, tracks, overwrite=True)
    objects = len(np.unique(tracks[:, 0]))
    print(f"wrote {out}: {objects} objects, {len(tracks)} rows over {labels.shape[0]} frames")
    return 0


def _recorded_size(model: str | None) -> str | None:
    """``"sam2.1 tiny"`` (a recording's model) -> ``"tiny"``; None when not a registry name."""
    if not model:
        return None
    from .models import check_size

    size = model.split()[-1]
    try:
        check_size(size)
    except Exception:  # noqa: BLE001 - an installed or custom model: --model/--encoder say
        return None
    return size


def _cmd_replay(args: argparse.Namespace) -> int:
    from .imagefiles import check_label_output, open_image, read_image, write_labels
    from .replay import PromptRecording, compare_labels, replay

    _check_model_args(args)
    try:
        recording = PromptRecording.load(args.prompts)
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    out = check_label_output(
        args.out, max_label=2**32 - 1, inputs=[args.image, args.prompts], overwrite=args.overwrite
    )
    reference = args.reference
    if reference is None:  # the labels saved with the sidecar, when they are there
        stem = Path(args.prompts).name.removesuffix(".prompts.json")
        found = [
            p
            for p in (Path(args.prompts).with_name(stem + ext) for ext in (".tif", ".tiff", ".npy"))
            if p.is_file()
        ]
        reference = str(found[0]) if found else None
    if args.model is None and not args.encoder:
        args.model = _recorded_size(recording.header.get("model")) or "tiny"
    image = open_image(args.image)
    initial = None if args.initial is None else read_image(args.initial)
    needs_video = "propagate" in recording.counts()
    if needs_video:
        propagator = _load_propagator(args)
        predictor = propagator.predictor
    else:
        propagator, predictor = None, _load_predictor(args)
    header = recording.header
    print(
        f"replaying {len(recording.events)} events ({recording.counts()}) recorded with "
        f"{header.get('model')} on {header.get('backend')}; model {predictor.name} on "
        f"{predictor.backend_info.describe()}",
        file=sys.stderr,
    )
    labelled = header.get("initial_labelled")
    if initial is None and labelled:
        print(
            f"note: the Labels layer had {labelled} labelled pixels before the first recorded "
            "step; pass them with --initial for an exact replay",
            file=sys.stderr,
        )

    def progress(done: int, total: int) -> None:
        print(f"\revent {done}/{total}", end="", file=sys.stderr, flush=True)

    start = time.perf_counter()
    try:
        labels = replay(
            recording, image, predictor, propagator=propagator, initial=initial, progress=progress
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    print(file=sys.stderr)
    write_labels(out, labels)
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s")
    if reference is None:
        return 0
    difference = compare_labels(labels, read_image(reference))
    print(f"against {reference}: {difference.describe()}")
    return 0 if difference.identical else 3


def _cmd_from_coco(args: argparse.Namespace) -> int:
    from .coco import iter_coco_images, read_coco
    from .imagefiles import check_label_output, write_labels

    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CommandError(f"--out-dir {out_dir} is a file, not a folder")
    coco = read_coco(args.coco)
    images = iter_coco_images(coco, overlap=args.overlap)  # checks ids and references first
    # One file per entry, named after the entry's file_name (its last part only, so a name
    # never leads outside --out-dir); repeated names get the image id.
    suffix = "." + args.format
    paths: list[Path] = []
    taken: set[str] = set()
    for entry in coco["images"]:
        name = entry.get("file_name")
        stem = Path(name.replace("\\", "/")).stem if isinstance(name, str) else ""
        stem = stem or f"image_{entry['id']}"
        if stem.lower() in taken:
            stem = f"{stem}_id{entry['id']}"
        taken.add(stem.lower())
        paths.append(out_dir / (stem + suffix))
    existing = [p for p in paths if p.exists()]
    if existing and not args.overwrite:
        shown = ", ".join(str(p) for p in existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise CommandError(
            f"{len(existing)} output file(s) already exist ({shown}): pass --overwrite"
        )
    for path, image in zip(paths, images, strict=True):
        high = int(image.labels.max())
        check_label_output(path, max_label=max(high, 1), overwrite=True)
        write_labels(path, image.labels)
    print(
        f"wrote {len(paths)} label images into {out_dir} ({len(coco['annotations'])} annotations)",
        file=sys.stderr,
    )
    return 0


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
        _add_models_command,
        _add_download_command,
        _add_doctor_command,
        _add_segment_command,
        _add_segment_all_command,
        _add_refine_command,
        _add_propagate_command,
        _add_tracks_command,
        _add_replay_command,
        _add_embed_command,
        _add_convert_command,
        _add_export_command,
        _add_bench_command,
        _add_to_coco_command,
        _add_from_coco_command,
    ):
        add_command(subcommands)
    return parser


def _add_models_command(subcommands: Any) -> None:
    p = subcommands.add_parser("models", help="list model sizes and whether they are cached")
    p.set_defaults(func=_cmd_models)


def _add_source_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--source",
        choices=("official", "samexporter"),
        default=None,
        help="official: Meta's checkpoint, built into ONNX here (default; images and "
        "propagation); samexporter: the published ONNX pair (images only). "
        "Default: $NAPARI_SAM2_WEBGPU_SOURCE, else official",
    )


def _add_download_command(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "download", help="download models into the cache (and build them from the checkpoint)"
    )
    p.add_argument("sizes", nargs="*", help="tiny, small, base_plus, large")
    p.add_argument("--all", action="store_true", help="every model size")
    _add_source_option(p)
    p.set_defaults(func=_cmd_download)


def _add_convert_command(subcommands: Any) -> None:
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


def _add_doctor_command(subcommands: Any) -> None:
    p = subcommands.add_parser("doctor", help="what GPU and runtime would be used, and why")
    p.set_defaults(func=_cmd_doctor)


def _add_model_options(p: argparse.ArgumentParser, model_help: str, encoder_help: str) -> None:
    """--model, --encoder, --decoder and --backend of segment and propagate."""
    p.add_argument("--model", default="tiny", help=model_help)
    p.add_argument("--encoder", help=encoder_help)
    p.add_argument("--decoder", help="custom decoder ONNX (with --encoder)")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    _add_source_option(p)


def _add_prompt_options(p: argparse.ArgumentParser, point_help: str) -> None:
    """--point, --box and --contrast of segment and propagate."""
    p.add_argument("--point", type=_point, action="append", metavar="X,Y[,LABEL]", help=point_help)
    p.add_argument(
        "--box", type=_box, action="append", metavar="X0,Y0,X1,Y1", help="a box prompt in pixels"
    )
    p.add_argument(
        "--contrast", type=_contrast, metavar="LOW,HIGH", help="intensity range, LOW < HIGH"
    )


def _add_output_options(p: argparse.ArgumentParser, out_help: str) -> None:
    """--label, --out and --overwrite of segment and propagate."""
    p.add_argument("--label", type=_label, default=1, help=_LABEL_HELP)
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def _add_segment_command(subcommands: Any) -> None:
    p = subcommands.add_parser("segment", help="segment one object in an image file from prompts")
    p.add_argument("image", help="image file (.tif, .png, .jpg, .npy)")
    _add_model_options(
        p,
        "model size (default tiny) or the name of an installed model: an installed model "
        "wins, else the size is downloaded and built once",
        "custom encoder ONNX (with --decoder)",
    )
    _add_prompt_options(
        p,
        "a prompt point in pixels (x = column, y = row); LABEL 1 object, 0 background; "
        "negative coordinates work as --point -5,100",
    )
    p.add_argument(
        "--multimask", action="store_true", help="predict 3 candidates and keep the best-scoring"
    )
    _add_tile_options(p)
    _add_output_options(p, "output label image (.tif, .png, .npy)")
    p.set_defaults(func=_cmd_segment)


def _add_refine_command(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "refine",
        help="refine the labels of a label image (Cellpose, StarDist, a threshold...) with SAM2: "
        "each label's mask and box are its prompt",
    )
    p.add_argument("image", help="image file (.tif, .png, .npy)")
    p.add_argument("labels", help="its label image (same height and width; 0 is background)")
    _add_model_options(
        p,
        "model size (default tiny) or the name of an installed model",
        "custom encoder ONNX (with --decoder)",
    )
    p.add_argument("--ids", metavar="ID,ID,...", help="only these labels (default: all)")
    p.add_argument("--contrast", type=_contrast, metavar="LOW,HIGH", help="intensity window")
    p.add_argument("--out", required=True, help="output label image (.tif, .png, .npy)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_cmd_refine)


def _add_segment_all_command(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "segment-all",
        help="find every object (automatic instance segmentation) in images, stacks or folders",
    )
    p.add_argument(
        "input",
        help="an image or stack file (.tif, .npy, OME-Zarr: read lazily; .png...), a folder "
        "(its image files), or a quoted glob pattern",
    )
    p.add_argument(
        "--out",
        required=True,
        help="a label file for one input, else a folder (<name>_labels.tif per input)",
    )
    _add_model_options(
        p,
        "model size (default tiny) or the name of an installed model",
        "custom encoder ONNX (with --decoder)",
    )
    p.add_argument("--contrast", type=_contrast, metavar="LOW,HIGH", help="intensity window")
    p.add_argument("--points-per-side", type=int, default=32, help="grid of point prompts")
    p.add_argument("--points-per-batch", type=int, default=64, help="points per decoder run")
    p.add_argument("--pred-iou-thresh", type=float, default=0.8, help="predicted IoU cut-off")
    p.add_argument(
        "--stability-score-thresh", type=float, default=0.95, help="stability score cut-off"
    )
    p.add_argument("--box-nms-thresh", type=float, default=0.7, help="box IoU for duplicates")
    p.add_argument("--crop-n-layers", type=int, default=0, help="run again on 4^n crops")
    p.add_argument(
        "--min-area", type=int, default=0, help="remove islands and fill holes up to this area"
    )
    p.add_argument("--m2m", action="store_true", help="refine each mask with a second pass")
    _add_tile_options(p)
    p.add_argument(
        "--order",
        choices=("area", "score"),
        default="area",
        help="where masks overlap: the smaller (area) or the higher-scoring (score) wins",
    )
    p.add_argument("--overwrite", action="store_true", help="recompute outputs that exist")
    p.set_defaults(func=_cmd_segment_all)


def _add_propagate_command(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "propagate",
        help="segment one object through a stack (Z or T first) from prompts on one frame",
    )
    p.add_argument("stack", help="stack file (.tif, .npy): (frames, height, width[, channels])")
    p.add_argument("--frame", type=int, required=True, help="index of the prompted frame")
    _add_model_options(
        p,
        "model size (default tiny) or the name of an installed model",
        "custom encoder ONNX (video files beside it, same stem)",
    )
    _add_prompt_options(p, "a prompt point")
    p.add_argument("--direction", choices=DIRECTIONS, default="both")
    p.add_argument(
        "--store",
        help="embedding store of the stack (from `embed`): frames in it are not encoded again, "
        "frames it lacks are added",
    )
    _add_tile_options(p)
    _add_output_options(p, "output label stack (.tif, .npy)")
    p.set_defaults(func=_cmd_propagate)


def _add_tracks_command(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "tracks",
        help="object tracks of a label stack (e.g. a propagation's output) as CSV: the "
        "centroid and area of each object id on each frame",
    )
    p.add_argument("labels", help="label stack (frames, height, width): .tif, .npy, OME-Zarr")
    p.add_argument("--out", required=True, help="CSV file: track_id,frame,y,x,area")
    p.add_argument("--ids", metavar="ID,ID,...", help="only these labels (default: all)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_cmd_tracks)


def _add_replay_command(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "replay",
        help="reproduce an annotation session's labels from its recorded prompts "
        "(LABELS.prompts.json, saved by the widget) on any backend, and report any difference",
    )
    p.add_argument("prompts", help="the recording: LABELS.prompts.json")
    p.add_argument("image", help="the image it was made on (.tif, .npy, OME-Zarr, ...)")
    p.add_argument("--out", required=True, help="output label image (.tif, .npy)")
    p.add_argument(
        "--reference",
        help="labels to compare with (default: the labels file saved beside the prompts); "
        "exit status 3 when pixels differ",
    )
    p.add_argument(
        "--initial", help="the labels the session started from (e.g. Cellpose output it refined)"
    )
    _add_model_options(
        p,
        "model size (default: the recording's) or the name of an installed model",
        "custom encoder ONNX (with --decoder; memory files next to it for propagations)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_cmd_replay, model=None)


def _add_embed_command(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "embed",
        help="encode every frame of an image or stack into an embedding store on disk "
        "(resumable; the widget and propagation read it instead of encoding)",
    )
    p.add_argument(
        "stack",
        help="image or stack: .tif, .npy, OME-Zarr (read lazily), .png...: (frames, H, W[, C])",
    )
    p.add_argument("--out", required=True, help="the store, a folder (e.g. STACK.sam2.zarr)")
    _add_model_options(
        p,
        "model size (default tiny) or the name of an installed model",
        "custom encoder ONNX (with --decoder)",
    )
    p.add_argument("--contrast", type=_contrast, metavar="LOW,HIGH", help="intensity window")
    p.add_argument(
        "--float16",
        action="store_true",
        help="store half precision: half the disk space (see docs/embedding-store.md)",
    )
    _add_tile_options(p)
    p.add_argument("--overwrite", action="store_true", help="start the store over")
    p.set_defaults(func=_cmd_embed)


def _add_export_command(subcommands: Any) -> None:
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


def _add_bench_command(subcommands: Any) -> None:
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


def _add_to_coco_command(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "to-coco",
        help="label images (or stacks: one COCO image per slice) to COCO instance JSON",
    )
    p.add_argument(
        "labels", nargs="+", help="label images (.tif, .png, .npy); stacks from .tif or .npy"
    )
    p.add_argument("--out", required=True, help="the COCO file to write (.json)")
    p.add_argument("--category", default="object", help="the category name (default: object)")
    p.add_argument("--indent", type=int, default=None, help="indent the JSON (default: compact)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_cmd_to_coco)


def _add_from_coco_command(subcommands: Any) -> None:
    from .coco import OVERLAP_RULES

    p = subcommands.add_parser(
        "from-coco", help="COCO instance JSON to label images, one per COCO image entry"
    )
    p.add_argument("coco", help="the COCO file (.json): RLE or polygon masks")
    p.add_argument("--out-dir", required=True, help="folder for the label images")
    p.add_argument(
        "--format", choices=("tif", "png", "npy"), default="tif", help="file format (default tif)"
    )
    p.add_argument(
        "--overlap",
        choices=OVERLAP_RULES,
        default="last",
        help="where masks overlap: the later annotation (last, default), the earlier (first), "
        "or the smaller object (smallest) keeps the pixel",
    )
    p.add_argument("--overwrite", action="store_true", help="replace label images that exist")
    p.set_defaults(func=_cmd_from_coco)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-sam2-webgpu`` command."""
    parser = build_parser()
    args = parser.parse_args(_attach_negative_values(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    from .image.preprocess import ImageError
    from .image.prompts import PromptError
    from .imagefiles import ImageFileError
    from .models import ModelError
    from .runtime import WebGPUUnavailableError

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
