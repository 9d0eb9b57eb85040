"""Derive the YOLOv3 loss of one YOLO layer in numpy, independently of Darknet.

Darknet's YOLO layer does not evaluate the loss it trains. It writes ``delta``,
which is minus the gradient of that loss with respect to the layer's input (the
logits). This module writes the loss down from its formulas, in two readings
that differ only in the x, y terms:

- ``"bce"``: x, y are trained by binary cross-entropy on the logistic output.
  Its gradient is exactly minus Darknet's delta.
- ``"mse"``: x, y are trained by squared error on the logistic output, the
  reading of "sum of squared error loss" in the YOLOv3 paper (Redmon and
  Farhadi, "YOLOv3: An Incremental Improvement", 2018) that many ports
  implement. Its x, y gradient is the BCE one times ``s(z) * (1 - s(z))``.

Both readings train w, h by squared error on the raw logits, objectness and
classes by binary cross-entropy. The loss and gradient are computed in float64.
The decisions that Darknet takes in float32 (which cell a truth falls in, which
predictions pass the IoU thresholds) are taken from float32 values computed the
way Darknet's C code computes them, so that both pick the same entries.
"""

from dataclasses import dataclass

import numpy as np

COMPONENTS = ("x", "y", "w", "h", "objectness", "no_object", "classes")
XY_LOSSES = ("bce", "mse")

# Channels of one anchor's block in the logits: x, y, w, h, objectness, classes.
X, Y, W, H, OBJECTNESS, CLASSES = range(6)


@dataclass
class YoloLoss:
    """Value, gradient, terms and statistics of the YOLOv3 loss of one layer.

    Attributes
    ----------
    loss : float
        Total loss, the sum of ``components``.
    gradient : numpy.ndarray
        Derivative of ``loss`` with respect to the logits, float64, in the shape
        of the logits. In the ``"bce"`` reading it equals minus Darknet's delta.
    components : dict
        Loss of each term named in ``COMPONENTS``.
    masks : dict
        For each name in ``COMPONENTS``, a boolean array in the shape of the
        logits that marks the entries the term depends on.
    stats : dict
        The statistics Darknet prints after each forward pass: ``avg_iou``,
        ``class``, ``obj``, ``no_obj``, ``recall50``, ``recall75`` and ``count``.
    """

    loss: float
    gradient: np.ndarray
    components: dict
    masks: dict
    stats: dict


@dataclass
class _Layer:
    """Validated inputs of one layer, in the dtypes Darknet stores them in."""

    logits: np.ndarray  # float64, [batch, n, 5 + classes, h, w]
    output: np.ndarray  # float32 activated output, the layout of logits
    truth: np.ndarray  # float32, [batch, k, 5]
    active: np.ndarray  # bool, [batch, k]: rows Darknet reads
    anchors: np.ndarray  # float32, [total, 2], pixels
    mask: np.ndarray  # int64, [n]
    net_w: int
    net_h: int


@dataclass
class _Assignment:
    """Targets that Darknet's forward pass gives the entries of one layer.

    The entry grids have the shape [batch, n, h, w]. The trained arrays list the
    truths that the layer trains, in Darknet's order, and feed the statistics.
    """

    responsible: np.ndarray  # bool entry grid: objectness target 1
    no_object: np.ndarray  # bool entry grid: objectness target 0
    box_truth: np.ndarray  # int entry grid: truth row of the box target, -1 none
    class_target: np.ndarray  # bool, [batch, n, classes, h, w]
    trained_entry: tuple  # index arrays (batch, anchor in mask, j, i)
    trained_truth: np.ndarray  # truth row of each trained entry


