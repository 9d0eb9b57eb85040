"""Load named backends and run their YOLO layer with the reference checks.

A backend is either ``"reference"``, the package's own build of
pjreddie/darknet (:class:`pydarknet_loss.YoloLayer`), or a shared library
built from a fork's tree by :func:`pydarknet_loss.forks.build_backend`.
Fork libraries are loaded with ctypes, which releases the GIL during the
call and keeps each library's symbols local, so any number of backends
run side by side in one process.

Every backend's layer goes through the reference layer's input checks,
so a fork's code never receives truth that would make it index out of
bounds, run a shell command or abort.
"""

import ctypes
import math
from pathlib import Path

import numpy as np

from pydarknet_loss import forks
from pydarknet_loss.layer import (
    TRUTH_ROWS,
    TruthWarning,
    YoloLayer,
    YoloResult,
    YoloStats,
    checked_truth,
)

REFERENCE = "reference"

# Options of the reference layer's constructor that a cfg [yolo] section
# sets; the structural ones (classes, num, mask, anchors, max) are
# handled separately.
REFERENCE_OPTIONS = {
    "ignore_thresh": 0.5,
    "truth_thresh": 1.0,
    "jitter": 0.2,
    "random": 0.0,
}

# Keys of a [yolo] section that are the layer's shape, not options.
STRUCTURAL_KEYS = ("classes", "num", "mask", "anchors", "max")


class _Params(ctypes.Structure):
    # pdl_params in darknet_src/glue/pdl_glue.h, field for field.
    _fields_ = [
        ("batch", ctypes.c_int),
        ("w", ctypes.c_int),
        ("h", ctypes.c_int),
        ("n", ctypes.c_int),
        ("total", ctypes.c_int),
        ("classes", ctypes.c_int),
        ("mask", ctypes.POINTER(ctypes.c_int)),
        ("anchors", ctypes.POINTER(ctypes.c_float)),
        ("net_w", ctypes.c_int),
        ("net_h", ctypes.c_int),
        ("ignore_thresh", ctypes.c_float),
        ("truth_thresh", ctypes.c_float),
        ("max_boxes", ctypes.c_int),
        ("train", ctypes.c_int),
        ("index", ctypes.c_int),
    ]


class _Stats(ctypes.Structure):
    # pdl_stats in darknet_src/glue/pdl_glue.h.
    _fields_ = [
        ("region", ctypes.c_int),
        ("avg_iou", ctypes.c_float),
        ("avg_class", ctypes.c_float),
        ("avg_obj", ctypes.c_float),
        ("avg_no_obj", ctypes.c_float),
        ("recall50", ctypes.c_float),
        ("recall75", ctypes.c_float),
        ("count", ctypes.c_int),
    ]


class _Option(ctypes.Structure):
    # pdl_option in darknet_src/glue/pdl_fork.h.
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("value", ctypes.c_double),
        ("choices", ctypes.c_char_p),
    ]


_FLOAT_P = ctypes.POINTER(ctypes.c_float)
_ERRORS = {
    1: (ValueError, "a size or index is out of range"),
    2: (MemoryError, "make_yolo_layer could not allocate"),
    3: (
        RuntimeError,
        "the layer printed a statistics line of an unexpected shape; "
        "a fork that changes its report lines needs its own glue",
    ),
}
_API_VERSION = 1
_LOADED = {}


class OptionError(ValueError):
    """A layer option that the backend does not know or cannot take."""


