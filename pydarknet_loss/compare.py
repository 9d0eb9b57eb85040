"""Compare YOLO layer backends, and record and verify golden files.

A case is one layer configuration with its inputs: the layer's shape,
its options, seeded logits and truth.  :func:`generate_cases` makes a
fixed, seeded set that covers grid sizes, class counts, anchor sets,
truth counts and edge cases.  :func:`compare_backends` runs two
backends on the same cases and reports, per component of Darknet's
delta, the largest difference and the first entry over the tolerance.

Components are read from the channel layout ``[batch, n*(5+classes), h,
w]``: x, y, w and h are channels 0 to 3 of each anchor, classes the
channels from 5 on.  The objectness channel is split by the sign of the
delta.  A positive delta pushes objectness toward 1, which Darknet does
only for a prediction responsible for a truth, so such entries are
``objectness``.  Every other objectness entry is ``no_object``.  An
entry counts as responsible when either backend's delta there is
positive.
"""

import json
import math
import numbers
import os
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path

import numpy as np

from pydarknet_loss import __version__
from pydarknet_loss.backends import OptionError, load_backend

COMPONENTS = ("x", "y", "w", "h", "objectness", "no_object", "classes")
DEFAULT_TOLERANCE = 1e-5
GOLDEN_FORMAT = 1

# Fields of a golden file's case description and their JSON types.
CASE_FIELDS = {
    "name": str,
    "classes": int,
    "anchors": list,
    "mask": list,
    "net_w": int,
    "net_h": int,
    "max_boxes": int,
    "options": dict,
    "index": int,
}

# Layer arguments that fix the logits' shape, so options cannot change them.
SHAPE_ARGUMENTS = ("classes", "anchors", "mask", "net_w", "net_h", "index")


class GoldenFileError(ValueError):
    """A golden file that is truncated, corrupt or missing a field."""


# yolov3.cfg's nine anchors, (w, h) pairs in network pixels
YOLOV3_ANCHORS = (
    10, 13, 16, 30, 33, 23, 30, 61, 62, 45, 59, 119, 116, 90, 156, 198, 373, 326
)  # fmt: skip
TINY_ANCHORS = (10, 14, 23, 27, 37, 58, 81, 82, 135, 169, 344, 319)