def yolo_loss(
    logits,
    truth,
    *,
    anchors,
    mask,
    net_w,
    net_h,
    ignore_thresh=0.5,
    truth_thresh=1.0,
    max_boxes=90,
    xy_loss="bce",
):
    """Compute the YOLOv3 loss of one YOLO layer, its gradient and statistics.

    Parameters
    ----------
    logits : array_like
        Layer input, shape ``(batch, n * (5 + classes), h, w)`` with
        ``n = len(mask)``. Each anchor's block of channels is x, y, w, h,
        objectness, then one channel per class.
    truth : array_like
        Truth boxes, shape ``(batch, k, 5)``, rows ``(x, y, w, h, class)`` with
        centre coordinates and sizes normalised to the image. An image's list
        ends at its first row with ``x == 0``, after ``max_boxes`` rows, or at
        the last row, whichever comes first.
    anchors : array_like
        Sizes in pixels of all the network's anchors, flat
        ``(w0, h0, w1, h1, ...)``, Darknet's ``anchors`` cfg option.
    mask : array_like of int
        Indices into the anchors of this layer's ``n`` anchors, Darknet's
        ``mask`` cfg option.
    net_w, net_h : int
        Network input size in pixels.
    ignore_thresh : float, default 0.5
        A prediction whose best IoU with a truth exceeds it gets no objectness
        loss, unless it is responsible for a truth.
    truth_thresh : float, default 1.0
        A prediction whose best IoU with a truth exceeds it becomes responsible
        for that truth. Darknet's default 1.0 turns this off, because an IoU is
        at most 1 up to float32 rounding. Must not be negative.
    max_boxes : int, default 90
        Maximum number of truth rows read per image, Darknet's ``max`` option.
    xy_loss : {"bce", "mse"}, default "bce"
        Loss of the x, y offsets: binary cross-entropy (Darknet's gradient) or
        squared error on the logistic output (the YOLOv3 paper's text).

    Returns
    -------
    YoloLoss
        Total loss, gradient with respect to ``logits`` (float64), the loss and
        entry mask of each term in ``COMPONENTS``, and Darknet's statistics.

    Raises
    ------
    ValueError
        If an array has the wrong shape, ``mask`` indexes outside ``anchors``,
        ``xy_loss`` is not ``"bce"`` or ``"mse"``, or a scalar option is out of
        range or not a number. Also if a truth row that Darknet reads has a
        non-finite value or a class outside ``[0, classes)``, or if a truth
        that this layer trains has its centre outside the cell grid.

    Notes
    -----
    With ``s`` the logistic function and ``scale = 2 - w * h`` of the truth
    box, the terms are:

    - x, y of a responsible entry: ``scale * BCE(t, s(z))`` with ``t`` the
      truth centre's offset in the entry's cell (``"mse"``:
      ``scale / 2 * (t - s(z))**2``).
    - w, h of a responsible entry: ``scale / 2 * (t - z)**2`` with
      ``t = log(truth_w * net_w / anchor_w)``.
    - objectness: ``BCE(1, s(z))`` at responsible entries.
    - no_object: ``BCE(0, s(z))`` at the other entries whose best IoU with any
      truth is at most ``ignore_thresh``.
    - classes: ``BCE(target, s(z))`` summed over all classes of a responsible
      entry.

    BCE is evaluated from the logit, ``softplus(z) - t * z``, which keeps it
    finite for saturated logits and is minimal at ``s(z) = t`` for any target
    ``t``. An entry made responsible through ``truth_thresh`` gets the box
    target of a truth whose centre may lie in another cell, so its x, y target
    can fall outside ``[0, 1]``. Its BCE term is then still the one whose
    gradient is Darknet's delta, but it has no lower bound.

    Each truth is trained by the anchor, among all ``total`` anchors, whose
    shape fits it best, and only if that anchor is in ``mask``. When several
    truths fall on one entry, the box target comes from the last of them.
    The class targets are the union of their classes, because Darknet's
    ``delta_yolo_class`` sets only the new class once an entry's class deltas
    are written. It tests that with the class 0 delta, so when the float32
    class 0 output is exactly 0 or 1 that delta is zero and the next truth
    resets the targets to its own class. This is modelled too. An entry made
    responsible through ``truth_thresh`` counts as the first truth of that
    entry. Darknet's optional class ``map`` option is not modelled.

    The cell index, the box targets and ``scale`` are computed in float32 as
    Darknet computes them, then promoted. The predicted boxes behind the IoU
    thresholds come from the float32 logits through float32 logistic and
    exponential outputs and float32 IoU arithmetic, as in Darknet's
    ``get_yolo_box`` and ``box_iou``, so that both take the same side of a
    threshold. The loss itself uses the float64 logits.

    The statistics are averaged in float64 from the float32 outputs, so they
    can differ from Darknet's float32 sums in the last digits. ``0 / 0`` gives
    nan, as in Darknet. Darknet's printed cost, ``||delta||**2``, is the
    squared norm of ``gradient`` in the ``"bce"`` reading and is not a loss.
    """
    if xy_loss not in XY_LOSSES:
        raise ValueError(f"xy_loss must be 'bce' or 'mse', got {xy_loss!r}")
    _validate_thresholds(ignore_thresh, truth_thresh)
    layer = _validate_layer(logits, truth, anchors, mask, net_w, net_h, max_boxes)
    boxes = _prediction_boxes(layer)
    assignment = _assign_targets(layer, boxes, ignore_thresh, truth_thresh)

    gradient, components, masks = _loss_terms(layer, assignment, xy_loss)
    loss = float(sum(components.values()))

    stats = _statistics(layer, boxes, assignment)
    shape = np.shape(logits)
    masks = {name: entries.reshape(shape) for name, entries in masks.items()}
    return YoloLoss(loss, gradient.reshape(shape), components, masks, stats)


