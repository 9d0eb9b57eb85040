"""A Python handle on upstream Darknet's YOLO layer.

``YoloLayer.forward`` checks its inputs, copies them into the buffers
that the compiled upstream code reads, and runs ``forward_yolo_layer``
with the GIL released.  Every buffer belongs to one call, so a layer may
be used from several threads at once.
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np

from pydarknet_loss import cuda

try:
    from pydarknet_loss import _yolo_cpu
except ImportError as error:
    raise ImportError(
        f"pydarknet_loss's compiled module is missing next to {__file__}: "
        "install the package with 'pip install .' and import it from "
        "outside the source folder"
    ) from error

TRUTH_ROWS = _yolo_cpu.TRUTH_ROWS
TRUTH_SIZE = _yolo_cpu.TRUTH_SIZE

# upstream indexes every buffer with C int
INT_MAX = 2**31 - 1


class TruthWarning(UserWarning):
    """Truth rows that upstream Darknet would silently ignore."""


@dataclass(frozen=True)
class YoloStats:
    """The values of Darknet's ``Region ...`` line for one forward pass.

    Averages over no responsible truth are NaN, as Darknet prints them.
    """

    region: int
    avg_iou: float
    avg_class: float
    avg_obj: float
    avg_no_obj: float
    recall50: float
    recall75: float
    count: int


@dataclass(frozen=True)
class YoloResult:
    """The arrays and values of one forward pass of the layer.

    ``delta`` is Darknet's delta: minus the gradient of the loss with
    respect to the logits.  ``cost`` is ``sum(delta**2)`` in float32, as
    Darknet reports it, not the value of any loss.  ``delta``, ``cost``
    and ``stats`` are None in inference mode.
    """

    output: np.ndarray
    delta: np.ndarray = None
    cost: float = None
    stats: YoloStats = None


def _as_anchor_array(anchors):
    array = np.asarray(anchors, dtype=np.float64)
    if array.ndim == 2 and array.shape[1:] == (2,):
        array = array.reshape(-1)
    if array.ndim != 1 or array.size == 0 or array.size % 2:
        raise ValueError(
            "anchors must be (w, h) pairs: a flat list of even length or "
            f"shape [total, 2], got shape {np.shape(anchors)}"
        )
    # checked in float32, the type upstream reads: 1e300 would become inf
    # and 1e-300 zero
    with np.errstate(over="ignore", under="ignore"):
        array = array.astype(np.float32)
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"anchors must be finite and positive in float32, got {array}")
    return array


def _as_mask_array(mask, total):
    array = np.asarray(mask)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"mask must be a non-empty list of anchor indices, got {mask}")
    if not np.issubdtype(array.dtype, np.integer):
        rounded = np.asarray(array, dtype=np.float64)
        if not np.all(np.isfinite(rounded)) or np.any(rounded != np.round(rounded)):
            raise ValueError(f"mask must hold integer anchor indices, got {mask}")
        # compared before the cast to int64, which would wrap 1e300
        if np.any(rounded < 0) or np.any(rounded >= total):
            raise ValueError(f"mask {mask} indexes outside the {total} anchors")
    array = array.astype(np.int64)
    if np.any(array < 0) or np.any(array >= total):
        raise ValueError(f"mask {array.tolist()} indexes outside the {total} anchors")
    return array.astype(np.intc)


def _positive_int(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not 0 < value <= INT_MAX:
        raise ValueError(f"{name} must be a positive int32, got {value}")
    return int(value)


def _int32(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not -INT_MAX - 1 <= value <= INT_MAX:
        raise ValueError(f"{name} must fit in int32, got {value}")
    return int(value)


def _threshold(name, value):
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    return value


class YoloLayer:
    """Upstream Darknet's ``[yolo]`` layer (pjreddie/darknet, CPU build).

    Parameters
    ----------
    classes : int
        Number of classes.
    anchors : array_like
        All ``total`` anchors of the network as (w, h) pairs in network
        pixels, flat as in a cfg file or shaped ``[total, 2]``.
    mask : array_like of int, optional
        Indices of the anchors this layer predicts with.  Default: all.
    net_w, net_h : int
        Network input width and height in pixels.
    ignore_thresh : float, optional
        Predictions whose best IoU with a truth exceeds this get no
        no-object gradient.  Darknet's default is 0.5.
    truth_thresh : float, optional
        Predictions whose best IoU exceeds this are trained toward that
        truth as if responsible.  Darknet's default, 1, turns this off.
    max_boxes : int, optional
        Truth rows read per image (the cfg's ``max``), at most 90.
    index : int, optional
        Layer index that Darknet reports as ``Region %d``.

    Notes
    -----
    Upstream ``make_yolo_layer`` fixes the truth buffer at 90 rows per
    image (``l.truths``). A larger ``max_boxes`` would read the next
    image's rows, so it is rejected here.
    """

    def __init__(
        self,
        *,
        classes,
        anchors,
        net_w,
        net_h,
        mask=None,
        ignore_thresh=0.5,
        truth_thresh=1.0,
        max_boxes=TRUTH_ROWS,
        index=0,
    ):
        self.classes = _positive_int("classes", classes)
        self.anchors = _as_anchor_array(anchors)
        total = self.anchors.size // 2
        if mask is None:
            mask = range(total)
        self.mask = _as_mask_array(mask, total)
        self.net_w = _positive_int("net_w", net_w)
        self.net_h = _positive_int("net_h", net_h)
        self.ignore_thresh = _threshold("ignore_thresh", ignore_thresh)
        self.truth_thresh = _threshold("truth_thresh", truth_thresh)
        if self.truth_thresh < 0:
            # every prediction's best IoU, 0 without truths, would exceed
            # it, and upstream would train toward the row that ends the list
            raise ValueError(f"truth_thresh must be >= 0, got {self.truth_thresh}")
        self.max_boxes = _positive_int("max_boxes", max_boxes)
        if self.max_boxes > TRUTH_ROWS:
            raise ValueError(
                f"max_boxes={self.max_boxes} exceeds the {TRUTH_ROWS} truth "
                "rows per image that upstream make_yolo_layer allocates"
            )
        self.index = _int32("index", index)

    @classmethod
    def from_options(cls, options):
        """Make a layer from a ``pydarknet_loss.cfg.YoloOptions``."""
        return cls(
            classes=options.classes,
            anchors=options.anchors,
            mask=options.mask,
            net_w=options.net_w,
            net_h=options.net_h,
            ignore_thresh=options.ignore_thresh,
            truth_thresh=options.truth_thresh,
            max_boxes=options.max_boxes,
            index=options.index,
        )

    @property
    def n(self):
        """Anchors of this layer: the length of ``mask``."""
        return self.mask.size

    @property
    def total(self):
        """Anchors of the whole network."""
        return self.anchors.size // 2

    @property
    def channels(self):
        """Input channels the layer expects: ``n * (5 + classes)``."""
        return self.n * (5 + self.classes)

    def __repr__(self):
        return (
            f"YoloLayer(classes={self.classes}, mask={self.mask.tolist()}, "
            f"total={self.total}, net_w={self.net_w}, net_h={self.net_h}, "
            f"ignore_thresh={self.ignore_thresh}, "
            f"truth_thresh={self.truth_thresh}, max_boxes={self.max_boxes})"
        )

    def forward(self, logits, truth=None, device="cpu", out=None):
        """Run upstream ``forward_yolo_layer`` on a batch.

        Parameters
        ----------
        logits : array_like, shape [batch, n*(5+classes), h, w]
            The layer's input.  Converted to C-contiguous float32; real
            values of other dtypes are cast, complex or object arrays are
            rejected.  Values beyond float32's range become infinite, with
            numpy's ``RuntimeWarning``.  NaN and infinite logits are not
            rejected: upstream propagates them into the output, delta, cost
            and statistics.
        truth : array_like, shape [batch, k, 5], optional
            Rows ``(x, y, w, h, class)`` normalised to the image.  An
            image's list ends at its first row with ``x == 0``, as in
            Darknet; rows after it are ignored with a ``TruthWarning``.
            Without truth the layer runs in inference mode.
        device : {"cpu", "cuda"}, optional
            "cuda" runs upstream ``forward_yolo_layer_gpu``: the logistic
            activation in upstream's CUDA kernel, then the loss on the CPU.
            With "cuda", ``logits`` may also be a float32 C-contiguous GPU
            array (any object with ``__cuda_array_interface__``, such as a
            CuPy array or a PyTorch CUDA tensor), read in place.
        out : tuple of two numpy.ndarray, optional
            ``(output, delta)`` buffers to write into instead of new
            arrays: float32, C-contiguous, writable, of the logits' shape,
            sharing no memory with each other or with the inputs.  Reusing
            them across calls saves an allocation and its page faults.  In
            inference mode upstream still clears the delta buffer.

        Returns
        -------
        YoloResult
            ``output`` (activated), and in training mode ``delta``,
            ``cost`` and ``stats``.

        Raises
        ------
        ValueError
            On a shape that does not match the layer, or truth that
            upstream would index out of bounds with: a centre outside
            ``[0, 1)`` (x must also be > 0), a non-positive size, a class
            id that is not an integer in ``[0, classes)``, a non-finite
            value, or more than ``max_boxes`` rows.
        TypeError
            On logits or truth that cannot be cast to float32 safely.
        pydarknet_loss.cuda.CudaUnavailableError
            With ``device="cuda"`` when the package was built without CUDA,
            or, as its subclass ``NoCudaDeviceError``, when no device is
            found.

        Notes
        -----
        The gradient of Darknet's loss with respect to ``logits`` is
        ``-delta``.  For x and y, that loss is binary cross-entropy on
        the sigmoid, not the squared error the YOLOv3 paper names.
        Inputs are never modified.  On "cuda" the activated output differs
        from the CPU's by a few float32 ulps, because the device's ``expf``
        rounds differently from the host's.
        """
        if device == "cuda" or cuda.is_device_array(logits):
            return self._forward_cuda(logits, truth, device, out)
        if device != "cpu":
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")

        logits = self._check_logits(logits)
        batch, _, h, w = logits.shape
        inputs = {"logits": logits, "truth": truth}
        output, delta = _output_buffers(logits.shape, out, inputs)

        padded = None
        if truth is not None:
            padded = self._check_truth(truth, batch, h, w)

        options = self._module_options(output, delta)
        cost, stats = _yolo_cpu.forward(logits, padded, *options)
        return _result(output, delta, cost, stats)

    def _forward_cuda(self, logits, truth, device, out):
        """Run upstream ``forward_yolo_layer_gpu`` on host or GPU logits."""
        if device != "cuda":
            raise TypeError(
                "logits lie in GPU memory (__cuda_array_interface__): pass "
                "device='cuda', or copy them to the host for device='cpu'"
            )
        module = cuda.load_module()

        pointer = None
        if cuda.is_device_array(logits):
            pointer, shape = cuda.device_logits(logits, self.channels)
        else:
            logits = self._check_logits(logits)
            shape = logits.shape
        batch, _, h, w = shape
        inputs = {"truth": truth} if pointer else {"logits": logits, "truth": truth}
        output, delta = _output_buffers(shape, out, inputs)

        padded = None
        if truth is not None:
            padded = self._check_truth(truth, batch, h, w)

        options = self._module_options(output, delta)
        if pointer is None:
            cost, stats = module.forward(logits, padded, *options)
        else:
            cost, stats = module.forward_device(pointer, shape, padded, *options)
        return _result(output, delta, cost, stats)

    def _module_options(self, output, delta):
        """Return the arguments after logits and truth of a module's forward."""
        return (
            self.mask,
            self.anchors,
            output,
            delta,
            self.classes,
            self.net_w,
            self.net_h,
            self.ignore_thresh,
            self.truth_thresh,
            self.max_boxes,
            self.index,
        )

    def _check_logits(self, logits):
        array = np.asarray(logits)
        if array.dtype.kind not in "fiub":
            raise TypeError(f"logits must be real numbers, got dtype {array.dtype}")
        if array.ndim != 4:
            raise ValueError(
                f"logits must be [batch, n*(5+classes), h, w], got shape {array.shape}"
            )
        batch, channels, h, w = array.shape
        if channels != self.channels:
            raise ValueError(
                f"logits have {channels} channels but the layer expects "
                f"{self.channels} = {self.n} anchors * (5 + {self.classes} classes)"
            )
        if min(batch, h, w) < 1:
            raise ValueError(f"logits must not be empty, got shape {array.shape}")
        if array.size > INT_MAX:
            raise ValueError(
                f"logits hold {array.size} values; upstream indexes with C int, "
                f"so at most {INT_MAX} fit"
            )
        return np.ascontiguousarray(array, dtype=np.float32)

    def _check_truth(self, truth, batch, h, w):
        """Return truth as a [batch, 90, 5] float32 buffer, zero-padded."""
        array = checked_truth(
            truth, batch, h, w, self.classes, self.max_boxes, (TRUTH_SIZE,)
        )
        padded = np.zeros((batch, TRUTH_ROWS, TRUTH_SIZE), dtype=np.float32)
        padded[:, : array.shape[1]] = array
        return padded


def checked_truth(truth, batch, h, w, classes, max_boxes, row_sizes):
    """Return truth as float32 once every value upstream reads is checked.

    Rows hold ``row_sizes`` values (5, or 6 for forks with a track id);
    only the first five are checked.  Rows that Darknet would skip, after
    an image's first ``x == 0`` row, raise a ``TruthWarning``.
    """
    array = np.asarray(truth)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"truth must be real numbers, got dtype {array.dtype}")
    if array.ndim != 3 or array.shape[2] not in row_sizes or array.shape[0] != batch:
        sizes = " or ".join(map(str, row_sizes))
        raise ValueError(
            f"truth must be [batch={batch}, k, {sizes}] rows (x, y, w, h, class"
            f"{', track id' if len(row_sizes) > 1 else ''}), got shape {array.shape}"
        )
    k = array.shape[1]
    if k > max_boxes:
        raise ValueError(
            f"truth has {k} rows per image but the layer reads at most "
            f"max_boxes={max_boxes}"
        )
    given = array
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        image, row = np.argwhere(~np.isfinite(array).all(axis=2))[0]
        raise ValueError(f"truth[{image}, {row}] is not finite: {array[image, row]}")

    # An x too small for float32 becomes 0, which ends the list in Darknet.
    underflow = (given[:, :, 0] != 0) & (array[:, :, 0] == 0)
    if underflow.any():
        image, row = np.argwhere(underflow)[0]
        raise ValueError(
            f"truth[{image}, {row}] has x = {given[image, row, 0]}, which is 0 "
            "in float32 and would end the image's truth list"
        )

    active = _active_rows(array)
    _check_boxes(array[:, :, :TRUTH_SIZE], active, h, w, classes)

    skipped = np.argwhere((array[:, :, 0] != 0) & ~active)
    if skipped.size:
        image, row = skipped[0]
        warnings.warn(
            f"{len(skipped)} truth rows follow a row with x == 0 and are "
            f"ignored by Darknet, the first at truth[{image}, {row}]",
            TruthWarning,
            stacklevel=4,
        )
    return array


