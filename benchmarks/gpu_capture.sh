#!/usr/bin/env bash
# On the lent GPU machine (carry .whl, .gl and .gpu-models): the WebGPU tests, then clicks
# (benchmarks/bench.py), propagation (benchmarks/propagation.py) and segment everything
# (benchmarks/automatic.py) with the graph-captured decoder, each beside PyTorch CUDA fp32 in
# the same run. Results land in $OUT (or ./bench-out).
# Extra arguments go to automatic.py (e.g. --decoder-batch 32). LARGE=1 adds propagation of the
# large model; AUTOMATIC=0 leaves segment everything out.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import onnxruntime, torch; print('onnxruntime', onnxruntime.__version__, 'torch', torch.__version__)"
} 2>&1 | tee "$OUT/env_capture.txt"
NAPARI_SAM2_WEBGPU_TEST_MODELS=.gpu-models timeout 200 bash benchmarks/gpu_tests.sh 2>&1 | tail -25 | tee "$OUT/webgpu_tests.txt"
timeout 150 python3 benchmarks/bench.py --sizes tiny --backends webgpu --torch cuda-fp32 \
  --image-sides 1024 2048 --out "$OUT/bench_tiny_captured.md" 2>&1 | grep -v -i warn | tail -30
timeout 150 python3 benchmarks/propagation.py --sizes tiny --frames 30 --backends webgpu --torch cuda-fp32 \
  --out "$OUT/propagation_tiny_captured.md" 2>&1 | grep -v -i -E "it/s\]|warn" | tail -15
if [[ ${LARGE:-0} == 1 ]]; then
  timeout 240 python3 benchmarks/propagation.py --sizes large --frames 30 --backends webgpu \
    --torch cuda-fp32 --out "$OUT/propagation_large_captured.md" 2>&1 \
    | grep -v -i -E "it/s\]|warn" | tail -15
fi
[[ ${AUTOMATIC:-1} == 1 ]] || exit 0
cd benchmarks
timeout 240 python3 automatic.py --sides 1024 2048 --backend webgpu --torch cuda --repeats 2 \
  --memory-side 0 --out "$OUT/automatic_tiny_captured.md" "$@" 2>&1 | grep -v -i warn | tail -20
