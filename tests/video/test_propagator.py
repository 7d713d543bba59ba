"""Propagation through stacks: parity with the official ``SAM2VideoPredictor`` and behaviour."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest

from napari_sam2_webgpu.image.postprocess import mask_iou
from napari_sam2_webgpu.image.preprocess import ImageError, prepare_image
from napari_sam2_webgpu.image.prompts import PromptError
from napari_sam2_webgpu.video.propagator import PropagationCancelled, Sam2Propagator

from ..export.helpers import connected_components_cpu

#: Frame 5 tracks with a full bank: the micro models keep 3 memories (1 prompted + 2 recent).
NUM_FRAMES = 6
HW = (150, 190)


def moving_blob_stack(num_frames: int = NUM_FRAMES, hw: tuple[int, int] = HW, seed: int = 0):
    """uint8 stack: an ellipse that moves and changes shape, and a square sliding the other way."""
    h, w = hw
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    frames = []
    for t in range(num_frames):
        img = rng.normal(40, 8, (h, w))
        cy, cx = 0.3 * h + 0.04 * t * h, 0.25 * w + 0.05 * t * w
        ry, rx = 0.12 * h * (1 + 0.08 * t), 0.15 * w * (1 - 0.04 * t)
        img[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] += 150
        x0 = int(0.6 * w - 2 * t)
        img[int(0.6 * h) : int(0.8 * h), x0 : x0 + int(0.2 * w)] += 90
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


@pytest.fixture(scope="module")
def propagator(micro_model_files):
    _, files = micro_model_files
    return Sam2Propagator.from_files(
        files.encoder, files.decoder, files.memory_attention, files.memory_encoder, "cpu"
    )


@pytest.fixture(scope="module")
def stack():
    return moving_blob_stack()


def _official(micro_model_files, frames, monkeypatch_module, size="micro"):
    """The official video predictor on the same weights, reading the same preprocessed frames.

    ``init_state`` reads JPEG folders (lossy); the frames are given to it already preprocessed
    by our code instead, so both sides start from identical pixels. Memory features stay in
    bfloat16 precision but are stored as float32: on the CPU the official code otherwise fails to
    mix them with float32 object pointers.
    """
    import sam2.sam2_video_predictor as svp
    import torch

    from ..export.helpers import build_official_video_predictor

    model, _ = micro_model_files
    ref = build_official_video_predictor(model, size)

    def load_frames(video_path, image_size, offload_video_to_cpu, async_loading_frames, **kw):
        images = np.concatenate([prepare_image(f) for f in frames])
        return torch.from_numpy(images), frames.shape[1], frames.shape[2]

    monkeypatch_module.setattr(svp, "load_video_frames", load_frames)
    single, memory = ref._run_single_frame_inference, ref._run_memory_encoder

    def single_float(*args, **kwargs):
        out, masks = single(*args, **kwargs)
        if out["maskmem_features"] is not None:
            out["maskmem_features"] = out["maskmem_features"].float()
        return out, masks

    def memory_float(*args, **kwargs):
        features, pos = memory(*args, **kwargs)
        return features.float(), pos

    ref._run_single_frame_inference = single_float
    ref._run_memory_encoder = memory_float
    return ref


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _run_official(ref, state, calls):
    import torch

    results = {}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kind, args in calls:
            if kind == "prompt":
                frame, obj, kwargs = args
                _, ids, logits = ref.add_new_points_or_box(state, frame, obj, **kwargs)
                results[("prompt", frame, obj)] = (logits[ids.index(obj), 0] > 0).numpy()
            else:
                for frame, ids, logits in ref.propagate_in_video(state, reverse=args):
                    for k, obj in enumerate(ids):
                        results[(frame, obj)] = (logits[k, 0] > 0).numpy()
    return results


def _run_ours(video, state, calls):
    results = {}
    for kind, args in calls:
        if kind == "prompt":
            frame, obj, kwargs = args
            results[("prompt", frame, obj)] = video.add_prompts(state, frame, obj, **kwargs)
        else:
            for frame, masks in video.propagate(state, "backward" if args else "forward"):
                for obj, mask in masks.items():
                    results[(frame, obj)] = mask
    return results


@pytest.fixture(scope="module")
def sam2_0_micro_files(tmp_path_factory):
    """The micro trunk on the original SAM2 (2.0) config: no object-pointer temporal encoding,
    no "no object" spatial embedding."""
    from napari_sam2_webgpu.export import build_sam2_model, export_onnx

    # A seed whose random network finds the objects (with conftest's, every mask is empty and
    # the parity would say nothing).
    model = build_sam2_model("sam2.0_micro", seed=0)
    out = tmp_path_factory.mktemp("sam2.0_micro")
    return model, export_onnx(model, out, name="sam2.0_micro", size="sam2.0_micro")


@pytest.mark.parity
def test_parity_with_official_video_predictor(
    micro_model_files, propagator, stack, monkeypatch_module
):
    """Two objects prompted on different frames (points; box + point), forward then backward,
    then a correction on a tracked frame and forward again: every frame's masks agree.

    Hole filling is on (as in the official video predictor); its connected components come from
    SAM2's CUDA kernel there, replaced here by the same computation on the CPU.
    """
    fill = 8
    import sam2.utils.misc

    h, w = HW
    ref = _official(micro_model_files, stack, monkeypatch_module)
    ref.fill_hole_area = fill
    ref.add_all_frames_to_correct_as_cond = True  # what our default correction does
    monkeypatch_module.setattr(
        sam2.utils.misc, "get_connected_components", connected_components_cpu
    )
    with __import__("torch").inference_mode():
        ref_state = ref.init_state("frames given by load_frames")
    state = propagator.init_state(stack)
    calls = [
        ("prompt", (1, 1, dict(points=[[0.25 * w + 3, 0.34 * h]], labels=[1]))),
        (
            "prompt",
            (
                2,
                7,
                dict(
                    box=[0.5 * w, 0.55 * h, 0.8 * w, 0.85 * h],
                    points=[[0.68 * w, 0.7 * h]],
                    labels=[1],
                ),
            ),
        ),
        ("propagate", False),
        ("propagate", True),
        ("prompt", (4, 1, dict(points=[[0.5 * w, 0.5 * h], [0.2 * w, 0.2 * h]], labels=[1, 0]))),
        ("propagate", False),
    ]
    expected = _run_official(ref, ref_state, calls)
    del ref, ref_state  # the official model and its state go before ours runs (peak memory)
    gc.collect()
    got = _run_ours(propagator, state, calls)
    assert set(got) == set(expected)
    ious = {key: mask_iou(got[key], expected[key]) for key in expected}
    worst = min(ious, key=ious.get)
    assert ious[worst] >= 0.99, f"{worst}: IoU {ious[worst]:.4f}"
    # Non-trivial: most masks are non-empty, so IoU says something.
    assert sum(m.any() for m in got.values()) >= 0.8 * len(got)
    # Every frame of the stack was tracked for both objects.
    assert {k[0] for k in got if k[0] != "prompt"} == set(range(NUM_FRAMES))


@pytest.mark.parity
def test_sam2_0_config_parity_with_official_video_predictor(
    sam2_0_micro_files, stack, monkeypatch_module
):
    """An original SAM2 (2.0) model tracks like the official predictor: its object pointers
    carry no temporal encoding and its memory encoder no "no object" embedding (one object,
    forward through a short stack: what differs from SAM2.1 is all on that path)."""
    frames = stack[:6]
    h, w = HW
    files = sam2_0_micro_files[1]
    ours = Sam2Propagator.from_files(
        files.encoder, files.decoder, files.memory_attention, files.memory_encoder, "cpu"
    )
    memory_inputs = {i.name for i in ours.tracker.memory_encoder.get_inputs()}
    assert "object_score_logits" not in memory_inputs
    import sam2.utils.misc

    ref = _official(sam2_0_micro_files, frames, monkeypatch_module, "sam2.0_micro")
    ref.fill_hole_area = ours.tracker.fill_hole_area  # the same hole filling on both sides
    monkeypatch_module.setattr(
        sam2.utils.misc, "get_connected_components", connected_components_cpu
    )
    with __import__("torch").inference_mode():
        ref_state = ref.init_state("frames given by load_frames")
    calls = [
        ("prompt", (0, 1, dict(points=[[0.25 * w + 3, 0.34 * h]], labels=[1]))),
        ("propagate", False),
    ]
    expected = _run_official(ref, ref_state, calls)
    del ref, ref_state
    gc.collect()
    got = _run_ours(ours, ours.init_state(frames), calls)
    assert set(got) == set(expected)
    ious = {key: mask_iou(got[key], expected[key]) for key in expected}
    worst = min(ious, key=ious.get)
    assert ious[worst] >= 0.99, f"{worst}: IoU {ious[worst]:.4f}"
    assert all(m.any() for m in got.values())


def test_embeddings_are_computed_once(propagator, stack):
    state = propagator.init_state(stack[:4])
    propagator.add_prompts(state, 1, 1, points=[[50, 50]], labels=[1])
    list(propagator.propagate(state, "both"))
    assert state.frames_encoded == 4
    propagator.add_prompts(state, 3, 1, points=[[60, 60]], labels=[1])
    list(propagator.propagate(state, "forward"))
    assert state.frames_encoded == 4  # a correction and a second run reuse them


def test_embedding_provider_is_used(propagator, stack):
    calls = []
    inner = propagator.init_state(stack[:3])

    def provider(index):
        calls.append(index)
        return inner.embedding(index)

    state = propagator.init_state(stack[:3], embedding_provider=provider)
    propagator.add_prompts(state, 0, 5, points=[[50, 50]], labels=[1])
    frames = [f for f, _ in propagator.propagate(state)]
    assert frames == [0, 1, 2]
    assert set(calls) == {0, 1, 2}
    assert inner.frames_encoded == 3


def test_directions_and_frame_order(propagator, stack):
    state = propagator.init_state(stack[:5])
    propagator.add_prompts(state, 2, 1, points=[[50, 50]], labels=[1])
    assert propagator.frame_order(state, reverse=False) == [2, 3, 4]
    assert propagator.frame_order(state, reverse=True) == [2, 1, 0]
    assert propagator.frame_order(state, reverse=False, max_frames=1) == [2, 3]
    assert [f for f, _ in propagator.propagate(state, "backward")] == [2, 1, 0]
    seen = [f for f, _ in propagator.propagate(state, "both")]
    assert seen == [2, 3, 4, 2, 1, 0]
    assert set(state.masks(4)) == {1}
    with pytest.raises(ValueError, match="direction"):
        next(propagator.propagate(state, "sideways"))


def test_stopping_the_generator_cancels(propagator, stack):
    state = propagator.init_state(stack[:6])
    propagator.add_prompts(state, 0, 1, points=[[50, 50]], labels=[1])
    run = propagator.propagate(state)
    for frame, _ in run:
        if frame == 1:
            break
    run.close()
    assert state.masks(1) and not state.masks(3)


def test_propagate_all_progress_and_cancel(propagator, stack):
    state = propagator.init_state(stack[:4])
    propagator.add_prompts(state, 1, 3, points=[[50, 50]], labels=[1])
    seen = []
    results = propagator.propagate_all(state, "both", progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (5, 5) and [d for d, _ in seen] == [1, 2, 3, 4, 5]
    assert set(results) == {0, 1, 2, 3} and all(set(r) == {3} for r in results.values())
    with pytest.raises(PropagationCancelled, match="after 1 of 5"):
        propagator.propagate_all(state, "both", cancel=lambda: True)


def test_bad_input_is_specific(propagator, stack):
    with pytest.raises(ImageError, match="stack"):
        propagator.init_state(stack[0])
    with pytest.raises(ImageError, match="colour channels"):
        propagator.init_state(np.zeros((2, 3, 40, 50), np.uint8))
    state = propagator.init_state(stack[:3])
    with pytest.raises(RuntimeError, match="No prompts"):
        next(propagator.propagate(state))
    with pytest.raises(PromptError, match="outside the stack"):
        propagator.add_prompts(state, 3, 1, points=[[10, 10]], labels=[1])
    with pytest.raises(PromptError, match="outside the image"):
        propagator.add_prompts(state, 0, 1, points=[[10, 500]], labels=[1])
    with pytest.raises(PromptError, match="at least one"):
        propagator.add_prompts(state, 0, 1)
    assert state.obj_ids == []  # failed prompts leave nothing behind


def test_rgb_stack_and_clear_prompts(propagator, stack):
    rgb = np.stack([stack[:3]] * 3, axis=-1)
    state = propagator.init_state(rgb)
    mask = propagator.add_prompts(state, 0, 1, points=[[50, 50]], labels=[1])
    assert mask.shape == HW and mask.dtype == bool
    assert state.prompted_frames(1) == [0]
    propagator.clear_prompts(state, 0, 1)
    assert state.obj_ids == []


def test_decoder_without_object_pointers_is_refused(micro_model_files, tmp_path):
    import onnx

    _, files = micro_model_files
    proto = onnx.load(str(files.decoder))
    keep = [o for o in proto.graph.output if o.name != "obj_ptrs"]
    del proto.graph.output[:]
    proto.graph.output.extend(keep)
    decoder = tmp_path / "old.decoder.onnx"
    onnx.save(proto, str(decoder))
    with pytest.raises(ValueError, match="obj_ptrs"):
        Sam2Propagator.from_files(
            files.encoder, decoder, files.memory_attention, files.memory_encoder, "cpu"
        )
    with pytest.raises(ValueError, match="memory-attention"):
        Sam2Propagator.from_files(
            files.encoder, files.decoder, files.memory_encoder, files.memory_encoder, "cpu"
        )


def test_device_resident_embeddings_give_the_same_tracks(micro_model_files, stack, cpu_device_io):
    """With embeddings bound to device memory (the WebGPU path; the CPU EP's memory stands in
    here), memory attention leaves its output on the device for the decoder: same masks. The
    device run also decodes through static-shape sessions per prompt shape, as graph capture
    does on WebGPU (the same sessions, without the recording), reading the conditioned
    features from the device, and the memory bank is kept and stacked in device memory."""
    import onnxruntime as ort

    from napari_sam2_webgpu.runtime import create_session
    from napari_sam2_webgpu.runtime.capture import CapturedSessions
    from napari_sam2_webgpu.video.device_bank import DeviceMemoryBank

    _, files = micro_model_files
    paths = (files.encoder, files.decoder, files.memory_attention, files.memory_encoder)

    def factory(path):
        return lambda dims: create_session(path, "cpu", fixed_dimensions=dims)[0]

    def track(device_resident: bool) -> dict:
        # One propagator at a time: each holds four sessions' memory until it is dropped.
        video = Sam2Propagator.from_files(*paths, "cpu")
        if device_resident:
            assert video.predictor.encoder.bind_device(cpu_device_io, graph_capture=False)
            decoder = video.predictor.decoder
            decoder.provider = "webgpu"  # as on a GPU: embeddings stay there
            decoder.enable_capture(
                CapturedSessions(decoder.session, cpu_device_io, factory(files.decoder))
            )
            video.tracker.device_bank = DeviceMemoryBank(
                lambda model: ort.InferenceSession(model, providers=["CPUExecutionProvider"])
            )
        assert video.tracker.device_bank is None or device_resident  # none on the CPU
        state = video.init_state(stack[:4])
        video.add_prompts(state, 1, 1, points=[[60, 50]], labels=[1])
        masks = dict(video.propagate(state, "both"))
        assert state.embedding(0).on_device == device_resident
        if device_resident:
            assert decoder.captured.shapes
            # Frames 2, 3 and 0 attend to the prompt's memory, frame 3 to frame 2's too: each
            # went up once (frames 3 and 0 are never attended to).
            assert video.tracker.device_bank.uploads == 2
        return masks

    results = [track(False), track(True)]
    for frame, masks in results[0].items():
        assert mask_iou(masks[1], results[1][frame][1]) >= 0.999


def test_several_objects_together_equal_each_alone(propagator, stack):
    """Objects are tracked independently: propagating three together gives, frame by frame,
    exactly the masks (and scores) of propagating each one alone from the same first slice
    (the first prompted slice of any object, as in the official predictor; the embeddings are
    shared)."""
    h, w = HW
    prompts = {
        1: (1, dict(points=[[0.25 * w + 3, 0.34 * h]], labels=[1])),
        4: (3, dict(box=[0.5 * w, 0.55 * h, 0.8 * w, 0.85 * h])),
        9: (2, dict(points=[[0.1 * w, 0.9 * h], [0.3 * w, 0.4 * h]], labels=[1, 0])),
    }
    together = propagator.init_state(stack)
    for obj_id, (frame, kwargs) in prompts.items():
        propagator.add_prompts(together, frame, obj_id, **kwargs)
    got = []  # per step of the run (a frame is visited by both passes): masks, scores
    for frame, masks in propagator.propagate(together, "both"):
        got.append((frame, masks, propagator.frame_scores(together, frame, masks)))
    assert [f for f, _, _ in got] == [1, 2, 3, 4, 5, 1, 0]
    assert all(set(masks) == set(prompts) for _, masks, _ in got)
    for obj_id, (frame, kwargs) in prompts.items():
        alone = propagator.init_state(stack, embedding_provider=together.embedding)
        propagator.add_prompts(alone, frame, obj_id, **kwargs)
        steps = [
            (index, masks, propagator.frame_scores(alone, index, masks))
            for index, masks in propagator.propagate(alone, "both", start_frame=1)
        ]
        assert [f for f, _, _ in steps] == [f for f, _, _ in got]
        for (_, masks, scores), (_, expected, expected_scores) in zip(steps, got, strict=True):
            assert set(masks) == {obj_id}
            np.testing.assert_array_equal(masks[obj_id], expected[obj_id])
            assert scores[obj_id] == expected_scores[obj_id]
    frame, masks, scores = got[0]
    assert np.isfinite(scores[1].object_score) and 0 <= scores[1].iou <= 1.5
    assert scores[1].area == int(masks[1].sum())
    assert sum(m.any() for _, masks, _ in got for m in masks.values()) >= len(got)


def test_stop_after_lost_ends_an_object_pass(propagator, stack, monkeypatch):
    """An object absent on ``stop_after_lost`` frames in a row (after being seen) is not
    tracked further in that pass; the pass ends when no object is left; the other pass
    starts afresh."""
    from napari_sam2_webgpu.video.review import FrameScore

    state = propagator.init_state(stack)
    propagator.add_prompts(state, 0, 1, points=[[50, 50]], labels=[1])
    propagator.add_prompts(state, 0, 2, points=[[100, 100]], labels=[1])
    absent = {(1, 2), (2, 2), (3, 1), (4, 1)}  # (frame, object) the model "loses"
    real = propagator.frame_scores

    def scores(state, frame, masks=None):
        out = real(state, frame, masks)
        return {
            o: FrameScore(-1.0, s.iou, 0) if (frame, o) in absent else FrameScore(1.0, s.iou, 9)
            for o, s in out.items()
        }

    monkeypatch.setattr(propagator, "frame_scores", scores)
    seen = [(frame, sorted(masks)) for frame, masks in propagator.propagate(state, "forward")]
    assert len(seen) == NUM_FRAMES  # no limit: every frame, both objects
    seen = [
        (frame, sorted(masks))
        for frame, masks in propagator.propagate(state, "forward", stop_after_lost=2)
    ]
    # Object 2 is lost on frames 1 and 2 (stops after 2), object 1 on 3 and 4: the pass ends.
    assert seen == [(0, [1, 2]), (1, [1, 2]), (2, [1, 2]), (3, [1]), (4, [1])]
    with pytest.raises(ValueError, match="at least 1"):
        next(propagator.propagate(state, stop_after_lost=0))
