"""Refining an existing label in napari (_napari/refining.py, Annotator.refine): the preview is
SAM2's refinement of the label, clicks correct it, commit replaces exactly that label's pixels
in one undo step."""

from __future__ import annotations

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_sam2_webgpu._napari.annotator import Annotator
from napari_sam2_webgpu._napari.errors import AnnotatorError
from napari_sam2_webgpu.image.refine import refine_mask

from ..conftest import blob_image


def test_refine_a_label_then_correct_and_commit(micro_predictor):
    viewer = ViewerModel()
    data = blob_image(120, 160, seed=2)[..., 0]
    image = viewer.add_image(data, name="cells")
    before = np.zeros(data.shape, np.uint16)
    before[20:50, 20:70] = 3
    before[60:100, 90:140] = 8
    layer = viewer.add_labels(before.copy(), name="cellpose")
    annotator = Annotator(viewer)
    annotator.inline_decode_seconds = 1e9  # decode where asked: the test reads the preview
    annotator.set_image_layer(image)
    annotator.set_predictor(micro_predictor)
    request = annotator.encode_request()
    annotator.finish_encode(request, request.compute(micro_predictor), micro_predictor)
    with pytest.raises(AnnotatorError, match="Labels layer"):
        annotator.refine(8)  # no target chosen yet
    with pytest.raises(AnnotatorError, match="no pixels"):
        annotator.refine(5, layer)
    annotator.refine(8, layer)
    assert annotator.labels_layer is layer and annotator.object_id == 8
    embedding = micro_predictor.embedding
    expected, _, _ = refine_mask(micro_predictor, before == 8, embedding=embedding)
    np.testing.assert_array_equal(annotator.preview_mask, expected)
    # A click corrects it: the label's box and mask, plus the point.
    annotator.add_point((80.0, 130.0), positive=False)
    corrected, _, _ = refine_mask(
        micro_predictor,
        before == 8,
        point_coords=[[130.0, 80.0]],
        point_labels=[0],
        embedding=embedding,
    )
    np.testing.assert_array_equal(annotator.preview_mask, corrected)
    annotator.commit()
    after = np.asarray(layer.data)
    np.testing.assert_array_equal(after[before == 3], 3)  # another label: untouched
    free = (before == 0) | (before == 8)
    np.testing.assert_array_equal(after == 8, corrected & free)
    assert annotator.refinement is None
    annotator.undo()  # one step takes the whole refinement back
    np.testing.assert_array_equal(np.asarray(layer.data), before)
    # Clear stops refining: no prompt, no preview; so does choosing another image.
    annotator.refine(3)
    annotator.clear()
    assert annotator.refinement is None and annotator.preview_mask is None
    annotator.refine(3)
    annotator.set_image_layer(viewer.add_image(data.copy(), name="other"))
    assert annotator.refinement is None
    annotator.close()
