#!/usr/bin/env bash
# On the lent GPU machine (carry .whl with dask and zarr, and .gl): the webgpu tests, then the
# tiling benchmarks on WebGPU (time to first mask on an 8192² slice, precomputing 20 slices of
# 4096²). Results in $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_env.sh
bash benchmarks/gpu_tests.sh 2>&1 | tail -25 | tee "$OUT/gpu_tests.txt"
cd benchmarks
python tiling.py first-mask precompute --backend webgpu --size "${SIZE:-tiny}" \
    --frames "${FRAMES:-20}" 2>&1 | tee "$OUT/tiling_webgpu.md"
