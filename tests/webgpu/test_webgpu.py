"""The WebGPU path against the CPU on the same model: masks must agree (fp32, IoU >= 0.999).

Marked ``webgpu``: skipped without a WebGPU device; ``benchmarks/gpu_tests.sh`` runs them on a
GPU machine.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu.image.postprocess import mask_iou

from ..conftest import blob_image

pytestmark = pytest.mark.webgpu

PROMPTS = [
    {"point_coords": [[60.0, 50.0]], "point_labels": [1]},
    {"point_coords": [[60.0, 50.0], [20.0, 90.0]], "point_labels": [1, 0]},
    {"box": [30.0, 20.0, 110.0, 90.0]},
    {"box": [30.0, 20.0, 110.0, 90.0], "point_coords": [[70.0, 55.0]], "point_labels": [1]},
]


@pytest.fixture(scope="module")
def predictors(gpu_model_paths):
    from napari_sam2_webgpu import Sam2Predictor

    encoder, decoder = gpu_model_paths[:2]
    gpu = Sam2Predictor.from_files(encoder, decoder, backend="webgpu")
    cpu = Sam2Predictor.from_files(encoder, decoder, backend="cpu")
    return gpu, cpu


def test_predictor_runs_on_webgpu(predictors):
    gpu, _ = predictors
    assert gpu.backend == "webgpu"


@pytest.mark.parametrize("side", [128, 1024, 2048])
@pytest.mark.parametrize("multimask", [False, True])
def test_masks_agree_with_the_cpu(predictors, side, multimask):
    gpu, cpu = predictors
    image = blob_image(side, side + 32, seed=side)
    scale = side / 128
    for predictor in (gpu, cpu):
        predictor.set_image(image)
    for prompt in PROMPTS:
        scaled = {
            k: (np.asarray(v) * scale if k in ("point_coords", "box") else v)
            for k, v in prompt.items()
        }
        got, got_scores, _ = gpu.predict(**scaled, multimask_output=multimask)
        ref, ref_scores, _ = cpu.predict(**scaled, multimask_output=multimask)
        for g, r in zip(got, ref, strict=True):
            assert mask_iou(g, r) >= 0.999
        np.testing.assert_allclose(got_scores, ref_scores, atol=2e-3)


def test_explicit_embedding_on_the_device(predictors):
    """A click decodes against the embedding it names, even after another image was set."""
    gpu, cpu = predictors
    first, second = blob_image(256, 300, seed=1), blob_image(256, 300, seed=2)
    embedding = gpu.compute_embedding(first)
    gpu.set_image(second)
    got, _, _ = gpu.predict_best(point_coords=[[120, 100]], point_labels=[1], embedding=embedding)
    cpu.set_image(first)
    ref, _, _ = cpu.predict_best(point_coords=[[120, 100]], point_labels=[1])
    assert mask_iou(got, ref) >= 0.999


def test_propagation_agrees_with_the_cpu(gpu_model_paths):
    """WebGPU keeps the memory bank in device memory (each memory uploaded once) and upsamples
    tracked masks there; the CPU does both on the host: the same tracks."""
    from napari_sam2_webgpu import Sam2Propagator

    from ..video.test_propagator import moving_blob_stack

    stack = moving_blob_stack(6, (256, 256))
    tracks = []
    for backend in ("webgpu", "cpu"):
        video = Sam2Propagator.from_files(*gpu_model_paths, backend)
        assert video.predictor.backend == backend
        state = video.init_state(stack)
        video.add_prompts(state, 2, 1, points=[[60, 50]], labels=[1])
        tracks.append(dict(video.propagate(state, "both")))
        bank = video.tracker.device_bank
        if backend == "webgpu":
            # Frames 3-5 and 1-0 attend to the prompt's memory and frames 3, 4 (forward), 1
            # (backward) to their predecessor's: each memory went up once.
            assert bank is not None and bank.uploads == 4 and len(bank) == 4
        else:
            assert bank is None
    assert tracks[0].keys() == tracks[1].keys() == set(range(len(stack)))
    for frame, masks in tracks[0].items():
        assert mask_iou(masks[1], tracks[1][frame][1]) >= 0.999, frame


def test_decoder_is_graph_captured_per_prompt_shape(predictors):
    """Clicks run through captured static-shape decoder sessions (the shapes seen are held)."""
    gpu, _ = predictors
    assert gpu.decoder.captures
    assert gpu.decoder.upsampler is not None  # masks are upsampled on the GPU too
    assert gpu.encoder.preprocessor is not None  # and images prepared there
    gpu.set_image(blob_image(256, 256, seed=7))
    for count in (1, 2, 4):
        points = [[40.0 + 30 * i, 60.0] for i in range(count)]
        gpu.predict(point_coords=points, point_labels=[1] * count)
    held = gpu.decoder.captured.shapes
    for count in (1, 2, 4):
        assert {"num_labels": 1, "num_points": count} in held  # the model adds the padding


def test_segment_everything_agrees_with_the_cpu(predictors):
    """Automatic segmentation (captured runs of 16 prompts, padded) equals the CPU's."""
    from napari_sam2_webgpu.image.automatic import AutomaticMaskGenerator

    image = blob_image(256, 288, seed=11)
    results = []
    for predictor in predictors:
        generator = AutomaticMaskGenerator(
            predictor,
            points_per_side=6,  # 36 points: two full runs of 16 and a padded one
            pred_iou_thresh=0.0,
            stability_score_thresh=0.0,
            box_nms_thresh=1.0,
        )
        results.append(generator.generate(image))
    gpu, cpu = results
    assert len(gpu) == len(cpu) > 0
    for record in gpu:
        same_point = [r for r in cpu if r["point_coords"] == record["point_coords"]]
        ref = min(same_point, key=lambda r: abs(r["predicted_iou"] - record["predicted_iou"]))
        assert abs(ref["predicted_iou"] - record["predicted_iou"]) < 2e-3
        assert mask_iou(record["segmentation"], ref["segmentation"]) >= 0.99


