"""Darknet network configuration (``.cfg``) parsing and layer size inference.

The rules follow ``src/parser.c``, ``src/option_list.c``, ``src/utils.c`` and the
``make_*_layer`` functions of pjreddie/darknet at commit 61c9d02e:

* Each line loses every space, tab and newline, including those inside it, so
  ``mask = 0, 1,2`` reads as ``mask=0,1,2``. A carriage return is kept, as
  Darknet keeps it.
* Empty lines and lines starting with ``#`` or ``;`` are skipped. A line starting
  with ``[`` opens a section, and any other line is a ``key=value`` option.
* Numbers are read like C's ``atoi`` and ``atof``, as Darknet reads them. The
  longest numeric prefix counts, and a value with no numeric prefix reads as 0.
* If a key repeats within a section, the first value wins, because
  ``option_find`` returns the first match.

Where Darknet prints a warning and goes on, crashes, or builds a layer of
impossible size, this module raises :class:`CfgError` instead. Each such case is
listed in the docstring of the function that raises it.
"""

from __future__ import annotations

import operator
import os
import pathlib
import re
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Callable, NamedTuple, Optional, Sequence

__all__ = [
    "CfgError",
    "LayerShape",
    "Section",
    "YoloOptions",
    "layer_shapes",
    "parse_cfg",
    "read_cfg",
    "read_yolo_layers",
    "yolo_layers",
]

# Section names that string_to_layer_type() in parser.c recognizes, mapped to one
# canonical name per layer type. Darknet compares "[name]" with strcmp, so the
# match is case-sensitive.
_LAYER_TYPES = {
    "shortcut": "shortcut",
    "crop": "crop",
    "cost": "cost",
    "detection": "detection",
    "region": "region",
    "yolo": "yolo",
    "iseg": "iseg",
    "local": "local",
    "conv": "convolutional",
    "convolutional": "convolutional",
    "deconv": "deconvolutional",
    "deconvolutional": "deconvolutional",
    "activation": "activation",
    "logistic": "logistic",
    "l2norm": "l2norm",
    "net": "net",
    "network": "net",
    "crnn": "crnn",
    "gru": "gru",
    "lstm": "lstm",
    "rnn": "rnn",
    "conn": "connected",
    "connected": "connected",
    "max": "maxpool",
    "maxpool": "maxpool",
    "reorg": "reorg",
    "avg": "avgpool",
    "avgpool": "avgpool",
    "dropout": "dropout",
    "lrn": "normalization",
    "normalization": "normalization",
    "batchnorm": "batchnorm",
    "soft": "softmax",
    "softmax": "softmax",
    "route": "route",
    "upsample": "upsample",
}

# The whitespace that Darknet's strip() in utils.c removes. It leaves "\r" alone.
_STRIPPED_WHITESPACE = str.maketrans("", "", " \t\n")

# Numeric prefixes that C's atoi and atof (strtod) accept, after the leading
# whitespace that both skip.
_C_INT_PREFIX = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_C_HEX_FLOAT = r"0x(?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?[0-9]+)?"
_C_DECIMAL_FLOAT = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?"
_C_FLOAT_PREFIX = re.compile(
    rf"[ \t\n\v\f\r]*([+-]?)({_C_HEX_FLOAT}|{_C_DECIMAL_FLOAT}|infinity|inf|nan)",
    re.IGNORECASE,
)

_CRLF_HINT = (
    " The line ends with a carriage return, which Darknet does not strip, so"
    " convert the file to LF line endings."
)


class CfgError(ValueError):
    """Invalid Darknet configuration, or one whose layer sizes cannot be inferred.

    The message starts with ``NAME:LINE: [SECTION]`` where those are known, for
    example ``yolov3.cfg:618: [route] layers=-9 points before the first layer``.

    Parameters
    ----------
    reason : str
        What is wrong, without the location prefix.
    name : str, optional
        File name, or another label for the configuration text.
    line : int, optional
        1-based line number of the offending line or section header.
    section_type : str, optional
        Section name as written in the file, without brackets.

    Attributes
    ----------
    reason, name, line, section_type
        The constructor arguments.
    """

    def __init__(
        self,
        reason: str,
        *,
        name: Optional[str] = None,
        line: Optional[int] = None,
        section_type: Optional[str] = None,
    ) -> None:
        self.reason = reason
        self.name = name
        self.line = line
        self.section_type = section_type

        prefix = ""
        if name is not None and line is not None:
            prefix = f"{name}:{line}: "
        elif name is not None:
            prefix = f"{name}: "
        elif line is not None:
            prefix = f"line {line}: "
        if section_type is not None:
            prefix += f"[{section_type}] "
        super().__init__(prefix + reason)


