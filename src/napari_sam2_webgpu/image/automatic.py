"""Segment everything: SAM2's automatic mask generator on our predictor, and instance labels.

:class:`AutomaticMaskGenerator` reproduces the official
``sam2.automatic_mask_generator.SAM2AutomaticMaskGenerator`` (same parameters, defaults and
records) on a :class:`~napari_sam2_webgpu.image.predictor.Sam2Predictor`: a grid of single-point
prompts over the image (and over overlapping crops of it), decoded ``points_per_batch`` at a
time through the decoder's batch dimension, then filtered by predicted IoU and stability score
and de-duplicated by box non-maximum suppression. :func:`masks_to_labels` turns the records
into a label image without overlaps, and :func:`segment_all` does both.

Pure Python + numpy/scipy: nothing here imports napari, Qt or torch.

>>> labels, records = segment_all(predictor, image, points_per_side=16)  # doctest: +SKIP

Differences from the official generator, all deliberate:

- an image without contrast (every pixel equal) or smaller than
  :data:`~napari_sam2_webgpu.image.preprocess.MIN_SIDE` pixels on a side has nothing to
  segment: no masks, and a logged message, instead of noise masks or an error;
- crops of the image are encoded with the whole image's intensity range, so every crop sees
  the same contrast (uint8 images: identical to the official code);
- masks are kept cropped to their boxes between the steps, never as full-size float logits,
  so memory grows with the objects found rather than with ``points_per_batch`` x image size.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from ..coco import encode_rle
from .encoder import ImageEmbedding
from .instance_labels import masks_to_labels
from .mask_candidates import Candidates, near_crop_edge, paint_candidates, xywh
from .mask_geometry import (
    box_nms,
    fill_small_regions,
    generate_crop_boxes,
    layer_point_grids,
)
from .postprocess import LOGIT_CLAMP, to_model_coords, upsample_window
from .predictor import Sam2Predictor
from .preprocess import MIN_SIDE, ImageError, check_image, intensity_range
from .tiling import TiledEmbedding, TileSpec, whole_image_window

__all__ = [
    "DECODER_BATCH",
    "AutomaticMaskGenerator",
    "SegmentationCancelled",
    "masks_to_labels",
    "segment_all",
]

logger = logging.getLogger("napari_sam2_webgpu")

#: ``progress(done, total)``: called once before the first decoder batch and after each one.
ProgressCallback = Callable[[int, int], None]
#: A callable polled before every decoder batch (True: stop), or a :class:`threading.Event`.
CancelHook = Callable[[], bool] | threading.Event

#: Forms of a record's ``segmentation`` (the official generator's ``output_mode`` values).
OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
#: Masks whose box comes this close (pixels) to a tile's inner edge count as cut by it: one
#: pixel of the decoder's 256² logits at native scale. (The crops' 20 pixels would halve the
#: size of the objects that tiles are sure to hold whole.)
_TILE_EDGE_TOLERANCE = 4.0
#: Most point prompts per decoder run. The decoder repeats the image features per prompt (64
#: prompts: 0.5 GB for the 256² level alone). Measured (benchmarks/decoder_batch.py): on an
#: H200 with WebGPU a run of 16 takes 1.7 ms per point and one of 64 7.3 ms; on the CPU EP the
#: time per point is the same from 4 to 64, and memory grows with the run (a 4096² image on 2
#: cores peaked at 4.5 GB with runs of 64).
DECODER_BATCH = 16


class SegmentationCancelled(RuntimeError):
    """Raised by :meth:`AutomaticMaskGenerator.generate` when its ``cancelled`` hook fires."""


def _is_cancelled(cancelled: CancelHook | None) -> bool:
    if cancelled is None:
        return False
    if isinstance(cancelled, threading.Event):
        return cancelled.is_set()
    return bool(cancelled())


class AutomaticMaskGenerator:
    """Find every object of an image: SAM2's ``SAM2AutomaticMaskGenerator`` on ONNX Runtime.

    Prompts the model with a grid of points over the image (and, with ``crop_n_layers``, over
    overlapping crops of it), keeps the masks the model is confident about and that are stable
    under changes of the binarisation threshold, and removes duplicates by box non-maximum
    suppression. Parameters, defaults and results are the official generator's.

    Parameters
    ----------
    predictor : Sam2Predictor
        Encodes the image (and crops) and decodes the point prompts; its current image is
        neither needed nor changed.
    points_per_side : int or None
        Points along each side of the grid (``points_per_side**2`` prompts). ``None`` when
        ``point_grids`` is given.
    points_per_batch : int
        Points decoded by one decoder run (its batch dimension). More is faster, up to memory.
    pred_iou_thresh : float
        Keep masks whose predicted IoU exceeds this (0 keeps all).
    stability_score_thresh : float
        Keep masks whose stability score is at least this (0 keeps all).
    stability_score_offset : float
        Logit shift used for the stability score: the IoU of the masks thresholded at
        ``mask_threshold + offset`` and ``mask_threshold - offset``.
    mask_threshold : float
        Logit threshold of the masks.
    box_nms_thresh : float
        Box IoU above which the less confident of two masks of a crop is dropped.
    crop_n_layers : int
        Run again on crops: layer ``i`` has ``(2**i)**2`` crops. 0 is the whole image only.
    crop_nms_thresh : float
        Box IoU above which duplicates between crops are dropped (smaller crops win).
    crop_overlap_ratio : float
        Overlap of first-layer crops, as a fraction of the image's short side.
    crop_n_points_downscale_factor : int
        Layer ``i`` uses ``points_per_side / factor**i`` points a side.
    point_grids : list of numpy.ndarray, optional
        Explicit ``(N, 2)`` point grids in ``[0, 1]`` (x, y), one per crop layer; exclusive with
        ``points_per_side``.
    min_mask_region_area : int
        When > 0, fill holes and remove islands of at most this area, as SAM2 does: on the
        decoder's 256 x 256 logits, so the area is in those pixels (one of them covers about
        ``(H / 256) * (W / 256)`` image pixels).
    output_mode : {"binary_mask", "uncompressed_rle", "coco_rle"}
        Form of each record's ``segmentation``: a boolean ``(H, W)`` array, or COCO's
        uncompressed RLE, or its compressed string form (pycocotools' ``encode``), see
        :func:`napari_sam2_webgpu.coco.encode_rle`.
    use_m2m : bool
        Refine each mask with a second decoder run that takes its logits as mask prompt.
    multimask_output : bool
        Three masks per point (else SAM2's single, stability-checked mask).
    decoder_batch : int, optional
        Most points per decoder run (a batch of ``points_per_batch`` may take several runs;
        the masks do not change). Default :data:`DECODER_BATCH`: larger runs are slower per
        point on WebGPU and no faster on the CPU, and take more memory.

    Raises
    ------
    ValueError
        Both or neither of ``points_per_side`` and ``point_grids``, too few point grids for
        ``crop_n_layers``, or an unknown ``output_mode``.

    Examples
    --------
    >>> generator = AutomaticMaskGenerator(predictor, points_per_side=16)  # doctest: +SKIP
    >>> records = generator.generate(image)                                # doctest: +SKIP
    >>> labels = masks_to_labels(records, image.shape[:2])                 # doctest: +SKIP
    """

    def __init__(
        self,
        predictor: Sam2Predictor,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Sequence[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: Literal["binary_mask", "uncompressed_rle", "coco_rle"] = "binary_mask",
        use_m2m: bool = False,
        multimask_output: bool = True,
        decoder_batch: int | None = None,
    ) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("Give exactly one of points_per_side and point_grids.")
        if points_per_side is not None:
            if points_per_side < 1:
                raise ValueError(f"points_per_side must be at least 1, got {points_per_side}.")
            grids = layer_point_grids(
                points_per_side, crop_n_layers, crop_n_points_downscale_factor
            )
        else:
            grids = [np.asarray(g, dtype=np.float64).reshape(-1, 2) for g in point_grids]
            if len(grids) < crop_n_layers + 1:
                raise ValueError(
                    f"point_grids has {len(grids)} grid(s); crop_n_layers={crop_n_layers} "
                    f"needs {crop_n_layers + 1} (one per layer, the whole image first)."
                )
        if output_mode not in OUTPUT_MODES:
            raise ValueError(
                f"output_mode must be one of {', '.join(OUTPUT_MODES)}, got {output_mode!r}."
            )
        if points_per_batch < 1:
            raise ValueError(f"points_per_batch must be at least 1, got {points_per_batch}.")
        self.predictor = predictor
        self.point_grids = grids
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.mask_threshold = mask_threshold
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.use_m2m = use_m2m
        self.multimask_output = multimask_output
        if decoder_batch is not None and decoder_batch < 1:
            raise ValueError(f"decoder_batch must be at least 1, got {decoder_batch}.")
        self.decoder_batch = decoder_batch

    # -- public -----------------------------------------------------------------------------
    def generate(
        self,
        image: np.ndarray,
        *,
        contrast_limits: Sequence[float] | None = None,
        rgb: bool | None = None,
        progress: ProgressCallback | None = None,
        cancelled: CancelHook | None = None,
        embedding: ImageEmbedding | TiledEmbedding | None = None,
        tiles: TileSpec | None = None,
    ) -> list[dict[str, Any]]:
        """Every mask found in ``image``, as the official generator's records.

        Parameters
        ----------
        image : numpy.ndarray
            ``(H, W)`` grayscale or ``(H, W, C)`` with C in 1, 3, 4; any integer or float dtype
            (as :meth:`Sam2Predictor.set_image` takes it).
        contrast_limits : (float, float), optional
            Intensities mapped to black and white, for the image and every crop; see
            :func:`~napari_sam2_webgpu.image.preprocess.intensity_range` for the default.
        rgb : bool, optional
            Whether a 3D array is channels-last colour (napari's ``layer.rgb``).
        progress : callable, optional
            ``progress(done, total)`` in decoder batches: once with ``done=0``, then after
            every batch.
        cancelled : callable or threading.Event, optional
            Polled before each encode and decoder batch; when it returns True (or the event is
            set), :class:`SegmentationCancelled` is raised.
        embedding : ImageEmbedding or TiledEmbedding, optional
            The whole image's embedding, already computed with the same contrast limits (from
            a cache, or :meth:`Sam2Predictor.compute_embedding`): it is used instead of
            encoding the image again. Crops are always encoded. A
            :class:`~.tiling.TiledEmbedding` segments tile by tile, as ``tiles`` does.
        tiles : TileSpec, optional
            Segment a large image tile by tile at full resolution (see :mod:`.tiling`): each
            tile is segmented as an image of its own (crops included), masks cut by a tile's
            inner edges are dropped (the overlapping tile holds them whole), and duplicates
            between tiles are removed by box NMS at ``crop_nms_thresh`` (the more confident
            mask wins). Objects up to ``2 * halo - 8`` pixels across are found whole (a mask
            within 4 pixels of a tile's inner edge counts as cut). Each
            record's ``crop_box`` is then its tile's window (or a crop of it).

        Returns
        -------
        list of dict
            One record per mask, best first within each crop: ``segmentation`` (boolean
            ``(H, W)`` or RLE, see ``output_mode``), ``area`` (pixels), ``bbox`` (``x, y, w,
            h``), ``predicted_iou``, ``point_coords`` (``[[x, y]]``, the prompt),
            ``stability_score`` and ``crop_box`` (``x, y, w, h``). Empty for an image without
            contrast or smaller than 8 pixels on a side.

        Raises
        ------
        ImageError
            The image is empty (0 pixels), not an image (wrong dtype or dimensions), or has no
            finite value. ``ImageError`` is a ``ValueError``.
        ValueError
            ``embedding`` is of an image of another size.
        SegmentationCancelled
            ``cancelled`` fired.
        """
        found = self._candidates(image, contrast_limits, rgb, progress, cancelled, embedding, tiles)
        return [] if found is None else self._records(*found)

    def generate_labels(
        self,
        image: Any,
        *,
        order: Literal["area", "score"] = "area",
        contrast_limits: Sequence[float] | None = None,
        rgb: bool | None = None,
        progress: ProgressCallback | None = None,
        cancelled: CancelHook | None = None,
        embedding: ImageEmbedding | TiledEmbedding | None = None,
        tiles: TileSpec | None = None,
    ) -> tuple[np.ndarray, int]:
        """Every object of ``image`` as an instance label image, without making records.

        The labels equal ``masks_to_labels(generate(...), order=order)``, but no image-sized
        mask is ever made: memory follows the objects found, which is what a tiled 10,000²
        section needs. Parameters are those of :meth:`generate` and :func:`masks_to_labels`.

        Returns
        -------
        labels : numpy.ndarray
            ``(H, W)`` int32; label ``i + 1`` is the ``i``-th mask :meth:`generate` returns.
        count : int
            The number of masks found.
        """
        found = self._candidates(image, contrast_limits, rgb, progress, cancelled, embedding, tiles)
        if found is None:
            height, width = image.shape[:2]
            return np.zeros((height, width), np.int32), 0
        data, hw = found
        return paint_candidates(data, hw, order), len(data)

    # -- steps ------------------------------------------------------------------------------
    def _candidates(
        self,
        image: Any,
        contrast_limits: Sequence[float] | None,
        rgb: bool | None,
        progress: ProgressCallback | None,
        cancelled: CancelHook | None,
        embedding: ImageEmbedding | TiledEmbedding | None,
        tiles: TileSpec | None,
    ) -> tuple[Candidates, tuple[int, int]] | None:
        """The masks kept, and the image size; None when there is nothing to segment."""
        if isinstance(embedding, TiledEmbedding) or tiles is not None:
            return self._generate_tiled(
                image, contrast_limits, rgb, progress, cancelled, embedding, tiles
            )
        hw = self._check(image, rgb)
        if hw is None:
            if progress is not None:
                progress(0, 0)
            return None
        if embedding is not None and tuple(embedding.image_hw) != hw:
            raise ValueError(
                f"The embedding is of a {embedding.image_hw} image, not of this {hw} one."
            )
        data = self._generate_masks(image, hw, contrast_limits, rgb, progress, cancelled, embedding)
        return data, hw

    def _generate_tiled(
        self,
        image: Any,
        contrast_limits: Sequence[float] | None,
        rgb: bool | None,
        progress: ProgressCallback | None,
        cancelled: CancelHook | None,
        embedding: TiledEmbedding | None,
        tiles: TileSpec | None,
    ) -> tuple[Candidates, tuple[int, int]] | None:
        hw, limits = whole_image_window(image, contrast_limits, rgb)
        if embedding is None:
            embedding = self.predictor.compute_tiled_embedding(
                image, contrast_limits=limits, rgb=rgb, spec=tiles, max_bytes=0
            )
        elif tuple(embedding.image_hw) != hw:
            raise ValueError(
                f"The embedding is of a {embedding.image_hw} image, not of this {hw} one."
            )
        layout = embedding.layout
        batches = [self._batches(tile.hw) for tile in layout.tiles]
        counter = _Progress(sum(batches), progress)
        parts = []
        for tile, n_batches in zip(layout.tiles, batches, strict=True):
            if _is_cancelled(cancelled):
                raise SegmentationCancelled("Segmentation cancelled.")
            pixels = np.asarray(image[tile.slices])
            if self._check(pixels, rgb) is None:  # a flat tile (background): nothing there
                counter.advance(n_batches)
                continue
            data = self._generate_masks(
                pixels,
                tile.hw,
                limits,
                rgb,
                None,
                cancelled,
                embedding.tile(tile.index),
                counter=counter,
            )
            if not len(data):
                continue
            # Masks cut by the tile's inner edges: the overlapping tile has them whole.
            cut = near_crop_edge(data.boxes, list(tile.box), hw, _TILE_EDGE_TOLERANCE)
            data = data.take(np.flatnonzero(~cut))
            x0, y0 = tile.box[:2]
            data.boxes = data.boxes + np.array([x0, y0, x0, y0])
            data.points = data.points + np.array([x0, y0], dtype=np.float32)
            data.crop_boxes = data.crop_boxes + np.array([x0, y0, x0, y0])
            parts.append(data)
        data = Candidates.concat(parts)
        if len(layout) > 1 and len(data):
            # An object whole in two overlapping tiles: the more confident mask wins.
            data = data.take(box_nms(data.boxes, data.iou, self.crop_nms_thresh))
        return data, hw

    def _batches(self, hw: tuple[int, int]) -> int:
        """Decoder batches of the crops of an image of ``hw``."""
        _, layers = generate_crop_boxes(hw, self.crop_n_layers, self.crop_overlap_ratio)
        return sum(math.ceil(len(self.point_grids[i]) / self.points_per_batch) for i in layers)

    @staticmethod
    def _check(image: np.ndarray, rgb: bool | None) -> tuple[int, int] | None:
        """``(H, W)``, or None (with a logged reason) when there is nothing to segment."""
        if isinstance(image, np.ndarray) and image.ndim in (2, 3) and image.size > 0:
            height, width = image.shape[:2]
            if min(height, width) < MIN_SIDE:
                # Validate everything else on a stand-in of the smallest size.
                check_image(np.zeros((MIN_SIDE, MIN_SIDE, *image.shape[2:]), image.dtype), rgb=rgb)
                logger.info(
                    "segment all: the image is %d x %d pixels, too small to segment "
                    "(at least %d a side): no masks",
                    height,
                    width,
                    MIN_SIDE,
                )
                return None
        height, width, channels = check_image(image, rgb=rgb)
        plain = image[..., :3] if channels == 4 else image  # alpha is dropped, as in encoding
        flat = plain.reshape(height * width, -1)
        if flat.dtype.kind == "f" and not np.all(np.isfinite(flat)):
            if not np.any(np.isfinite(flat)):
                raise ImageError("The image has no finite value (all NaN or infinite).")
            return height, width
        if np.all(flat.min(axis=0) == flat.max(axis=0)):
            logger.info("segment all: the image is constant (no contrast): no masks")
            return None
        return height, width

    def _generate_masks(
        self,
        image: np.ndarray,
        hw: tuple[int, int],
        contrast_limits: Sequence[float] | None,
        rgb: bool | None,
        progress: ProgressCallback | None,
        cancelled: CancelHook | None,
        embedding: ImageEmbedding | None,
        counter: _Progress | None = None,
    ) -> Candidates:
        plain = image[..., :3] if image.ndim == 3 and image.shape[-1] == 4 else image
        limits = intensity_range(plain, contrast_limits)
        crop_boxes, layers = generate_crop_boxes(hw, self.crop_n_layers, self.crop_overlap_ratio)
        per_crop = [math.ceil(len(self.point_grids[i]) / self.points_per_batch) for i in layers]
        counter = counter or _Progress(sum(per_crop), progress)
        crops = []
        for crop_box, layer, n_batches in zip(crop_boxes, layers, per_crop, strict=True):
            whole = embedding if layer == 0 else None  # layer 0 is the whole image
            crops.append(
                self._process_crop(
                    image, crop_box, layer, hw, limits, rgb, counter, n_batches, cancelled, whole
                )
            )
        data = Candidates.concat(crops)
        if len(crop_boxes) > 1 and len(data):
            # Duplicates between crops: masks of smaller crops win.
            crop_areas = (data.crop_boxes[:, 2] - data.crop_boxes[:, 0]) * (
                data.crop_boxes[:, 3] - data.crop_boxes[:, 1]
            )
            scores = 1.0 / crop_areas.astype(np.float32)
            data = data.take(box_nms(data.boxes, scores, self.crop_nms_thresh))
        return data

    def _process_crop(
        self,
        image: np.ndarray,
        crop_box: list[int],
        layer: int,
        hw: tuple[int, int],
        limits: tuple[float, float],
        rgb: bool | None,
        counter: _Progress,
        n_batches: int,
        cancelled: CancelHook | None,
        embedding: ImageEmbedding | None,
    ) -> Candidates:
        x0, y0, x1, y1 = crop_box
        crop_hw = (y1 - y0, x1 - x0)
        if min(crop_hw) < MIN_SIDE:  # only crops of tiny images: nothing to see
            counter.advance(n_batches)
            return Candidates.empty()
        if _is_cancelled(cancelled):
            raise SegmentationCancelled("Segmentation cancelled.")
        if embedding is None:
            embedding = self.predictor.compute_embedding(
                image[y0:y1, x0:x1], contrast_limits=limits, rgb=rgb
            )
        # Grid points in crop pixels, float32 as the official code keeps them.
        points = (self.point_grids[layer] * np.array(crop_hw[::-1])[None]).astype(np.float32)
        parts = []
        for start in range(0, len(points), self.points_per_batch):
            if _is_cancelled(cancelled):
                raise SegmentationCancelled("Segmentation cancelled.")
            batch = points[start : start + self.points_per_batch]
            parts.append(self._process_batch(embedding, batch, crop_box, crop_hw, hw))
            counter.advance(1)
        data = Candidates.concat(parts)
        if not len(data):
            return data
        # Duplicates within the crop: the higher predicted IoU wins.
        data = data.take(box_nms(data.boxes, data.iou, self.box_nms_thresh))
        data.points = data.points + np.array([x0, y0], dtype=np.float32)
        data.crop_boxes = np.tile(np.array(crop_box, dtype=np.int64), (len(data), 1))
        data.boxes = data.boxes + np.array([x0, y0, x0, y0])
        return data

    def _decode(
        self, embedding: Any, points: np.ndarray, crop_hw: tuple[int, int], mask_input: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits ``(B, K, 256, 256)`` and scores ``(B, K)`` of one point each, in runs of at
        most ``decoder_batch`` points."""
        decoder = self.predictor.decoder
        multimask = self.multimask_output and mask_input is None
        coords = to_model_coords(points[:, None, :], crop_hw)
        labels = np.ones(coords.shape[:2], dtype=np.float32)
        step = max(1, self.decoder_batch or DECODER_BATCH)
        runs = []
        for start in range(0, len(points), step):
            part = slice(start, start + step)
            part_coords, part_labels = coords[part], labels[part]
            masks = None if mask_input is None else mask_input[part]
            count = len(part_coords)
            if decoder.captures and 1 < count < step:
                # A captured decoder has one session per run size: a short run is padded to
                # the full size (repeats of its last point, dropped below) to reuse it.
                fill = np.arange(step) % count
                part_coords, part_labels = part_coords[fill], part_labels[fill]
                masks = None if masks is None else masks[fill]
            feeds = decoder.model_feeds(embedding, part_coords, part_labels, masks)
            logits, scores = decoder.select(decoder.run(feeds), multimask)
            runs.append((logits[:count], scores[:count]))
        if len(runs) == 1:
            return runs[0]
        return np.concatenate([r[0] for r in runs]), np.concatenate([r[1] for r in runs])

    def _process_batch(
        self,
        embedding: Any,
        points: np.ndarray,
        crop_box: list[int],
        crop_hw: tuple[int, int],
        hw: tuple[int, int],
    ) -> Candidates:
        logits, iou = self._decode(embedding, points, crop_hw, None)
        n_masks = logits.shape[1]
        logits = logits.reshape(-1, *logits.shape[-2:])
        iou = iou.reshape(-1).astype(np.float32)
        points = np.repeat(points, n_masks, axis=0)
        if self.use_m2m:
            # One refinement step: each mask's own (clamped) logits as the mask prompt.
            low_res = np.clip(logits, -LOGIT_CLAMP, LOGIT_CLAMP)[:, None]
            refined = []
            for start in range(0, len(points), self.points_per_batch):
                stop = start + self.points_per_batch
                refined.append(
                    self._decode(embedding, points[start:stop], crop_hw, low_res[start:stop])
                )
            logits = np.concatenate([r[0][:, 0] for r in refined])
            iou = np.concatenate([r[1][:, 0] for r in refined]).astype(np.float32)
        if self.pred_iou_thresh > 0.0:
            keep = iou > self.pred_iou_thresh
            logits, iou, points = logits[keep], iou[keep], points[keep]
        logits = fill_small_regions(logits, self.min_mask_region_area)
        return self._binarise(logits, iou, points, crop_box, crop_hw, hw)

    def _binarise(
        self,
        logits: np.ndarray,
        iou: np.ndarray,
        points: np.ndarray,
        crop_box: list[int],
        crop_hw: tuple[int, int],
        hw: tuple[int, int],
    ) -> Candidates:
        """Upsample, score stability, threshold, box and drop masks cut by the crop's edge.

        Each mask is upsampled only where it can exceed the lowest threshold
        (:func:`~.postprocess.upsample_window`): the values, and so the masks and scores, are
        those of the whole upsampled image, at a cost that follows the object's size.
        """
        t, offset = self.mask_threshold, self.stability_score_offset
        floor = min(t - offset, t + offset, t)
        kept, boxes, patches, scores = [], [], [], []
        for i, low in enumerate(logits):
            window = upsample_window(low, crop_hw, floor)
            if window is None:
                inner = outer = 0
            else:
                y0, x0, values = window
                inner = int(np.count_nonzero(values > t + offset))
                outer = int(np.count_nonzero(values > t - offset))
            # 0/0 is NaN officially, which fails every threshold > 0 and passes 0: so does 0.
            stability = np.float32(inner / max(outer, 1))  # float32, as the official score
            if self.stability_score_thresh > 0.0 and not stability >= self.stability_score_thresh:
                continue
            mask = None if window is None else values > t
            rows = None if mask is None else np.flatnonzero(mask.any(axis=1))
            if rows is None or rows.size == 0:  # empty: the official box is all zeros
                box, patch = (0, 0, 0, 0), np.zeros((1, 1), bool)
            else:
                cols = np.flatnonzero(mask.any(axis=0))
                r0, r1, c0, c1 = rows[0], rows[-1], cols[0], cols[-1]
                box = (x0 + c0, y0 + r0, x0 + c1, y0 + r1)
                patch = mask[r0 : r1 + 1, c0 : c1 + 1].copy()
            kept.append(i)
            boxes.append(box)
            patches.append(patch)
            scores.append(stability)
        if not kept:
            return Candidates.empty()
        boxes_array = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        inside = ~near_crop_edge(boxes_array, crop_box, hw)
        index = np.asarray(kept, dtype=np.intp)[inside]
        return Candidates(
            boxes_array[inside],
            [p for p, ok in zip(patches, inside, strict=True) if ok],
            iou[index],
            np.asarray(scores, dtype=np.float32)[inside],
            points[index],
            np.zeros((len(index), 4), np.int64),
        )

    def _records(self, data: Candidates, hw: tuple[int, int]) -> list[dict[str, Any]]:
        records = []
        for i in range(len(data)):
            mask = data.full_mask(i, hw)
            if self.output_mode == "binary_mask":
                segmentation = mask
            else:
                segmentation = encode_rle(mask, compressed=self.output_mode == "coco_rle")
            records.append(
                {
                    "segmentation": segmentation,
                    "area": int(np.count_nonzero(data.patches[i])),
                    "bbox": xywh(data.boxes[i]),
                    "predicted_iou": float(data.iou[i]),
                    "point_coords": [[float(v) for v in data.points[i]]],
                    "stability_score": float(data.stability[i]),
                    "crop_box": xywh(data.crop_boxes[i]),
                }
            )
        return records


class _Progress:
    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.done, self.total, self.callback = 0, total, callback
        if callback is not None:
            callback(0, total)

    def advance(self, n: int) -> None:
        if n <= 0:
            return
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)


def segment_all(
    predictor: Sam2Predictor,
    image: np.ndarray,
    *,
    order: Literal["area", "score"] = "area",
    contrast_limits: Sequence[float] | None = None,
    rgb: bool | None = None,
    progress: ProgressCallback | None = None,
    cancelled: CancelHook | None = None,
    tiles: TileSpec | None = None,
    **params: Any,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Segment every object of an image into an instance label image.

    Parameters
    ----------
    predictor : Sam2Predictor
        The model.
    image : numpy.ndarray
        As for :meth:`AutomaticMaskGenerator.generate`.
    order : {"area", "score"}
        Which mask wins where masks overlap (see :func:`masks_to_labels`).
    contrast_limits, rgb, progress, cancelled, tiles
        As for :meth:`AutomaticMaskGenerator.generate` (``tiles``: segment tile by tile at
        full resolution).
    **params
        Parameters of :class:`AutomaticMaskGenerator` (``points_per_side``,
        ``pred_iou_thresh``...).

    Returns
    -------
    labels : numpy.ndarray
        ``(H, W)`` int32, label ``i + 1`` for ``records[i]``; all 0 when nothing was found.
    records : list of dict
        The masks (see :meth:`AutomaticMaskGenerator.generate`).

    Raises
    ------
    ImageError
        The image is empty or not an image.
    SegmentationCancelled
        ``cancelled`` fired.
    """
    generator = AutomaticMaskGenerator(predictor, **params)
    records = generator.generate(
        image,
        contrast_limits=contrast_limits,
        rgb=rgb,
        progress=progress,
        cancelled=cancelled,
        tiles=tiles,
    )
    labels = masks_to_labels(records, image.shape[:2], order=order)
    if not records:
        logger.info("segment all: no objects found")
    return labels, records