def loss_function(truth, **options):
    """Bind a truth array and options into a function of the logits alone.

    Parameters
    ----------
    truth : array_like
        Truth boxes, as for `yolo_loss`.
    **options
        Keyword arguments of `yolo_loss`: ``anchors``, ``mask``, ``net_w``,
        ``net_h`` and optionally ``ignore_thresh``, ``truth_thresh``,
        ``max_boxes``, ``xy_loss``.

    Returns
    -------
    callable
        ``f(logits) -> float``, the total loss of `yolo_loss`, ready for
        `numeric_gradient`.
    """

    def total_loss(logits):
        return yolo_loss(logits, truth, **options).loss

    return total_loss


def numeric_gradient(f, z, eps=1e-4):
    """Estimate the gradient of a scalar function by central differences.

    Parameters
    ----------
    f : callable
        Function of one array, returning a float. It receives a float64 copy
        of ``z`` with one element moved by ``eps``.
    z : array_like
        Point at which to differentiate, any shape.
    eps : float, default 1e-4
        Step, in the units of ``z``.

    Returns
    -------
    numpy.ndarray
        float64 array in the shape of ``z``: ``(f(z + eps) - f(z - eps))``
        divided by the step actually taken, one element at a time.

    Raises
    ------
    ValueError
        If ``eps`` is not positive and finite.
    """
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be positive and finite, got {eps!r}")
    point = np.array(z, dtype=np.float64)
    gradient = np.empty_like(point)
    flat = point.reshape(-1)

    for index in range(flat.size):
        centre = flat[index]
        upper = centre + eps
        lower = centre - eps

        flat[index] = upper
        f_upper = float(f(point.copy()))
        flat[index] = lower
        f_lower = float(f(point.copy()))
        flat[index] = centre

        # Divide by the rounded step, not 2 * eps, so that rounding of
        # centre + eps does not bias the estimate.
        gradient.flat[index] = (f_upper - f_lower) / (upper - lower)
    return gradient


