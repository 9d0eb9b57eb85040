"""Hold Darknet's delta to the BCE and MSE readings of the YOLOv3 loss.

For each ``[yolo]`` layer, ``check_layer`` runs the compiled upstream
layer and the numpy derivation on the same logits and truth, and finds,
per loss component, which reading's negative gradient Darknet's delta
equals.  The expected identities are four.  Every component matches
the BCE reading: x and y by binary cross-entropy on the sigmoid, w and
h by squared error.  The x and y entries do not match the
MSE-after-sigmoid reading.  The cost is ``||delta||^2``.  The
statistics agree with the derivation's.
"""

from dataclasses import dataclass, field

import numpy as np

from pydarknet_loss.derivation import COMPONENTS, yolo_loss
from pydarknet_loss.layer import YoloLayer

# The loss each reading puts on each component.
LOSS_FORMS = {
    "bce": {
        "x": "BCE on sigmoid",
        "y": "BCE on sigmoid",
        "w": "squared error",
        "h": "squared error",
        "objectness": "BCE on sigmoid",
        "no_object": "BCE on sigmoid",
        "classes": "BCE on sigmoid",
    },
    "mse": {
        "x": "squared error after sigmoid",
        "y": "squared error after sigmoid",
        "w": "squared error",
        "h": "squared error",
        "objectness": "BCE on sigmoid",
        "no_object": "BCE on sigmoid",
        "classes": "BCE on sigmoid",
    },
}

# float32 delta against a float64 derivation, with Darknet's -Ofast expf
TOLERANCE = 2e-5
STATS_TOLERANCE = 1e-4
# Darknet sums the squares of delta in float32, in an order that depends
# on how the compiler vectorizes the loop (a sanitizer build sums them
# one by one), so the cost matches a float64 sum only to about 1e-5.
COST_TOLERANCE = 1e-4
STATS_NAMES = ("avg_iou", "avg_class", "avg_obj", "avg_no_obj", "recall50", "recall75")


@dataclass
class ComponentCheck:
    """Darknet's delta on one component against both readings."""

    name: str
    entries: int
    diff_bce: float
    diff_mse: float
    verdict: str


@dataclass
class LayerCheck:
    """Everything ``check_layer`` measured on one ``[yolo]`` layer."""

    index: int
    grid: tuple
    mask: tuple
    components: list
    ignored: int
    untrained_max: float
    cost: float
    delta_norm2: float
    loss_bce: float
    loss_mse: float
    stats: dict
    numpy_stats: dict
    failures: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.failures


def _max_abs(values):
    return float(np.max(np.abs(values))) if values.size else 0.0


def _verdict(name, diff_bce, diff_mse, entries):
    if not entries:
        return "no entries"
    forms = set()
    if diff_bce <= TOLERANCE:
        forms.add(LOSS_FORMS["bce"][name])
    if diff_mse <= TOLERANCE:
        forms.add(LOSS_FORMS["mse"][name])
    if not forms:
        return "matches neither"
    if len(forms) > 1:
        return "ambiguous"
    return forms.pop()


def _stats_agree(darknet, derived):
    for name in STATS_NAMES:
        a, b = darknet[name], derived[name]
        if np.isnan(a) and np.isnan(b):
            continue
        if not abs(a - b) <= STATS_TOLERANCE:
            return False
    return darknet["count"] == derived["count"]


def _numpy_stats(stats):
    """Rename the derivation's statistics to the names YoloStats uses."""
    return {
        "avg_iou": float(stats["avg_iou"]),
        "avg_class": float(stats["class"]),
        "avg_obj": float(stats["obj"]),
        "avg_no_obj": float(stats["no_obj"]),
        "recall50": float(stats["recall50"]),
        "recall75": float(stats["recall75"]),
        "count": int(stats["count"]),
    }


def derivation_options(layer):
    """Return ``yolo_loss`` keyword arguments for the options of ``layer``."""
    return dict(
        anchors=layer.anchors,
        mask=layer.mask,
        net_w=layer.net_w,
        net_h=layer.net_h,
        ignore_thresh=layer.ignore_thresh,
        truth_thresh=layer.truth_thresh,
        max_boxes=layer.max_boxes,
    )


