#!/usr/bin/env bash
# Propagation frames per second on the lent H100 machine (see docs/benchmarks.md): this plugin on
# the WebGPU EP (and the CPU EP for tiny) against the official SAM2VideoPredictor on CUDA.
# Carry .whl and .gl. Results land in $OUT (or ./bench-out).
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import onnxruntime, torch; print('onnxruntime', onnxruntime.__version__, 'torch', torch.__version__)"
  nproc
} 2>&1 | tee "$OUT/env_propagation.txt"
timeout 260 python3 benchmarks/propagation.py --sizes tiny --frames 30 --backends webgpu cpu \
  --out "$OUT/propagation_tiny.md" "$@" 2>&1 | grep -v "it/s\]" | tee "$OUT/log_propagation_tiny.txt"
timeout 300 python3 benchmarks/propagation.py --sizes large --frames 30 --backends webgpu \
  --out "$OUT/propagation_large.md" "$@" 2>&1 | grep -v "it/s\]" | tee "$OUT/log_propagation_large.txt"
