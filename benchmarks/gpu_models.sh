#!/usr/bin/env bash
# On the lent GPU machine (carry .whl, .gl and .gpu-models; see benchmarks/gpu_tests.sh): the
# WebGPU tests, then models built from a checkpoint without torch against a samexporter-style
# encoder (benchmarks/sources.py), and the build's time and peak memory (benchmarks/convert.py).
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import onnxruntime, torch; print('onnxruntime', onnxruntime.__version__, 'torch', torch.__version__)"
  nproc
} 2>&1 | tee "$OUT/env_models.txt"
NAPARI_SAM2_WEBGPU_TEST_MODELS=.gpu-models timeout 150 bash benchmarks/gpu_tests.sh 2>&1 | tail -25 | tee "$OUT/webgpu_tests.txt"
timeout 200 python3 benchmarks/sources.py --sizes tiny large --out "$OUT/sources.md" 2>&1 | grep -v -i warn | tee "$OUT/log_sources.txt"
timeout 200 python3 benchmarks/convert.py tiny large --work /tmp/convert-bench 2>&1 | grep -v -i warn | tee "$OUT/convert.md"
