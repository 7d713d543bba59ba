"""Where inference runs: ONNX Runtime sessions on WebGPU, with the CPU as fallback.

This package is the one place that decides where inference runs. Its modules, each using only
the public names of the ones above it in this list:

- :mod:`.errors`: :class:`WebGPUUnavailableError`, and ONNX Runtime's messages on one line.
- :mod:`.adapters`: the GPUs ``wgpu`` sees, the Vulkan loader and ``XDG_RUNTIME_DIR``.
- :mod:`.discovery`: the WebGPU execution provider (plugin package or all-in-one wheel), its
  registration, and why it lists no device.
- :mod:`.providers`: one session on one provider, WebGPU or the CPU, without fallbacks.
- :mod:`.backend`: the backend names (:data:`BACKENDS`), :func:`resolve_backend` (including a
  test run on WebGPU) and :class:`BackendInfo`.
- :mod:`.sessions`: :func:`create_session`, with the fallback to the CPU.
- :mod:`.iobinding`: embeddings kept in device memory between encoder and decoder.
- :mod:`.doctor`: :func:`doctor_report`.

Functions that tests replace are called through their module (``adapters.vulkan_loader()``), so
a monkeypatch on the module where a function lives takes effect everywhere.

Importing this package is cheap: ``onnxruntime`` and ``wgpu`` are imported inside the functions.

Examples
--------
>>> from napari_sam2_webgpu.runtime import create_session
>>> session, info = create_session("sam2_hiera_tiny.encoder.onnx")  # doctest: +SKIP
>>> info.describe()  # doctest: +SKIP
'WebGPU (NVIDIA H100 80GB HBM3, Vulkan), onnxruntime 1.32.0'
"""

from __future__ import annotations

from .adapters import AdapterInfo, list_adapters
from .backend import (
    BACKENDS,
    ENV_BACKEND,
    PROVIDERS,
    BackendInfo,
    clear_backend_cache,
    resolve_backend,
)
from .discovery import BUILTIN_PACKAGE, PLUGIN_PACKAGE, WEBGPU_EP_NAME, webgpu_ep_device
from .doctor import doctor_report
from .errors import WebGPUUnavailableError
from .sessions import create_session

__all__ = [
    "BACKENDS",
    "BUILTIN_PACKAGE",
    "ENV_BACKEND",
    "PLUGIN_PACKAGE",
    "PROVIDERS",
    "WEBGPU_EP_NAME",
    "AdapterInfo",
    "BackendInfo",
    "WebGPUUnavailableError",
    "clear_backend_cache",
    "create_session",
    "doctor_report",
    "list_adapters",
    "resolve_backend",
    "webgpu_ep_device",
]
