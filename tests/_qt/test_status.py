"""The dock's texts as pure functions: no viewer, no Qt."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from napari_sam2_webgpu._qt.status import (
    PROPAGATE_HELP,
    StatusFacts,
    describe_object,
    device_details,
    device_line,
    error_message,
    gather_facts,
    polarity_text,
    propagate_button_state,
    status_text,
    with_error,
)
from napari_sam2_webgpu.image import ImageError
from napari_sam2_webgpu.runtime import AdapterInfo, BackendInfo


def test_device_line_is_one_short_line():
    """WebGPU fell back to the CPU with a long reason: the row says so in a few words, the
    tooltip has the reason."""
    reason = "no Vulkan loader: libvulkan.so.1: cannot open shared object file. " * 6
    cpu = BackendInfo("auto", "cpu", "1.32.0", "1.0", None, reason)
    assert device_line(cpu) == "CPU (WebGPU unavailable)"
    assert reason in device_details(cpu) and "onnxruntime 1.32.0" in device_details(cpu)
    gpu = AdapterInfo("NVIDIA GeForce RTX 4070", "NVIDIA", "Vulkan", "DiscreteGPU", True)
    webgpu = BackendInfo("auto", "webgpu", "1.32.0", "1.0", gpu, None)
    assert device_line(webgpu) == "WebGPU: NVIDIA GeForce RTX 4070 (Vulkan)"
    assert device_line(BackendInfo("cpu", "cpu", "1.32.0", None, None, None)) == "CPU"
    assert "doctor" in device_details(webgpu).splitlines()[-1]


def test_status_before_anything_is_loaded():
    assert status_text(StatusFacts()) == (
        "Model: none loaded\nOpen an image layer.\nCache: 0 slices, 0 MiB"
    )


def test_status_says_what_to_do_next():
    loaded = dict(model="sam2.1 tiny on cpu", has_image=True)
    assert "press Encode" in status_text(StatusFacts(**loaded)).splitlines()[1]
    assert "click on the objects" in status_text(StatusFacts(**loaded, ready=True))
    # A running job's progress text wins; a job whose bar is not there yet says "working…".
    lines = status_text(StatusFacts(**loaded, ready=True, job="SAM2: encoding")).splitlines()
    assert lines[1] == "SAM2: encoding"
    assert status_text(StatusFacts(**loaded, job="")).splitlines()[1] == "working…"


def test_status_timings_propagation_and_cache():
    facts = StatusFacts(
        model="sam2.1 tiny on WebGPU",
        has_image=True,
        ready=True,
        last_encode_seconds=0.5,
        last_decode_seconds=0.012,
        last_latency_seconds=0.03,
        last_score=0.91,
        propagation_unavailable="Propagate needs the video components.",
        cache_slices=3,
        cache_bytes=48 * 2**20,
    )
    assert status_text(facts).splitlines() == [
        "Model: sam2.1 tiny on WebGPU",
        "Slice encoded: click on the objects.",
        "Last encode 0.50 s",
        "Last decode 12 ms (click to mask 30 ms, IoU 0.91)",
        "Propagate needs the video components.",
        "Cache: 3 slices, 48 MiB",
    ]
    # A propagation run's line replaces the "unavailable" one; no model: no such line at all.
    run = StatusFacts(**{**facts.__dict__, "propagation": "Propagated 5 slices."})
    assert "Propagated 5 slices." in status_text(run)
    assert "video components" not in status_text(run)
    no_model = StatusFacts(propagation_unavailable="Propagate needs the video components.")
    assert "video components" not in status_text(no_model)


def test_with_error_puts_the_last_error_first():
    assert with_error(None, "Model: none loaded") == "Model: none loaded"
    assert with_error("SAM2 failed", "Model: none loaded") == "SAM2 failed\nModel: none loaded"


def test_propagate_button_state():
    assert propagate_button_state(True, None) == ("Cancel propagation", True, PROPAGATE_HELP)
    assert propagate_button_state(False, None) == ("Propagate", True, PROPAGATE_HELP)
    assert propagate_button_state(False, "2D image") == ("Propagate", False, "2D image")


def test_polarity_and_object_texts():
    assert polarity_text(True).startswith("positive") and polarity_text(False).startswith("neg")

    class Layer:
        name = "cells"

    assert describe_object(Layer()) == "'cells'"
    assert describe_object(3) == "3"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (MemoryError(), "SAM2 ran out of memory. Close other programs, or crop the image."),
        (ImageError("not an image"), "not an image"),
        (FileNotFoundError("no encoder.onnx"), "no encoder.onnx"),
        (RuntimeError("boom"), "SAM2 failed: RuntimeError: boom"),
    ],
)
def test_error_message(exc, expected):
    assert error_message(exc) == expected


def test_error_message_names_the_webgpu_way_out():
    class WebGPUUnavailableError(RuntimeError):
        pass

    message = error_message(WebGPUUnavailableError("no adapter."))
    assert message.startswith("WebGPU is not available: no adapter.") and "'cpu'" in message


def test_gather_facts_reads_the_collaborators():
    annotator = SimpleNamespace(
        image_layer=object(),
        is_ready=True,
        last_decode_seconds=0.01,
        last_latency_seconds=0.02,
        last_score=0.9,
    )
    predictor = SimpleNamespace(name="sam2.1 tiny", device="CPU")
    session = SimpleNamespace(predictor=predictor, last_encode_seconds=1.5)
    jobs = SimpleNamespace(progress_text=None)
    run = SimpleNamespace(describe=lambda: "propagated 3 slices")
    propagation = SimpleNamespace(run=None, last_run=run, unavailable_summary=None)
    cache = type("Cache", (), {"__len__": lambda self: 2, "nbytes": 10})()
    facts = gather_facts(annotator, session, jobs, propagation, cache)
    assert facts.model == "sam2.1 tiny on CPU"
    assert facts.job is None and facts.has_image and facts.ready
    assert facts.propagation == "propagated 3 slices"
    assert (facts.cache_slices, facts.cache_bytes) == (2, 10)
    session.predictor = None
    assert gather_facts(annotator, session, jobs, propagation, cache).model is None