# Layer shape and truth layout of each generated case.  "truths" is the
# number of rows per image; "layout" picks how the boxes are placed.
CASE_SPECS = (
    dict(
        name="yolov3-coarse",
        classes=80,
        anchors=YOLOV3_ANCHORS,
        mask=(6, 7, 8),
        net=(416, 416),
        grid=(13, 13),
        batch=2,
        truths=6,
        layout="random",
    ),
    dict(
        name="yolov3-fine",
        classes=80,
        anchors=YOLOV3_ANCHORS,
        mask=(0, 1, 2),
        net=(416, 416),
        grid=(52, 52),
        batch=1,
        truths=12,
        layout="random",
    ),
    dict(
        name="tiny-3-classes",
        classes=3,
        anchors=TINY_ANCHORS,
        mask=(0, 1, 2),
        net=(416, 416),
        grid=(26, 26),
        batch=2,
        truths=8,
        layout="random",
    ),
    dict(
        name="non-square-1-class",
        classes=1,
        anchors=YOLOV3_ANCHORS,
        mask=(3, 4, 5),
        net=(320, 224),
        grid=(10, 7),
        batch=2,
        truths=3,
        layout="random",
    ),
    dict(
        name="no-truth",
        classes=20,
        anchors=TINY_ANCHORS,
        mask=(3, 4, 5),
        net=(416, 416),
        grid=(13, 13),
        batch=2,
        truths=0,
        layout="random",
    ),
    dict(
        name="shared-cell",
        classes=5,
        anchors=YOLOV3_ANCHORS,
        mask=(6, 7, 8),
        net=(416, 416),
        grid=(13, 13),
        batch=2,
        truths=5,
        layout="one-cell",
    ),
    dict(
        name="dense-truths",
        classes=20,
        anchors=YOLOV3_ANCHORS,
        mask=(3, 4, 5),
        net=(416, 416),
        grid=(26, 26),
        batch=1,
        truths=80,
        layout="random",
    ),
    dict(
        name="cell-edges",
        classes=4,
        anchors=TINY_ANCHORS,
        mask=(0, 1, 2),
        net=(416, 416),
        grid=(13, 13),
        batch=1,
        truths=6,
        layout="edges",
    ),
    dict(
        name="saturated-logits",
        classes=6,
        anchors=YOLOV3_ANCHORS,
        mask=(6, 7, 8),
        net=(416, 416),
        grid=(13, 13),
        batch=1,
        truths=4,
        layout="random",
        logit_scale=30.0,
    ),
    dict(
        name="ignore-thresh-0",
        classes=4,
        anchors=TINY_ANCHORS,
        mask=(3, 4, 5),
        net=(416, 416),
        grid=(13, 13),
        batch=1,
        truths=3,
        layout="random",
        options={"ignore_thresh": 0.0},
    ),
    dict(
        name="truth-thresh-0.3",
        classes=4,
        anchors=YOLOV3_ANCHORS,
        mask=(6, 7, 8),
        net=(416, 416),
        grid=(13, 13),
        batch=2,
        truths=5,
        layout="random",
        options={"truth_thresh": 0.3},
    ),
    dict(
        name="all-anchors-one-layer",
        classes=2,
        anchors=TINY_ANCHORS,
        mask=(0, 1, 2, 3, 4, 5),
        net=(416, 416),
        grid=(13, 13),
        batch=1,
        truths=6,
        layout="random",
    ),
)


@dataclass
class Case:
    """One layer configuration and the inputs to run it on."""

    name: str
    classes: int
    anchors: tuple
    mask: tuple
    net_w: int
    net_h: int
    max_boxes: int
    logits: np.ndarray
    truth: np.ndarray
    options: dict = field(default_factory=dict)
    index: int = 0

    def layer_arguments(self):
        """Return the keyword arguments of :meth:`Backend.layer`."""
        return dict(
            classes=self.classes,
            anchors=self.anchors,
            mask=self.mask,
            net_w=self.net_w,
            net_h=self.net_h,
            max_boxes=self.max_boxes,
            index=self.index,
            **self.options,
        )

    def describe(self):
        """Return the case without its arrays, as stored in golden files."""
        return dict(
            name=self.name,
            classes=self.classes,
            anchors=list(self.anchors),
            mask=list(self.mask),
            net_w=self.net_w,
            net_h=self.net_h,
            max_boxes=self.max_boxes,
            options=self.options,
            index=self.index,
        )


def _truth_rows(rng, spec):
    batch, k = spec["batch"], spec["truths"]
    grid_w, grid_h = spec["grid"]
    truth = np.zeros((batch, k, 5), dtype=np.float32)
    if k == 0:
        return truth
    truth[:, :, 2:4] = rng.uniform(0.03, 0.8, size=(batch, k, 2))
    truth[:, :, 4] = rng.integers(0, spec["classes"], size=(batch, k))

    if spec["layout"] == "one-cell":
        # Every truth of an image in one cell: the later truth's box delta
        # overwrites the earlier one's, and class deltas accumulate.
        cell = rng.integers(0, min(grid_w, grid_h), size=2)
        offsets = rng.uniform(0.1, 0.9, size=(batch, k, 2))
        truth[:, :, 0] = (cell[0] + offsets[:, :, 0]) / grid_w
        truth[:, :, 1] = (cell[1] + offsets[:, :, 1]) / grid_h
        truth[:, 1::2, 2:4] = truth[:, 0:1, 2:4]
    elif spec["layout"] == "edges":
        # Centres on cell boundaries and close to the image's far edges.
        columns = rng.integers(1, grid_w, size=(batch, k))
        rows = rng.integers(0, grid_h, size=(batch, k))
        truth[:, :, 0] = np.float32(columns) / np.float32(grid_w)
        truth[:, :, 1] = np.float32(rows) / np.float32(grid_h)
        truth[:, -1, 0] = np.nextafter(np.float32(1), np.float32(0))
        truth[:, -2, 1] = np.nextafter(np.float32(1), np.float32(0))
    else:
        truth[:, :, 0:2] = rng.uniform(0.01, 0.99, size=(batch, k, 2))
    return truth


