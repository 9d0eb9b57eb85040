"""Tests of the numpy derivation of the YOLOv3 loss, without the compiled layer.

The gradient tests hold the analytic gradient to central differences. The loss
is smooth only while the sets of ignored and responsible predictions stay fixed.
So the random cases are checked to keep every best IoU at least ``IOU_MARGIN``
away from both thresholds. By estimate, a step of 1e-4 in one logit moves an IoU
by about 1e-4 at most.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest


def load_derivation():
    """Import derivation.py by path, so that no compiled module is needed.

    The package's ``__init__`` imports the compiled Darknet layer, while the
    derivation needs only numpy.
    """
    name = "pydarknet_loss_derivation_under_test"
    path = Path(__file__).resolve().parents[1] / "pydarknet_loss" / "derivation.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


derivation = load_derivation()
COMPONENTS = derivation.COMPONENTS
loss_function = derivation.loss_function
numeric_gradient = derivation.numeric_gradient
yolo_loss = derivation.yolo_loss

# A small layer. The network has 3 anchors and this layer predicts with the
# first two, so a truth whose best anchor is the third trains nothing here.
NET = 64
ANCHORS = (16, 16, 32, 48, 60, 60)
MASK = (0, 1)
CLASSES = 3
OPTIONS = {"anchors": ANCHORS, "mask": MASK, "net_w": NET, "net_h": NET}
ENTRY_CHANNELS = 5 + CLASSES
IOU_MARGIN = 1e-3

# Channels inside one anchor's block.
X, Y, W, H, OBJECTNESS, CLASS0 = range(6)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def logit(p):
    return np.log(p / (1 - p))


def by_anchor(array):
    """View a [batch, n * (5 + classes), h, w] array per anchor and channel."""
    batch, _, h, w = array.shape
    return array.reshape(batch, len(MASK), ENTRY_CHANNELS, h, w)


def blank_logits(batch=1, grid=4):
    """Return logits whose tiny predicted boxes overlap no truth."""
    logits = np.zeros((batch, len(MASK), ENTRY_CHANNELS, grid, grid))
    logits[:, :, [W, H]] = -3.0
    return logits.reshape(batch, -1, grid, grid)


def place_box(logits, image, anchor, box):
    """Set one entry's x, y, w, h logits to predict box and return its (i, j)."""
    x, y, w, h = box
    grid_h, grid_w = logits.shape[-2:]
    i, j = int(x * grid_w), int(y * grid_h)
    anchor_w, anchor_h = ANCHORS[2 * MASK[anchor]], ANCHORS[2 * MASK[anchor] + 1]
    entry = by_anchor(logits)[image, anchor, :, j, i]
    entry[X] = logit(x * grid_w - i)
    entry[Y] = logit(y * grid_h - j)
    entry[W] = np.log(w * NET / anchor_w)
    entry[H] = np.log(h * NET / anchor_h)
    return i, j


def iou(a, b):
    """Compute the IoU of (x, y, w, h) centre boxes in float64, broadcasting."""
    overlap_w = np.minimum(a[0] + a[2] / 2, b[0] + b[2] / 2) - np.maximum(
        a[0] - a[2] / 2, b[0] - b[2] / 2
    )
    overlap_h = np.minimum(a[1] + a[3] / 2, b[1] + b[3] / 2) - np.maximum(
        a[1] - a[3] / 2, b[1] - b[3] / 2
    )
    intersection = np.clip(overlap_w, 0, None) * np.clip(overlap_h, 0, None)
    return intersection / (a[2] * a[3] + b[2] * b[3] - intersection)