@dataclass(frozen=True)
class Section:
    """One ``[type]`` section of a configuration and the options below it.

    Attributes
    ----------
    type : str
        Section name as written, without the brackets, for example ``"conv"``.
    line : int
        1-based line number of the section header.
    options : dict of str to str
        Option values by key, with all spaces and tabs removed. A repeated key
        keeps its first value.
    """

    type: str
    line: int
    options: dict[str, str] = field(hash=False)

    @property
    def layer_type(self) -> Optional[str]:
        """Canonical Darknet type (``"conv"`` gives ``"convolutional"``).

        ``[net]`` and ``[network]`` give ``"net"``. Names that Darknet does not
        recognize give None.
        """
        return _LAYER_TYPES.get(self.type)


@dataclass(frozen=True)
class LayerShape:
    """Output size of one layer, as Darknet's parser computes it.

    Attributes
    ----------
    index : int
        0-based position among the layers, not counting ``[net]``.
    line : int
        1-based line number of the section header.
    type : str
        Canonical layer type (see :attr:`Section.layer_type`).
    w, h, c : int
        Output width, height and channels (``out_w``, ``out_h``, ``out_c``).
        Darknet leaves them at 0 for layers whose output is not an image, such
        as ``[softmax]`` and ``[cost]``. ``[connected]`` outputs 1x1xN.
    outputs : int
        Number of output values per image (``l.outputs``), which the next
        layer receives as ``inputs``.
    """

    index: int
    line: int
    type: str
    w: int
    h: int
    c: int
    outputs: int


@dataclass(frozen=True)
class YoloOptions:
    """Options and sizes of one ``[yolo]`` layer, as upstream ``parse_yolo`` sets them.

    Attributes
    ----------
    index : int
        0-based position among the layers, not counting ``[net]``.
    line : int
        1-based line number of the ``[yolo]`` header.
    classes : int
        Number of classes (``classes``, default 20).
    num : int
        Total number of anchors over all YOLO layers (``num``, default 1).
    mask : tuple of int
        Indices of the anchors that this layer predicts (``mask``, default
        ``range(num)``).
    anchors : tuple of float
        All ``num`` anchors as flat ``w0, h0, w1, h1, ...`` in input pixels,
        length ``2 * num``. Entries missing from ``anchors`` are 0.5, the value
        that ``make_yolo_layer`` fills in.
    jitter : float
        ``jitter``, default 0.2.
    ignore_thresh : float
        ``ignore_thresh``, default 0.5.
    truth_thresh : float
        ``truth_thresh``, default 1.
    random : int
        ``random``, default 0.
    max_boxes : int
        ``max``, default 90.
    w, h : int
        Grid width and height, which are the input size of the layer.
    net_w, net_h : int
        Network input width and height.
    batch : int
        Images per forward pass: ``[net]`` batch / subdivisions * time_steps.

    Notes
    -----
    Darknet stores the float options in C ``float``. The values here are the
    ``double`` that ``atof`` returns, and converting them with
    ``numpy.float32`` gives Darknet's value.
    """

    index: int
    line: int
    classes: int
    num: int
    mask: tuple[int, ...]
    anchors: tuple[float, ...]
    jitter: float
    ignore_thresh: float
    truth_thresh: float
    random: int
    max_boxes: int
    w: int
    h: int
    net_w: int
    net_h: int
    batch: int


def parse_cfg(text: str, name: str = "<string>") -> list[Section]:
    """Parse configuration text into sections, with Darknet's ``read_cfg`` rules.

    Parameters
    ----------
    text : str
        Configuration text. Only ``"\\n"`` ends a line, as in Darknet's
        ``fgetl``, so a ``"\\r"`` before it stays part of the line.
    name : str, optional
        Label for the text in error messages, usually the file name.

    Returns
    -------
    list of Section
        Sections in file order, including ``[net]``.

    Raises
    ------
    CfgError
        If an option comes before the first section, where Darknet crashes.
        If a section header does not end with ``]``. If a line has no ``=``,
        which Darknet stores as an option without a value. If a line ends in
        ``=``, which Darknet reports as "Config file error" and skips.
    """
    sections: list[Section] = []

    for line_number, raw_line in enumerate(text.split("\n"), start=1):
        line = raw_line.translate(_STRIPPED_WHITESPACE)
        hint = _CRLF_HINT if line.endswith("\r") else ""

        if not line or line[0] in "#;":
            continue

        if line[0] == "[":
            if not line.endswith("]"):
                raise CfgError(
                    f"invalid section header {line!r}. A header must end with"
                    f" ']'.{hint}",
                    name=name,
                    line=line_number,
                )
            sections.append(Section(line[1:-1], line_number, {}))
            continue

        if not sections:
            raise CfgError(
                f"option {line!r} comes before the first section. Start the file"
                " with [net].",
                name=name,
                line=line_number,
            )

        key, equals, value = line.partition("=")
        if not equals:
            raise CfgError(
                f"invalid line {line!r}, expected key=value.{hint}",
                name=name,
                line=line_number,
            )
        if not value:
            raise CfgError(
                f"option {key!r} has no value after '='",
                name=name,
                line=line_number,
            )

        sections[-1].options.setdefault(key, value)

    return sections