class Backend:
    """One YOLO layer implementation that layers can be made from.

    Attributes
    ----------
    name : str
        ``"reference"`` or the name the backend was built under.
    flavour : str
        ``"pjreddie"``, ``"alexeyab"`` or ``"hankai"``.
    source : str or None
        The tree the backend was built from; None for the reference.
    options : dict
        Default value of every ``[yolo]`` option the backend accepts.
        Options with a fixed set of words (``iou_loss``) default to a word.
    choices : dict
        For options set by a word, the accepted words.
    truth_size : int
        Values per truth row that the fork reads (5 or 6).
    max_truth_rows : int or None
        Fixed truth rows per image (90 for pjreddie), or None where the
        cfg's ``max`` sets it.
    default_max_boxes : int
        Default of the cfg's ``max``.
    """

    def __init__(
        self,
        name,
        flavour,
        source,
        options,
        choices,
        truth_size,
        max_truth_rows,
        default_max_boxes,
        library=None,
    ):
        self.name = name
        self.flavour = flavour
        self.source = source
        self.options = options
        self.choices = choices
        self.truth_size = truth_size
        self.max_truth_rows = max_truth_rows
        self.default_max_boxes = default_max_boxes
        self._library = library

    def __repr__(self):
        return f"Backend(name={self.name!r}, flavour={self.flavour!r})"

    def layer(
        self,
        *,
        classes,
        anchors,
        net_w,
        net_h,
        mask=None,
        max_boxes=None,
        index=0,
        **options,
    ):
        """Make a layer of this backend.

        Parameters
        ----------
        classes, anchors, net_w, net_h, mask, index
            As for :class:`pydarknet_loss.YoloLayer`.
        max_boxes : int, optional
            Truth rows read per image (the cfg's ``max``).  Default: the
            backend's default (90 for pjreddie, 200 for AlexeyAB).
        **options
            Any option in :attr:`options`, by its cfg name.

        Returns
        -------
        YoloLayer or BackendLayer
            A layer whose ``forward`` checks inputs as the reference does.

        Raises
        ------
        OptionError
            On an option the backend does not know or a word it does not
            accept.
        """
        values = self.option_values(options)
        if max_boxes is None:
            max_boxes = self.default_max_boxes
        shape = dict(
            classes=classes,
            anchors=anchors,
            net_w=net_w,
            net_h=net_h,
            mask=mask,
            index=index,
        )
        if self._library is None:
            return YoloLayer(
                **shape,
                max_boxes=max_boxes,
                ignore_thresh=values["ignore_thresh"],
                truth_thresh=values["truth_thresh"],
            )
        return BackendLayer(self, values, max_boxes=max_boxes, **shape)

    def layer_from_cfg(self, yolo_options, section):
        """Make a layer from a parsed cfg ``[yolo]`` section.

        Parameters
        ----------
        yolo_options : pydarknet_loss.cfg.YoloOptions
            The section's shape, from :func:`pydarknet_loss.cfg.yolo_layers`.
        section : pydarknet_loss.cfg.Section
            The same section; its raw ``options`` set the backend's options.

        Returns
        -------
        YoloLayer or BackendLayer
        """
        options = {}
        for key, text in section.options.items():
            if key in STRUCTURAL_KEYS:
                continue
            options[key] = text if key in self.choices else _parse_number(key, text)
        max_boxes = section.options.get("max")
        return self.layer(
            classes=yolo_options.classes,
            anchors=yolo_options.anchors,
            mask=yolo_options.mask,
            net_w=yolo_options.net_w,
            net_h=yolo_options.net_h,
            max_boxes=int(_parse_number("max", max_boxes)) if max_boxes else None,
            index=yolo_options.index,
            **options,
        )

    def option_values(self, given):
        """Return every option's value: the defaults updated with ``given``.

        Raises
        ------
        OptionError
            On an unknown option, a word outside the option's choices or a
            non-finite number.
        """
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            raise OptionError(
                f"backend {self.name!r} ({self.flavour}) has no [yolo] option "
                f"{', '.join(unknown)}; it accepts: {', '.join(self.options)}"
            )
        values = dict(self.options)
        for key, value in given.items():
            if key in self.choices:
                if value not in self.choices[key]:
                    raise OptionError(
                        f"{key}={value!r} is invalid for backend {self.name!r}; "
                        f"expected one of: {', '.join(self.choices[key])}"
                    )
            else:
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    raise OptionError(
                        f"{key} must be a number, got {value!r}"
                    ) from None
                if math.isnan(value):
                    raise OptionError(f"{key} must not be NaN")
            values[key] = value
        return values


def _parse_number(key, text):
    try:
        return float(text)
    except ValueError:
        raise OptionError(f"[yolo] option {key}={text!r} is not a number") from None


