"""Darknet's delta against the independent numpy derivations.

These are the identities the package exists to show.  Darknet's delta
is minus the gradient of the BCE reading of the YOLOv3 loss on every
entry.  The MSE-after-sigmoid reading's x, y gradient differs from it
by exactly the sigmoid's derivative s(z)(1 - s(z)).
"""

import numpy as np
import pytest

from conftest import random_truth
from pydarknet_loss import YoloLayer
from pydarknet_loss.check import derivation_options, seeded_logits
from pydarknet_loss.cli import default_cfg
from pydarknet_loss.cfg import read_yolo_layers
from pydarknet_loss.derivation import yolo_loss

TOLERANCE = 2e-5
YOLOV3 = read_yolo_layers(default_cfg())


def run_both(layer, logits, truth):
    result = layer.forward(logits, truth)
    options = derivation_options(layer)
    bce = yolo_loss(logits, truth, xy_loss="bce", **options)
    mse = yolo_loss(logits, truth, xy_loss="mse", **options)
    return result, bce, mse


def xy_entries(layer, shape):
    entries = np.zeros((shape[0], layer.n, 5 + layer.classes) + shape[2:], bool)
    entries[:, :, 0:2] = True
    return entries.reshape(shape)


CASES = [
    (position, batch, seed)
    for position, batches in enumerate(((1, 3, 6), (1, 4), (1, 2)))
    for batch in batches
    for seed in range(2)
]


@pytest.mark.parametrize("position, batch, seed", CASES)
def test_delta_is_minus_bce_gradient(position, batch, seed):
    options = YOLOV3[position]
    layer = YoloLayer.from_options(options)
    rng = np.random.default_rng(seed)
    truth = random_truth(rng, batch, int(rng.integers(1, 25)))
    logits = seeded_logits(options, truth, seed)

    result, bce, mse = run_both(layer, logits, truth)
    delta = result.delta.astype(np.float64)
    assert np.max(np.abs(delta + bce.gradient)) <= TOLERANCE

    s = 1 / (1 + np.exp(-logits.astype(np.float64)))
    xy = xy_entries(layer, logits.shape)
    np.testing.assert_allclose(
        mse.gradient[xy], bce.gradient[xy] * s[xy] * (1 - s[xy]), rtol=1e-9, atol=0
    )
    np.testing.assert_array_equal(mse.gradient[~xy], bce.gradient[~xy])

    trained_xy = xy & (delta != 0)
    assert trained_xy.any()
    assert np.min(np.abs(delta + mse.gradient)[trained_xy]) > TOLERANCE


@pytest.mark.parametrize("position", range(3))
def test_stats_match_derivation(position):
    options = YOLOV3[position]
    layer = YoloLayer.from_options(options)
    truth = random_truth(np.random.default_rng(position), 3, 12)
    logits = seeded_logits(options, truth, position)
    result, bce, _ = run_both(layer, logits, truth)
    stats = result.stats
    assert stats.count == bce.stats["count"]
    assert stats.count > 0
    for name, key in (
        ("avg_iou", "avg_iou"),
        ("avg_class", "class"),
        ("avg_obj", "obj"),
        ("avg_no_obj", "no_obj"),
        ("recall50", "recall50"),
        ("recall75", "recall75"),
    ):
        assert getattr(stats, name) == pytest.approx(bce.stats[key], abs=1e-5), name


def small_layer(**options):
    """A 4x4 layer with two anchors of very different shapes."""
    return YoloLayer(
        classes=3, anchors=[64, 64, 200, 200], net_w=256, net_h=256, **options
    )


def objectness(delta, anchor, j, i):
    return delta.reshape(1, 2, 8, 4, 4)[0, anchor, 4, j, i]


def logits_with_box(anchor_box):
    """Logits whose anchor 1 at cell (1, 1) predicts ``anchor_box`` exactly."""
    logits = np.zeros((1, 16, 4, 4), dtype=np.float32)
    per_anchor = logits.reshape(1, 2, 8, 4, 4)
    x, y, w, h = anchor_box
    per_anchor[0, 1, 0, 1, 1] = np.log((x * 4 - 1) / (2 - x * 4))
    per_anchor[0, 1, 1, 1, 1] = np.log((y * 4 - 1) / (2 - y * 4))
    per_anchor[0, 1, 2, 1, 1] = np.log(w * 256 / 200)
    per_anchor[0, 1, 3, 1, 1] = np.log(h * 256 / 200)
    return logits


