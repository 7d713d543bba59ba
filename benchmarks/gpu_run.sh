#!/usr/bin/env bash
# What runs on the lent H100 machine (see README "Benchmarks"): unpack the Vulkan loader, install
# the carried wheels (.whl: onnxruntime-ep-webgpu, wgpu, sam2 and its pure-Python needs), then
# benchmark every path. Results land in $OUT (or ./bench-out).
set -uo pipefail
OUT=${OUT:-bench-out}; mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src:$PWD
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import onnxruntime, torch; print('onnxruntime', onnxruntime.__version__, 'torch', torch.__version__)"
  python3 -m napari_sam2_webgpu.cli doctor
} 2>&1 | tee "$OUT/env.txt"
# Tiny: every path. Large: every path but PyTorch on the CPU (minutes per run).
timeout 240 python3 benchmarks/bench.py --sizes tiny --out "$OUT/bench_tiny.md" "$@" 2>&1 | tee "$OUT/log_tiny.txt"
timeout 330 python3 benchmarks/bench.py --sizes large --torch cuda-fp32 cuda-bf16 \
  --out "$OUT/bench_large.md" "$@" 2>&1 | tee "$OUT/log_large.txt"