def _validate_layer(logits, truth, anchors, mask, net_w, net_h, max_boxes):
    """Check the inputs and convert them to the dtypes Darknet stores them in."""
    if np.asarray(logits).dtype.kind not in "fiub":
        raise TypeError(
            f"logits must be real numbers, got dtype {np.asarray(logits).dtype}"
        )
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 4:
        raise ValueError(
            "logits must have shape (batch, n * (5 + classes), h, w), "
            f"got shape {logits.shape}"
        )

    mask = np.asarray(mask)
    if mask.ndim != 1 or mask.size == 0:
        raise ValueError(f"mask must be a non-empty 1-D sequence, got {mask!r}")
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"mask must contain integers, got dtype {mask.dtype}")
    mask = mask.astype(np.int64)

    anchors = np.asarray(anchors, dtype=np.float32)
    if anchors.ndim != 1 or anchors.size == 0 or anchors.size % 2:
        raise ValueError(
            "anchors must be a flat sequence (w0, h0, w1, h1, ...) of even "
            f"length, got shape {anchors.shape}"
        )
    if not np.all(np.isfinite(anchors) & (anchors > 0)):
        raise ValueError(f"anchors must be positive and finite, got {anchors}")
    anchors = anchors.reshape(-1, 2)
    total = len(anchors)
    if np.any((mask < 0) | (mask >= total)):
        raise ValueError(
            f"mask {mask.tolist()} indexes outside the {total} anchors. "
            f"Its entries must lie in [0, {total})"
        )

    batch, channels, h, w = logits.shape
    n = len(mask)
    if channels % n or channels // n < 6:
        raise ValueError(
            f"logits have {channels} channels, which is not n * (5 + classes) "
            f"for n = len(mask) = {n} anchors and at least one class"
        )
    classes = channels // n - 5

    for name, size in (("net_w", net_w), ("net_h", net_h)):
        if not (isinstance(size, (int, np.integer)) and size > 0):
            raise ValueError(f"{name} must be a positive integer, got {size!r}")
    if not (isinstance(max_boxes, (int, np.integer)) and max_boxes >= 0):
        raise ValueError(f"max_boxes must be a non-negative integer, got {max_boxes!r}")

    truth = np.asarray(truth, dtype=np.float32)
    if truth.ndim != 3 or truth.shape[0] != batch or truth.shape[2] != 5:
        raise ValueError(
            f"truth must have shape ({batch}, k, 5) to match the logits' batch "
            f"of {batch}, got shape {truth.shape}"
        )
    active = _active_truths(truth, max_boxes)
    _validate_truth(truth, active, classes)

    logits = logits.reshape(batch, n, 5 + classes, h, w)
    output = _activate(logits.astype(np.float32))
    return _Layer(logits, output, truth, active, anchors, mask, int(net_w), int(net_h))


def _validate_thresholds(ignore_thresh, truth_thresh):
    """Reject thresholds that are not real numbers, or a negative truth_thresh.

    Below 0, truth_thresh would make every prediction responsible even for an
    image without truths, and Darknet would then read the row that ends the list.
    """
    thresholds = {"ignore_thresh": ignore_thresh, "truth_thresh": truth_thresh}
    for name, value in thresholds.items():
        real = isinstance(value, (int, float, np.integer, np.floating))
        if not real or np.isnan(value):
            raise ValueError(f"{name} must be a real number, got {value!r}")
    if truth_thresh < 0:
        raise ValueError(
            f"truth_thresh must not be negative, got {truth_thresh!r}. "
            "Use 1.0 to turn it off"
        )


def _active_truths(truth, max_boxes):
    """Mark the truth rows that Darknet reads: up to max_boxes, before x == 0."""
    within_max = np.arange(truth.shape[1]) < max_boxes
    before_end = np.cumprod(truth[:, :, 0] != 0, axis=1).astype(bool)
    return before_end & within_max


def _validate_truth(truth, active, classes):
    """Reject read truth rows that make Darknet index out of bounds."""
    if not np.all(np.isfinite(truth[active])):
        batch, row = np.argwhere(active & ~np.isfinite(truth).all(axis=2))[0]
        raise ValueError(
            f"truth row {row} of image {batch} has a non-finite value: "
            f"{truth[batch, row].tolist()}"
        )

    # Darknet converts the class with a C cast, which truncates toward zero,
    # so anything in (-1, classes) names a valid class.
    label = truth[:, :, 4]
    invalid = active & ~((label > -1) & (label < classes))
    if np.any(invalid):
        batch, row = np.argwhere(invalid)[0]
        raise ValueError(
            f"truth row {row} of image {batch} has class {label[batch, row]}, "
            f"outside [0, {classes}) for a layer with {classes} classes"
        )


