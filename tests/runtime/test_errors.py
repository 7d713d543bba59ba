"""Tests of runtime/errors.py: ONNX Runtime's messages on one line."""

from __future__ import annotations

from napari_sam2_webgpu.runtime.errors import one_line


def test_one_line_strips_ort_noise():
    seen_on_h100 = (
        "[ONNXRuntimeError] : 1 : FAIL : /onnxruntime_src/onnxruntime/core/session/plugin_ep/"
        "ep_plugin_provider_interfaces.cc:70 virtual std::unique_ptr<onnxruntime::"
        "IExecutionProvider> onnxruntime::PluginExecutionProviderFactory::CreateProvider(const "
        "OrtSessionOptions&, const OrtLogger&) Error creating execution provider: "
        "[ONNXRuntimeError] : 11 : EP_FAIL : /onnxruntime_src/onnxruntime/core/providers/webgpu/"
        "webgpu_context.cc:136 onnxruntime::webgpu::WebGpuContext::Initialize(const onnxruntime::"
        "webgpu::WebGpuContextConfig&)::<lambda()> adapter_result.status == "
        "wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No "
        "supported adapters\n\n"
    )
    assert one_line(seen_on_h100) == (
        "adapter_result.status == wgpu::RequestAdapterStatus::Success was false. "
        "Failed to get a WebGPU adapter: No supported adapters"
    )
    assert one_line("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load  model\nfailed") == (
        "INVALID_PROTOBUF : Load model failed"
    )
    assert one_line("x" * 500).endswith("...")
