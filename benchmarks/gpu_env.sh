# Sourced by the gpu_*.sh scripts on the lent GPU machine: unpack the carried Vulkan/EGL loader
# (.gl), install the carried wheels (.whl) into /tmp/site, point Vulkan at the NVIDIA driver and
# put the project on the path. Results go to $OUT (the device tool's folder) or ./bench-out.
OUT=${OUT:-bench-out}; mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src:$PWD
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
export PYTHONUNBUFFERED=1