def _activate(z32):
    """Apply Darknet's logistic to x, y, objectness and classes, in float32."""
    output = z32.copy()

    # logistic_activate evaluates 1 / (1 + exp(-x)) in double and stores float.
    with np.errstate(over="ignore"):
        logistic = 1.0 / (1.0 + np.exp(-z32.astype(np.float64)))
    logistic = logistic.astype(np.float32)

    output[:, :, [X, Y]] = logistic[:, :, [X, Y]]
    output[:, :, OBJECTNESS:] = logistic[:, :, OBJECTNESS:]
    return output


def _prediction_boxes(layer):
    """Compute each entry's predicted box in float32, as get_yolo_box does.

    Returns x, y, w, h arrays of shape [batch, n, h, w], normalised to the image.
    """
    _, _, _, h, w = layer.output.shape
    column = np.arange(w, dtype=np.float32)
    row = np.arange(h, dtype=np.float32)[:, None]
    x = (column + layer.output[:, :, X]) / np.float32(w)
    y = (row + layer.output[:, :, Y]) / np.float32(h)

    # Darknet multiplies exp() by the anchor and divides by the network size in
    # double, then stores the float.
    anchor = layer.anchors[layer.mask].astype(np.float64)[None, :, :, None, None]
    net_size = np.array([layer.net_w, layer.net_h], np.float64)[:, None, None]
    raw = layer.output[:, :, [W, H]].astype(np.float64)
    with np.errstate(over="ignore"):
        size = np.exp(raw) * anchor / net_size
    size = size.astype(np.float32)
    return x, y, size[:, :, 0], size[:, :, 1]


def _overlap(center1, size1, center2, size2):
    """Compute box.c's overlap of two intervals in float32, possibly negative."""
    two = np.float32(2)
    low1 = center1 - size1 / two
    low2 = center2 - size2 / two
    high1 = center1 + size1 / two
    high2 = center2 + size2 / two

    # np.where reproduces C's ternaries, which differ from np.maximum on nan.
    left = np.where(low1 > low2, low1, low2)
    right = np.where(high1 < high2, high1, high2)
    return right - left


def _box_iou(a, b):
    """Compute box.c's IoU of (x, y, w, h) float32 boxes, broadcasting."""
    overlap_w = _overlap(a[0], a[2], b[0], b[2])
    overlap_h = _overlap(a[1], a[3], b[1], b[3])
    intersection = np.where(
        (overlap_w < 0) | (overlap_h < 0), np.float32(0), overlap_w * overlap_h
    )
    union = a[2] * a[3] + b[2] * b[3] - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersection / union


def _first_max(iou, axis):
    """Return the maximum IoU and its first index, as Darknet's strict > scan.

    Darknet starts the scan at 0 and keeps a value only when it is greater, so
    nan and non-positive IoUs never win, and the index is 0 when no IoU is positive.
    """
    cleaned = np.where(iou > 0, iou, np.float32(0))
    if cleaned.shape[axis] == 0:
        shape = np.delete(cleaned.shape, axis)
        return np.zeros(shape, np.float32), np.zeros(shape, np.int64)
    best = np.argmax(cleaned, axis=axis)
    best_iou = np.take_along_axis(cleaned, np.expand_dims(best, axis), axis)
    return best_iou.squeeze(axis), best


def _best_truth_per_prediction(layer, boxes):
    """Find each entry's best IoU over its image's truths, and that truth."""
    best_iou = np.zeros(boxes[0].shape, np.float32)
    best_truth = np.zeros(boxes[0].shape, np.int64)

    # One image at a time keeps the [n, h, w, k] IoU array small.
    for image in range(len(layer.truth)):
        rows = layer.truth[image]
        truth_box = tuple(rows[:, c] for c in range(4))
        pred_box = tuple(coordinate[image][..., None] for coordinate in boxes)
        iou = _box_iou(pred_box, truth_box)
        iou = np.where(layer.active[image], iou, np.float32(0))
        best_iou[image], best_truth[image] = _first_max(iou, axis=-1)
    return best_iou, best_truth


