"""COCO instance files: to-coco, from-coco."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._common import (
    CommandError,
    same_path,
)


def add_to_coco_command(subcommands: Any) -> None:
    p = subcommands.add_parser(
        "to-coco",
        help="label images (or stacks: one COCO image per slice) to COCO instance JSON",
    )
    p.add_argument(
        "labels", nargs="+", help="label images (.tif, .png, .npy); stacks from ..tif or .npy"
    )
    p.add_argument("--out", required=True, help="the COCO file to write (.json)")
    p.add_argument("--category", default="object", help="the category name (default: object)")
    p.add_argument("--indent", type=int, default=None, help="indent the JSON (default: compact)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_cmd_to_coco)


def _cmd_to_coco(args: argparse.Namespace) -> int:
    from ..coco import CocoError, labels_to_coco, slice_file_names, write_coco
    from ..imagefiles import STACK_FORMATS, read_image

    out = Path(args.out)
    if out.suffix.lower() != ".json":
        raise CommandError(f"--out {out}: a COCO file is JSON; give a name ending in .json")
    if out.is_dir():
        raise CommandError(f"--out {out} is a folder: give a file name, e.g. {out / 'coco.json'}")
    if out.exists() and not args.overwrite:
        raise CommandError(f"{out} already exists: pass --overwrite to replace it")
    for source in args.labels:
        if same_path(out, Path(source)):
            raise CommandError(f"Refusing to write the COCO file over the input {source}")
    coco: dict[str, Any] | None = None
    for source in map(Path, args.labels):
        labels = read_image(source)
        if labels.ndim == 3 and source.suffix.lower() not in STACK_FORMATS:
            raise CommandError(
                f"{source}: shape {labels.shape} is a color image, not a label image "
                "(stacks are read from ..tif or .npy)"
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


def add_from_coco_command(subcommands: Any) -> None:
    from ..coco import OVERLAP_RULES

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


def _cmd_from_coco(args: argparse.Namespace) -> int:
    from ..coco import iter_coco_images, read_coco
    from ..imagefiles import check_label_output, write_labels

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