def generate_cases(seed=0):
    """Return the seeded cases that ``compare`` and ``record`` use.

    Parameters
    ----------
    seed : int
        Seed of numpy's default generator; a given seed always gives the
        same cases.

    Returns
    -------
    list of Case
    """
    rng = np.random.default_rng(seed)
    cases = []
    for spec in CASE_SPECS:
        grid_w, grid_h = spec["grid"]
        channels = len(spec["mask"]) * (5 + spec["classes"])
        scale = spec.get("logit_scale", 1.5)
        logits = rng.normal(0, scale, size=(spec["batch"], channels, grid_h, grid_w))
        cases.append(
            Case(
                name=spec["name"],
                classes=spec["classes"],
                anchors=tuple(spec["anchors"]),
                mask=tuple(spec["mask"]),
                net_w=spec["net"][0],
                net_h=spec["net"][1],
                max_boxes=90,
                logits=logits.astype(np.float32),
                truth=_truth_rows(rng, spec),
                options=dict(spec.get("options", {})),
            )
        )
    return cases


@dataclass
class Difference:
    """The first entry of a component over the tolerance."""

    case: str
    image: int
    anchor: int
    row: int
    column: int
    channel: int
    a: float
    b: float

    def __str__(self):
        return (
            f"case {self.case} image {self.image} anchor {self.anchor} "
            f"cell (row {self.row}, col {self.column}) channel {self.channel}: "
            f"a={self.a:.7g} b={self.b:.7g}"
        )


@dataclass
class ComponentReport:
    """The difference of one component over all cases."""

    name: str
    entries: int = 0
    max_difference: float = 0.0
    over_tolerance: int = 0
    first: Difference = None


@dataclass
class CompareReport:
    """The result of holding backend ``a`` to ``b`` on a set of cases."""

    a: str
    b: str
    tolerance: float
    cases: list
    components: dict
    cost_difference: float = 0.0

    @property
    def differing(self):
        """Names of the components with an entry over the tolerance."""
        return [name for name, c in self.components.items() if c.over_tolerance]

    @property
    def ok(self):
        """True when a case ran and no component differs beyond the tolerance."""
        return bool(self.cases) and not self.differing

    def to_dict(self):
        """Return the report as JSON-ready data.

        Non-finite numbers (a NaN difference, an infinite delta entry)
        become None, so that ``json.dumps(..., allow_nan=False)`` accepts
        the result and it stays strict JSON.
        """
        return {
            "a": self.a,
            "b": self.b,
            "tolerance": _finite_or_none(self.tolerance),
            "cases": self.cases,
            "components": {
                name: {
                    "entries": c.entries,
                    "max_difference": _finite_or_none(c.max_difference),
                    "over_tolerance": c.over_tolerance,
                    "first": None if c.first is None else _first_dict(c.first),
                }
                for name, c in self.components.items()
            },
            "max_cost_difference": _finite_or_none(self.cost_difference),
            "differing": self.differing,
            "ok": self.ok,
        }

    def format(self):
        """Return the report as a text table."""
        lines = [
            f"{self.a} vs {self.b}: {len(self.cases)} cases, "
            f"tolerance {self.tolerance:g}",
            f"  {'component':<11}{'entries':>9}  {'max |a-b|':>10}  {'over':>6}  "
            "first difference",
        ]
        for name, c in self.components.items():
            first = str(c.first) if c.first else "-"
            lines.append(
                f"  {name:<11}{c.entries:>9}  {c.max_difference:>10.3g}  "
                f"{c.over_tolerance:>6}  {first}"
            )
        lines.append(f"  max |cost a - cost b| over cases: {self.cost_difference:.6g}")
        if not self.cases:
            lines.append("FAILED: no cases were compared.")
        elif self.ok:
            lines.append("OK: every component agrees within the tolerance.")
        else:
            lines.append(
                f"FAILED: {', '.join(self.differing)} differ by more than "
                f"{self.tolerance:g}."
            )
        return "\n".join(lines)


