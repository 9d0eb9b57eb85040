"""Property tests: no input crashes the layer, corrupts it or changes inputs.

Each generated call must either return or raise ``ValueError`` or
``TypeError``.  Afterwards the same layer must still give, on a valid
input, bit-for-bit what a fresh layer with the same options gives, and
every input array must hold its original bytes.  The examples are
derandomized so that CI runs the same cases every time.
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pydarknet_loss import TruthWarning, YoloLayer

FUZZ_SETTINGS = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ONE_BELOW_ONE = float(np.nextafter(np.float32(1), np.float32(0)))
ONE_ABOVE_ZERO = float(np.nextafter(np.float32(0), np.float32(1)))

# Values that sit on a boundary of some check or of float32.
EDGE_VALUES = (
    0.0,
    -0.0,
    1.0,
    ONE_BELOW_ONE,
    ONE_ABOVE_ZERO,
    float(np.nextafter(1.0, 2.0)),
    0.5,
    -1.0,
    2.5,
    1e30,
    -1e30,
    1e300,
    float(np.finfo(np.float32).max),
    float("nan"),
    float("inf"),
    float("-inf"),
)

ALLOWED_ERRORS = (ValueError, TypeError)

edge_floats = st.sampled_from(EDGE_VALUES)
any_floats = st.one_of(edge_floats, st.floats(allow_nan=True, allow_infinity=True))
small_ints = st.integers(min_value=-3, max_value=12)
huge_ints = st.sampled_from((2**31 - 1, 2**31, 2**40, 2**70, -(2**31) - 1))
odd_scalars = st.sampled_from((None, True, 1.5, "3", float("nan"), 2j))


@st.composite
def layer_options(draw):
    """Draw keyword arguments of ``YoloLayer``, valid or not."""
    total = draw(st.integers(min_value=1, max_value=4))
    anchor_values = st.one_of(
        st.floats(min_value=1, max_value=700, width=32), any_floats
    )
    anchors = draw(
        st.one_of(
            st.lists(anchor_values, min_size=2 * total, max_size=2 * total),
            st.lists(anchor_values, max_size=9),
        )
    )
    if anchors and draw(st.booleans()):
        # one bad value among good ones, so that only its check can fail
        anchors = [30.0] * len(anchors)
        anchors[draw(st.integers(0, len(anchors) - 1))] = draw(any_floats)
    mask = draw(
        st.one_of(
            st.none(),
            st.lists(
                st.integers(min_value=0, max_value=total - 1), min_size=1, max_size=3
            ),
            st.lists(st.one_of(small_ints, huge_ints, any_floats), max_size=3),
        )
    )
    return dict(
        classes=draw(
            st.one_of(
                st.integers(min_value=1, max_value=6),
                small_ints,
                huge_ints,
                odd_scalars,
            )
        ),
        anchors=anchors,
        mask=mask,
        net_w=draw(
            st.one_of(
                st.integers(min_value=1, max_value=1024),
                small_ints,
                huge_ints,
                odd_scalars,
            )
        ),
        net_h=draw(st.one_of(st.integers(min_value=1, max_value=1024), huge_ints)),
        ignore_thresh=draw(st.one_of(st.floats(0, 1), any_floats, odd_scalars)),
        truth_thresh=draw(st.one_of(st.just(1.0), st.floats(0, 1), any_floats)),
        max_boxes=draw(
            st.one_of(st.sampled_from((1, 2, 89, 90, 91)), small_ints, huge_ints)
        ),
        index=draw(st.one_of(small_ints, huge_ints, odd_scalars)),
    )


def make_layer(options):
    """Return a layer, or None when the options are rejected as documented."""
    try:
        return YoloLayer(**options)
    except ALLOWED_ERRORS:
        return None


def valid_call(layer):
    """Return a fixed valid (logits, truth) pair for ``layer``."""
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(2, layer.channels, 3, 4)).astype(np.float32)
    truth = np.array(
        [[[0.5, 0.5, 0.2, 0.3, 0]], [[0.1, 0.9, 0.05, 0.05, layer.classes - 1]]],
        dtype=np.float32,
    )
    return logits, truth


def result_bytes(result):
    """Return every value of a result as bytes, so NaN compares equal to NaN."""
    parts = [result.output.tobytes()]
    if result.delta is not None:
        parts.append(result.delta.tobytes())
        parts.append(np.float32(result.cost).tobytes())
        parts.append(np.array(list(vars(result.stats).values())).tobytes())
    return b"".join(parts)


def assert_layer_still_works(layer, options):
    """Check ``layer`` still matches a fresh layer built from ``options``."""
    logits, truth = valid_call(layer)
    fresh = YoloLayer(**options)
    assert result_bytes(layer.forward(logits, truth)) == result_bytes(
        fresh.forward(logits, truth)
    )
    assert result_bytes(layer.forward(logits)) == result_bytes(fresh.forward(logits))


def call_forward(layer, logits, truth):
    """Run forward; return the result, or None on a documented error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = layer.forward(logits, truth)
        except ALLOWED_ERRORS:
            result = None
    for warning in caught:
        allowed = issubclass(warning.category, TruthWarning) or (
            issubclass(warning.category, RuntimeWarning)
            and "overflow encountered in cast" in str(warning.message)
        )
        assert allowed, f"unexpected warning: {warning.category.__name__}: {warning}"
    return result


