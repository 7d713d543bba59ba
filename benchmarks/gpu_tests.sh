#!/usr/bin/env bash
# Run the tests marked `webgpu` (tests/webgpu: the WebGPU path against the CPU on the same model)
# on a machine with a GPU. Without a WebGPU device they skip, so run this where one exists:
#   locally:            bash benchmarks/gpu_tests.sh            (exports the micro model with torch)
#   on the lent machine: begin the command with ../shared/device/activate.sh's lines, carry .whl,
#   .gl and .gpu-models (made here by `bash benchmarks/gpu_tests.sh --export-only`), then
#   NAPARI_SAM2_WEBGPU_TEST_MODELS=.gpu-models bash benchmarks/gpu_tests.sh
#   (.whl needs zarr and its wheels: ../shared/device/prepare.sh zarr==3.1.6 numcodecs donfig
#   google-crc32c. When the carried tree would pass 64 MiB, leave .gpu-models out: the micro
#   model is then exported there with torch and sam2, from .whl.)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${1:-} == --export-only ]]; then
    python -c "
from napari_sam2_webgpu.export import build_sam2_model, export_onnx
export_onnx(build_sam2_model('micro', seed=1234), '.gpu-models', name='micro', size='micro')
"
    ls -la .gpu-models
    exit 0
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
python -m napari_sam2_webgpu.cli doctor
python -m pytest tests/webgpu -m webgpu -v -rs -p no:cacheprovider "$@"