def _finite_or_none(value):
    return value if math.isfinite(value) else None


def _first_dict(first):
    return {**vars(first), "a": _finite_or_none(first.a), "b": _finite_or_none(first.b)}


def _entry_differences(a, b):
    """Return ``|a - b|`` per entry in float64, NaN where NaNs disagree.

    Equal entries, infinities included, differ by 0, and so do NaNs with
    identical bits, which a bit-for-bit reproduction gives.  A NaN facing
    any other value gives a NaN difference, which counts as over every
    tolerance.
    """
    a = np.atleast_1d(np.asarray(a, dtype=np.float32))
    b = np.atleast_1d(np.asarray(b, dtype=np.float32))
    with np.errstate(invalid="ignore"):
        difference = np.abs(a.astype(np.float64) - b)
    difference[a == b] = 0.0
    difference[np.isnan(a) & (a.view(np.uint32) == b.view(np.uint32))] = 0.0
    return difference


def _max_with_nan(a, b):
    # Python's max() drops a NaN in either position; a NaN must stick.
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return max(a, b)


def _component_masks(shape, n, delta_a, delta_b):
    """Return a boolean mask in the logits' shape for each component."""
    batch, channels, h, w = shape
    blocks = (batch, n, channels // n, h, w)
    masks = {name: np.zeros(blocks, dtype=bool) for name in COMPONENTS}
    for channel, name in enumerate(("x", "y", "w", "h")):
        masks[name][:, :, channel] = True
    masks["classes"][:, :, 5:] = True
    positive = (delta_a.reshape(blocks)[:, :, 4] > 0) | (
        delta_b.reshape(blocks)[:, :, 4] > 0
    )
    masks["objectness"][:, :, 4] = positive
    masks["no_object"][:, :, 4] = ~positive
    return {name: mask.reshape(shape) for name, mask in masks.items()}


def _add_case(report, case, result_a, result_b, tolerance):
    shape = case.logits.shape
    n = len(case.mask)
    difference = _entry_differences(result_a.delta, result_b.delta)
    masks = _component_masks(shape, n, result_a.delta, result_b.delta)
    for name, mask in masks.items():
        component = report.components[name]
        component.entries += int(mask.sum())
        if not mask.any():
            continue

        # NaN compares false with everything, so "not within" rather than
        # "over" counts a NaN difference as a failure.
        values = np.where(mask, difference, 0.0)
        component.max_difference = _max_with_nan(
            component.max_difference, float(values.max())
        )
        over = mask & ~(difference <= tolerance)
        component.over_tolerance += int(over.sum())
        if over.any() and component.first is None:
            image, channel, row, column = np.argwhere(over)[0]
            per_anchor = shape[1] // n
            component.first = Difference(
                case=case.name,
                image=int(image),
                anchor=int(channel // per_anchor),
                row=int(row),
                column=int(column),
                channel=int(channel % per_anchor),
                a=float(result_a.delta[image, channel, row, column]),
                b=float(result_b.delta[image, channel, row, column]),
            )
    cost_difference = float(_entry_differences(result_a.cost, result_b.cost)[0])
    report.cost_difference = _max_with_nan(report.cost_difference, cost_difference)


def _resolve(backend):
    return load_backend(backend) if isinstance(backend, str) else backend


def _run(backend, case, options):
    arguments = case.layer_arguments()
    arguments.update(options or {})
    return backend.layer(**arguments).forward(case.logits, case.truth)


def _check_tolerance(tolerance):
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, numbers.Real)
        or math.isnan(tolerance)
        or tolerance < 0
    ):
        raise ValueError(f"tolerance must be a non-negative number, got {tolerance!r}")
    return float(tolerance)