class BackendLayer(YoloLayer):
    """A fork backend's ``[yolo]`` layer behind the reference input checks.

    Made by :meth:`Backend.layer`.  ``forward`` takes and returns what
    :meth:`pydarknet_loss.YoloLayer.forward` does.  Truth rows may have
    the fork's ``truth_size`` values (a sixth is AlexeyAB's track id,
    default 0).

    ``stats`` contains the values of the fork's statistics line.  AlexeyAB's
    and hank-ai's line has only ``region``, ``avg_iou`` and ``count``, so
    ``avg_class``, ``avg_obj``, ``avg_no_obj``, ``recall50`` and
    ``recall75`` are NaN.  When no truth is matched, these forks print
    ``count`` 1 and ``avg_iou`` 0, where pjreddie prints 0 and NaN.
    """

    def __init__(self, backend, values, *, max_boxes, **shape):
        # The reference constructor checks the shape and thresholds; the
        # fork's own truth-row limit replaces its 90-row one below.
        super().__init__(
            **shape,
            ignore_thresh=values.get("ignore_thresh", 0.5),
            truth_thresh=values.get("truth_thresh", 1.0),
        )
        self.backend = backend
        self.values = values
        self.max_boxes = _checked_max_boxes(backend, max_boxes)

        numbers = []
        for key in backend.options:
            value = values[key]
            if key in backend.choices:
                value = backend.choices[key].index(value)
            numbers.append(value)
        self._numbers = (ctypes.c_double * len(numbers))(*numbers)

    def __repr__(self):
        changed = {k: v for k, v in self.values.items() if v != self.backend.options[k]}
        return (
            f"BackendLayer(backend={self.backend.name!r}, classes={self.classes}, "
            f"mask={self.mask.tolist()}, total={self.total}, "
            f"max_boxes={self.max_boxes}, "
            f"options={changed})"
        )

    def forward(self, logits, truth=None):
        """Run the fork's ``forward_yolo_layer`` on a batch.

        See :meth:`pydarknet_loss.YoloLayer.forward` for the parameters,
        the result and the checks.
        """
        logits = self._check_logits(logits)
        batch, _, h, w = logits.shape
        output = np.empty_like(logits)
        delta = np.empty_like(logits)

        padded = None
        if truth is not None:
            padded = self._check_fork_truth(truth, batch, h, w)

        params = _Params(
            batch=batch,
            w=w,
            h=h,
            n=self.n,
            total=self.total,
            classes=self.classes,
            mask=self.mask.ctypes.data_as(ctypes.POINTER(ctypes.c_int)),
            anchors=self.anchors.ctypes.data_as(_FLOAT_P),
            net_w=self.net_w,
            net_h=self.net_h,
            ignore_thresh=self.ignore_thresh,
            truth_thresh=self.truth_thresh,
            max_boxes=self.max_boxes,
            train=truth is not None,
            index=self.index,
        )
        cost = ctypes.c_float(0)
        stats = _Stats()
        has_stats = ctypes.c_int(0)
        status = self.backend._library.pdl_fork_forward(
            ctypes.byref(params),
            self._numbers,
            logits.ctypes.data_as(_FLOAT_P),
            padded.ctypes.data_as(_FLOAT_P) if padded is not None else None,
            output.ctypes.data_as(_FLOAT_P),
            delta.ctypes.data_as(_FLOAT_P),
            ctypes.byref(cost),
            ctypes.byref(stats),
            ctypes.byref(has_stats),
        )
        if status != 0:
            error, message = _ERRORS.get(status, (RuntimeError, f"status {status}"))
            raise error(f"backend {self.backend.name!r} failed: {message}")

        if truth is None:
            return YoloResult(output=output)
        stats_values = None
        if has_stats.value:
            stats_values = YoloStats(*(getattr(stats, f) for f, _ in _Stats._fields_))
        return YoloResult(
            output=output, delta=delta, cost=float(cost.value), stats=stats_values
        )

    def _check_fork_truth(self, truth, batch, h, w):
        """Return truth as the fork's [batch, rows, truth_size] buffer."""
        size = self.backend.truth_size
        array = checked_truth(
            truth,
            batch,
            h,
            w,
            self.classes,
            self.max_boxes,
            (5,) if size == 5 else (5, size),
        )
        rows = self.backend.max_truth_rows or self.max_boxes
        padded = np.zeros((batch, rows, size), dtype=np.float32)
        padded[:, : array.shape[1], : array.shape[2]] = array
        return padded


