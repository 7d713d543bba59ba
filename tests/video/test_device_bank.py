"""The memory bank in device memory (the CPU EP's memory stands in for a GPU's)."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from napari_sam2_webgpu.video.device_bank import DeviceMemoryBank, memory_stack_model
from napari_sam2_webgpu.video.memory import MemorySelection, to_bfloat16
from napari_sam2_webgpu.video.state import FrameResult


def _cpu_session(model: bytes):
    import onnxruntime as ort

    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def _result(seed: int, shape=(4, 3, 5)) -> FrameResult:
    values = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    return FrameResult(
        low_res=np.zeros((1, 1, 4, 4), np.float32),
        obj_ptr=np.zeros(256, np.float32),
        object_score=1.0,
        maskmem=to_bfloat16(values),
    )


def _selection(results) -> MemorySelection:
    n = len(results)
    return MemorySelection(
        list(results), np.arange(n), np.zeros((0, 256), np.float32), np.zeros(0, np.float32)
    )


def test_stacked_on_the_device_equals_the_host_stack(cpu_device_io):
    bank = DeviceMemoryBank(_cpu_session)
    results = [_result(seed) for seed in range(4)]
    for count in (1, 2, 4):
        stacked = bank.stack(results[:count], cpu_device_io)
        expected = _selection(results[:count]).stacked_memory()
        np.testing.assert_array_equal(cpu_device_io.download(stacked), expected)
    assert bank.uploads == 4  # each memory went up once, however often it was stacked
    assert len(bank) == 4 and bank.nbytes == 4 * 4 * 3 * 5 * 4
    assert bank.stack([], cpu_device_io) is None


def test_least_recently_used_memories_go_first(cpu_device_io):
    one = 4 * 3 * 5 * 4  # bytes of one memory
    bank = DeviceMemoryBank(_cpu_session, max_bytes=3 * one)
    results = [_result(seed) for seed in range(5)]
    bank.stack(results[:3], cpu_device_io)
    bank.stack(results[2:5], cpu_device_io)  # 0 and 1 are let go for 3 and 4
    assert bank.nbytes == 3 * one and bank.uploads == 5
    stacked = bank.stack(results[:2], cpu_device_io)  # uploaded again
    assert bank.uploads == 7 and bank.nbytes == 3 * one
    np.testing.assert_array_equal(
        cpu_device_io.download(stacked), _selection(results[:2]).stacked_memory()
    )


def test_a_dropped_result_lets_its_device_memory_go(cpu_device_io):
    bank = DeviceMemoryBank(_cpu_session)
    results = [_result(seed) for seed in range(3)]
    bank.stack(results, cpu_device_io)
    del results[1]
    gc.collect()
    assert len(bank) == 2
    bank.clear()
    assert len(bank) == 0 and bank.nbytes == 0


def test_without_a_device_session_the_host_stacks(cpu_device_io):
    bank = DeviceMemoryBank(lambda model: None)
    results = [_result(seed) for seed in range(2)]
    assert bank.stack(results, cpu_device_io) is None
    # One memory needs no stacking: its device tensor is the input.
    single = bank.stack(results[:1], cpu_device_io)
    np.testing.assert_array_equal(
        cpu_device_io.download(single), _selection(results[:1]).stacked_memory()
    )


def test_stack_model_is_one_concat():
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(memory_stack_model(3))
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Concat"]
    assert [i.name for i in model.graph.input] == ["memory_0", "memory_1", "memory_2"]


def test_results_do_not_keep_a_dropped_bank_alive(cpu_device_io):
    import weakref

    bank = DeviceMemoryBank(_cpu_session)
    results = [_result(seed) for seed in range(2)]
    bank.stack(results, cpu_device_io)
    gone = weakref.ref(bank)
    del bank
    gc.collect()
    assert gone() is None
    del results  # their finalizers find no bank
    gc.collect()