def read_cfg(path: str | os.PathLike[str]) -> list[Section]:
    """Read and parse a configuration file with Darknet's ``read_cfg`` rules.

    Parameters
    ----------
    path : str or os.PathLike
        Path of the ``.cfg`` file. Error messages name it as given.

    Returns
    -------
    list of Section
        Sections in file order, including ``[net]``.

    Raises
    ------
    OSError
        If the file cannot be read.
    CfgError
        If the text is invalid, as listed in :func:`parse_cfg`.
    """
    with open(path, "rb") as file:
        data = file.read()

    # Darknet reads bytes, so bytes that are not UTF-8, usually in comments,
    # must not stop the parse. Reading bytes also keeps the "\r" that text mode
    # would drop.
    text = data.decode("utf-8", errors="replace")
    return parse_cfg(text, name=os.fspath(path))


class _Output(NamedTuple):
    """Output size of a layer: ``out_w``, ``out_h``, ``out_c`` and ``outputs``."""

    w: int
    h: int
    c: int
    outputs: int


@dataclass(frozen=True)
class _Network:
    """Values of ``[net]`` that layer sizes depend on."""

    w: int
    h: int
    c: int
    inputs: int
    batch: int
    time_steps: int


@dataclass(frozen=True)
class _LayerInput:
    """Input size and context of one layer, like Darknet's ``size_params``."""

    section: Section
    index: int
    input: _Output
    net: _Network
    previous: Sequence[LayerShape]
    name: Optional[str]

    def error(self, reason: str) -> CfgError:
        return CfgError(
            reason,
            name=self.name,
            line=self.section.line,
            section_type=self.section.type,
        )

    def require_image(self) -> None:
        """Raise unless the input has nonzero w, h and c, as Darknet checks."""
        w, h, c, _ = self.input
        if not (w and h and c):
            raise self.error(
                f"input must be an image, but it is {w}x{h}x{c}"
                f" ({self.input.outputs} values). Put a layer with an image output"
                " before it."
            )


def _c_atoi(text: str) -> int:
    """Return what C's atoi returns for text: its integer prefix, or 0."""
    match = _C_INT_PREFIX.match(text)
    if match is None:
        return 0
    return int(match.group(1))


def _c_atof(text: str) -> float:
    """Return what C's atof returns for text: its float prefix, or 0.0."""
    match = _C_FLOAT_PREFIX.match(text)
    if match is None:
        return 0.0

    sign, number = match.groups()
    if number.lower().startswith("0x"):
        value = float.fromhex(number)
    else:
        value = float(number)
    return -value if sign == "-" else value


def _c_divide(numerator: int, denominator: int) -> int:
    """Divide like C's integer ``/``, which truncates toward zero."""
    quotient = abs(numerator) // abs(denominator)
    if (numerator < 0) != (denominator < 0):
        return -quotient
    return quotient


def _int_option(section: Section, key: str, default: int) -> int:
    value = section.options.get(key)
    return default if value is None else _c_atoi(value)


def _float_option(section: Section, key: str, default: float) -> float:
    value = section.options.get(key)
    return default if value is None else _c_atof(value)


def _require_option(layer: _LayerInput, key: str) -> str:
    value = layer.section.options.get(key)
    if value is None:
        raise layer.error(f"missing required option {key}")
    return value


def _require_nonzero(layer: _LayerInput, key: str, value: int) -> None:
    if value == 0:
        raise layer.error(f"{key}=0 is invalid because Darknet divides by it")


def _require_positive_output(layer: _LayerInput, output: _Output, cause: str) -> None:
    """Raise if an image layer would output a zero or negative size."""
    if output.w > 0 and output.h > 0 and output.c > 0:
        return

    in_w, in_h, in_c, _ = layer.input
    raise layer.error(
        f"output would be {output.w}x{output.h}x{output.c} for input"
        f" {in_w}x{in_h}x{in_c} with {cause}. Use a larger input or change"
        " those options."
    )