def sorted_truth_ious(logits, truth):
    """Return each prediction's IoUs with its image's truths, best first.

    Shape [batch, n, h, w, k], in float64, assuming no row has x == 0.
    """
    z = by_anchor(logits)
    _, _, _, h, w = z.shape
    anchor = np.array(ANCHORS, float).reshape(-1, 2)[list(MASK)]
    pred = (
        ((np.arange(w) + sigmoid(z[:, :, X])) / w)[..., None],
        ((np.arange(h)[:, None] + sigmoid(z[:, :, Y])) / h)[..., None],
        (np.exp(z[:, :, W]) * anchor[:, 0, None, None] / NET)[..., None],
        (np.exp(z[:, :, H]) * anchor[:, 1, None, None] / NET)[..., None],
    )
    rows = truth[:, None, None, None, :, :]
    ious = iou(pred, tuple(rows[..., c] for c in range(4)))
    return -np.sort(-ious, axis=-1)


def random_case(seed, ignore_thresh=0.5, truth_thresh=1.0):
    """Return logits, truth and options of a random 2-image, 3x3-grid case.

    Raise AssertionError unless every best IoU lies at least IOU_MARGIN from
    both thresholds and every truth_thresh match has a unique best truth.
    """
    rng = np.random.default_rng(seed)
    batch, grid, boxes = 2, 3, 3
    logits = rng.normal(0, 1, size=(batch, len(MASK) * ENTRY_CHANNELS, grid, grid))
    truth = np.zeros((batch, boxes, 5))
    truth[:, :, 0:2] = rng.uniform(0.05, 0.95, size=(batch, boxes, 2))
    truth[:, :, 2:4] = rng.uniform(0.1, 0.9, size=(batch, boxes, 2))
    truth[:, :, 4] = rng.integers(0, CLASSES, size=(batch, boxes))

    ious = sorted_truth_ious(logits, truth)
    best = ious[..., 0]
    for thresh in (ignore_thresh, truth_thresh):
        assert np.all(np.abs(best - thresh) > IOU_MARGIN), f"seed {seed}"
    matched = best > truth_thresh
    assert np.all(ious[matched][:, 0] - ious[matched][:, 1] > IOU_MARGIN)

    options = dict(OPTIONS, ignore_thresh=ignore_thresh, truth_thresh=truth_thresh)
    return logits, truth, options


# Seeds whose cases keep the margins. Together they train truths, skip a truth
# whose best anchor is not in MASK, and ignore some predictions.
GRADIENT_CASES = (
    {"seed": 1},
    {"seed": 12},
    {"seed": 8, "ignore_thresh": 0.3},
    {"seed": 7, "ignore_thresh": 0.3, "truth_thresh": 0.45},
    {"seed": 12, "ignore_thresh": 0.3, "truth_thresh": 0.45},
)


@pytest.mark.parametrize("xy_loss", ["bce", "mse"])
@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_gradient_matches_numeric(case, xy_loss):
    logits, truth, options = random_case(**case)

    result = yolo_loss(logits, truth, xy_loss=xy_loss, **options)
    f = loss_function(truth, xy_loss=xy_loss, **options)
    expected = numeric_gradient(f, logits)

    np.testing.assert_allclose(result.gradient, expected, rtol=1e-6, atol=1e-7)


def test_gradient_cases_cover_all_terms():
    totals = {name: 0 for name in COMPONENTS}
    ignored = 0
    untrained_truths = 0
    matched = 0
    for case in GRADIENT_CASES:
        logits, truth, options = random_case(**case)
        result = yolo_loss(logits, truth, **options)
        for name in COMPONENTS:
            totals[name] += int(result.masks[name].sum())

        trained = result.masks["objectness"] | result.masks["no_object"]
        ignored += int((~by_anchor(trained)[:, :, OBJECTNESS]).sum())
        untrained_truths += truth.shape[0] * truth.shape[1] - result.stats["count"]

        options["truth_thresh"] = 1.0
        unmatched = yolo_loss(logits, truth, **options)
        matched += int(result.masks["objectness"].sum())
        matched -= int(unmatched.masks["objectness"].sum())

    for name in COMPONENTS:
        assert totals[name] > 0, name
    assert ignored > 0
    assert untrained_truths > 0
    assert matched > 0