def _best_anchor_per_truth(layer):
    """Find the anchor, among all anchors, whose shape best fits each truth.

    Both boxes are centred at 0, so the IoU compares shapes only.
    """
    anchor_w = layer.anchors[:, 0] / np.float32(layer.net_w)
    anchor_h = layer.anchors[:, 1] / np.float32(layer.net_h)
    zero = np.float32(0)
    anchor_box = (zero, zero, anchor_w, anchor_h)
    truth_box = (zero, zero, layer.truth[..., 2, None], layer.truth[..., 3, None])
    _, best_anchor = _first_max(_box_iou(anchor_box, truth_box), axis=-1)
    return best_anchor


def _truth_cells(layer):
    """Compute each truth's cell (i, j) as Darknet does, and whether it is valid.

    Darknet multiplies the float coordinate by the int grid size in float32 and
    truncates toward zero, so float64 arithmetic can pick a different cell.
    """
    _, _, _, h, w = layer.output.shape
    cell_x = layer.truth[:, :, 0] * np.float32(w)
    cell_y = layer.truth[:, :, 1] * np.float32(h)
    valid = (cell_x > -1) & (cell_x < w) & (cell_y > -1) & (cell_y < h)
    i = np.trunc(np.where(valid, cell_x, 0)).astype(np.int64)
    j = np.trunc(np.where(valid, cell_y, 0)).astype(np.int64)
    return i, j, valid


def _trained_truths(layer):
    """List the truths that this layer trains, in Darknet's order.

    A truth trains the layer only if its best anchor among all anchors is in
    mask, and then at the first position of mask that contains it. Returns index
    arrays (batch, anchor, row, column, truth), anchor being the mask position.
    """
    best_anchor = _best_anchor_per_truth(layer)
    in_mask = best_anchor[..., None] == layer.mask
    trained = layer.active & in_mask.any(axis=-1)
    batch, truth = np.nonzero(trained)
    anchor = np.argmax(in_mask, axis=-1)[trained]

    i, j, valid_cell = _truth_cells(layer)
    if not np.all(valid_cell[trained]):
        image, row = np.argwhere(trained & ~valid_cell)[0]
        _, _, _, h, w = layer.output.shape
        raise ValueError(
            f"truth row {row} of image {image} has its centre at "
            f"({layer.truth[image, row, 0]}, {layer.truth[image, row, 1]}), outside "
            f"the {w}x{h} cell grid, so Darknet would write its delta elsewhere"
        )
    return batch, anchor, j[trained], i[trained], truth


def _assign_targets(layer, boxes, ignore_thresh, truth_thresh):
    """Find the entries that Darknet trains and the target of each."""
    batch, n, channels, h, w = layer.output.shape
    classes = channels - CLASSES

    # Darknet compares float IoUs with float thresholds.
    best_iou, best_truth = _best_truth_per_prediction(layer, boxes)
    ignored = best_iou > np.float32(ignore_thresh)
    matched = best_iou > np.float32(truth_thresh)
    matched_events = (*np.nonzero(matched), best_truth[matched])
    trained_events = _trained_truths(layer)

    # An event is one truth written to one entry, as (batch, anchor, row,
    # column, truth). Darknet visits the truth_thresh matches before the truths
    # of the same image, so they come first in each entry's order of events.
    events = [np.concatenate(pair) for pair in zip(matched_events, trained_events)]
    event_entry = tuple(events[:4])
    event_truth = events[4]
    event_class = layer.truth[event_entry[0], event_truth, 4].astype(np.int64)

    responsible = np.zeros((batch, n, h, w), bool)
    responsible[event_entry] = True
    no_object = ~responsible & ~ignored

    # Each entry's box target comes from its last event.
    key = np.ravel_multi_index(event_entry, responsible.shape)
    _, last_from_end = np.unique(key[::-1], return_index=True)
    last = len(key) - 1 - last_from_end
    box_truth = np.full((batch, n, h, w), -1, np.int64)
    box_truth[tuple(index[last] for index in event_entry)] = event_truth[last]

    class_target = np.zeros((batch, n, classes, h, w), bool)
    event_batch, event_anchor, event_row, event_column = event_entry
    class_target[event_batch, event_anchor, event_class, event_row, event_column] = 1
    _apply_class_resets(layer, class_target, key, event_entry, event_class)

    return _Assignment(
        responsible,
        no_object,
        box_truth,
        class_target,
        trained_entry=trained_events[:4],
        trained_truth=trained_events[4],
    )