def _result(output, delta, cost, stats):
    """Wrap a module's return values; ``cost`` is None in inference mode."""
    if cost is None:
        return YoloResult(output=output)
    return YoloResult(
        output=output, delta=delta, cost=float(cost), stats=YoloStats(*stats)
    )


def _output_buffers(shape, out, inputs):
    """Return (output, delta) buffers: new ones, or ``out`` once checked.

    ``inputs`` maps names to the caller's arrays, which ``out`` must not
    overlap.
    """
    if out is None:
        return np.empty(shape, dtype=np.float32), np.empty(shape, dtype=np.float32)

    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError("out must be a tuple (output, delta) of numpy arrays")
    for name, array in zip(("output", "delta"), out):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"out {name} must be a numpy array, got {type(array)}")
        if array.dtype != np.float32 or tuple(array.shape) != tuple(shape):
            raise ValueError(
                f"out {name} must be float32 of shape {tuple(shape)}, "
                f"got {array.dtype} of shape {array.shape}"
            )
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise ValueError(f"out {name} must be C-contiguous and writable")
        for input_name, given in inputs.items():
            if isinstance(given, np.ndarray) and np.shares_memory(array, given):
                raise ValueError(f"out {name} shares memory with {input_name}")
    if np.shares_memory(out[0], out[1]):
        raise ValueError("out output and delta share memory")
    return out


def _active_rows(truth):
    """Mark the rows upstream reads: those before an image's first x == 0."""
    ended = np.cumsum(truth[:, :, 0] == 0, axis=1) > 0
    return ~ended


def _check_boxes(truth, active, h, w, classes):
    """Raise ValueError on an active row upstream would mis-index with."""
    x, y, bw, bh, cls = (truth[:, :, i] for i in range(TRUTH_SIZE))

    # upstream computes the cell as (int)(x * l.w) in float32
    i = np.trunc(x * np.float32(w))
    j = np.trunc(y * np.float32(h))
    problems = (
        ("x must be in (0, 1) and map to a cell", (x <= 0) | (i >= w)),
        ("y must be in [0, 1) and map to a cell", (y < 0) | (j >= h)),
        ("w must be positive", bw <= 0),
        ("h must be positive", bh <= 0),
        (
            f"class must be an integer in [0, {classes})",
            (cls != np.trunc(cls)) | (cls < 0) | (cls >= classes),
        ),
    )
    for message, bad in problems:
        bad = bad & active
        if bad.any():
            image, row = np.argwhere(bad)[0]
            raise ValueError(
                f"truth[{image}, {row}] = {truth[image, row].tolist()}: {message}"
            )