def _resolve_layer_index(layer: _LayerInput, key: str, text: str) -> int:
    """Resolve a ``[route]`` or ``[shortcut]`` reference to a 0-based index.

    Negative values count back from this layer, as in Darknet. For an index
    outside the previous layers, Darknet reads out of bounds or an empty layer,
    so such an index raises CfgError.
    """
    index = _c_atoi(text)
    if index < 0:
        index += layer.index

    if index < 0:
        raise layer.error(f"{key}={text} points before the first layer")
    if index >= layer.index and layer.index == 0:
        raise layer.error(
            f"{key}={text} points at layer {index}, but this is the first layer"
        )
    if index >= layer.index:
        raise layer.error(
            f"{key}={text} points at layer {index}, but only layers 0 to"
            f" {layer.index - 1} come before this one"
        )
    return index


def _shape_convolutional(layer: _LayerInput) -> _Output:
    section = layer.section
    filters = _int_option(section, "filters", 1)
    size = _int_option(section, "size", 1)
    stride = _int_option(section, "stride", 1)
    padding = _int_option(section, "padding", 0)

    # pad=1 overrides padding with "same" padding for odd sizes.
    if _int_option(section, "pad", 0):
        padding = _c_divide(size, 2)

    layer.require_image()
    _require_nonzero(layer, "stride", stride)

    # convolutional_out_width/height in convolutional_layer.c.
    w = _c_divide(layer.input.w + 2 * padding - size, stride) + 1
    h = _c_divide(layer.input.h + 2 * padding - size, stride) + 1
    output = _Output(w, h, filters, w * h * filters)

    cause = f"size={size}, stride={stride}, padding={padding}, filters={filters}"
    _require_positive_output(layer, output, cause)
    return output


def _shape_deconvolutional(layer: _LayerInput) -> _Output:
    section = layer.section
    filters = _int_option(section, "filters", 1)
    size = _int_option(section, "size", 1)
    stride = _int_option(section, "stride", 1)
    padding = _int_option(section, "padding", 0)
    if _int_option(section, "pad", 0):
        padding = _c_divide(size, 2)

    layer.require_image()

    w = (layer.input.w - 1) * stride + size - 2 * padding
    h = (layer.input.h - 1) * stride + size - 2 * padding
    output = _Output(w, h, filters, w * h * filters)

    cause = f"size={size}, stride={stride}, padding={padding}, filters={filters}"
    _require_positive_output(layer, output, cause)
    return output


def _shape_local(layer: _LayerInput) -> _Output:
    section = layer.section
    filters = _int_option(section, "filters", 1)
    size = _int_option(section, "size", 1)
    stride = _int_option(section, "stride", 1)
    pad = _int_option(section, "pad", 0)

    layer.require_image()
    _require_nonzero(layer, "stride", stride)

    # local_out_width/height in local_layer.c: with pad set, the window loses
    # only one pixel at the border, whatever the size.
    border = 1 if pad else size
    w = _c_divide(layer.input.w - border, stride) + 1
    h = _c_divide(layer.input.h - border, stride) + 1
    output = _Output(w, h, filters, w * h * filters)

    cause = f"size={size}, stride={stride}, pad={pad}, filters={filters}"
    _require_positive_output(layer, output, cause)
    return output


def _shape_maxpool(layer: _LayerInput) -> _Output:
    section = layer.section
    stride = _int_option(section, "stride", 1)
    size = _int_option(section, "size", stride)

    # "padding" is the total over both sides, and its default size - 1 keeps
    # the size for stride 1 (yolov3-tiny uses size=2, stride=1).
    padding = _int_option(section, "padding", size - 1)

    layer.require_image()
    _require_nonzero(layer, "stride", stride)

    in_w, in_h, c, _ = layer.input
    w = _c_divide(in_w + padding - size, stride) + 1
    h = _c_divide(in_h + padding - size, stride) + 1
    output = _Output(w, h, c, w * h * c)

    cause = f"size={size}, stride={stride}, padding={padding}"
    _require_positive_output(layer, output, cause)
    return output


def _shape_avgpool(layer: _LayerInput) -> _Output:
    layer.require_image()
    return _Output(1, 1, layer.input.c, layer.input.c)