def test_mse_xy_gradient_ratio():
    logits, truth, options = random_case(seed=1)
    bce = yolo_loss(logits, truth, xy_loss="bce", **options)
    mse = yolo_loss(logits, truth, xy_loss="mse", **options)
    s = sigmoid(by_anchor(logits))

    for channel in (X, Y):
        bce_xy = by_anchor(bce.gradient)[:, :, channel]
        mse_xy = by_anchor(mse.gradient)[:, :, channel]
        trained = bce_xy != 0
        assert trained.any()
        assert np.array_equal(mse_xy != 0, trained)
        factor = s[:, :, channel] * (1 - s[:, :, channel])
        ratio = mse_xy[trained] / bce_xy[trained]
        np.testing.assert_allclose(ratio, factor[trained], rtol=1e-12)

    others = [c for c in range(ENTRY_CHANNELS) if c not in (X, Y)]
    np.testing.assert_array_equal(
        by_anchor(mse.gradient)[:, :, others], by_anchor(bce.gradient)[:, :, others]
    )
    for name in ("w", "h", "objectness", "no_object", "classes"):
        assert mse.components[name] == bce.components[name], name
    for name in COMPONENTS:
        np.testing.assert_array_equal(mse.masks[name], bce.masks[name])


def test_masks_partition_trained_entries():
    logits, truth, options = random_case(seed=12, ignore_thresh=0.3, truth_thresh=0.45)
    result = yolo_loss(logits, truth, **options)
    stacked = np.stack([result.masks[name] for name in COMPONENTS])

    assert stacked.shape[1:] == logits.shape
    assert stacked.sum(axis=0).max() == 1
    np.testing.assert_array_equal(stacked.any(axis=0), result.gradient != 0)


def test_loss_is_sum_of_components():
    logits, truth, options = random_case(seed=2)
    result = yolo_loss(logits, truth, **options)

    assert tuple(result.components) == COMPONENTS
    assert result.loss == pytest.approx(sum(result.components.values()), rel=1e-12)
    assert loss_function(truth, **options)(logits) == result.loss
    assert result.gradient.dtype == np.float64


def test_numeric_gradient_of_cubic():
    z = np.linspace(-2, 2, 24).reshape(2, 3, 4)

    gradient = numeric_gradient(lambda v: float(np.sum(v**3)), z, eps=1e-5)

    assert gradient.shape == z.shape
    np.testing.assert_allclose(gradient, 3 * z**2, atol=1e-8)


def test_numeric_gradient_rejects_bad_eps():
    with pytest.raises(ValueError, match="eps"):
        numeric_gradient(np.sum, np.zeros(3), eps=0)


def one_truth_case():
    """Return logits and one truth trained by anchor 0 in cell (1, 1)."""
    logits = blank_logits()
    truth = np.array([[[0.3, 0.3, 0.2, 0.2, 1]]])
    return logits, truth


def test_ignore_thresh_skips_no_object():
    logits, truth = one_truth_case()
    # Anchor 1 of the truth's cell predicts a box with IoU 0.04 / 0.044 = 0.909.
    i, j = place_box(logits, 0, 1, (0.3, 0.3, 0.22, 0.2))

    ignored = yolo_loss(logits, truth, ignore_thresh=0.5, **OPTIONS)
    trained = yolo_loss(logits, truth, ignore_thresh=0.95, **OPTIONS)

    assert not by_anchor(ignored.masks["no_object"])[0, 1, OBJECTNESS, j, i]
    assert not by_anchor(ignored.masks["objectness"])[0, 1, OBJECTNESS, j, i]
    assert by_anchor(ignored.gradient)[0, 1, OBJECTNESS, j, i] == 0
    assert by_anchor(trained.masks["no_object"])[0, 1, OBJECTNESS, j, i]
    assert by_anchor(trained.gradient)[0, 1, OBJECTNESS, j, i] == pytest.approx(0.5)