def test_stored_embedding_goes_back_to_the_gpu(predictors, tmp_path):
    """An embedding written to a store from the GPU and read back decodes the same masks."""
    pytest.importorskip("zarr")
    from napari_sam2_webgpu.store import EmbeddingStore, StoreIdentity

    gpu, _ = predictors
    image = blob_image(200, 240, seed=3)
    embedding = gpu.compute_embedding(image)
    identity = StoreIdentity("micro", "0" * 64, (), (200, 240), rgb=True)
    store = EmbeddingStore.open(tmp_path / "s.zarr", identity)
    store.put(0, embedding)
    again = gpu.encoder.to_device(store.get(0))
    assert again.on_device
    prompt = {"point_coords": [[100.0, 90.0]], "point_labels": [1]}
    got, _, _ = gpu.predict_best(**prompt, embedding=again)
    ref, _, _ = gpu.predict_best(**prompt, embedding=embedding)
    assert mask_iou(got, ref) >= 0.999


def test_tiled_masks_agree_with_the_cpu(predictors, tmp_path):
    """A tiled 2560² slice: clicks decode in their tile (encoded on the GPU, some read back
    from a tiled store) as on the CPU; a box wider than a tile decodes on the overview."""
    pytest.importorskip("zarr")
    from napari_sam2_webgpu.image.tiling import TileSpec
    from napari_sam2_webgpu.store import EmbeddingStore, StoreIdentity

    image = np.tile(blob_image(640, 640, seed=5), (4, 4, 1))
    spec = TileSpec(1024, 128)
    identity = StoreIdentity(
        "micro", "0" * 64, (), image.shape[:2], rgb=True, tiles=spec.describe()
    )
    store = EmbeddingStore.open(tmp_path / "t.zarr", identity)
    gpu, cpu = predictors
    tiled_gpu = gpu.compute_tiled_embedding(image, spec=spec, store=store.frame_tiles(0))
    tiled_cpu = cpu.compute_tiled_embedding(image, spec=spec)
    prompts = [
        {"point_coords": [[300.0, 2000.0]], "point_labels": [1]},
        {"point_coords": [[1900.0, 700.0], [1950.0, 760.0]], "point_labels": [1, 0]},
        {"box": [100.0, 100.0, 2400.0, 2300.0]},
    ]
    for prompt in prompts:
        got, got_score, _ = gpu.predict_best(**prompt, embedding=tiled_gpu)
        ref, ref_score, _ = cpu.predict_best(**prompt, embedding=tiled_cpu)
        assert got.shape == image.shape[:2] and mask_iou(got, ref) >= 0.999
        assert abs(got_score - ref_score) < 2e-3
    assert len(store.done_frames()) == 0 and store.has(0, None)  # overview and 2 tiles stored
    reread = gpu.compute_tiled_embedding(image, spec=spec, store=store.frame_tiles(0))
    got, _, _ = gpu.predict_best(**prompts[0], embedding=reread)
    assert reread.tile(reread.window_for(**prompts[0]).index).on_device
    ref, _, _ = cpu.predict_best(**prompts[0], embedding=tiled_cpu)
    assert mask_iou(got, ref) >= 0.999