def _check_options(options):
    """Raise OptionError if ``options`` would change a case's shape.

    ``max_boxes`` is allowed; every other key is left to the backend's
    own option check.
    """
    fixed = sorted(set(options or ()) & set(SHAPE_ARGUMENTS))
    if fixed:
        raise OptionError(
            f"{', '.join(fixed)} cannot be set as an option because it is part of "
            "each case's layer shape"
        )


def compare_backends(
    a, b, cases=None, *, tolerance=DEFAULT_TOLERANCE, options_a=None, options_b=None
):
    """Run backends ``a`` and ``b`` on the same cases and compare their deltas.

    Parameters
    ----------
    a, b : str or Backend
        Backend names (``"reference"`` is the built-in module) or loaded
        backends.
    cases : list of Case, optional
        Default: :func:`generate_cases` with seed 0.
    tolerance : float
        Largest absolute difference of a delta entry that still agrees.
        A NaN entry agrees only with a NaN of identical bits.
    options_a, options_b : dict, optional
        ``[yolo]`` options for one side only, on top of each case's own,
        for example ``{"iou_normalizer": 1}`` for an AlexeyAB backend.
        ``max_boxes`` (an int) is allowed too.

    Returns
    -------
    CompareReport

    Raises
    ------
    ValueError
        On an empty list of cases or a negative or NaN tolerance.
    OptionError
        On an option that would change a case's layer shape.
    """
    tolerance = _check_tolerance(tolerance)
    _check_options(options_a)
    _check_options(options_b)
    cases = generate_cases() if cases is None else list(cases)
    if not cases:
        raise ValueError("no cases to compare: pass at least one Case")
    a = _resolve(a)
    b = _resolve(b)
    report = CompareReport(
        a=a.name,
        b=b.name,
        tolerance=tolerance,
        cases=[case.name for case in cases],
        components={name: ComponentReport(name) for name in COMPONENTS},
    )
    for case in cases:
        _add_case(
            report, case, _run(a, case, options_a), _run(b, case, options_b), tolerance
        )
    return report


def _upstream_version():
    manifest = Path(str(files("pydarknet_loss") / "_upstream" / "manifest.json"))
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        return {
            "repository": data.get("upstream"),
            "commit": data.get("commit"),
            "debian_version": data.get("debian", {}).get("version"),
        }
    return {"repository": None, "commit": None, "debian_version": None}


def golden_path(path):
    """Return the path that :func:`record_golden` writes for ``path``.

    Like :func:`numpy.savez`, it appends ``.npz`` to a name that does not
    end with it.
    """
    path = Path(path)
    return path if path.name.endswith(".npz") else path.with_name(path.name + ".npz")


def _with_options(case, options):
    """Return a copy of ``case`` with ``options`` added.

    ``max_boxes`` sets the case's own field, not an option.
    """
    options = dict(options)
    fields = {}
    if "max_boxes" in options:
        fields["max_boxes"] = options.pop("max_boxes")
    return replace(case, options={**case.options, **options}, **fields)