def _apply_class_resets(layer, class_target, key, event_entry, event_class):
    """Redo the class targets of entries where Darknet resets earlier classes.

    delta_yolo_class writes a one-hot target unless the entry's delta at class 0
    is non-zero, and then adds only the new class. That delta is the float32
    ``target - output``, which is zero at a written entry only when the class 0
    output is exactly 0 or 1. Elsewhere the targets are the union of classes.

    NOTE: an output between 0 and the smallest normal float32 (logits below
    about -87) is 0 only in a process with flush-to-zero on, such as one linked
    with -ffast-math. This model keeps subnormal outputs, as numpy does.
    """
    _, first, count = np.unique(key, return_index=True, return_counts=True)
    repeated = first[count > 1]
    class0_output = layer.output[:, :, CLASSES][event_entry]
    saturated = repeated[np.isin(class0_output[repeated], (0, 1))]

    for event in saturated:
        same_entry = np.flatnonzero(key == key[event])
        b, a, j, i = (index[event] for index in event_entry)
        output0 = class0_output[event]
        target = np.zeros(class_target.shape[2], bool)
        delta0 = np.float32(0)
        for label in event_class[same_entry]:
            if delta0 == 0:
                target[:] = False
            target[label] = True
            delta0 = np.float32(target[0]) - output0
        class_target[b, a, :, j, i] = target


def _box_targets(layer, assignment):
    """Compute the x, y, w, h targets and scale of each responsible entry.

    Returns float64 entry grids (zero at other entries) of the values that
    delta_yolo_box computes in float32 from the truth and the entry's cell and
    anchor.
    """
    batch, anchor, row, column = np.nonzero(assignment.responsible)
    truth = layer.truth[batch, assignment.box_truth[batch, anchor, row, column]]
    _, _, _, h, w = layer.output.shape
    anchor_size = layer.anchors[layer.mask[anchor]]
    net_size = np.array([layer.net_w, layer.net_h], np.float32)

    offset_x = truth[:, 0] * np.float32(w) - column.astype(np.float32)
    offset_y = truth[:, 1] * np.float32(h) - row.astype(np.float32)
    # Darknet takes log() in double of the float ratio, then stores a float.
    ratio = truth[:, 2:4] * net_size / anchor_size
    log_size = np.log(ratio.astype(np.float64)).astype(np.float32)
    scale = np.float32(2) - truth[:, 2] * truth[:, 3]

    grids = []
    for values in (offset_x, offset_y, log_size[:, 0], log_size[:, 1], scale):
        grid = np.zeros(assignment.responsible.shape)
        grid[batch, anchor, row, column] = values
        grids.append(grid)
    return grids


def _softplus(z):
    return np.logaddexp(0.0, z)


def _sigmoid(z):
    # exp(-softplus(-z)) keeps full relative precision at both tails.
    return np.exp(-_softplus(-z))