def _shape_upsample(layer: _LayerInput) -> _Output:
    stride = _int_option(layer.section, "stride", 2)
    in_w, in_h, c, _ = layer.input

    # A negative stride downsamples by -stride.
    if stride < 0:
        w = _c_divide(in_w, -stride)
        h = _c_divide(in_h, -stride)
    else:
        w = in_w * stride
        h = in_h * stride
    output = _Output(w, h, c, w * h * c)

    _require_positive_output(layer, output, f"stride={stride}")
    return output


def _shape_reorg(layer: _LayerInput) -> _Output:
    section = layer.section
    stride = _int_option(section, "stride", 1)
    reverse = _int_option(section, "reverse", 0)
    extra = _int_option(section, "extra", 0)

    layer.require_image()
    in_w, in_h, in_c, _ = layer.input

    # With extra set, the output is a flat vector of the inputs plus extra
    # values, and Darknet sets its w, h and c to 0.
    if extra:
        return _Output(0, 0, 0, in_w * in_h * in_c + extra)

    _require_nonzero(layer, "stride", stride)
    if reverse:
        w = in_w * stride
        h = in_h * stride
        c = _c_divide(in_c, stride * stride)
    else:
        w = _c_divide(in_w, stride)
        h = _c_divide(in_h, stride)
        c = in_c * stride * stride
    output = _Output(w, h, c, w * h * c)

    _require_positive_output(layer, output, f"stride={stride}, reverse={reverse}")
    return output


def _shape_route(layer: _LayerInput) -> _Output:
    text = _require_option(layer, "layers")
    indices = [
        _resolve_layer_index(layer, "layers", piece) for piece in text.split(",")
    ]
    sources = [layer.previous[index] for index in indices]

    first = sources[0]
    w, h, c = first.w, first.h, first.c

    # parse_route concatenates channels of inputs that match the first input's
    # w and h. Any other input zeroes w, h and c, but later matching inputs
    # still add their channels, so the output is then not an image.
    for source in sources[1:]:
        if source.w == first.w and source.h == first.h:
            c += source.c
        else:
            w = h = c = 0

    outputs = sum(source.outputs for source in sources)
    return _Output(w, h, c, outputs)


def _shape_shortcut(layer: _LayerInput) -> _Output:
    text = _require_option(layer, "from")
    _resolve_layer_index(layer, "from", text)

    # The output has the size of the previous layer. The "from" layer may
    # differ in size because shortcut_cpu samples or strides it.
    w, h, c, _ = layer.input
    return _Output(w, h, c, w * h * c)


def _shape_same_size(layer: _LayerInput) -> _Output:
    """Size of layers that keep w, h and c and output w * h * c values."""
    w, h, c, _ = layer.input
    return _Output(w, h, c, w * h * c)


def _shape_passthrough(layer: _LayerInput) -> _Output:
    """Size of layers that keep w, h, c and the number of values."""
    return layer.input


def _shape_flat(layer: _LayerInput) -> _Output:
    """Size of layers that keep the number of values, with w, h and c left at 0."""
    return _Output(0, 0, 0, layer.input.outputs)


def _shape_softmax(layer: _LayerInput) -> _Output:
    groups = _int_option(layer.section, "groups", 1)
    _require_nonzero(layer, "groups", groups)

    inputs = layer.input.outputs
    if inputs % groups:
        raise layer.error(f"the {inputs} inputs do not split into groups={groups}")

    # parse_softmax sets l.w, l.h and l.c but not out_w, out_h and out_c, so the
    # next layer gets a flat input.
    return _Output(0, 0, 0, inputs)


def _shape_connected(layer: _LayerInput) -> _Output:
    outputs = _int_option(layer.section, "output", 1)
    return _Output(1, 1, outputs, outputs)


def _shape_recurrent(layer: _LayerInput) -> _Output:
    """Size of ``[rnn]``, ``[gru]`` and ``[lstm]``: a flat vector of ``output``."""
    return _Output(0, 0, 0, _int_option(layer.section, "output", 1))


def _shape_crnn(layer: _LayerInput) -> _Output:
    output_filters = _int_option(layer.section, "output_filters", 1)

    # parse_crnn passes (w, h) where make_crnn_layer expects (h, w), so Darknet
    # swaps the output width and height of non-square inputs.
    w = layer.input.h
    h = layer.input.w
    return _Output(w, h, output_filters, w * h * output_filters)


def _shape_crop(layer: _LayerInput) -> _Output:
    crop_w = _int_option(layer.section, "crop_width", 1)
    crop_h = _int_option(layer.section, "crop_height", 1)
    layer.require_image()

    c = layer.input.c
    output = _Output(crop_w, crop_h, c, crop_w * crop_h * c)
    cause = f"crop_width={crop_w}, crop_height={crop_h}"
    _require_positive_output(layer, output, cause)
    return output


