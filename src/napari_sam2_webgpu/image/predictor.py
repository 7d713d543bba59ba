"""``Sam2Predictor``: SAM2 image segmentation on ONNX Runtime, shaped like ``SAM2ImagePredictor``.

>>> predictor = Sam2Predictor.from_pretrained("tiny")          # doctest: +SKIP
>>> predictor.set_image(image)                                 # doctest: +SKIP
>>> masks, scores, logits = predictor.predict(                 # doctest: +SKIP
...     point_coords=[[120, 80]], point_labels=[1])

The predictor is a thin facade: :class:`~.encoder.ImageEncoder` makes embeddings,
:class:`~.decoder.PromptDecoder` decodes prompts on them. Like micro-sam's functions, every
decode can be given its embedding explicitly (``predict(..., embedding=emb)``), so code running
on several threads never depends on "the current image".

Coordinates are SAM's: ``(x, y)`` in pixels of the image given to :meth:`set_image`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .decoder import PromptDecoder
from .encoder import ImageEmbedding, ImageEncoder
from .loading import load_pair
from .masks import checked_embedding, decode_best_mask, decode_masks, embedding_to_use
from .preprocess import MODEL_SIZE
from .tiling import DEFAULT_TILE_BYTES, TiledEmbedding, TileSpec, TileStore, tiled_embedding

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import BackendInfo
    from ..runtime.iobinding import BoundEncoder

__all__ = ["Sam2Predictor"]

logger = logging.getLogger("napari_sam2_webgpu")


class Sam2Predictor:
    """Segment an image with SAM2 from point, box and mask prompts, on WebGPU or the CPU.

    Create one with :meth:`from_pretrained` (a registry model, downloaded and cached) or
    :meth:`from_files` (any encoder/decoder ONNX pair in samexporter's interface). Then call
    :meth:`set_image` once per image and :meth:`predict` once per prompt, as with the official
    ``SAM2ImagePredictor``; or keep the embeddings of :meth:`compute_embedding` and pass them
    to :meth:`predict` as ``embedding=``.

    Parameters
    ----------
    encoder_session, decoder_session : onnxruntime.InferenceSession
        Sessions of the image encoder and the prompt decoder.
    backend_info : BackendInfo
        What the sessions run on (see :func:`napari_sam2_webgpu.runtime.resolve_backend`).
    name : str
        Model name for display.
    encoder_path, decoder_path : path, optional
        Where the models came from, for display and error messages.
    bound_encoder : BoundEncoder, optional
        Runs the encoder with its outputs in device memory.

    Attributes
    ----------
    encoder : ImageEncoder
        Makes the embeddings.
    decoder : PromptDecoder
        Decodes prompts on them.
    backend_info : BackendInfo
        Provider, adapter and versions in use.
    name : str
        Model name.
    encoder_path, decoder_path : pathlib.Path or None
        The model files.
    last_encode_seconds, last_decode_seconds : float or None
        Wall time of the most recent encode and decode.
    """

    def __init__(
        self,
        encoder_session: Any,
        decoder_session: Any,
        backend_info: BackendInfo,
        *,
        name: str = "custom",
        encoder_path: str | os.PathLike | None = None,
        decoder_path: str | os.PathLike | None = None,
        bound_encoder: BoundEncoder | None = None,
    ) -> None:
        self.encoder = ImageEncoder(
            encoder_session, backend_info, path=encoder_path, bound=bound_encoder
        )
        self.decoder = PromptDecoder(
            decoder_session, provider=backend_info.provider, path=decoder_path
        )
        self.backend_info = backend_info
        self.name = name
        self.encoder_path = self.encoder.path
        self.decoder_path = self.decoder.path
        self._embedding: ImageEmbedding | TiledEmbedding | None = None
        self.last_encode_seconds: float | None = None
        self.last_decode_seconds: float | None = None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_files(
        cls,
        encoder: str | os.PathLike,
        decoder: str | os.PathLike,
        backend: str | BackendInfo = "auto",
        *,
        name: str | None = None,
        device_resident: bool = True,
        graph_capture: bool = True,
        warmup: bool = True,
        decoder_on: str = "gpu",
    ) -> Sam2Predictor:
        """Load an encoder/decoder ONNX pair from disk.

        Parameters
        ----------
        encoder, decoder : path
            The image encoder and prompt decoder files (this plugin's export or samexporter's).
        backend : {"auto", "webgpu", "cpu"}
            ``"auto"`` uses WebGPU when a device is available and falls back to the CPU with a
            logged reason; ``"webgpu"`` raises if WebGPU is unavailable; ``"cpu"`` forces CPU.
        name : str, optional
            Display name; defaults to the encoder's file stem.
        device_resident : bool
            On WebGPU, keep embeddings in GPU memory between encode and decode (IO binding).
        graph_capture : bool
            On WebGPU, record the encoder once and replay it (needs ``device_resident``), which
            removes the per-kernel CPU overhead (docs/benchmarks.md). It is checked at load with
            a second image and dropped, with a logged reason, if the execution provider refuses
            it or a replay returns stale outputs (see
            :func:`~napari_sam2_webgpu.image.encoder.check_replay_not_stale`). The decoder is
            captured too, one session per prompt shape, made the first time a shape is decoded
            and checked against the plain decoder then (see
            :class:`~napari_sam2_webgpu.runtime.capture.CapturedSessions`).
        warmup : bool
            On WebGPU, run the models once at load so shader compilation and graph capture do
            not slow the first image and the first click.
        decoder_on : {"gpu", "auto", "cpu"}
            With WebGPU, where the decoder runs. ``"auto"`` times both at load and keeps the
            faster for clicks; a CPU decoder needs each new embedding copied to the host once,
            which is why the GPU is the default (docs/benchmarks.md compares them). Without
            WebGPU everything is on the CPU.

        Returns
        -------
        Sam2Predictor

        Raises
        ------
        FileNotFoundError
            A file does not exist.
        ValueError
            A file is not a valid ONNX model, or the files are swapped or not SAM2 models.
        """
        return load_pair(
            cls,
            encoder,
            decoder,
            backend,
            name=name,
            device_resident=device_resident,
            graph_capture=graph_capture,
            warmup=warmup,
            decoder_on=decoder_on,
        )

    @classmethod
    def from_pretrained(
        cls,
        size: str = "tiny",
        backend: str = "auto",
        *,
        progress: Callable[[int, int, str], None] | None = None,
        cache: str | os.PathLike | None = None,
        source: str | None = None,
        **options: Any,
    ) -> Sam2Predictor:
        """Load the model of a size, downloading and building it on first use.

        Which files: :func:`napari_sam2_webgpu.models.resolve_model`, the policy the widget and
        the CLI use too. A model installed with ``napari-sam2-webgpu convert ... --install``
        wins; otherwise Meta's checkpoint of that size is downloaded once and built into ONNX
        here, without torch (or, with ``source="samexporter"``, the published pair is used).

        Parameters
        ----------
        size : {"tiny", "small", "base_plus", "large"} or str
            SAM2.1 model size, or the name of an installed model.
        backend : {"auto", "webgpu", "cpu"}
            See :meth:`from_files`.
        progress : callable, optional
            ``progress(done, total, description)`` during the download and the build.
        cache : path, optional
            Cache folder; defaults to :func:`napari_sam2_webgpu.models.cache_dir`.
        source : {"official", "samexporter"}, optional
            Where a size's files come from; default ``$NAPARI_SAM2_WEBGPU_SOURCE``, else
            ``official``.
        **options
            ``device_resident``, ``graph_capture``, ``warmup``: see :meth:`from_files`.

        Returns
        -------
        Sam2Predictor
        """
        from ..models import resolve_model

        cache = Path(cache) if cache else None
        paths = resolve_model(size, progress=progress, cache=cache, source=source)
        return cls.from_files(
            paths.encoder, paths.decoder, backend, name=f"sam2.1 {size}", **options
        )

    def use_decoder(self, decoder: PromptDecoder) -> None:
        """Decode with ``decoder`` from now on (e.g. a CPU session for clicks).

        The current embedding, and every new one, is placed where it reads it
        (:meth:`PromptDecoder.place`).
        """
        self.decoder = decoder
        if self._embedding is not None:
            self._embedding = decoder.place(self._embedding)

    def warm_up(self) -> None:
        """Run encoder and decoder once on a blank image (the current image is kept)."""
        embedding = self.decoder.place(self.encoder.warm_up())
        # With graph capture each point count is its own decoder session: make the first
        # clicks' ones now, not on the user's clicks.
        for count in (1, 2, 3) if self.decoder.captures else (1,):
            points = [[MODEL_SIZE / 2 + 8 * i, MODEL_SIZE / 2] for i in range(count)]
            self.predict(point_coords=points, point_labels=[1] * count, embedding=embedding)
        self.last_encode_seconds = self.last_decode_seconds = None

    # -- state ----------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """``"webgpu"`` or ``"cpu"``: the execution provider actually in use."""
        return self.backend_info.provider

    @property
    def device(self) -> str:
        """Human-readable device: the GPU adapter's name, or ``"CPU"``."""
        adapter = getattr(self.backend_info, "adapter", None)
        if self.backend == "webgpu" and adapter is not None:
            return f"{adapter.name} ({adapter.backend})"
        return "CPU"

    @property
    def decoder_provider(self) -> str:
        """Where clicks are decoded: ``"webgpu"``, or ``"cpu"`` (also with ``decoder_on``)."""
        return self.decoder.provider

    @property
    def is_image_set(self) -> bool:
        """Whether :meth:`set_image` (or :meth:`set_embedding`) has been called."""
        return self._embedding is not None

    @property
    def image_hw(self) -> tuple[int, int] | None:
        """``(height, width)`` of the current image, or ``None``."""
        embedding = self._embedding
        return None if embedding is None else embedding.image_hw

    @property
    def embedding(self) -> ImageEmbedding | TiledEmbedding | None:
        """The current image's embedding (to cache and restore with :meth:`set_embedding`)."""
        return self._embedding

    def __repr__(self) -> str:
        return (
            f"Sam2Predictor(name={self.name!r}, backend={self.backend!r}, device={self.device!r})"
        )

    # -- encoding -------------------------------------------------------------------------------
    def compute_embedding(
        self,
        image: np.ndarray,
        *,
        contrast_limits: Sequence[float] | None = None,
        rgb: bool | None = None,
    ) -> ImageEmbedding:
        """Encode an image without changing the predictor's current image.

        Parameters
        ----------
        image : numpy.ndarray
            ``(H, W)`` grayscale or ``(H, W, C)`` with C in 1, 3, 4; any integer or float dtype.
        contrast_limits : (float, float), optional
            Intensities mapped to black and white; see
            :func:`napari_sam2_webgpu.image.preprocess.prepare_image` for the default.
        rgb : bool, optional
            Whether a 3D array is channels-last colour (napari's ``layer.rgb``).

        Returns
        -------
        ImageEmbedding
            Where the decoder reads it (GPU memory, or the host for a CPU decoder).

        Raises
        ------
        napari_sam2_webgpu.image.preprocess.ImageError
            The image cannot be segmented (wrong shape or dtype, too small, all NaN...).
        """
        embedding = self.encoder.encode(image, contrast_limits=contrast_limits, rgb=rgb)
        start = time.perf_counter()
        # A CPU decoder needs the embedding on the host: one download per image.
        embedding = self.decoder.place(embedding)
        self.last_encode_seconds = (self.encoder.last_seconds or 0.0) + time.perf_counter() - start
        return embedding

    def compute_tiled_embedding(
        self,
        image: Any,
        *,
        contrast_limits: Sequence[float] | None = None,
        rgb: bool | None = None,
        spec: TileSpec | None = None,
        store: TileStore | None = None,
        encode_now: bool = False,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        max_bytes: int = DEFAULT_TILE_BYTES,
        overview: Any = None,
    ) -> TiledEmbedding:
        """Encode a large image as overlapping tiles at full resolution (see :mod:`.tiling`).

        Tiles are encoded when a decode first needs them (or all now, with ``encode_now``);
        pass the result to :meth:`predict` as ``embedding=``, or make it current with
        :meth:`set_embedding`. Each prompt set is decoded in the tile that holds it best;
        masks come back at the image's size.

        Parameters
        ----------
        image : array-like
            ``(H, W)`` or ``(H, W, C)``: numpy, or dask/zarr (only the tiles used are read).
        contrast_limits : (float, float), optional
            Intensities mapped to black and white, for every tile (default: the whole image's
            window, see :func:`~.preprocess.intensity_range`).
        rgb : bool, optional
            Whether a 3D array is channels-last colour.
        spec : TileSpec, optional
            Tile size and halo; default 1024-pixel tiles (native scale) with a 128-pixel halo.
        store : TileStore, optional
            Read tiles from it, and write the ones encoded (e.g.
            ``EmbeddingStore.frame_tiles(frame)``).
        encode_now : bool
            Encode every tile and the overview now.
        progress, cancelled : callable, optional
            With ``encode_now``: ``progress(done, total)`` after each tile; ``cancelled()``
            returning True stops (the rest is encoded on demand).
        max_bytes : int
            Memory bound of the tiles held (the least recently used are encoded again, or read
            from ``store``, when needed).
        overview : array-like, optional
            The whole image at a lower resolution, for the overview (a coarser pyramid level);
            default: the image itself, or a strided sample of a dask/zarr image.

        Returns
        -------
        TiledEmbedding

        Raises
        ------
        napari_sam2_webgpu.image.preprocess.ImageError
            The image cannot be segmented.

        Examples
        --------
        >>> tiled = predictor.compute_tiled_embedding(section)   # doctest: +SKIP
        >>> masks, scores, _ = predictor.predict(                 # doctest: +SKIP
        ...     point_coords=[[7300, 5120]], point_labels=[1], embedding=tiled)
        """
        tiled = tiled_embedding(
            self.compute_embedding,
            image,
            contrast_limits=contrast_limits,
            rgb=rgb,
            spec=spec,
            store=store,
            adopt=lambda stored: self.decoder.place(self.encoder.to_device(stored)),
            max_bytes=max_bytes,
            overview=overview,
        )
        if encode_now:
            tiled.encode_all(progress=progress, cancelled=cancelled)
        return tiled

    def set_image(
        self,
        image: np.ndarray,
        *,
        contrast_limits: Sequence[float] | None = None,
        rgb: bool | None = None,
    ) -> None:
        """Encode an image and make it the one :meth:`predict` segments.

        Parameters are those of :meth:`compute_embedding`. On error the previous image stays set.
        """
        self._embedding = self.compute_embedding(image, contrast_limits=contrast_limits, rgb=rgb)

    def set_embedding(self, embedding: ImageEmbedding | TiledEmbedding) -> None:
        """Make a previously computed embedding (or tiled embedding) current (no encoding)."""
        self._embedding = checked_embedding(embedding)

    def reset_image(self) -> None:
        """Forget the current image."""
        self._embedding = None

    # -- decoding -------------------------------------------------------------------------------
    def predict(
        self,
        point_coords: np.ndarray | Sequence | None = None,
        point_labels: np.ndarray | Sequence | None = None,
        box: np.ndarray | Sequence | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        *,
        embedding: ImageEmbedding | TiledEmbedding | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for prompts on the current image, or on ``embedding``'s.

        Parameters
        ----------
        point_coords : array-like, optional
            ``(N, 2)`` points as (x, y) pixels, or ``(B, N, 2)`` for B prompt sets at once.
        point_labels : array-like, optional
            ``(N,)`` (or ``(B, N)``): 1 foreground, 0 background.
        box : array-like, optional
            ``(4,)`` box ``x0, y0, x1, y1`` in pixels, or ``(B, 4)``.
        mask_input : numpy.ndarray, optional
            Low-resolution logits ``(1, 256, 256)`` from a previous :meth:`predict` (or
            ``(B, 1, 256, 256)``), to refine.
        multimask_output : bool
            Three candidate masks (best for a single ambiguous click) or one.
        return_logits : bool
            Return float logits at image size instead of boolean masks.
        embedding : ImageEmbedding or TiledEmbedding, optional
            Decode on this image instead of the current one (which is neither needed nor
            changed): a decode that carries its embedding can never mix two images. On a
            :class:`~.tiling.TiledEmbedding` (:meth:`compute_tiled_embedding`) each prompt set
            is decoded in the tile that holds it best (encoded first if needed), or on the
            overview when it fits in no tile; masks are image-sized, zero outside the tile.

        Returns
        -------
        masks : numpy.ndarray
            ``(K, H, W)`` boolean (``(B, K, H, W)`` for batched prompts); K is 3 or 1.
        scores : numpy.ndarray
            ``(K,)`` predicted IoU of each mask.
        low_res_logits : numpy.ndarray
            ``(K, 256, 256)`` logits, clamped to [-32, 32], usable as ``mask_input`` (tiled:
            those of the tile that decoded, see :meth:`TiledEmbedding.window_for
            <.tiling.TiledEmbedding.window_for>`).

        Raises
        ------
        RuntimeError
            No image has been set and no ``embedding`` was given.
        TypeError
            ``embedding`` is not an :class:`ImageEmbedding` or :class:`TiledEmbedding`.
        PromptError
            Malformed prompts: mismatched points and labels, labels other than 0/1, points
            outside the image, an empty or inverted box, a mask of the wrong shape.
        """
        start = time.perf_counter()
        emb = embedding_to_use(embedding, self._embedding)
        prompts = (point_coords, point_labels, box, mask_input)
        result = decode_masks(self.decoder, emb, prompts, multimask_output, return_logits)
        self.last_decode_seconds = time.perf_counter() - start
        return result

    def predict_best(
        self,
        point_coords: np.ndarray | Sequence | None = None,
        point_labels: np.ndarray | Sequence | None = None,
        box: np.ndarray | Sequence | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        *,
        embedding: ImageEmbedding | TiledEmbedding | None = None,
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """Like :meth:`predict` for one prompt set, returning only the best-scoring mask.

        Only that mask is upsampled to the image size, which is what interactive use needs
        (a third of :meth:`predict`'s postprocessing with ``multimask_output=True``).

        Parameters
        ----------
        point_coords, point_labels, box, mask_input, multimask_output, embedding
            As for :meth:`predict`, unbatched.

        Returns
        -------
        mask : numpy.ndarray
            ``(H, W)`` boolean.
        score : float
            Its predicted IoU.
        low_res_logits : numpy.ndarray
            ``(1, 256, 256)`` logits, usable as ``mask_input``.
        """
        start = time.perf_counter()
        emb = embedding_to_use(embedding, self._embedding)
        prompts = (point_coords, point_labels, box, mask_input)
        result = decode_best_mask(self.decoder, emb, prompts, multimask_output)
        self.last_decode_seconds = time.perf_counter() - start
        return result