def record_golden(path, cases=None, *, backend="reference", options=None):
    """Write cases and one backend's results to a golden ``.npz`` file.

    Parameters
    ----------
    path : str or os.PathLike
        File to write; ``.npz`` is appended when the name lacks it, as
        :func:`golden_path` returns.
    cases : list of Case, optional
        Default: :func:`generate_cases` with seed 0.
    backend : str or Backend
        The backend whose results become the expected values.
    options : dict, optional
        ``[yolo]`` options for every case, stored in the file.
        ``max_boxes`` (an int) sets each case's truth rows per image.

    Returns
    -------
    dict
        The metadata stored in the file.

    Raises
    ------
    ValueError
        On an empty list of cases or an option value that JSON cannot
        store (NaN or infinity).
    OptionError
        On an option the backend rejects or one that would change a case's
        layer shape.
    """
    _check_options(options)
    cases = generate_cases() if cases is None else list(cases)
    if not cases:
        raise ValueError("no cases to record: pass at least one Case")
    backend = _resolve(backend)
    arrays = {}
    described = []
    for i, case in enumerate(cases):
        if options:
            case = _with_options(case, options)
        result = _run(backend, case, None)
        arrays[f"{i:03d}_logits"] = case.logits
        arrays[f"{i:03d}_truth"] = case.truth
        arrays[f"{i:03d}_output"] = result.output
        arrays[f"{i:03d}_delta"] = result.delta
        arrays[f"{i:03d}_cost"] = np.float32(result.cost)
        described.append(case.describe())

    meta = {
        "format": GOLDEN_FORMAT,
        "backend": backend.name,
        "flavour": backend.flavour,
        "package_version": __version__,
        "upstream": _upstream_version(),
        "cases": described,
    }
    try:
        arrays["meta"] = np.array(json.dumps(meta, allow_nan=False))
    except ValueError:
        raise ValueError(
            f"options {options} contain NaN or infinity, which a golden "
            "file's JSON metadata cannot store"
        ) from None
    if isinstance(path, (str, os.PathLike)):
        path = golden_path(path)
    np.savez_compressed(path, **arrays)
    return meta


def _golden_error(path, problem):
    return GoldenFileError(
        f"invalid golden file {path}: {problem}. Write it again with "
        "'pydarknet-loss record'"
    )


def _read_member(data, key, path):
    """Return the array ``key`` of an open golden file."""
    if key not in data.files:
        raise _golden_error(path, f"array {key!r} is missing")
    try:
        return data[key]
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as error:
        raise _golden_error(path, f"array {key!r} is corrupt ({error})") from None


def _read_meta(data, path):
    text = _read_member(data, "meta", path)
    if text.dtype.kind != "U" or text.ndim != 0:
        raise _golden_error(path, "'meta' is not a string")
    try:
        meta = json.loads(str(text))
    except ValueError as error:
        raise _golden_error(path, f"'meta' is not valid JSON ({error})") from None
    if not isinstance(meta, dict):
        raise _golden_error(
            path, f"'meta' has type {type(meta).__name__}, not an object"
        )
    if meta.get("format") != GOLDEN_FORMAT:
        raise GoldenFileError(
            f"{path} has golden format {meta.get('format')!r}, "
            f"this package reads {GOLDEN_FORMAT}"
        )
    if not isinstance(meta.get("cases"), list):
        raise _golden_error(path, "'meta' has no list of cases")
    if not meta["cases"]:
        raise _golden_error(path, "it contains no cases")
    return meta


def _is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_case_fields(described, i, path):
    """Raise GoldenFileError unless case ``i`` has every field, of its type."""
    if not isinstance(described, dict):
        raise _golden_error(
            path, f"case {i} has type {type(described).__name__}, not an object"
        )
    missing = sorted(set(CASE_FIELDS) - set(described))
    if missing:
        raise _golden_error(path, f"case {i} has no field {', '.join(missing)}")
    unknown = sorted(set(described) - set(CASE_FIELDS))
    if unknown:
        raise _golden_error(path, f"case {i} has unknown field {', '.join(unknown)}")

    for key, kind in CASE_FIELDS.items():
        value = described[key]
        if kind is int:
            valid = _is_integer(value)
        else:
            valid = isinstance(value, kind)
        if not valid:
            raise _golden_error(
                path, f"case {i} field {key!r} is {value!r}, not {kind.__name__}"
            )

    anchors_valid = all(
        isinstance(a, (int, float)) and not isinstance(a, bool)
        for a in described["anchors"]
    )
    if not anchors_valid or not all(map(_is_integer, described["mask"])):
        raise _golden_error(path, f"case {i} anchors or mask are not numbers")
    fixed = sorted(set(described["options"]) & set(CASE_FIELDS))
    if fixed:
        raise _golden_error(path, f"case {i} options set layer arguments {fixed}")