def _check_detector_inputs(layer: _LayerInput, expected: int, formula: str) -> None:
    """Raise unless the input has ``expected`` values, as the parsers assert."""
    inputs = layer.input.outputs
    if inputs == expected:
        return

    w, h, c, _ = layer.input
    raise layer.error(
        f"expects {formula} = {expected} input values, but its input is"
        f" {w}x{h}x{c} with {inputs} values. Make the layer before it output"
        f" {expected} values."
    )


def _shape_region(layer: _LayerInput) -> _Output:
    section = layer.section
    coords = _int_option(section, "coords", 4)
    classes = _int_option(section, "classes", 20)
    num = _int_option(section, "num", 1)

    # Darknet only asserts the number of inputs, which a non-image input fails
    # unless it is empty.
    layer.require_image()
    w, h, _, _ = layer.input
    c = num * (classes + coords + 1)
    formula = f"{w}*{h}*num*(classes+coords+1) = {w}*{h}*{num}*({classes}+{coords}+1)"
    _check_detector_inputs(layer, w * h * c, formula)
    return _Output(w, h, c, w * h * c)


def _shape_detection(layer: _LayerInput) -> _Output:
    section = layer.section
    coords = _int_option(section, "coords", 1)
    classes = _int_option(section, "classes", 1)
    num = _int_option(section, "num", 1)
    side = _int_option(section, "side", 7)

    expected = side * side * ((1 + coords) * num + classes)
    formula = (
        f"side*side*((1+coords)*num+classes)"
        f" = {side}*{side}*((1+{coords})*{num}+{classes})"
    )
    _check_detector_inputs(layer, expected, formula)

    # make_detection_layer leaves out_w, out_h and out_c at 0.
    return _Output(0, 0, 0, expected)


def _shape_iseg(layer: _LayerInput) -> _Output:
    classes = _int_option(layer.section, "classes", 20)
    ids = _int_option(layer.section, "ids", 32)

    layer.require_image()
    w, h, _, _ = layer.input
    c = classes + ids
    formula = f"{w}*{h}*(classes+ids) = {w}*{h}*({classes}+{ids})"
    _check_detector_inputs(layer, w * h * c, formula)
    return _Output(w, h, c, w * h * c)


def _parse_yolo(layer: _LayerInput) -> YoloOptions:
    """Read a ``[yolo]`` section as upstream ``parse_yolo`` does, with checks.

    Besides the ``l.outputs == params.inputs`` assertion, this rejects what
    Darknet accepts but later reads out of bounds: ``num`` below 1, a negative
    ``classes``, a mask index outside ``range(num)`` and more than ``2 * num``
    anchor values.
    """
    section = layer.section
    classes = _int_option(section, "classes", 20)
    num = _int_option(section, "num", 1)

    if num < 1:
        raise layer.error(f"invalid num={num}, which must be at least 1")
    if classes < 0:
        raise layer.error(f"invalid classes={classes}, which must not be negative")

    mask_text = section.options.get("mask")
    if mask_text is None:
        mask = tuple(range(num))
    else:
        mask = tuple(_c_atoi(piece) for piece in mask_text.split(","))

    for anchor_index in mask:
        if not 0 <= anchor_index < num:
            raise layer.error(
                f"mask={mask_text} contains {anchor_index}, which is not an anchor"
                f" index in 0 to {num - 1} (num={num})"
            )

    anchors = [0.5] * (2 * num)
    anchors_text = section.options.get("anchors")
    if anchors_text is not None:
        values = [_c_atof(piece) for piece in anchors_text.split(",")]
        if len(values) > len(anchors):
            raise layer.error(
                f"anchors has {len(values)} values, but num={num} allows at most"
                f" {len(anchors)}"
            )
        anchors[: len(values)] = values

    # parse_yolo asserts l.outputs == params.inputs, where the layer outputs
    # w * h * len(mask) * (classes + 5) values for the input's w and h. That
    # fails for any non-image input except an empty one, which is rejected here.
    layer.require_image()
    w, h, in_c, inputs = layer.input
    channels = len(mask) * (classes + 5)
    if w * h * channels != inputs:
        raise layer.error(
            f"needs len(mask)*(classes+5) = {len(mask)}*({classes}+5) = {channels}"
            f" input channels, but its input is {w}x{h}x{in_c} with {inputs}"
            f" values. Set filters={channels} in the layer before it."
        )

    return YoloOptions(
        index=layer.index,
        line=section.line,
        classes=classes,
        num=num,
        mask=mask,
        anchors=tuple(anchors),
        jitter=_float_option(section, "jitter", 0.2),
        ignore_thresh=_float_option(section, "ignore_thresh", 0.5),
        truth_thresh=_float_option(section, "truth_thresh", 1.0),
        random=_int_option(section, "random", 0),
        max_boxes=_int_option(section, "max", 90),
        w=w,
        h=h,
        net_w=layer.net.w,
        net_h=layer.net.h,
        batch=layer.net.batch,
    )


