"""The compiled upstream layer: inputs, outputs, side effects."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

from conftest import YOLOV3_ANCHORS, random_truth, yolov3_layer
from pydarknet_loss import TruthWarning, YoloLayer


def sigmoid(z):
    return 1 / (1 + np.exp(-z.astype(np.float64)))


def test_import_keeps_subnormals(tmp_path):
    # gcc links crtfastmath.o into a shared object linked with -Ofast,
    # which sets flush-to-zero for the whole process when it loads.
    code = (
        "import numpy as np, pydarknet_loss, pydarknet_loss._yolo_cpu\n"
        "print(repr(float(np.float32(1e-40) * np.float32(1))))\n"
    )
    printed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert float(printed) > 0


def test_forward_writes_nothing_to_streams(capfd, rng):
    layer, grid = yolov3_layer(0)
    logits = rng.normal(size=(1, 255, grid, grid))
    layer.forward(logits, random_truth(rng, 1, 3))
    layer.forward(logits)
    captured = capfd.readouterr()
    assert captured.out == ""
    assert captured.err == ""


def test_output_activation(rng):
    layer, grid = yolov3_layer(1)
    logits = rng.normal(size=(2, 255, grid, grid)).astype(np.float32)
    output = layer.forward(logits).output
    per_anchor = logits.reshape(2, 3, 85, grid, grid)
    expected = sigmoid(per_anchor)
    expected[:, :, 2:4] = per_anchor[:, :, 2:4]
    np.testing.assert_allclose(
        output.reshape(per_anchor.shape), expected, rtol=2e-6, atol=2e-7
    )


def test_inference_has_no_delta(rng):
    layer, grid = yolov3_layer(0)
    result = layer.forward(rng.normal(size=(1, 255, grid, grid)))
    assert result.delta is None
    assert result.cost is None
    assert result.stats is None


def test_cost_is_squared_delta_norm(rng):
    layer, grid = yolov3_layer(0)
    logits = rng.normal(size=(3, 255, grid, grid))
    result = layer.forward(logits, random_truth(rng, 3, 5))
    expected = np.sum(result.delta.astype(np.float64) ** 2)
    assert result.cost == pytest.approx(expected, rel=1e-4)


def test_empty_truth_trains_only_no_object(rng):
    layer, grid = yolov3_layer(0)
    logits = rng.normal(size=(1, 255, grid, grid)).astype(np.float32)
    result = layer.forward(logits, np.zeros((1, 0, 5)))
    delta = result.delta.reshape(1, 3, 85, grid, grid)
    output = result.output.reshape(delta.shape)
    np.testing.assert_array_equal(delta[:, :, 4], -output[:, :, 4])
    assert not delta[:, :, :4].any()
    assert not delta[:, :, 5:].any()
    assert result.stats.count == 0
    assert np.isnan(result.stats.avg_iou)


def test_stats_region_and_count(rng):
    layer, grid = yolov3_layer(2)
    truth = np.array([[[0.5, 0.5, 0.02, 0.03, 3]]], dtype=np.float32)
    result = layer.forward(rng.normal(size=(1, 255, grid, grid)), truth)
    assert result.stats.region == 106
    assert result.stats.count == 1


def test_inputs_unchanged(rng):
    layer, grid = yolov3_layer(0)
    logits = rng.normal(size=(2, 255, grid, grid)).astype(np.float32)
    truth = random_truth(rng, 2, 4)
    logits_copy, truth_copy = logits.copy(), truth.copy()
    layer.forward(logits, truth)
    np.testing.assert_array_equal(logits, logits_copy)
    np.testing.assert_array_equal(truth, truth_copy)


def test_layouts_and_dtypes_agree(rng):
    layer, grid = yolov3_layer(0)
    logits = rng.normal(size=(2, 255, grid, grid)).astype(np.float32)
    truth = random_truth(rng, 2, 3)
    reference = layer.forward(logits, truth)
    variants = (
        np.asfortranarray(logits),
        logits.astype(np.float64),
        np.concatenate([logits, logits], axis=3)[:, :, :, :grid],
    )
    for variant in variants:
        result = layer.forward(variant, truth.astype(np.float64))
        np.testing.assert_array_equal(result.delta, reference.delta)
        assert result.cost == reference.cost


def test_later_rows_after_zero_warn(rng):
    layer, grid = yolov3_layer(0)
    truth = np.array(
        [[[0.5, 0.5, 0.2, 0.2, 1], [0, 0, 0, 0, 0], [0.3, 0.3, 0.1, 0.1, 2]]],
        dtype=np.float32,
    )
    logits = rng.normal(size=(1, 255, grid, grid))
    with pytest.warns(TruthWarning, match=r"truth\[0, 2\]"):
        warned = layer.forward(logits, truth)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cut = layer.forward(logits, truth[:, :1])
    np.testing.assert_array_equal(warned.delta, cut.delta)


BAD_TRUTH = {
    "class out of range": ([0.5, 0.5, 0.1, 0.1, 80], "class"),
    "negative class": ([0.5, 0.5, 0.1, 0.1, -1], "class"),
    "fractional class": ([0.5, 0.5, 0.1, 0.1, 2.5], "class"),
    "x of one": ([1.0, 0.5, 0.1, 0.1, 0], "x must be"),
    "x below zero": ([-0.2, 0.5, 0.1, 0.1, 0], "x must be"),
    "y of one": ([0.5, 1.0, 0.1, 0.1, 0], "y must be"),
    "y below zero": ([0.5, -0.5, 0.1, 0.1, 0], "y must be"),
    "zero width": ([0.5, 0.5, 0.0, 0.1, 0], "w must be"),
    "negative height": ([0.5, 0.5, 0.1, -0.1, 0], "h must be"),
    "nan": ([0.5, np.nan, 0.1, 0.1, 0], "not finite"),
    "infinity": ([0.5, 0.5, np.inf, 0.1, 0], "not finite"),
}


@pytest.mark.parametrize("row, message", BAD_TRUTH.values(), ids=BAD_TRUTH.keys())
def test_bad_truth_rejected(rng, row, message):
    layer, grid = yolov3_layer(0)
    truth = np.array([[[0.5, 0.5, 0.2, 0.2, 1], row]], dtype=np.float64)
    with pytest.raises(ValueError, match=message):
        layer.forward(rng.normal(size=(1, 255, grid, grid)), truth)


def test_x_just_below_one_maps_inside(rng):
    layer, grid = yolov3_layer(2)
    x = np.nextafter(np.float32(1), np.float32(0))
    truth = np.array([[[x, x, 0.01, 0.01, 0]]], dtype=np.float32)
    result = layer.forward(rng.normal(size=(1, 255, grid, grid)), truth)
    assert result.stats.count == 1


def test_too_many_rows_rejected(rng):
    layer, grid = yolov3_layer(0, max_boxes=4)
    with pytest.raises(ValueError, match="max_boxes=4"):
        layer.forward(rng.normal(size=(1, 255, grid, grid)), random_truth(rng, 1, 5))


def test_max_boxes_over_90_rejected():
    with pytest.raises(ValueError, match="90 truth rows"):
        yolov3_layer(0, max_boxes=91)


BAD_LOGITS = {
    "three dims": ((255, 19, 19), ValueError, "must be"),
    "wrong channels": ((1, 254, 19, 19), ValueError, "255"),
    "empty batch": ((0, 255, 19, 19), ValueError, "empty"),
    "empty grid": ((1, 255, 0, 19), ValueError, "empty"),
}


@pytest.mark.parametrize(
    "shape, error, message", BAD_LOGITS.values(), ids=BAD_LOGITS.keys()
)
def test_bad_logits_rejected(shape, error, message):
    layer, _ = yolov3_layer(0)
    with pytest.raises(error, match=message):
        layer.forward(np.zeros(shape, dtype=np.float32))


def test_complex_logits_rejected():
    layer, grid = yolov3_layer(0)
    with pytest.raises(TypeError, match="real"):
        layer.forward(np.zeros((1, 255, grid, grid), dtype=np.complex64))


def test_truth_batch_mismatch_rejected(rng):
    layer, grid = yolov3_layer(0)
    with pytest.raises(ValueError, match="batch=2"):
        layer.forward(rng.normal(size=(2, 255, grid, grid)), random_truth(rng, 1, 2))


BAD_OPTIONS = {
    "odd anchors": (dict(anchors=[10, 13, 16]), ValueError, "pairs"),
    "zero anchor": (dict(anchors=[10, 0]), ValueError, "positive"),
    "nan anchor": (dict(anchors=[10, np.nan]), ValueError, "positive"),
    "mask past total": (dict(mask=[8, 9]), ValueError, "outside"),
    "negative mask": (dict(mask=[-1]), ValueError, "outside"),
    "empty mask": (dict(mask=[]), ValueError, "non-empty"),
    "fractional mask": (dict(mask=[0.5]), ValueError, "integer"),
    "zero classes": (dict(classes=0), ValueError, "positive"),
    "float net width": (dict(net_w=608.0), TypeError, "integer"),
    "zero net height": (dict(net_h=0), ValueError, "positive"),
    "nan ignore_thresh": (dict(ignore_thresh=np.nan), ValueError, "NaN"),
}


@pytest.mark.parametrize(
    "change, error, message", BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys()
)
def test_bad_options_rejected(change, error, message):
    options = dict(classes=80, anchors=YOLOV3_ANCHORS, net_w=608, net_h=608)
    options.update(change)
    with pytest.raises(error, match=message):
        YoloLayer(**options)


def test_anchor_pairs_accepted():
    flat = YoloLayer(classes=2, anchors=[1, 2, 3, 4], net_w=32, net_h=32)
    pairs = YoloLayer(classes=2, anchors=[[1, 2], [3, 4]], net_w=32, net_h=32)
    np.testing.assert_array_equal(flat.anchors, pairs.anchors)
    assert pairs.mask.tolist() == [0, 1]
    assert pairs.channels == 14


def test_layer_reusable_after_error(rng):
    layer, grid = yolov3_layer(0)
    logits = rng.normal(size=(1, 255, grid, grid))
    truth = random_truth(rng, 1, 2)
    before = layer.forward(logits, truth)
    with pytest.raises(ValueError):
        layer.forward(logits, np.full((1, 1, 5), np.nan))
    after = layer.forward(logits, truth)
    np.testing.assert_array_equal(before.delta, after.delta)


def test_anchors_reach_upstream(rng):
    # Only anchor shapes decide the responsible anchor, so swapping two
    # anchors moves the trained entries between them.
    truth = np.array([[[0.5, 0.5, 0.05, 0.05, 0]]], dtype=np.float32)
    logits = rng.normal(size=(1, 2 * 6, 4, 4))
    small_first = YoloLayer(
        classes=1, anchors=[30, 30, 300, 300], net_w=608, net_h=608
    ).forward(logits, truth)
    large_first = YoloLayer(
        classes=1, anchors=[300, 300, 30, 30], net_w=608, net_h=608
    ).forward(logits, truth)
    assert small_first.delta.reshape(2, 6, 4, 4)[0, 0, 2, 2] != 0
    assert large_first.delta.reshape(2, 6, 4, 4)[1, 0, 2, 2] != 0
    assert large_first.delta.reshape(2, 6, 4, 4)[0, 0, 2, 2] == 0


def test_out_buffers_reused(rng):
    layer, grid = yolov3_layer(0)
    logits = rng.normal(size=(2, 255, grid, grid)).astype(np.float32)
    truth = random_truth(rng, 2, 4)
    expected = layer.forward(logits, truth)

    out = (np.full_like(logits, np.nan), np.full_like(logits, np.nan))
    for _ in range(2):
        result = layer.forward(logits, truth, out=out)
        assert result.output is out[0]
        assert result.delta is out[1]
        np.testing.assert_array_equal(result.delta, expected.delta)
        np.testing.assert_array_equal(result.output, expected.output)
        assert result.cost == expected.cost


def bad_out_buffers(logits):
    good = np.empty_like(logits)
    read_only = np.empty_like(logits)
    read_only.flags.writeable = False
    wide = np.empty(logits.shape[:3] + (2 * logits.shape[3],), np.float32)
    return {
        "list": ([good, np.empty_like(logits)], TypeError, "tuple"),
        "float64": ((good, logits.astype(np.float64)), ValueError, "float32"),
        "shape": ((good, logits[:, :, :, 1:].copy()), ValueError, "shape"),
        "strided": ((good, wide[:, :, :, ::2]), ValueError, "C-contiguous"),
        "read-only": ((good, read_only), ValueError, "writable"),
        "logits": ((good, logits), ValueError, "shares memory with logits"),
        "same": ((good, good), ValueError, "share memory"),
    }


@pytest.mark.parametrize(
    "case", ["list", "float64", "shape", "strided", "read-only", "logits", "same"]
)
def test_bad_out_buffers_rejected(rng, case):
    layer, grid = yolov3_layer(0)
    logits = rng.normal(size=(1, 255, grid, grid)).astype(np.float32)
    out, error, message = bad_out_buffers(logits)[case]
    with pytest.raises(error, match=message):
        layer.forward(logits, random_truth(rng, 1, 2), out=out)


def test_out_sharing_truth_rejected(rng):
    # A delta buffer viewed over the caller's truth would overwrite it.
    layer, grid = yolov3_layer(0)
    logits = rng.normal(size=(1, 255, grid, grid)).astype(np.float32)
    storage = np.zeros(logits.size + 10, dtype=np.float32)
    truth = storage[:10].reshape(1, 2, 5)
    truth[:] = random_truth(rng, 1, 2)
    delta = storage[:-10].reshape(logits.shape)
    with pytest.raises(ValueError, match="shares memory with truth"):
        layer.forward(logits, truth, out=(np.empty_like(logits), delta))


def test_truth_warning_points_at_caller(rng):
    layer, grid = yolov3_layer(0)
    truth = np.array(
        [[[0.5, 0.5, 0.2, 0.2, 1], [0, 0, 0, 0, 0], [0.3, 0.3, 0.1, 0.1, 2]]]
    )
    with pytest.warns(TruthWarning) as record:
        layer.forward(rng.normal(size=(1, 255, grid, grid)), truth)
    assert record[0].filename == __file__


def test_x_underflowing_float32_rejected(rng):
    layer, grid = yolov3_layer(0)
    truth = np.array([[[1e-50, 0.5, 0.2, 0.2, 1], [0.5, 0.5, 0.1, 0.1, 2]]])
    with pytest.raises(ValueError, match="0 in float32"):
        layer.forward(rng.normal(size=(1, 255, grid, grid)), truth)
