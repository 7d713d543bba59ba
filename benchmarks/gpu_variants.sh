#!/usr/bin/env bash
# On the lent H100 machine: WebGPU EP variants (benchmarks/webgpu_variants.py) with the carried
# wheels (.whl, including onnxruntime 1.32 from PyPI) and Vulkan loader (.gl).
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
timeout 560 python3 benchmarks/webgpu_variants.py --sizes tiny large --out "$OUT/variants.md" "$@" 2>&1 | tee "$OUT/log_variants.txt"