_SHAPE_FUNCTIONS: dict[str, Callable[[_LayerInput], _Output]] = {
    "convolutional": _shape_convolutional,
    "deconvolutional": _shape_deconvolutional,
    "local": _shape_local,
    "maxpool": _shape_maxpool,
    "avgpool": _shape_avgpool,
    "upsample": _shape_upsample,
    "reorg": _shape_reorg,
    "route": _shape_route,
    "shortcut": _shape_shortcut,
    "batchnorm": _shape_same_size,
    "normalization": _shape_same_size,
    "activation": _shape_passthrough,
    "logistic": _shape_passthrough,
    "l2norm": _shape_passthrough,
    "dropout": _shape_passthrough,
    "cost": _shape_flat,
    "softmax": _shape_softmax,
    "connected": _shape_connected,
    "rnn": _shape_recurrent,
    "gru": _shape_recurrent,
    "lstm": _shape_recurrent,
    "crnn": _shape_crnn,
    "crop": _shape_crop,
    "region": _shape_region,
    "detection": _shape_detection,
    "iseg": _shape_iseg,
}


def _validate_size_override(value: Optional[int], argument: str) -> Optional[int]:
    if value is None:
        return None

    size = operator.index(value)
    if size <= 0:
        raise ValueError(f"{argument} must be a positive number of pixels, got {size}")
    return size


def _parse_network(
    section: Section,
    width: Optional[int],
    height: Optional[int],
    name: Optional[str],
) -> _Network:
    """Read the ``[net]`` values that layer sizes depend on, as parse_net_options."""

    def error(reason: str) -> CfgError:
        return CfgError(reason, name=name, line=section.line, section_type=section.type)

    batch = _int_option(section, "batch", 1)
    subdivisions = _int_option(section, "subdivisions", 1)
    time_steps = _int_option(section, "time_steps", 1)
    if subdivisions == 0:
        raise error("subdivisions=0 is invalid because Darknet divides batch by it")
    if time_steps == 0:
        raise error("time_steps=0 is invalid because it makes the batch 0")

    w = _int_option(section, "width", 0) if width is None else width
    h = _int_option(section, "height", 0) if height is None else height
    c = _int_option(section, "channels", 0)
    inputs = _int_option(section, "inputs", w * h * c)
    if not inputs and not (w and h and c):
        raise error("missing input size. Set width, height and channels, or inputs.")

    # A forward pass processes batch / subdivisions images for each of
    # time_steps steps.
    batch = _c_divide(batch, subdivisions) * time_steps
    return _Network(w, h, c, inputs, batch, time_steps)


def _infer_layers(
    sections: Sequence[Section],
    width: Optional[int],
    height: Optional[int],
    name: Optional[str],
) -> tuple[list[LayerShape], list[YoloOptions]]:
    """Walk the layers like parse_network_cfg and return shapes and YOLO options."""
    width = _validate_size_override(width, "width")
    height = _validate_size_override(height, "height")

    if not sections:
        raise CfgError("the configuration has no sections", name=name)

    first = sections[0]
    if first.layer_type != "net":
        raise CfgError(
            "the first section must be [net] or [network]",
            name=name,
            line=first.line,
            section_type=first.type,
        )
    net = _parse_network(first, width, height, name)

    shapes: list[LayerShape] = []
    yolo_options: list[YoloOptions] = []
    current = _Output(net.w, net.h, net.c, net.inputs)

    for index, section in enumerate(sections[1:]):
        layer = _LayerInput(section, index, current, net, shapes, name)
        layer_type = section.layer_type

        if layer_type is None:
            raise layer.error(
                "unknown section type. Darknet 61c9d02e recognizes "
                + ", ".join(f"[{known}]" for known in _LAYER_TYPES)
            )
        if layer_type == "net":
            raise layer.error("only the first section may be [net] or [network]")

        # The YOLO layer's size follows from its options, so it is read once
        # and both results are kept.
        if layer_type == "yolo":
            options = _parse_yolo(layer)
            yolo_options.append(options)
            c = len(options.mask) * (options.classes + 5)
            current = _Output(options.w, options.h, c, options.w * options.h * c)
        else:
            current = _SHAPE_FUNCTIONS[layer_type](layer)

        shapes.append(LayerShape(index, section.line, layer_type, *current))

    return shapes, yolo_options


