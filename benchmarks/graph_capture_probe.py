"""Narrow down why the WebGPU EP's graph capture gives wrong encoder outputs (issue 4).

For one exported image encoder, compares every run of a WebGPU session with graph capture
against the CPU EP, on two different inputs, under several session settings:

- which run goes wrong: the capturing run, or the replays;
- whether a replay after uploading a new input computes the old input (stale input);
- whether graph optimisation level changes it (a fusion at fault);
- whether every node can be placed on WebGPU (``session.disable_cpu_ep_fallback``).

    python benchmarks/graph_capture_probe.py --size tiny

Prints one line per run: relative max error of each output against the CPU EP.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import numpy as np
import torchvision.ops  # noqa: F401  (Triton before any Mesa LLVM; see tests/conftest.py)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="tiny")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    from napari_sam2_webgpu.benchmark import test_image
    from napari_sam2_webgpu.export import build_sam2_model, export_onnx
    from napari_sam2_webgpu.preprocess import prepare_image
    from napari_sam2_webgpu.runtime import webgpu_ep_device

    tmp = tempfile.mkdtemp()
    files = export_onnx(build_sam2_model(args.size, seed=0), tmp, name=args.size, video=False)
    names = ["high_res_feats_0", "high_res_feats_1", "image_embed"]
    inputs = [prepare_image(test_image(1024, seed=s)) for s in (0, 1)]
    cpu = ort.InferenceSession(str(files.encoder), providers=["CPUExecutionProvider"])
    refs = [cpu.run(names, {"image": x}) for x in inputs]
    device = webgpu_ep_device()
    mem = device.memory_info(ort.OrtDeviceMemoryType.DEFAULT)

    def rel(out, ref):
        return float(np.abs(out - ref).max() / (np.abs(ref).max() + 1e-12))

    def session(options, level, extra=()):
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = level
        for key, value in extra:
            so.add_session_config_entry(key, value)
        so.add_provider_for_devices([device], options)
        return ort.InferenceSession(str(files.encoder), sess_options=so)

    def empty(shape):
        return ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.float32, memory_info=mem)

    def probe(label, options, level, extra=()):
        try:
            s = session(options, level, extra)
        except Exception as exc:  # noqa: BLE001
            print(f"{label}: session failed: {str(exc)[:600]}")
            return
        x = empty((1, 3, 1024, 1024))
        outs = {n: empty(r.shape) for n, r in zip(names, refs[0], strict=True)}
        io = s.io_binding()
        io.bind_ortvalue_input("image", x)
        for n, v in outs.items():
            io.bind_ortvalue_output(n, v)
        for step, which in enumerate([0, 0, 0, 1, 1, 0]):
            ort.copy_tensors([ort.OrtValue.ortvalue_from_numpy(inputs[which])], [x], None)
            s.run_with_iobinding(io)
            io.synchronize_outputs()
            got = [outs[n].numpy() for n in names]
            err = [rel(g, r) for g, r in zip(got, refs[which], strict=True)]
            stale = [rel(g, r) for g, r in zip(got, refs[1 - which], strict=True)]
            print(
                f"{label}: run {step} input {which}: rel err "
                + " ".join(f"{e:.2e}" for e in err)
                + "  (vs other input: "
                + " ".join(f"{e:.2e}" for e in stale)
                + ")",
                flush=True,
            )
        import time

        start = time.perf_counter()
        for _ in range(10):
            s.run_with_iobinding(io)
            io.synchronize_outputs()
        print(f"{label}: {(time.perf_counter() - start) * 100:.1f} ms per encode", flush=True)

    levels = ort.GraphOptimizationLevel
    capture = {"enableGraphCapture": "1"}
    probe("no capture, all optimisations", {}, levels.ORT_ENABLE_ALL)
    probe("capture, all optimisations", capture, levels.ORT_ENABLE_ALL)
    probe("capture, basic optimisations", capture, levels.ORT_ENABLE_BASIC)
    probe("capture, extended optimisations", capture, levels.ORT_ENABLE_EXTENDED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