def test_no_object_gradient_is_sigmoid():
    logits, truth = one_truth_case()
    result = yolo_loss(logits, truth, **OPTIONS)
    no_object = result.masks["no_object"]

    assert no_object.sum() == 2 * 4 * 4 - 1
    np.testing.assert_allclose(result.gradient[no_object], sigmoid(logits[no_object]))
    assert result.components["no_object"] == pytest.approx(31 * np.log(2))


def test_truth_thresh_makes_prediction_responsible():
    logits = blank_logits()
    # The truth is trained by anchor 0 in cell (1, 1). Anchor 1 in the next
    # cell to the right predicts a box with IoU 0.071 / 0.093 = 0.763.
    truth = np.array([[[0.45, 0.3, 0.4, 0.2, 2]]])
    i, j = place_box(logits, 0, 1, (0.505, 0.3, 0.42, 0.2))
    assert (i, j) == (2, 1)

    off = yolo_loss(logits, truth, **OPTIONS)
    on = yolo_loss(logits, truth, truth_thresh=0.7, **OPTIONS)

    for name in ("x", "y", "w", "h", "objectness"):
        channel = ("x", "y", "w", "h", "objectness").index(name)
        assert not by_anchor(off.masks[name])[0, 1, channel, j, i], name
        assert by_anchor(on.masks[name])[0, 1, channel, j, i], name
    assert by_anchor(on.masks["classes"])[0, 1, CLASS0:, j, i].all()
    assert on.stats["count"] == off.stats["count"] == 1

    # The box target is the truth's offset from this prediction's cell, -0.2,
    # outside [0, 1]. The gradient is still Darknet's scale * (s - t). The
    # targets are float32 values, hence the absolute tolerance.
    entry = by_anchor(logits)[0, 1, :, j, i]
    gradient = by_anchor(on.gradient)[0, 1, :, j, i]
    scale = 2 - 0.4 * 0.2
    expected_x = scale * (sigmoid(entry[X]) + 0.2)
    expected_w = scale * (entry[W] - np.log(0.4 * NET / 32))
    assert gradient[X] == pytest.approx(expected_x, abs=1e-6)
    assert gradient[W] == pytest.approx(expected_w, abs=1e-6)
    assert gradient[OBJECTNESS] == pytest.approx(sigmoid(entry[OBJECTNESS]) - 1)
    np.testing.assert_allclose(gradient[CLASS0:], sigmoid(entry[CLASS0:]) - [0, 0, 1])


def two_truths_in_one_entry(first_class, second_class):
    """Return truth whose two boxes are both trained by anchor 0 in cell (1, 1)."""
    return np.array(
        [
            [
                [0.3, 0.3, 0.2, 0.2, first_class],
                [0.35, 0.32, 0.22, 0.18, second_class],
            ]
        ]
    )


def test_shared_entry_last_box_all_classes():
    logits = blank_logits()
    by_anchor(logits)[0, 0, CLASS0:, 1, 1] = [0.5, -0.5, 1.0]
    truth = two_truths_in_one_entry(1, 2)

    result = yolo_loss(logits, truth, **OPTIONS)

    entry = by_anchor(logits)[0, 0, :, 1, 1]
    gradient = by_anchor(result.gradient)[0, 0, :, 1, 1]
    scale = 2 - 0.22 * 0.18
    assert gradient[X] == pytest.approx(scale * (sigmoid(entry[X]) - 0.4))
    assert gradient[Y] == pytest.approx(scale * (sigmoid(entry[Y]) - 0.28))
    assert gradient[W] == pytest.approx(scale * (entry[W] - np.log(0.22 * NET / 16)))
    assert gradient[H] == pytest.approx(scale * (entry[H] - np.log(0.18 * NET / 16)))
    np.testing.assert_allclose(gradient[CLASS0:], sigmoid(entry[CLASS0:]) - [0, 1, 1])
    assert result.masks["objectness"].sum() == 1
    assert result.stats["count"] == 2


