#!/usr/bin/env bash
# On the lent H100 machine: WebGPU EP variants (benchmarks/webgpu_variants.py) with the carried
# wheels (.whl, including onnxruntime 1.32 from PyPI) and Vulkan loader (.gl).
set -uo pipefail
OUT=${OUT:-bench-out}; mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src:$PWD
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
export PYTHONUNBUFFERED=1
timeout 560 python3 benchmarks/webgpu_variants.py --sizes tiny large --out "$OUT/variants.md" "$@" 2>&1 | tee "$OUT/log_variants.txt"
