"""Commands on single images: segment, segment-all (images, stacks, folders), refine."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from ._common import (
    CommandError,
    add_model_options,
    add_output_options,
    add_prompt_options,
    add_tile_options,
    check_model_args,
    check_prompts_given,
    load_predictor,
    one_box,
    parse_contrast,
    parse_ids,
    prompt_arrays,
    tile_spec,
)


def add_segment_command(subcommands: Any) -> None:
    p = subcommands.add_parser("segment", help="segment one object in an image file from prompts")
    p.add_argument("image", help="image file (.tif, .png, .jpg, .npy)")
    add_model_options(
        p,
        "model size (default tiny) or the name of an installed model: an installed model "
        "wins, else the size is downloaded and built once",
        "custom encoder ONNX (with --decoder)",
    )
    add_prompt_options(
        p,
        "a prompt point in pixels (x = column, y = row); LABEL 1 object, 0 background; "
        "negative coordinates work as --point -5,100",
    )
    p.add_argument(
        "--multimask", action="store_true", help="predict 3 candidates and keep the best-scoring"
    )
    add_tile_options(p)
    add_output_options(p, "output label image (.tif, .png, .npy)")
    p.set_defaults(func=_cmd_segment)


def _cmd_segment(args: argparse.Namespace) -> int:
    from ..image.tiling import whole_image_window
    from ..imagefiles import check_label_output, label_dtype, open_image, write_labels

    # Everything that can be checked is checked before a model is loaded or downloaded.
    check_model_args(args)
    out = check_label_output(
        args.out, max_label=args.label, inputs=[args.image], overwrite=args.overwrite
    )
    image = open_image(args.image)  # lazily where it can: a tiled image is read a tile at a time
    (height, width), _ = whole_image_window(image, args.contrast)
    check_prompts_given(args, (height, width))
    spec = tile_spec(args, (height, width))
    predictor = load_predictor(args)
    print(f"model {predictor.name} on {predictor.backend_info.describe()}", file=sys.stderr)
    if spec is None:
        predictor.set_image(np.asarray(image), contrast_limits=args.contrast)
    else:
        tiled = predictor.compute_tiled_embedding(image, contrast_limits=args.contrast, spec=spec)
        predictor.set_embedding(tiled)  # the tile under the prompts is encoded when decoding
        rows, cols = tiled.layout.grid
        print(f"tiled: {rows} x {cols} tiles ({spec.describe()})", file=sys.stderr)
    coords, labels = prompt_arrays(args)
    masks, scores, _ = predictor.predict(
        point_coords=coords,
        point_labels=labels,
        box=one_box(args),
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


def add_segment_all_command(subcommands: Any) -> None:
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
    add_model_options(
        p,
        "model size (default tiny) or the name of an installed model",
        "custom encoder ONNX (with --decoder)",
    )
    p.add_argument("--contrast", type=parse_contrast, metavar="LOW,HIGH", help="intensity window")
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
    add_tile_options(p)
    p.add_argument(
        "--order",
        choices=("area", "score"),
        default="area",
        help="where masks overlap: the smaller (area) or the higher-scoring (score) wins",
    )
    p.add_argument("--overwrite", action="store_true", help="recompute outputs that exist")
    p.set_defaults(func=_cmd_segment_all)


def _cmd_segment_all(args: argparse.Namespace) -> int:
    from ..batch import plan_batch, run_batch
    from ..image.automatic import AutomaticMaskGenerator

    check_model_args(args)
    items = plan_batch(args.input, args.out)
    todo = [i for i in items if args.overwrite or not i.output.exists()]
    print(f"{len(items)} images, {len(items) - len(todo)} done already", file=sys.stderr)
    if not todo:
        return 0
    predictor = load_predictor(args)
    print(f"model {predictor.name} on {predictor.backend_info.describe()}", file=sys.stderr)
    generator = AutomaticMaskGenerator(predictor, **_segment_all_params(args))

    def segment_image(image: Any) -> np.ndarray:
        spec = tile_spec(args, image.shape[:2])
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


def _segment_stack(image: Any, segment: Any, name: str) -> np.ndarray:
    """Each slice of a stack on its own; ids stay unique through the stack (offset per slice).

    A slice that cannot be segmented (e.g. no finite value) is left empty and reported; the
    other slices are still done.
    """
    from ..image.preprocess import ImageError
    from ..imagefiles import MAX_LABEL

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


def add_refine_command(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "refine",
        help="refine the labels of a label image (Cellpose, StarDist, a threshold...) with SAM2: "
        "each label's mask and box are its prompt",
    )
    p.add_argument("image", help="image file (.tif, .png, .npy)")
    p.add_argument("labels", help="its label image (same height and width; 0 is background)")
    add_model_options(
        p,
        "model size (default tiny) or the name of an installed model",
        "custom encoder ONNX (with --decoder)",
    )
    p.add_argument("--ids", metavar="ID,ID,...", help="only these labels (default: all)")
    p.add_argument("--contrast", type=parse_contrast, metavar="LOW,HIGH", help="intensity window")
    p.add_argument("--out", required=True, help="output label image (.tif, .png, .npy)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_cmd_refine)


def _cmd_refine(args: argparse.Namespace) -> int:
    from ..image.refine import refine_labels
    from ..imagefiles import check_label_output, read_image, write_labels

    check_model_args(args)
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
    ids = parse_ids(args.ids)
    predictor = load_predictor(args)
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