@pytest.mark.parametrize(
    ("class0_logit", "classes", "targets"),
    [
        # Class 0 output exactly 1 in float32: its delta is 0, so the second
        # truth resets the entry's class targets to its own class.
        (20.0, (0, 2), [0, 0, 1]),
        # Class 0 output exactly 0 in float32: every truth resets the targets.
        (-110.0, (2, 1), [0, 1, 0]),
        # Not saturated: the targets are the union.
        (3.0, (0, 2), [1, 0, 1]),
    ],
)
def test_saturated_class0_resets_class_targets(class0_logit, classes, targets):
    logits = blank_logits()
    by_anchor(logits)[0, 0, CLASS0, 1, 1] = class0_logit
    truth = two_truths_in_one_entry(*classes)

    result = yolo_loss(logits, truth, **OPTIONS)

    entry = by_anchor(logits)[0, 0, CLASS0:, 1, 1]
    gradient = by_anchor(result.gradient)[0, 0, CLASS0:, 1, 1]
    np.testing.assert_allclose(gradient, sigmoid(entry) - targets, atol=1e-12)


def test_truth_of_other_layer_trains_nothing():
    logits, _ = one_truth_case()
    # 0.9 * 64 = 57.6 pixels: the 60x60 anchor fits best, and it is not in MASK.
    truth = np.array([[[0.6, 0.6, 0.9, 0.9, 0]]])

    result = yolo_loss(logits, truth, **OPTIONS)

    for name in ("x", "y", "w", "h", "objectness", "classes"):
        assert not result.masks[name].any(), name
    assert result.masks["no_object"].any()
    assert result.stats["count"] == 0
    assert np.isnan(result.stats["avg_iou"])
    assert np.isnan(result.stats["recall50"])


def test_truth_list_ends_at_zero_x():
    logits, truth = one_truth_case()
    place_box(logits, 0, 1, (0.7, 0.7, 0.3, 0.3))
    later = np.array([0.7, 0.7, 0.3, 0.3, 99])  # never read: class 99 is invalid
    ended = np.concatenate([truth, [[np.zeros(5), later]]], axis=1)

    expected = yolo_loss(logits, truth, **OPTIONS)
    result = yolo_loss(logits, ended, **OPTIONS)

    assert result.loss == expected.loss
    np.testing.assert_array_equal(result.gradient, expected.gradient)
    assert result.stats == expected.stats


def test_max_boxes_truncates_truth():
    logits, truth = one_truth_case()
    second = np.array([[[0.7, 0.6, 0.3, 0.5, 0]]])
    both = np.concatenate([truth, second], axis=1)

    expected = yolo_loss(logits, truth, **OPTIONS)
    result = yolo_loss(logits, both, max_boxes=1, **OPTIONS)
    untrained = yolo_loss(logits, both, max_boxes=0, **OPTIONS)

    assert yolo_loss(logits, both, **OPTIONS).stats["count"] == 2
    np.testing.assert_array_equal(result.gradient, expected.gradient)
    assert result.stats["count"] == 1
    assert untrained.stats["count"] == 0
    assert not untrained.masks["objectness"].any()


def test_cell_index_uses_float32():
    # On the 19x19 grid of YOLOv3's coarsest layer, x * 19 is just below 6, but
    # Darknet's float32 product rounds to 6, so the truth trains cell 6 with
    # offset 0 rather than cell 5 with offset 1.
    grid = 19
    cell = 6
    x = np.float32(0.31578946)
    assert float(x) * grid < cell
    assert x * np.float32(grid) == cell

    logits = blank_logits(grid=grid)
    truth = np.array([[[x, 0.5, 0.2, 0.2, 0]]])
    result = yolo_loss(logits, truth, **OPTIONS)

    row = 9
    columns = np.nonzero(by_anchor(result.masks["x"])[0, 0, X, row])[0]
    np.testing.assert_array_equal(columns, [cell])
    entry = by_anchor(logits)[0, 0, X, row, cell]
    gradient = by_anchor(result.gradient)[0, 0, X, row, cell]
    assert gradient == pytest.approx((2 - 0.04) * sigmoid(entry))