def layer_shapes(
    sections: Sequence[Section],
    width: Optional[int] = None,
    height: Optional[int] = None,
    *,
    name: Optional[str] = None,
) -> list[LayerShape]:
    """Infer every layer's output size as Darknet's ``parse_network_cfg`` does.

    Parameters
    ----------
    sections : sequence of Section
        Parsed configuration, starting with ``[net]`` or ``[network]``.
    width, height : int, optional
        Network input size in pixels, replacing ``[net]`` width and height, as
        when a user resizes the network.
    name : str, optional
        File name to put in error messages.

    Returns
    -------
    list of LayerShape
        One entry per section after ``[net]``, in order.

    Raises
    ------
    CfgError
        Where Darknet reports an error or fails an assertion. These cases are
        no sections, a first section other than ``[net]``, no input size, a
        non-image input to an image layer, and an input size that a
        ``[yolo]``, ``[region]``, ``[detection]`` or ``[iseg]`` layer does not
        expect.

        Also where Darknet goes on with an invalid network or crashes. These
        cases are an unknown section type, a later ``[net]``, a missing
        ``layers`` or ``from``, a ``[route]`` or ``[shortcut]`` reference
        outside the previous layers, a zero divisor, an image layer whose
        output would be empty, and the ``[yolo]`` cases listed in
        :func:`yolo_layers`.
    ValueError
        If width or height is not a positive integer.
    TypeError
        If width or height is not an integer.
    """
    shapes, _ = _infer_layers(sections, width, height, name)
    return shapes


def yolo_layers(
    sections: Sequence[Section],
    width: Optional[int] = None,
    height: Optional[int] = None,
    *,
    name: Optional[str] = None,
) -> list[YoloOptions]:
    """Infer the layer sizes and return the options of every ``[yolo]`` layer.

    Parameters
    ----------
    sections : sequence of Section
        Parsed configuration, starting with ``[net]`` or ``[network]``.
    width, height : int, optional
        Network input size in pixels, replacing ``[net]`` width and height.
    name : str, optional
        File name to put in error messages.

    Returns
    -------
    list of YoloOptions
        One entry per ``[yolo]`` section, in order. It is empty for networks
        without one, such as YOLOv2 with ``[region]``.

    Raises
    ------
    CfgError
        If any layer's size cannot be inferred, as listed in
        :func:`layer_shapes`. For ``[yolo]`` that includes an input whose
        channel count is not ``len(mask) * (classes + 5)``, a mask index outside
        ``range(num)``, more than ``2 * num`` anchor values, ``num`` below 1 and
        a negative ``classes``.
    ValueError
        If width or height is not a positive integer.
    TypeError
        If width or height is not an integer.
    """
    _, yolo_options = _infer_layers(sections, width, height, name)
    return yolo_options


def read_yolo_layers(
    path: str | os.PathLike[str],
    width: Optional[int] = None,
    height: Optional[int] = None,
) -> list[YoloOptions]:
    """Read a configuration file and return the options of its ``[yolo]`` layers.

    Parameters
    ----------
    path : str or os.PathLike
        Path of the ``.cfg`` file. Error messages name it as given.
    width, height : int, optional
        Network input size in pixels, replacing ``[net]`` width and height.

    Returns
    -------
    list of YoloOptions
        One entry per ``[yolo]`` section, in order.

    Raises
    ------
    OSError
        If the file cannot be read.
    CfgError
        If the file is invalid, as listed in :func:`parse_cfg` and
        :func:`yolo_layers`.
    ValueError
        If width or height is not a positive integer.
    """
    sections = read_cfg(path)
    return yolo_layers(sections, width, height, name=os.fspath(path))


def upstream_cfg(name: str = "yolov3.cfg") -> pathlib.Path:
    """Return the path of an upstream cfg file shipped in the package.

    The build copies ``yolov3.cfg`` and ``yolov3-tiny.cfg`` from the
    compiled Darknet tree.
    """
    path = pathlib.Path(str(files("pydarknet_loss") / "_upstream" / "cfg" / name))
    if not path.is_file():
        raise FileNotFoundError(f"{name} is not among the shipped upstream cfg files")
    return path