def _read_case(data, described, i, path):
    """Return case ``i`` and its stored result from an open golden file."""
    _check_case_fields(described, i, path)
    arrays = {
        name: _read_member(data, f"{i:03d}_{name}", path)
        for name in ("logits", "truth", "output", "delta", "cost")
    }
    for name in ("output", "delta"):
        if arrays[name].shape != arrays["logits"].shape:
            raise _golden_error(
                path,
                f"case {i} {name} has shape {arrays[name].shape}, logits "
                f"{arrays['logits'].shape}",
            )
        if arrays[name].dtype != np.float32:
            raise _golden_error(
                path, f"case {i} {name} is {arrays[name].dtype}, not float32"
            )
    if arrays["cost"].shape != () or arrays["cost"].dtype.kind != "f":
        raise _golden_error(path, f"case {i} cost is not a float scalar")

    described = dict(described)
    described["anchors"] = tuple(described["anchors"])
    described["mask"] = tuple(described["mask"])
    case = Case(logits=arrays["logits"], truth=arrays["truth"], **described)
    result = _StoredResult(arrays["output"], arrays["delta"], float(arrays["cost"]))
    return case, result


def read_golden(path):
    """Read a golden file; return (metadata, cases, stored results by case).

    Raises
    ------
    GoldenFileError
        If the file is truncated or corrupt, is not a golden file of a
        known format, misses an array or field, or contains no cases.
        GoldenFileError is a ValueError.
    OSError
        If the file cannot be opened.
    """
    try:
        data = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, ValueError) as error:
        raise GoldenFileError(
            f"cannot read golden file {path}: it is truncated or not an .npz "
            f"file ({error})"
        ) from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise GoldenFileError(f"{path} is a single .npy array, not a golden .npz")

    with data:
        if "meta" not in data.files:
            raise GoldenFileError(
                f"{path} is not a pydarknet_loss golden file: no 'meta'"
            )
        meta = _read_meta(data, path)
        cases = []
        results = []
        for i, described in enumerate(meta["cases"]):
            case, result = _read_case(data, described, i, path)
            cases.append(case)
            results.append(result)
    return meta, cases, results


@dataclass
class _StoredResult:
    output: np.ndarray
    delta: np.ndarray
    cost: float


def verify_golden(backend, path, *, tolerance=DEFAULT_TOLERANCE, options=None):
    """Hold a backend to a golden file written by :func:`record_golden`.

    Parameters
    ----------
    backend : str or Backend
        The backend to check.
    path : str or os.PathLike
        Golden ``.npz`` file.
    tolerance : float
        Largest absolute difference of a delta entry that still agrees.
        A NaN entry agrees only with a NaN of identical bits.
    options : dict, optional
        ``[yolo]`` options for the checked backend only.

    Returns
    -------
    CompareReport
        ``a`` is the checked backend, ``b`` the golden file.

    Raises
    ------
    GoldenFileError
        If :func:`read_golden` cannot use the file.
    ValueError
        On a negative or NaN tolerance.
    """
    tolerance = _check_tolerance(tolerance)
    _check_options(options)
    _, cases, stored = read_golden(path)
    backend = _resolve(backend)
    report = CompareReport(
        a=backend.name,
        b=f"golden {Path(path).name}",
        tolerance=tolerance,
        cases=[case.name for case in cases],
        components={name: ComponentReport(name) for name in COMPONENTS},
    )
    for case, result in zip(cases, stored):
        _add_case(report, case, _run(backend, case, options), result, tolerance)
    return report