def check_result(result, logits_shape, trained):
    assert result.output.shape == logits_shape
    assert result.output.dtype == np.float32
    if trained:
        assert result.delta.shape == logits_shape
        assert result.delta.dtype == np.float32
        assert 0 <= result.stats.count
    else:
        assert result.delta is None


@FUZZ_SETTINGS
@given(options=layer_options())
def test_construction_raises_only_documented(options):
    layer = make_layer(options)
    if layer is None:
        return
    assert 1 <= layer.max_boxes <= 90
    assert np.all(np.isfinite(layer.anchors))
    assert np.all(layer.anchors > 0)
    assert np.all((layer.mask >= 0) & (layer.mask < layer.total))
    assert_layer_still_works(layer, options)


LAYOUTS = ("C", "F", "strided")
DTYPES = (
    np.float32,
    np.float64,
    np.float16,
    np.int32,
    np.uint8,
    np.bool_,
    np.complex64,
)


def arrange(array, layout):
    """Return ``array`` with the same values in another memory layout."""
    if layout == "F":
        return np.asfortranarray(array)
    if layout == "strided":
        doubled = np.repeat(array, 2, axis=-1)
        return doubled[..., ::2]
    return array


def cast_quietly(array, dtype):
    """Cast as a caller would, without numpy's overflow and NaN warnings.

    The infinities and arbitrary integers that such casts make are part of
    the fuzzed input.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return array.astype(dtype)


@st.composite
def truth_rows(draw, batch, k, classes):
    """Draw a [batch, k, 5] truth array, mostly valid rows with some edges."""
    centre = st.one_of(st.floats(0, 1), edge_floats)
    size = st.one_of(st.floats(0, 1.5), edge_floats)
    class_id = st.one_of(
        st.integers(min_value=0, max_value=classes - 1).map(float),
        st.sampled_from((-1.0, float(classes), classes - 0.5, 1e9)),
        edge_floats,
    )
    row = st.tuples(centre, centre, size, size, class_id)
    rows = draw(st.lists(row, min_size=batch * k, max_size=batch * k))
    return np.array(rows, dtype=np.float64).reshape(batch, k, 5)


GOOD_OPTIONS = dict(
    classes=st.integers(min_value=1, max_value=5),
    total=st.integers(min_value=1, max_value=4),
    net=st.integers(min_value=8, max_value=640),
    ignore_thresh=st.one_of(
        st.floats(0, 1), edge_floats.filter(lambda v: not math.isnan(v))
    ),
    truth_thresh=st.one_of(st.just(1.0), st.floats(0, 1)),
    max_boxes=st.sampled_from((1, 2, 3, 45, 89, 90)),
)


@st.composite
def forward_case(draw):
    """Draw a valid layer and a forward call that may or may not be valid."""
    total = draw(GOOD_OPTIONS["total"])
    anchors = draw(st.lists(st.floats(1, 700), min_size=2 * total, max_size=2 * total))
    mask = draw(st.lists(st.integers(0, total - 1), min_size=1, max_size=3))
    options = dict(
        classes=draw(GOOD_OPTIONS["classes"]),
        anchors=anchors,
        mask=mask,
        net_w=draw(GOOD_OPTIONS["net"]),
        net_h=draw(GOOD_OPTIONS["net"]),
        ignore_thresh=draw(GOOD_OPTIONS["ignore_thresh"]),
        truth_thresh=draw(GOOD_OPTIONS["truth_thresh"]),
        max_boxes=draw(GOOD_OPTIONS["max_boxes"]),
    )
    channels = len(mask) * (5 + options["classes"])

    batch = draw(st.integers(min_value=1, max_value=3))
    shape = (
        draw(st.one_of(st.just(batch), st.integers(0, 3))),
        draw(st.one_of(st.just(channels), st.integers(0, channels + 1))),
        draw(st.integers(0, 6)),
        draw(st.integers(0, 6)),
    )
    shape = draw(st.one_of(st.just(shape), st.just(shape[1:]), st.just(shape + (1,))))
    elements = st.one_of(st.floats(-30, 30), any_floats)
    logits = draw(hnp.arrays(np.float64, shape, elements=elements))
    logits = cast_quietly(logits, draw(st.sampled_from(DTYPES)))
    logits = arrange(logits, draw(st.sampled_from(LAYOUTS)))

    truth = None
    if draw(st.booleans()):
        k = draw(
            st.one_of(
                st.sampled_from(
                    (0, 1, options["max_boxes"], options["max_boxes"] + 1, 90, 91)
                ),
                st.integers(0, 6),
            )
        )
        truth_batch = draw(st.one_of(st.just(batch), st.integers(0, 3)))
        truth = draw(truth_rows(truth_batch, k, options["classes"]))
        truth_dtype = draw(
            st.sampled_from((np.float32, np.float64, np.int64, np.complex128))
        )
        truth = cast_quietly(truth, truth_dtype)
        truth = arrange(truth, draw(st.sampled_from(LAYOUTS)))
    return options, logits, truth


@FUZZ_SETTINGS
@given(case=forward_case())
def test_forward_raises_only_documented(case):
    options, logits, truth = case
    layer = YoloLayer(**options)
    logits_before = logits.copy()
    truth_before = None if truth is None else truth.copy()

    result = call_forward(layer, logits, truth)

    if result is not None:
        check_result(result, logits.shape, trained=truth is not None)
    assert logits.tobytes() == logits_before.tobytes()
    if truth is not None:
        assert truth.tobytes() == truth_before.tobytes()
    assert_layer_still_works(layer, options)


@pytest.mark.parametrize("k", (0, 1, 89, 90))
def test_truth_list_sizes_accepted(k):
    # A full list of 90 rows reaches the end of upstream's truth buffer.
    layer = YoloLayer(classes=3, anchors=[10, 14, 40, 30], net_w=64, net_h=64)
    rng = np.random.default_rng(k)
    truth = np.empty((2, k, 5), dtype=np.float32)
    truth[..., :2] = rng.uniform(ONE_ABOVE_ZERO, ONE_BELOW_ONE, size=(2, k, 2))
    truth[..., 2:4] = rng.uniform(0.01, 1, size=(2, k, 2))
    truth[..., 4] = rng.integers(0, 3, size=(2, k))
    result = layer.forward(rng.normal(size=(2, 16, 5, 5)), truth)
    assert result.stats.count <= 2 * k
    assert np.all(np.isfinite(result.delta))


OUT_OF_FLOAT32 = {
    "anchor overflows float32": (dict(anchors=[1e300, 10]), ValueError, "float32"),
    "anchor underflows float32": (dict(anchors=[1e-300, 10]), ValueError, "float32"),
    "mask of 1e300": (dict(mask=[1e300]), ValueError, "outside"),
    "mask of 2**70": (dict(mask=[2**70]), ValueError, "outside"),
    "index past int32": (dict(index=2**40), ValueError, "int32"),
    "index of inf": (dict(index=float("inf")), TypeError, "integer"),
}


@pytest.mark.parametrize(
    "change, error, message", OUT_OF_FLOAT32.values(), ids=OUT_OF_FLOAT32.keys()
)
def test_option_beyond_c_types_rejected(change, error, message):
    # Each of these once passed the Python checks and then reached C as
    # inf, 0 or a wrapped integer, or raised OverflowError.
    options = dict(classes=2, anchors=[10, 14], net_w=64, net_h=64)
    options.update(change)
    with pytest.raises(error, match=message):
        YoloLayer(**options)


def test_mask_repeating_anchor_runs():
    # Darknet accepts a mask longer than the anchor list if it repeats
    # an anchor; the glue once rejected it on every call.
    layer = YoloLayer(classes=1, anchors=[10, 14], mask=[0, 0], net_w=64, net_h=64)
    logits = np.zeros((1, layer.channels, 2, 2), dtype=np.float32)
    result = layer.forward(logits, np.array([[[0.5, 0.5, 0.2, 0.2, 0]]]))
    assert result.stats.count == 1
