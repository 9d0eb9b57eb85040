"""Inputs stay unchanged under every call form of YoloLayer.forward."""

import numpy as np
import pytest

from conftest import random_truth, yolov3_layer


@pytest.mark.parametrize("form", ("float32", "float64", "fortran", "strided"))
@pytest.mark.parametrize("trained", (True, False), ids=("train", "inference"))
def test_call_forms_leave_inputs_unchanged(rng, form, trained):
    layer, grid = yolov3_layer(0)
    logits = rng.normal(size=(2, 255, grid, grid)).astype(np.float32)
    truth = random_truth(rng, 2, 5) if trained else None
    if form == "float64":
        logits = logits.astype(np.float64)
        truth = None if truth is None else truth.astype(np.float64)
    elif form == "fortran":
        logits = np.asfortranarray(logits)
        truth = None if truth is None else np.asfortranarray(truth)
    elif form == "strided":
        logits = np.repeat(logits, 2, axis=3)[:, :, :, ::2]
        truth = None if truth is None else np.repeat(truth, 2, axis=1)[:, ::2]
    logits_before = logits.copy(order="K")
    truth_before = None if truth is None else truth.copy(order="K")
    flags_before = logits.flags.writeable

    result = layer.forward(logits, truth)

    assert logits.tobytes() == logits_before.tobytes()
    assert logits.flags.writeable == flags_before
    assert not np.shares_memory(result.output, logits)
    if trained:
        assert truth.tobytes() == truth_before.tobytes()
        assert not np.shares_memory(result.delta, logits)
