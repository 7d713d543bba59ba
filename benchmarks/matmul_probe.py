"""How fast are memory attention's matrix products on the WebGPU EP, and does splitting K help?

Memory attention multiplies each chunk of attention weights (1,024 queries x ~28,700 memory
tokens) by the values (tokens x 256 channels): few outputs, each a sum over ~28,700 terms. A
GPU kernel that gives each thread a few outputs and loops over the long sum keeps most of the
GPU idle. Splitting the sum ("split-K": the memory frames as a batch of shorter products,
summed after) gives it more parallel work. This probe times, on device-resident tensors:

- ``values``: weights (1,024 x T) @ values (T x C), as exported;
- ``split S``: the same product as S batched products of T/S terms, then a sum.

    python benchmarks/matmul_probe.py --tokens 28672 --channels 256 64 --splits 7 28 --repeats 30
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
from common import device_io


def _model(tokens: int, channels: int, splits: int = 1):
    """weights (1024, tokens) @ values (tokens, channels), as one product or ``splits``."""
    from onnx import TensorProto, helper

    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    inputs = [
        helper.make_tensor_value_info("a", f, [1024, tokens]),
        helper.make_tensor_value_info("b", f, [tokens, channels]),
    ]
    nodes = [helper.make_node("MatMul", ["a", "b"], ["y"])]
    if splits > 1:
        part = tokens // splits
        constants = {
            "sa": [1024, splits, part],
            "sb": [splits, part, channels],
            "axes": [0],
        }
        nodes = [
            helper.make_node(
                "Constant", [], [name], value=helper.make_tensor(name, i64, [len(v)], v)
            )
            for name, v in constants.items()
        ] + [
            helper.make_node("Reshape", ["a", "sa"], ["a3"]),
            helper.make_node("Transpose", ["a3"], ["at"], perm=[1, 0, 2]),
            helper.make_node("Reshape", ["b", "sb"], ["b3"]),
            helper.make_node("MatMul", ["at", "b3"], ["parts"]),
            helper.make_node("ReduceSum", ["parts", "axes"], ["y"], keepdims=0),
        ]
    output = helper.make_tensor_value_info("y", f, [1024, channels])
    graph = helper.make_graph(nodes, f"values_split{splits}", inputs, [output])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _time(model, feeds: dict[str, np.ndarray], backend: str, repeats: int):
    from napari_sam2_webgpu.runtime.sessions import create_session

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/{model.graph.name}.onnx"
        with open(path, "wb") as file:
            file.write(model.SerializeToString())
        session, _ = create_session(path, backend)
    device = device_io(backend)
    values = {name: device.upload(array) for name, array in feeds.items()}
    out_shape = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    result = device.empty(out_shape)
    binding = session.io_binding()
    for name, value in values.items():
        binding.bind_ortvalue_input(name, value)
    binding.bind_ortvalue_output("y", result)

    def run() -> None:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        device.download(result)  # waits until the GPU has finished

    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3, device.download(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=28672)
    parser.add_argument("--channels", type=int, nargs="+", default=[256, 64])
    parser.add_argument("--splits", type=int, nargs="+", default=[7, 28])
    parser.add_argument("--backend", default="webgpu")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    weights = rng.random((1024, args.tokens), dtype=np.float32) / args.tokens
    for channels in args.channels:
        values = rng.standard_normal((args.tokens, channels), dtype=np.float32)
        feeds = {"a": weights, "b": values}
        plain, expected = _time(_model(args.tokens, channels), feeds, args.backend, 30)
        shape = f"1024x{args.tokens} @ {args.tokens}x{channels}"
        rows.append(("values", shape, plain, "-"))
        for splits in args.splits:
            model = _model(args.tokens, channels, splits)
            ms, got = _time(model, feeds, args.backend, args.repeats)
            error = float(np.abs(got - expected).max() / np.abs(expected).max())
            rows.append((f"split {splits}", shape, ms, f"{error:.1e}"))
    print(f"median of {args.repeats} runs on {args.backend}, device-resident tensors\n")
    print("| product | shape | ms | relative difference |")
    print("| --- | --- | ---: | --- |")
    for name, shape, ms, error in rows:
        print(f"| {name} | {shape} | {ms:.2f} | {error} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
