"""Can the prompt decoder be graph-captured on WebGPU with one static-shape session per shape?

For a seeded random-weight model built from the packaged templates (``--size``), one image is
encoded on the CPU; then for each prompt shape ``B x N`` (``--shapes 1x2 1x3 16x2``):

- a WebGPU session with the free dimensions fixed (``add_free_dimension_override_by_name``)
  and ``enableGraphCapture``, every input and output bound to device buffers (the embedding
  buffers shared by all shapes);
- its first runs (capture) and a replay with other prompts (stale-input check) against the CPU;
- the time per call: prompt upload + replay + download of masks and scores; beside it the plain
  (dynamic-shape) WebGPU session reading the same device-resident embedding.

    python benchmarks/decoder_capture_probe.py --size tiny --shapes 1x2 1x3 1x4 16x2
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from common import median_ms, random_model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--shapes", nargs="+", default=["1x2", "1x3", "16x2"])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    import onnxruntime as ort

    from napari_sam2_webgpu.runtime import webgpu_ep_device
    from napari_sam2_webgpu.runtime.iobinding import DeviceIO

    tmp = tempfile.TemporaryDirectory()
    _, paths = random_model(args.size, tmp.name)
    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (1, 3, 1024, 1024)).astype(np.float32)
    enc = ort.InferenceSession(str(paths.encoder), providers=["CPUExecutionProvider"])
    emb_names = [o.name for o in enc.get_outputs()]
    emb = dict(zip(emb_names, enc.run(None, {"image": image}), strict=True))
    cpu = ort.InferenceSession(str(paths.decoder), providers=["CPUExecutionProvider"])
    out_names = [o.name for o in cpu.get_outputs()]
    ep = webgpu_ep_device()
    device = DeviceIO.for_ep_device(ep)
    shared = {name: device.upload(value) for name, value in emb.items()}

    def session(overrides, capture):
        so = ort.SessionOptions()
        so.log_severity_level = 3
        for dim, value in overrides.items():
            so.add_free_dimension_override_by_name(dim, value)
        so.add_provider_for_devices([ep], {"enableGraphCapture": "1"} if capture else {})
        return ort.InferenceSession(str(paths.decoder), sess_options=so)

    def prompts(b, n, seed):
        r = np.random.default_rng(seed)
        return {
            "point_coords": r.uniform(0, 1024, (b, n, 2)).astype(np.float32),
            "point_labels": np.concatenate(
                [np.ones((b, n - 1), np.float32), -np.ones((b, 1), np.float32)], axis=1
            ),
            "mask_input": np.zeros((b, 1, 256, 256), np.float32),
            "has_mask_input": np.zeros(b, np.float32),
        }

    def rel(a, b):
        return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))

    plain = session({}, capture=False)
    print(
        "| shape | create (ms) | first runs rel err | replay rel err (other prompts) "
        "| captured ms/call | plain ms/call |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for spec in args.shapes:
        b, n = (int(x) for x in spec.split("x"))
        p0, p1 = prompts(b, n, 1), prompts(b, n, 2)
        ref0 = cpu.run(None, {**emb, **p0})
        ref1 = cpu.run(None, {**emb, **p1})
        start = time.perf_counter()
        try:
            s = session({"num_labels": b, "num_points": n}, capture=True)
        except Exception as exc:  # noqa: BLE001
            print(f"| {spec} | failed: {str(exc)[:300]} |")
            continue
        create_ms = 1e3 * (time.perf_counter() - start)
        inputs = {k: device.upload(v) for k, v in p0.items()}
        outputs = {name: device.empty(r.shape) for name, r in zip(out_names, ref0, strict=True)}
        io = s.io_binding()
        for name, value in {**shared, **inputs}.items():
            io.bind_ortvalue_input(name, value)
        for name, value in outputs.items():
            io.bind_ortvalue_output(name, value)

        def call(p, io=io, inputs=inputs, outputs=outputs, s=s):
            for name, value in p.items():
                device.upload(value, inputs[name])
            s.run_with_iobinding(io)
            io.synchronize_outputs()
            return [device.download(outputs[name]) for name in out_names]

        try:
            first = [call(p0) for _ in range(3)]
            err_first = max(rel(g, r) for run in first for g, r in zip(run, ref0, strict=True))
            replay = call(p1)
            err_replay = max(rel(g, r) for g, r in zip(replay, ref1, strict=True))
        except Exception as exc:  # noqa: BLE001
            print(f"| {spec} | {create_ms:.0f} | run failed: {str(exc)[:300]} |")
            continue
        captured_ms = median_ms(lambda p=p1, call=call: call(p), args.repeats)

        def plain_call(p=p1):
            io2 = plain.io_binding()
            for name, value in shared.items():
                io2.bind_ortvalue_input(name, value)
            for name, value in p.items():
                io2.bind_cpu_input(name, value)
            for name in out_names:
                io2.bind_output(name, "cpu")
            plain.run_with_iobinding(io2)
            io2.synchronize_outputs()
            return [v.numpy() for v in io2.get_outputs()]

        plain_ms = median_ms(plain_call, args.repeats)
        print(
            f"| {spec} | {create_ms:.0f} | {err_first:.1e} | {err_replay:.1e} "
            f"| {captured_ms:.1f} | {plain_ms:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