def _checked_max_boxes(backend, max_boxes):
    if isinstance(max_boxes, bool) or not isinstance(max_boxes, (int, np.integer)):
        raise TypeError(f"max_boxes must be an integer, got {max_boxes!r}")
    if max_boxes < 1:
        raise ValueError(f"max_boxes must be positive, got {max_boxes}")
    if backend.max_truth_rows and max_boxes > backend.max_truth_rows:
        raise ValueError(
            f"max_boxes={max_boxes} exceeds the {backend.max_truth_rows} truth rows "
            f"per image that backend {backend.name!r} allocates"
        )
    return int(max_boxes)


def _reference_backend():
    return Backend(
        name=REFERENCE,
        flavour="pjreddie",
        source=None,
        options=dict(REFERENCE_OPTIONS),
        choices={},
        truth_size=5,
        max_truth_rows=TRUTH_ROWS,
        default_max_boxes=TRUTH_ROWS,
    )


def _open_library(path):
    library = ctypes.CDLL(str(path))
    library.pdl_fork_api.restype = ctypes.c_int
    library.pdl_fork_flavour.restype = ctypes.c_char_p
    library.pdl_fork_options.argtypes = [ctypes.POINTER(ctypes.POINTER(_Option))]
    library.pdl_fork_forward.restype = ctypes.c_int
    library.pdl_fork_forward.argtypes = [
        ctypes.POINTER(_Params),
        ctypes.POINTER(ctypes.c_double),
        _FLOAT_P,
        _FLOAT_P,
        _FLOAT_P,
        _FLOAT_P,
        _FLOAT_P,
        ctypes.POINTER(_Stats),
        ctypes.POINTER(ctypes.c_int),
    ]
    return library


def load_backend(name):
    """Return the backend called ``name``: ``"reference"`` or a built one.

    Parameters
    ----------
    name : str
        ``"reference"`` for the package's own pjreddie/darknet build, or a
        name given to :func:`pydarknet_loss.forks.build_backend`.

    Returns
    -------
    Backend

    Raises
    ------
    pydarknet_loss.forks.BuildError
        If no backend of that name is built, or its library is missing or
        was built by an incompatible version of the glue.
    """
    if name == REFERENCE:
        return _reference_backend()
    manifest = forks.read_manifest(name)
    path = Path(manifest["library"])
    if not path.is_file():
        raise forks.BuildError(
            f"backend {name!r}: library {path} not found; rebuild it with "
            f"'pydarknet-loss build --src {manifest['source']} --name {name}'"
        )
    if str(path) in _LOADED:
        return _LOADED[str(path)]

    library = _open_library(path)
    if library.pdl_fork_api() != _API_VERSION:
        raise forks.BuildError(
            f"backend {name!r} was built with glue API {library.pdl_fork_api()}, "
            f"this package needs {_API_VERSION}; rebuild it"
        )
    table = ctypes.POINTER(_Option)()
    count = library.pdl_fork_options(ctypes.byref(table))
    options = {}
    choices = {}
    for i in range(count):
        key = table[i].name.decode()
        if table[i].choices:
            words = table[i].choices.decode().split(",")
            choices[key] = words
            options[key] = words[int(table[i].value)]
        else:
            options[key] = table[i].value
    rows = library.pdl_fork_truth_rows()
    backend = Backend(
        name=name,
        flavour=library.pdl_fork_flavour().decode(),
        source=manifest["source"],
        options=options,
        choices=choices,
        truth_size=library.pdl_fork_truth_size(),
        max_truth_rows=rows or None,
        default_max_boxes=library.pdl_fork_default_max_boxes(),
        library=library,
    )
    _LOADED[str(path)] = backend
    return backend


__all__ = [
    "Backend",
    "BackendLayer",
    "OptionError",
    "REFERENCE",
    "TruthWarning",
    "load_backend",
]
