"""Parity with the official ``sam2.SAM2ImagePredictor`` on identical random weights."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2_webgpu.postprocess import mask_iou

from .conftest import blob_image

pytestmark = pytest.mark.parity

SIZES = [(480, 640), (301, 1203), (1100, 700)]


@pytest.fixture(scope="module")
def official(micro_model_files):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    model, _ = micro_model_files
    return SAM2ImagePredictor(model)


@pytest.fixture(scope="module", params=SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def both(request, official, micro_predictor):
    height, width = request.param
    image = blob_image(height, width, seed=height)
    official.set_image(image)
    micro_predictor.set_image(image)
    return official, micro_predictor, (height, width)


def _prompts(hw):
    h, w = hw
    return {
        "positive point": dict(point_coords=[[0.4 * w, 0.55 * h]], point_labels=[1]),
        "positive and negative points": dict(
            point_coords=[[0.3 * w, 0.3 * h], [0.7 * w, 0.6 * h], [0.5 * w, 0.8 * h]],
            point_labels=[1, 1, 0],
        ),
        "box": dict(box=[0.2 * w, 0.25 * h, 0.7 * w, 0.8 * h]),
        "box and points": dict(
            box=[0.1 * w, 0.1 * h, 0.6 * w, 0.9 * h],
            point_coords=[[0.3 * w, 0.5 * h], [0.55 * w, 0.2 * h]],
            point_labels=[1, 0],
        ),
    }


def _compare(ref, ours, check_nontrivial=True):
    ref_masks, ref_scores, ref_low = ref
    masks, scores, low = ours
    assert masks.shape == ref_masks.shape
    assert masks.dtype == bool
    assert scores.shape == ref_scores.shape
    assert low.shape == ref_low.shape
    np.testing.assert_allclose(scores, ref_scores, atol=1e-3)
    np.testing.assert_allclose(low, ref_low, atol=2e-3, rtol=1e-3)
    for k in range(masks.shape[0]):
        assert mask_iou(masks[k], ref_masks[k].astype(bool)) >= 0.999, f"mask {k}"
    if check_nontrivial:
        # Random weights still give masks that are neither empty nor full: the test has teeth.
        fractions = masks.reshape(masks.shape[0], -1).mean(axis=1)
        assert np.any((fractions > 0.001) & (fractions < 0.999)), fractions


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
@pytest.mark.parametrize(
    "prompt", ["positive point", "positive and negative points", "box", "box and points"]
)
def test_prompt_parity(both, prompt, multimask):
    official, ours, hw = both
    kwargs = _prompts(hw)[prompt]
    ref = official.predict(
        **{k: np.asarray(v) for k, v in kwargs.items()}, multimask_output=multimask
    )
    got = ours.predict(**kwargs, multimask_output=multimask)
    _compare(ref, got)


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
def test_mask_input_refinement_parity(both, multimask):
    official, ours, hw = both
    kwargs = _prompts(hw)["positive point"]
    ref_masks, ref_scores, ref_low = official.predict(
        **{k: np.asarray(v) for k, v in kwargs.items()}, multimask_output=True
    )
    best = int(np.argmax(ref_scores))
    refine = dict(
        point_coords=np.array([kwargs["point_coords"][0], [0.8 * hw[1], 0.2 * hw[0]]]),
        point_labels=np.array([1, 0]),
    )
    ref = official.predict(**refine, mask_input=ref_low[best][None], multimask_output=multimask)
    _, _, low = ours.predict(**kwargs, multimask_output=True)
    got = ours.predict(**refine, mask_input=low[best][None], multimask_output=multimask)
    _compare(ref, got)


def test_batched_prompts_parity(both):
    official, ours, hw = both
    h, w = hw
    coords = np.array([[[0.3 * w, 0.4 * h]], [[0.6 * w, 0.7 * h]]])
    labels = np.ones((2, 1))
    ref = official.predict(point_coords=coords, point_labels=labels, multimask_output=True)
    got = ours.predict(point_coords=coords, point_labels=labels, multimask_output=True)
    assert got[0].shape == (2, 3, h, w)
    for b in range(2):
        _compare(tuple(r[b] for r in ref), tuple(g[b] for g in got))


def test_embeddings_match(micro_model_files, official, micro_predictor):
    image = blob_image(333, 517, seed=7)
    official.set_image(image)
    emb = micro_predictor.compute_embedding(image)
    np.testing.assert_allclose(
        emb.image_embed, official._features["image_embed"].numpy(), atol=1e-4, rtol=1e-4
    )
    for ours, ref in zip(
        (emb.high_res_feats_0, emb.high_res_feats_1),
        official._features["high_res_feats"],
        strict=True,
    ):
        np.testing.assert_allclose(ours, ref.numpy(), atol=1e-4, rtol=1e-4)


#: Runs in a process where ``import torch`` fails: a user's machine. Loads the tiny model by its
#: size through the real download code (a local mirror serves the checkpoint), builds it from
#: the packaged templates, and saves what a click and a propagation give.
TORCH_FREE_USER = """
import sys
sys.modules["torch"] = None
import numpy as np
from napari_sam2_webgpu import Sam2Predictor, Sam2Propagator
image, stack, out = np.load(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3]
import json
prompt = {k: np.array(v) for k, v in json.loads(sys.argv[4]).items()}
predictor = Sam2Predictor.from_pretrained("tiny", "cpu")
predictor.set_image(image)
results = {}
for multimask in (True, False):
    masks, scores, logits = predictor.predict(**prompt, multimask_output=multimask)
    results[f"masks_{multimask}"], results[f"scores_{multimask}"] = masks, scores
