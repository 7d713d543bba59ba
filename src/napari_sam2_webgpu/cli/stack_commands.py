"""Commands on stacks: propagate, embed, tracks, replay."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..video import DIRECTIONS
from ._common import (
    CommandError,
    add_model_options,
    add_output_options,
    add_prompt_options,
    add_tile_options,
    check_model_args,
    check_prompts_given,
    load_predictor,
    load_propagator,
    one_box,
    parse_contrast,
    parse_ids,
    prompt_arrays,
    tile_spec,
)


def add_propagate_command(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "propagate",
        help="segment one object through a stack (Z or T first) from prompts on one frame",
    )
    p.add_argument("stack", help="stack file (.tif, .npy): (frames, height, width[, channels])")
    p.add_argument("--frame", type=int, required=True, help="index of the prompted frame")
    add_model_options(
        p,
        "model size (default tiny) or the name of an installed model",
        "custom encoder ONNX (video files beside it, same stem)",
    )
    add_prompt_options(p, "a prompt point")
    p.add_argument("--direction", choices=DIRECTIONS, default="both")
    p.add_argument(
        "--store",
        help="embedding store of the stack (from `embed`): frames in it are not encoded again, "
        "frames it lacks are added",
    )
    add_tile_options(p)
    add_output_options(p, "output label stack (.tif, .npy)")
    p.set_defaults(func=_cmd_propagate)


def _cmd_propagate(args: argparse.Namespace) -> int:
    from ..image.tiling import prompt_extent, to_window
    from ..imagefiles import check_label_output, label_dtype, open_image, write_labels

    check_model_args(args, size=False)  # the output and stack are checked first
    out_path = check_label_output(
        args.out, max_label=args.label, inputs=[args.stack], overwrite=args.overwrite, stack=True
    )
    stack = open_image(args.stack)
    hw = _check_stack(stack, args)
    check_prompts_given(args, hw)
    spec = tile_spec(args, hw)
    if spec is None:
        stack = np.asarray(stack)  # frames encoded whole: read as before
    coords, labels = prompt_arrays(args)
    box = one_box(args)
    window = None
    if spec is not None:
        # Tracked in the tile that holds the prompts best (the whole frames, at the overview's
        # resolution, when they fit in no tile): the rule of the napari widget.
        window = spec.layout(hw).choose(prompt_extent(coords, box))
    video = load_propagator(args)
    print(
        f"model {video.predictor.name} on {video.predictor.backend_info.describe()}",
        file=sys.stderr,
    )
    predictor, rgb = video.predictor, stack.ndim == 4
    store = None
    if args.store:
        from ..store import open_stack_store

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


def _check_stack(stack: np.ndarray, args: argparse.Namespace) -> tuple[int, int]:
    from ..image.preprocess import ImageError, check_image

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


def add_embed_command(subcommands: Any) -> None:
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
    add_model_options(
        p,
        "model size (default tiny) or the name of an installed model",
        "custom encoder ONNX (with --decoder)",
    )
    p.add_argument("--contrast", type=parse_contrast, metavar="LOW,HIGH", help="intensity window")
    p.add_argument(
        "--float16",
        action="store_true",
        help="store half precision: half the disk space (see docs/embedding-store.md)",
    )
    add_tile_options(p)
    p.add_argument("--overwrite", action="store_true", help="start the store over")
    p.set_defaults(func=_cmd_embed)


def _cmd_embed(args: argparse.Namespace) -> int:
    from ..imagefiles import open_image
    from ..store import open_stack_store, precompute_embeddings, stack_layout

    check_model_args(args)
    image = open_image(args.stack)  # read frame by frame (tile by tile), never whole
    try:
        leading, _ = stack_layout(image)
    except ValueError as exc:
        raise CommandError(f"{args.stack}: {exc}") from exc
    spec = tile_spec(args, image.shape[len(leading) : len(leading) + 2])
    predictor = load_predictor(args)
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


def add_tracks_command(subcommands: Any) -> None:
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


def _cmd_tracks(args: argparse.Namespace) -> int:
    from ..imagefiles import open_image
    from ..tracks import label_tracks, write_tracks_csv

    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise CommandError(f"--out {out}: tracks are written as CSV (a .csv file).")
    if out.exists() and not args.overwrite:
        raise CommandError(f"{out} exists: pass --overwrite to replace it.")
    ids = parse_ids(args.ids)
    labels = open_image(args.labels)
    try:
        tracks = label_tracks(labels, ids)
    except ValueError as exc:
        raise CommandError(f"{args.labels}: {exc}") from exc
    write_tracks_csv(out, tracks, overwrite=True)
    objects = len(np.unique(tracks[:, 0]))
    print(f"wrote {out}: {objects} objects, {len(tracks)} rows over {labels.shape[0]} frames")
    return 0


def add_replay_command(subcommands: Any) -> None:
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
    add_model_options(
        p,
        "model size (default: the recording's) or the name of an installed model",
        "custom encoder ONNX (with --decoder; memory files next to it for propagations)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_cmd_replay, model=None)


def _cmd_replay(args: argparse.Namespace) -> int:
    from ..imagefiles import check_label_output, open_image, read_image, write_labels
    from ..replay import PromptRecording, compare_labels, replay

    check_model_args(args)
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
        propagator = load_propagator(args)
        predictor = propagator.predictor
    else:
        propagator, predictor = None, load_predictor(args)
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


def _recorded_size(model: str | None) -> str | None:
    """``"sam2.1 tiny"`` (a recording's model) -> ``"tiny"``; None when not a registry name."""
    if not model:
        return None
    from ..models import check_size

    size = model.split()[-1]
    try:
        check_size(size)
    except Exception:  # noqa: BLE001 - an installed or custom model: --model/--encoder say
        return None
    return size
