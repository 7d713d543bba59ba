#!/usr/bin/env bash
# On the lent GPU machine (carry .whl, .gl and .gpu-models; see benchmarks/gpu_tests.sh): the
# WebGPU tests, then segment-everything against the official SAM2AutomaticMaskGenerator on CUDA
# (benchmarks/automatic.py). Results land in $OUT (or ./bench-out).
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import onnxruntime, torch; print('onnxruntime', onnxruntime.__version__, 'torch', torch.__version__)"
  nproc
} 2>&1 | tee "$OUT/env_automatic.txt"
NAPARI_SAM2_WEBGPU_TEST_MODELS=.gpu-models timeout 170 bash benchmarks/gpu_tests.sh 2>&1 | tail -25 | tee "$OUT/webgpu_tests.txt"
cd benchmarks
timeout 360 python3 automatic.py --sides 1024 2048 --backend webgpu --torch cuda --repeats 3 \
  --memory-side 4096 --out "$OUT/automatic_tiny.md" "$@" 2>&1 | grep -v -i warn | tee "$OUT/log_automatic.txt"