def check_layer(layer: YoloLayer, logits, truth):
    """Compare Darknet's delta on ``layer`` with both readings' gradients.

    Parameters
    ----------
    layer : YoloLayer
        The compiled upstream layer.
    logits : numpy.ndarray, shape [batch, n*(5+classes), h, w]
    truth : numpy.ndarray, shape [batch, k, 5]

    Returns
    -------
    LayerCheck
        Per component, the largest ``|delta - (-gradient)|`` for each
        reading and a verdict; ``failures`` lists every expected
        identity that does not hold.
    """
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    result = layer.forward(logits, truth)
    options = derivation_options(layer)
    bce = yolo_loss(logits, truth, xy_loss="bce", **options)
    mse = yolo_loss(logits, truth, xy_loss="mse", **options)
    delta = result.delta.astype(np.float64)

    components = []
    trained = np.zeros(delta.shape, dtype=bool)
    for name in COMPONENTS:
        entries = bce.masks[name]
        trained |= entries
        diff_bce = _max_abs((delta + bce.gradient)[entries])
        diff_mse = _max_abs((delta + mse.gradient)[entries])
        count = int(entries.sum())
        verdict = _verdict(name, diff_bce, diff_mse, count)
        components.append(ComponentCheck(name, count, diff_bce, diff_mse, verdict))

    # objectness entries in neither component: ignored by ignore_thresh
    objectness_entries = delta.size // (5 + layer.classes)
    ignored = objectness_entries - sum(
        c.entries for c in components if c.name in ("objectness", "no_object")
    )

    stats = {name: getattr(result.stats, name) for name in (*STATS_NAMES, "count")}
    check = LayerCheck(
        index=layer.index,
        grid=(logits.shape[3], logits.shape[2]),
        mask=tuple(layer.mask.tolist()),
        components=components,
        ignored=ignored,
        untrained_max=_max_abs(delta[~trained]),
        cost=result.cost,
        delta_norm2=float(np.sum(delta**2)),
        loss_bce=float(bce.loss),
        loss_mse=float(mse.loss),
        stats=stats,
        numpy_stats=_numpy_stats(bce.stats),
    )
    check.failures = _failures(check)
    return check


def _failures(check):
    failures = []
    for component in check.components:
        if not component.entries:
            continue
        if component.diff_bce > TOLERANCE:
            failures.append(f"{component.name}: delta is not -gradient of BCE reading")
        if component.name in ("x", "y") and component.diff_mse <= TOLERANCE:
            failures.append(f"{component.name}: delta also matches the MSE reading")
    if check.untrained_max != 0:
        failures.append("delta is non-zero outside every component")
    if not abs(check.cost - check.delta_norm2) <= COST_TOLERANCE * max(
        1.0, check.delta_norm2
    ):
        failures.append("cost differs from ||delta||^2")
    if not _stats_agree(check.stats, check.numpy_stats):
        failures.append("Darknet's statistics differ from the derivation's")
    return failures


def seeded_logits(options, truth, seed):
    """Return logits that put some predictions near the truths.

    Every entry starts as a standard normal draw.  For each truth, the
    anchors of this layer in the truth's cell are then given the truth's
    box, with noise.  The responsible anchor so has a good but not
    perfect prediction, and the other anchors overlap the truth by more
    than ``ignore_thresh`` and are ignored.  Far from the truths, the
    entries stay random and train toward no object.

    Parameters
    ----------
    options : cfg.YoloOptions
        The layer's options and grid size ``w``, ``h``.
    truth : numpy.ndarray, shape [batch, k, 5]
    seed : int
    """
    rng = np.random.default_rng(seed)
    mask = np.asarray(options.mask)
    anchors = np.asarray(options.anchors, dtype=np.float64).reshape(-1, 2)
    batch = truth.shape[0]
    n, stride = mask.size, 5 + options.classes
    w, h = options.w, options.h
    logits = rng.standard_normal((batch, n, stride, h, w))

    for b in range(batch):
        for x, y, bw, bh, _ in truth[b]:
            if x == 0:
                break
            i = int(np.float32(x) * np.float32(w))
            j = int(np.float32(y) * np.float32(h))
            if not (0 <= i < w and 0 <= j < h):
                # outside the grid: the layer rejects this truth itself
                continue
            offset = np.clip(
                [x * w - i, y * h - j] + rng.normal(0, 0.05, 2), 0.02, 0.98
            )
            for a, m in enumerate(mask):
                size = np.log(
                    [
                        bw * options.net_w / anchors[m, 0],
                        bh * options.net_h / anchors[m, 1],
                    ]
                )
                logits[b, a, 0:2, j, i] = np.log(offset / (1 - offset))
                logits[b, a, 2:4, j, i] = size + rng.normal(0, 0.1, 2)
    return logits.reshape(batch, n * stride, h, w).astype(np.float32)
