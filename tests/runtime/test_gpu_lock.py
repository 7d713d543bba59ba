"""The process-wide GPU lock: held around every run on a GPU session, never on the CPU EP."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_sam2_webgpu.runtime import gpu_lock as gpu_lock_module
from napari_sam2_webgpu.runtime.gpu_lock import ENV_GPU_LOCK, gpu_lock, on_gpu
from napari_sam2_webgpu.runtime.iobinding import DeviceIO, run_bound


def held_elsewhere() -> bool:
    """Whether another thread holds the GPU lock now (checked from a new thread)."""
    free = []

    def probe() -> None:
        acquired = gpu_lock_module._lock.acquire(blocking=False)
        if acquired:
            gpu_lock_module._lock.release()
        free.append(acquired)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return not free[0]


class FakeSession:
    """Records, during each run, whether the GPU lock was held."""

    def __init__(self, providers: list[str]) -> None:
        self.providers = providers
        self.held: list[bool] = []

    def get_providers(self) -> list[str]:
        return self.providers

    def run(self, names, feeds):
        self.held.append(held_elsewhere())
        return [feeds["x"] * 2]


def test_on_gpu_means_any_provider_but_the_cpu():
    assert on_gpu(FakeSession(["WebGpuExecutionProvider", "CPUExecutionProvider"]))
    assert on_gpu(FakeSession(["CPUExecutionProvider", "WebGpuExecutionProvider"]))
    assert not on_gpu(FakeSession(["CPUExecutionProvider"]))
    assert not on_gpu(object())  # not a session


def test_runs_on_a_gpu_session_hold_the_lock_and_cpu_runs_do_not(monkeypatch):
    monkeypatch.delenv(ENV_GPU_LOCK, raising=False)
    gpu, cpu = FakeSession(["WebGpuExecutionProvider"]), FakeSession(["CPUExecutionProvider"])
    x = np.ones(3, np.float32)
    (out,) = run_bound(gpu, {"x": x})
    run_bound(cpu, {"x": x})
    np.testing.assert_array_equal(out, 2 * x)
    assert gpu.held == [True]
    assert cpu.held == [False]
    assert not held_elsewhere()  # released after the run


def test_the_lock_is_reentrant_and_released_on_errors(monkeypatch):
    monkeypatch.delenv(ENV_GPU_LOCK, raising=False)
    with pytest.raises(RuntimeError, match="inside"), gpu_lock():
        with gpu_lock():  # a locked run that copies on the device takes it again
            assert held_elsewhere()
        raise RuntimeError("inside")
    assert not held_elsewhere()


def test_the_environment_variable_turns_the_lock_off(monkeypatch):
    monkeypatch.setenv(ENV_GPU_LOCK, "0")
    gpu = FakeSession(["WebGpuExecutionProvider"])
    run_bound(gpu, {"x": np.ones(2, np.float32)})
    assert gpu.held == [False]


def test_device_copies_and_allocations_hold_the_lock(monkeypatch):
    monkeypatch.delenv(ENV_GPU_LOCK, raising=False)
    seen = []

    class FakeOrt:  # stands in for the onnxruntime module DeviceIO calls
        class OrtValue:
            @staticmethod
            def ortvalue_from_shape_and_type(shape, dtype, memory_info):
                seen.append(("empty", held_elsewhere()))
                return DeviceValue()

        @staticmethod
        def copy_tensors(sources, targets, stream):
            seen.append(("copy", held_elsewhere()))

    class DeviceValue:
        def device_name(self) -> str:
            return "WebGPU_Buffer"

    device = DeviceIO.__new__(DeviceIO)
    device._ort, device.memory_info = FakeOrt, None
    target = device.empty((4,))
    device.copy([DeviceValue()], [target])
    assert seen == [("empty", True), ("copy", True)]
    assert not held_elsewhere()
