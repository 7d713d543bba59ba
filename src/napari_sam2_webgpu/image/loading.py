"""Loading an encoder/decoder pair: its sessions, the predictor, and the WebGPU set-up.

:func:`load_pair` is :meth:`Sam2Predictor.from_files
<napari_sam2_webgpu.image.predictor.Sam2Predictor.from_files>`: :func:`open_pair` (files
checked, backend resolved, both sessions on one provider), the predictor made from those
sessions, then on WebGPU :func:`prepare_on_webgpu` (embeddings kept in device memory, graph
capture, warm-up, where clicks decode).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..runtime.capture import CAPTURE_OPTIONS, CapturedSessions
from .decoder import PromptDecoder, cpu_decoder_is_faster
from .device_masks import DeviceMaskUpsampler
from .device_preprocess import DevicePreprocessor
from .encoder import embedding_device

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import BackendInfo
    from .predictor import Sam2Predictor

__all__ = [
    "DECODER_PLACES",
    "PairSessions",
    "capture_decoder",
    "check_decoder_place",
    "load_pair",
    "open_pair",
    "prepare_on_webgpu",
]

#: Where clicks may be decoded on WebGPU (``decoder_on`` of ``Sam2Predictor.from_files``).
DECODER_PLACES = ("auto", "gpu", "cpu")

P = TypeVar("P", bound="Sam2Predictor")


@dataclass(frozen=True)
class PairSessions:
    """The sessions of an encoder/decoder pair and how the encoder is to run.

    Attributes
    ----------
    encoder, decoder : onnxruntime.InferenceSession
    backend_info : BackendInfo
        What both run on (a WebGPU fallback to the CPU is decided once, for both).
    device : object or None
        The device memory embeddings stay in between encode and decode (None: host memory).
    graph_capture : bool
        Whether the encoder session was created for graph capture.
    """

    encoder: Any
    decoder: Any
    backend_info: BackendInfo
    device: Any
    graph_capture: bool


def open_pair(
    encoder: str | os.PathLike,
    decoder: str | os.PathLike,
    backend: str | BackendInfo,
    *,
    device_resident: bool,
    graph_capture: bool,
) -> PairSessions:
    """Check both files exist, resolve ``backend`` and create both sessions.

    Parameters are those of ``Sam2Predictor.from_files``. Raises FileNotFoundError for a
    missing file, ValueError for a file that is not an ONNX model.
    """
    from ..runtime import create_session, resolve_backend

    for label, path in (("encoder", encoder), ("decoder", decoder)):
        if not Path(path).is_file():
            raise FileNotFoundError(f"The {label} file does not exist: {path}")
    info = resolve_backend(backend) if isinstance(backend, str) else backend
    device = embedding_device(info) if device_resident else None
    capture = device is not None and graph_capture
    options = CAPTURE_OPTIONS if capture else None
    # No CPU arena for the encoder: it runs once per image, and an arena would keep its
    # largest run's buffers for good (docs/benchmarks.md, "Host memory of the CPU EP").
    encoder_session, info = create_session(
        encoder, info, provider_options=options, cpu_memory_arena=False
    )
    # The decoder follows the encoder's provider so a fallback is decided once.
    decoder_session, info = create_session(decoder, info)
    return PairSessions(encoder_session, decoder_session, info, device, capture)


def load_pair(
    make: type[P],
    encoder: str | os.PathLike,
    decoder: str | os.PathLike,
    backend: str | BackendInfo,
    *,
    name: str | None,
    device_resident: bool,
    graph_capture: bool,
    warmup: bool,
    decoder_on: str,
) -> P:
    """A predictor of class ``make`` on an encoder/decoder pair, ready for its first image.

    The arguments and errors are those of ``Sam2Predictor.from_files``; ``make`` is the class
    it was called on.
    """
    from ..models import stem_of

    sessions = open_pair(
        encoder, decoder, backend, device_resident=device_resident, graph_capture=graph_capture
    )
    predictor = make(
        sessions.encoder,
        sessions.decoder,
        sessions.backend_info,
        name=name or stem_of(encoder),
        encoder_path=encoder,
        decoder_path=decoder,
    )
    check_decoder_place(decoder_on)
    if sessions.backend_info.provider == "webgpu":
        prepare_on_webgpu(predictor, sessions, decoder, warmup=warmup, decoder_on=decoder_on)
    return predictor


def capture_decoder(
    plain: PromptDecoder, path: str | os.PathLike, sessions: PairSessions
) -> CapturedSessions:
    """Graph-captured sessions of the decoder at ``path``, one per prompt shape, on WebGPU.

    Each is the decoder file opened again with its prompt dimensions fixed; a shape whose
    session cannot be created on WebGPU (or captured) runs on ``plain``'s session.
    """
    from ..runtime import create_session

    webgpu_only = dataclasses.replace(sessions.backend_info, requested="webgpu")

    def create(dimensions: dict[str, int]) -> Any:
        session, _ = create_session(
            path, webgpu_only, provider_options=CAPTURE_OPTIONS, fixed_dimensions=dimensions
        )
        return session

    return CapturedSessions(plain.session, sessions.device, create)


def check_decoder_place(decoder_on: str) -> None:
    """ValueError unless ``decoder_on`` is one of :data:`DECODER_PLACES`."""
    if decoder_on not in DECODER_PLACES:
        raise ValueError(f"decoder_on must be 'auto', 'gpu' or 'cpu', got {decoder_on!r}")


def prepare_on_webgpu(
    predictor: Sam2Predictor,
    sessions: PairSessions,
    decoder: str | os.PathLike,
    *,
    warmup: bool,
    decoder_on: str,
) -> None:
    """Bind the encoder to device memory, warm up, and choose where clicks decode.

    ``decoder`` is the decoder file, opened a second time on the CPU unless ``decoder_on`` is
    ``"gpu"``; with ``"auto"`` both decoders are timed on a probe embedding and the faster
    one is kept.
    """
    from ..runtime import create_session

    if sessions.device is not None:
        predictor.encoder.bind_device(sessions.device, graph_capture=sessions.graph_capture)
        if predictor.encoder.bound is not None:
            predictor.encoder.preprocessor = DevicePreprocessor.on_backend(
                sessions.backend_info, sessions.device
            )
        if sessions.graph_capture:
            predictor.decoder.enable_capture(capture_decoder(predictor.decoder, decoder, sessions))
    predictor.decoder.upsampler = DeviceMaskUpsampler.on_backend(sessions.backend_info)
    if warmup:
        predictor.warm_up()
    if decoder_on == "gpu":
        return
    cpu = PromptDecoder(create_session(decoder, "cpu")[0], provider="cpu", path=decoder)
    probe = predictor.encoder.encode(np.zeros((64, 64), dtype=np.uint8))
    if decoder_on == "cpu" or cpu_decoder_is_faster(predictor.decoder, cpu, probe):
        predictor.use_decoder(cpu)