video = Sam2Propagator.from_pretrained("tiny", "cpu")
state = video.init_state(stack)
results["prompted"] = video.add_prompts(state, 0, 1, points=[[60, 50]], labels=[1])
for frame, masks in video.propagate(state, "forward"):
    results[f"frame_{frame}"] = masks[1]
assert "torch" not in {m for m, v in sys.modules.items() if v is not None}
np.savez(out, **results)
"""


def test_official_checkpoint_end_to_end_without_torch(tmp_path):
    """A tiny SAM2.1 .pt served from 127.0.0.1 -> downloaded, built without torch -> clicks and
    propagation agree with the official predictors on the same weights."""
    import json
    import os
    import subprocess
    import sys

    import torch
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from napari_sam2_webgpu.export import build_sam2_model

    from .models.helpers import FileServer, sha
    from .video import test_propagator as tp

    model = build_sam2_model("tiny", seed=7)
    checkpoint = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, checkpoint)
    data = checkpoint.read_bytes()
    server = FileServer()
    try:
        server.add("/sam2.1_hiera_tiny.pt", data)
        image = blob_image(600, 900, seed=5)
        stack = tp.moving_blob_stack(num_frames=3, hw=(120, 150))
        np.save(tmp_path / "image.npy", image)
        np.save(tmp_path / "stack.npy", stack)
        prompt = _prompts((600, 900))["box and points"]
        env = {
            **os.environ,
            "NAPARI_SAM2_WEBGPU_CACHE_DIR": str(tmp_path / "cache"),
            "NAPARI_SAM2_WEBGPU_BASE_URL": server.url(""),
            "NAPARI_SAM2_WEBGPU_OFFLINE": "0",
            # The child reads the registry from the package: pin the test checkpoint there too.
            "PYTHONPATH": os.pathsep.join(
                [str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]
            ),
        }
        _pin_checkpoint(tmp_path / "site", sha(data), len(data))
        args = [json.dumps({k: np.asarray(v).tolist() for k, v in prompt.items()})]
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                TORCH_FREE_USER,
                str(tmp_path / "image.npy"),
                str(tmp_path / "stack.npy"),
                str(tmp_path / "out.npz"),
                *args,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert server.count("/sam2.1_hiera_tiny.pt") == 1
    finally:
        server.close()
    got = np.load(tmp_path / "out.npz")
    reference = SAM2ImagePredictor(model)
    reference.set_image(image)
    for multimask in (True, False):
        ref = reference.predict(
            **{k: np.asarray(v) for k, v in prompt.items()}, multimask_output=multimask
        )
        ours = (got[f"masks_{multimask}"], got[f"scores_{multimask}"], None)
        for r, o in zip(ref[0].astype(bool), ours[0], strict=True):
            assert mask_iou(o, r) >= 0.999
        np.testing.assert_allclose(ours[1], ref[1], atol=2e-3)
    # Propagation: the official video predictor on the same weights and preprocessed frames.
    with pytest.MonkeyPatch.context() as mp:
        ref_video = tp._official((model, None), stack, mp, size="tiny")
        with torch.inference_mode():
            ref_state = ref_video.init_state("frames given by load_frames")
        calls = [("prompt", (0, 1, dict(points=[[60, 50]], labels=[1]))), ("propagate", False)]
        expected = tp._run_official(ref_video, ref_state, calls)
    assert mask_iou(got["prompted"], expected[("prompt", 0, 1)]) >= 0.99
    for frame in range(3):
        assert mask_iou(got[f"frame_{frame}"], expected[(frame, 1)]) >= 0.99, frame


def _pin_checkpoint(site, sha256: str, size: int) -> None:
    """A ``sitecustomize`` for the child: the tiny checkpoint's checksum is the test file's."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "from napari_sam2_webgpu.models import official\n"
        "official.CHECKPOINTS['tiny'] = official.ModelFile("
        f"'sam2.1_hiera_tiny.pt', '-', {sha256!r}, {size})\n"
    )