def test_ignore_thresh_silences_overlapping_prediction():
    # The truth's shape is anchor 0's, so anchor 1 is not responsible,
    # but anchor 1 predicts the truth's box almost exactly.
    truth = np.array([[[0.37, 0.37, 0.25, 0.25, 1]]], dtype=np.float32)
    logits = logits_with_box((0.37, 0.37, 0.27, 0.27))
    output = 1 / (1 + np.exp(-logits))

    ignored = small_layer(ignore_thresh=0.5).forward(logits, truth)
    assert objectness(ignored.delta, 1, 1, 1) == 0

    trained = small_layer(ignore_thresh=0.95).forward(logits, truth)
    expected = -objectness(output, 1, 1, 1)
    assert objectness(trained.delta, 1, 1, 1) == pytest.approx(expected, abs=1e-6)

    for layer in (small_layer(ignore_thresh=0.5), small_layer(ignore_thresh=0.95)):
        _, bce, _ = run_both(layer, logits, truth)
        result = layer.forward(logits, truth)
        assert np.max(np.abs(result.delta + bce.gradient)) <= TOLERANCE


def test_truth_thresh_below_one_trains_overlapping_prediction():
    truth = np.array([[[0.37, 0.37, 0.25, 0.25, 1]]], dtype=np.float32)
    logits = logits_with_box((0.37, 0.37, 0.27, 0.27))
    output = 1 / (1 + np.exp(-logits))
    layer = small_layer(truth_thresh=0.7)

    result, bce, _ = run_both(layer, logits, truth)
    expected = 1 - objectness(output, 1, 1, 1)
    assert objectness(result.delta, 1, 1, 1) == pytest.approx(expected, abs=1e-6)
    per_anchor = result.delta.reshape(1, 2, 8, 4, 4)
    assert per_anchor[0, 1, 6, 1, 1] > 0
    assert np.max(np.abs(result.delta + bce.gradient)) <= TOLERANCE


def test_two_truths_share_cell_and_anchor():
    first = [0.30, 0.30, 0.20, 0.22, 0]
    second = [0.32, 0.28, 0.26, 0.24, 2]
    truth = np.array([[first, second]], dtype=np.float32)
    logits = np.random.default_rng(1).normal(size=(1, 16, 4, 4)).astype(np.float32)
    layer = small_layer()

    together, bce, _ = run_both(layer, logits, truth)
    alone = layer.forward(logits, truth[:, 1:])
    cell = together.delta.reshape(1, 2, 8, 4, 4)[0, 0, :, 1, 1]
    alone_cell = alone.delta.reshape(1, 2, 8, 4, 4)[0, 0, :, 1, 1]
    output = together.output.reshape(1, 2, 8, 4, 4)[0, 0, :, 1, 1]

    # the later truth's box delta wins, and both classes are targets
    np.testing.assert_array_equal(cell[:4], alone_cell[:4])
    assert cell[5] == pytest.approx(1 - output[5])
    assert cell[7] == pytest.approx(1 - output[7])
    assert cell[6] == pytest.approx(-output[6])
    assert together.stats.count == 2
    assert np.max(np.abs(together.delta + bce.gradient)) <= TOLERANCE


def test_truth_trained_only_by_layer_holding_its_anchor():
    # A small box's best anchor is one of the 76x76 layer's.
    truth = np.array([[[0.5, 0.5, 0.02, 0.03, 5]]], dtype=np.float32)
    counts = []
    for options in YOLOV3:
        layer = YoloLayer.from_options(options)
        logits = seeded_logits(options, truth, 0)
        result, bce, _ = run_both(layer, logits, truth)
        counts.append(result.stats.count)
        assert np.max(np.abs(result.delta + bce.gradient)) <= TOLERANCE
    assert counts == [0, 0, 1]