def _loss_terms(layer, assignment, xy_loss):
    """Evaluate each component's loss and the gradient with respect to logits.

    Returns the gradient and the masks in the [batch, n, 5 + classes, h, w]
    layout, and the component losses.
    """
    z = layer.logits
    s = _sigmoid(z)
    gradient = np.zeros_like(z)
    masks = {name: np.zeros(z.shape, bool) for name in COMPONENTS}
    components = {}
    responsible = assignment.responsible
    offset_x, offset_y, log_w, log_h, scale = _box_targets(layer, assignment)

    # x, y: BCE(t, s(z)) = softplus(z) - t * z, gradient s - t. The MSE reading
    # scale / 2 * (t - s)**2 has the same gradient times ds/dz = s * (1 - s).
    for name, channel, target in (("x", X, offset_x), ("y", Y, offset_y)):
        zc = z[:, :, channel]
        sc = s[:, :, channel]
        if xy_loss == "bce":
            term = scale * (_softplus(zc) - target * zc)
            derivative = scale * (sc - target)
        else:
            term = scale / 2 * (target - sc) ** 2
            derivative = scale * (sc - target) * (sc * (1 - sc))
        components[name] = float(np.sum(term[responsible]))
        gradient[:, :, channel] = np.where(responsible, derivative, 0)
        masks[name][:, :, channel] = responsible

    # w, h: squared error on the raw logit, with no activation between.
    for name, channel, target in (("w", W, log_w), ("h", H, log_h)):
        zc = z[:, :, channel]
        term = scale / 2 * (target - zc) ** 2
        components[name] = float(np.sum(term[responsible]))
        gradient[:, :, channel] = np.where(responsible, scale * (zc - target), 0)
        masks[name][:, :, channel] = responsible

    # Objectness: BCE(1, s(z)) = softplus(-z) at responsible entries,
    # BCE(0, s(z)) = softplus(z) at the entries trained as no object.
    z_object = z[:, :, OBJECTNESS]
    s_object = s[:, :, OBJECTNESS]
    no_object = assignment.no_object
    components["objectness"] = float(np.sum(_softplus(-z_object)[responsible]))
    components["no_object"] = float(np.sum(_softplus(z_object)[no_object]))
    gradient[:, :, OBJECTNESS] = np.where(
        responsible, s_object - 1, np.where(no_object, s_object, 0)
    )
    masks["objectness"][:, :, OBJECTNESS] = responsible
    masks["no_object"][:, :, OBJECTNESS] = no_object

    # Classes: per-class BCE against the target set, over all classes.
    z_class = z[:, :, CLASSES:]
    target = assignment.class_target
    class_responsible = np.broadcast_to(responsible[:, :, None], target.shape)
    term = _softplus(z_class) - target * z_class
    components["classes"] = float(np.sum(term[class_responsible]))
    gradient[:, :, CLASSES:] = np.where(
        class_responsible, s[:, :, CLASSES:] - target, 0
    )
    masks["classes"][:, :, CLASSES:] = class_responsible

    components = {name: components[name] for name in COMPONENTS}
    return gradient, components, masks


def _ratio(numerator, denominator):
    """Divide as C does, returning nan for 0 / 0 and inf for x / 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(numerator) / np.float64(denominator))


def _statistics(layer, boxes, assignment):
    """Compute the statistics of Darknet's "Region ... Avg IOU" line.

    Darknet counts one sample per truth the layer trains, even when several
    truths share an entry, and reads the outputs before any update.
    """
    entry = assignment.trained_entry
    truth = layer.truth[entry[0], assignment.trained_truth]
    pred_box = tuple(coordinate[entry] for coordinate in boxes)
    truth_box = tuple(truth[:, c] for c in range(4))
    iou = _box_iou(pred_box, truth_box).astype(np.float64)

    batch, anchor, row, column = entry
    label = truth[:, 4].astype(np.int64)
    class_output = layer.output[batch, anchor, CLASSES + label, row, column]
    object_output = layer.output[batch, anchor, OBJECTNESS, row, column]
    all_objects = layer.output[:, :, OBJECTNESS]
    count = len(iou)

    return {
        "avg_iou": _ratio(np.sum(iou), count),
        "class": _ratio(np.sum(class_output, dtype=np.float64), count),
        "obj": _ratio(np.sum(object_output, dtype=np.float64), count),
        "no_obj": _ratio(np.sum(all_objects, dtype=np.float64), all_objects.size),
        "recall50": _ratio(np.sum(iou > 0.5), count),
        "recall75": _ratio(np.sum(iou > 0.75), count),
        "count": count,
    }
