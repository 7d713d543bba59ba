"""The console API's argument checks: no viewer, no Qt."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_sam2_webgpu._annotator import AnnotatorError
from napari_sam2_webgpu._qt.arguments import (
    check_axis,
    check_direction,
    check_position,
    free_axes,
    model_choice,
)
from napari_sam2_webgpu._qt.loading import ModelChoice


def test_check_position_takes_2_or_ndim_numbers():
    assert check_position((1, 2), 3).tolist() == [1.0, 2.0]
    assert check_position([1, 2, 3], 3).dtype == float
    with pytest.raises(ValueError, match="4 coordinates"):
        check_position((1, 2, 3, 4), 3)


def test_check_direction():
    assert check_direction("both") == "both"
    with pytest.raises(ValueError, match="direction must be one of"):
        check_direction("sideways")


def test_check_axis():
    assert check_axis(np.int64(0), [0]) == 0
    assert check_axis(5, None) == 5  # not known: any integer
    with pytest.raises(ValueError, match="must be an integer"):
        check_axis(1.5, [0])
    with pytest.raises(ValueError, match="'cells' that is not displayed"):
        check_axis(1, [0], "cells")
    with pytest.raises(ValueError, match="2D image"):
        check_axis(0, [], "cells")


def test_model_choice():
    assert model_choice("tiny", None, None) == ModelChoice("tiny", None, None, "auto")
    assert model_choice(None, "e.onnx", "d.onnx", "cpu") == ModelChoice(
        None, "e.onnx", "d.onnx", "cpu"
    )
    for args, match in [
        (("tiny", None, None, "cuda"), "backend must be one of"),
        ((None, "e.onnx", None), "Give both"),
        (("tiny", "e.onnx", "d.onnx"), "either size or"),
        (("huge", None, None), "size must be one of"),
    ]:
        with pytest.raises(ValueError, match=match):
            model_choice(*args)


def test_free_axes():
    class Annotator:
        image_layer = SimpleNamespace(name="stack")

        def __init__(self, indices):
            self.indices = indices

        def current_slice(self):
            if self.indices is None:
                raise AnnotatorError("no image")
            return SimpleNamespace(indices=self.indices)

    assert free_axes(Annotator([(0, 3), (1, 0)])) == ([0, 1], "stack")
    assert free_axes(Annotator(None)) == (None, "")
