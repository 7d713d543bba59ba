#!/usr/bin/env bash
# What runs on the lent H100 machine (see README "Benchmarks"): unpack the Vulkan loader, install
# the carried wheels (.whl: onnxruntime-ep-webgpu, wgpu, sam2 and its pure-Python needs), then
# benchmark every path. Results land in $OUT (or ./bench-out).
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import onnxruntime, torch; print('onnxruntime', onnxruntime.__version__, 'torch', torch.__version__)"
  python3 -m napari_sam2_webgpu.cli doctor
} 2>&1 | tee "$OUT/env.txt"
# Tiny: every path. Large: every path but PyTorch on the CPU (minutes per run).
timeout 240 python3 benchmarks/bench.py --sizes tiny --out "$OUT/bench_tiny.md" "$@" 2>&1 | tee "$OUT/log_tiny.txt"
timeout 330 python3 benchmarks/bench.py --sizes large --torch cuda-fp32 cuda-bf16 \
  --out "$OUT/bench_large.md" "$@" 2>&1 | tee "$OUT/log_large.txt"
