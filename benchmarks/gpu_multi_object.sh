#!/usr/bin/env bash
# Several objects tracked together on the lent GPU machine (see docs/benchmarks.md, "Many
# objects"): this plugin on the WebGPU EP against the official SAM2VideoPredictor on CUDA,
# 1 and 4 objects, tiny. Carry .whl and .gl. Results land in $OUT (or ./bench-out).
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
for n in 1 4; do
  timeout 280 python3 benchmarks/propagation.py --sizes tiny --frames 30 --backends webgpu \
    --objects "$n" --out "$OUT/multi_object_$n.md" "$@" 2>&1 | grep -v "it/s\]" \
    | tee "$OUT/log_multi_object_$n.txt"
done