def test_statistics_of_hand_built_case():
    logits = blank_logits()
    truth = np.array([[[0.3, 0.3, 0.2, 0.2, 1], [0.7, 0.6, 0.3, 0.5, 0]]])
    first = place_box(logits, 0, 0, (0.3, 0.3, 0.22, 0.2))
    second = place_box(logits, 0, 0, (0.7, 0.6, 0.3, 0.3))
    z = by_anchor(logits)
    z[0, 0, CLASS0 + 1, first[1], first[0]] = 1.0
    z[0, 0, CLASS0, second[1], second[0]] = -1.0
    z[0, 0, OBJECTNESS, first[1], first[0]] = 2.0
    z[0, 0, OBJECTNESS, second[1], second[0]] = -0.5

    stats = yolo_loss(logits, truth, **OPTIONS).stats

    ious = [0.04 / 0.044, 0.09 / 0.15]
    assert stats["count"] == 2
    assert stats["avg_iou"] == pytest.approx(np.mean(ious), rel=1e-6)
    assert stats["recall50"] == 1.0
    assert stats["recall75"] == 0.5
    assert stats["class"] == pytest.approx(np.mean(sigmoid(np.array([1.0, -1.0]))))
    assert stats["obj"] == pytest.approx(np.mean(sigmoid(np.array([2.0, -0.5]))))
    no_obj = (30 * 0.5 + sigmoid(2.0) + sigmoid(-0.5)) / 32
    assert stats["no_obj"] == pytest.approx(no_obj)


def test_statistics_without_truth_are_nan():
    logits, _ = one_truth_case()
    truth = np.zeros((1, 0, 5))

    result = yolo_loss(logits, truth, **OPTIONS)

    assert result.stats["count"] == 0
    for name in ("avg_iou", "class", "obj", "recall50", "recall75"):
        assert np.isnan(result.stats[name]), name
    assert result.stats["no_obj"] == pytest.approx(0.5)
    assert result.masks["no_object"].sum() == 2 * 4 * 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"logits": np.zeros((1, 16, 4))}, "logits must have shape"),
        ({"logits": np.zeros((1, 15, 4, 4))}, "channels"),
        ({"truth": np.zeros((2, 1, 5))}, "truth must have shape"),
        ({"truth": np.zeros((1, 1, 4))}, "truth must have shape"),
        ({"mask": (0, 3)}, "mask"),
        ({"mask": (-1, 0)}, "mask"),
        ({"mask": ()}, "mask"),
        ({"anchors": (16, 16, 32)}, "anchors"),
        ({"anchors": (16, 16, 0, 48)}, "anchors"),
        ({"xy_loss": "l2"}, "xy_loss"),
        ({"net_w": 0}, "net_w"),
        ({"max_boxes": -1}, "max_boxes"),
        ({"truth_thresh": -0.1}, "truth_thresh"),
        ({"ignore_thresh": "0.5"}, "ignore_thresh"),
        ({"truth": np.array([[[0.3, 0.3, 0.2, 0.2, 3]]])}, "class"),
        ({"truth": np.array([[[0.3, np.nan, 0.2, 0.2, 0]]])}, "non-finite"),
        ({"truth": np.array([[[1.0, 0.3, 0.2, 0.2, 0]]])}, "cell grid"),
    ],
)
def test_invalid_inputs_raise(change, message):
    logits, truth = one_truth_case()
    arguments = dict(OPTIONS, logits=logits, truth=truth)
    arguments.update(change)

    with pytest.raises(ValueError, match=message):
        yolo_loss(**arguments)
