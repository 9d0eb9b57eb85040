"""Tests of the Darknet configuration parser and its layer size inference.

The expected sizes of upstream configurations are what upstream
``parse_network_cfg`` (pjreddie/darknet 61c9d02e, built for the CPU) reports for
the same files.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pydarknet_loss.cfg import (
    CfgError,
    LayerShape,
    Section,
    layer_shapes,
    parse_cfg,
    read_cfg,
    read_yolo_layers,
    yolo_layers,
)

DEFAULT_UPSTREAM = Path(__file__).parents[1] / "darknet_src" / "upstream"
UPSTREAM = Path(os.environ.get("DARKNET_SRC", DEFAULT_UPSTREAM))
UPSTREAM_CFG = UPSTREAM / "cfg"
UPSTREAM_CFGS = sorted(UPSTREAM_CFG.glob("*.cfg")) if UPSTREAM_CFG.is_dir() else []
DETECTOR_CFGS = [
    path
    for path in UPSTREAM_CFGS
    if "[yolo]" in path.read_text() or "[region]" in path.read_text()
]

needs_upstream = pytest.mark.skipif(
    not UPSTREAM_CFG.is_dir(),
    reason=f"no upstream Darknet cfg folder at {UPSTREAM_CFG}; set DARKNET_SRC",
)

YOLOV3_ANCHORS = (
    10.0, 13.0, 16.0, 30.0, 33.0, 23.0, 30.0, 61.0, 62.0,
    45.0, 59.0, 119.0, 116.0, 90.0, 156.0, 198.0, 373.0, 326.0,
)  # fmt: skip
YOLOV3_TINY_ANCHORS = (
    10.0, 14.0, 23.0, 27.0, 37.0, 58.0, 81.0, 82.0, 135.0, 169.0, 344.0, 319.0,
)  # fmt: skip

# Output (w, h, c) of every yolov3-tiny.cfg layer at 416x416, as upstream
# parse_network_cfg computes them.
YOLOV3_TINY_SHAPES = [
    (416, 416, 16), (208, 208, 16), (208, 208, 32), (104, 104, 32),
    (104, 104, 64), (52, 52, 64), (52, 52, 128), (26, 26, 128),
    (26, 26, 256), (13, 13, 256), (13, 13, 512), (13, 13, 512),
    (13, 13, 1024), (13, 13, 256), (13, 13, 512), (13, 13, 255),
    (13, 13, 255), (13, 13, 256), (13, 13, 128), (26, 26, 128),
    (26, 26, 384), (26, 26, 256), (26, 26, 255), (26, 26, 255),
]  # fmt: skip

# Number of layers and the last layer's (type, w, h, c, outputs), as upstream
# parse_network_cfg computes them.
UPSTREAM_LAST_LAYERS = {
    "yolov2.cfg": (32, ("region", 19, 19, 425, 153425)),
    "yolov2-tiny.cfg": (16, ("region", 13, 13, 425, 71825)),
    "yolo9000.cfg": (25, ("region", 17, 17, 28269, 8169741)),
    "yolov1.cfg": (32, ("detection", 0, 0, 0, 1715)),
    "yolov3-spp.cfg": (114, ("yolo", 76, 76, 255, 1472880)),
    "yolov3-openimages.cfg": (107, ("yolo", 76, 76, 1818, 10500768)),
    "darknet53.cfg": (78, ("softmax", 0, 0, 0, 1000)),
    "densenet201.cfg": (305, ("softmax", 0, 0, 0, 1000)),
    "gru.cfg": (5, ("softmax", 0, 0, 0, 256)),
    "jnet-conv.cfg": (18, ("maxpool", 1, 1, 1024, 1024)),
}

NET = """\
[net]
batch=1
width={width}
height={height}
channels=3
"""


def make_cfg(body: str, width: int = 32, height: int = 32) -> str:
    """Return configuration text of a [net] section followed by body."""
    return NET.format(width=width, height=height) + body


def shapes_of(body: str, width: int = 32, height: int = 32) -> list[LayerShape]:
    return layer_shapes(parse_cfg(make_cfg(body, width, height)))


def conv(filters: int, size: int = 1, stride: int = 1, pad: int = 0) -> str:
    """Return a [convolutional] section."""
    return (
        f"\n[convolutional]\nfilters={filters}\nsize={size}\nstride={stride}\n"
        f"pad={pad}\n"
    )


# Upstream configuration files.


@needs_upstream
def test_yolov3_grids_at_608():
    layers = read_yolo_layers(UPSTREAM_CFG / "yolov3.cfg")

    assert [(layer.w, layer.h) for layer in layers] == [(19, 19), (38, 38), (76, 76)]
    assert {(layer.net_w, layer.net_h) for layer in layers} == {(608, 608)}


@needs_upstream
def test_yolov3_grids_at_416():
    layers = read_yolo_layers(UPSTREAM_CFG / "yolov3.cfg", width=416, height=416)

    assert [(layer.w, layer.h) for layer in layers] == [(13, 13), (26, 26), (52, 52)]
    assert {(layer.net_w, layer.net_h) for layer in layers} == {(416, 416)}


@needs_upstream
def test_yolov3_non_square_override():
    layers = read_yolo_layers(UPSTREAM_CFG / "yolov3.cfg", width=416, height=320)

    assert [(layer.w, layer.h) for layer in layers] == [(13, 10), (26, 20), (52, 40)]


@needs_upstream
def test_yolov3_yolo_options():
    layers = read_yolo_layers(UPSTREAM_CFG / "yolov3.cfg")

    assert [layer.mask for layer in layers] == [(6, 7, 8), (3, 4, 5), (0, 1, 2)]
    assert [layer.line for layer in layers] == [607, 693, 780]
    assert [layer.index for layer in layers] == [82, 94, 106]
    for layer in layers:
        assert layer.anchors == YOLOV3_ANCHORS
        assert layer.classes == 80
        assert layer.num == 9
        assert layer.jitter == 0.3
        assert layer.ignore_thresh == 0.7
        assert layer.truth_thresh == 1.0
        assert layer.random == 1
        assert layer.max_boxes == 90

        # batch=64 and subdivisions=16 in [net].
        assert layer.batch == 4


@needs_upstream
def test_yolov3_tiny_yolo_options():
    layers = read_yolo_layers(UPSTREAM_CFG / "yolov3-tiny.cfg")

    assert [(layer.w, layer.h) for layer in layers] == [(13, 13), (26, 26)]
    assert [layer.mask for layer in layers] == [(3, 4, 5), (0, 1, 2)]
    assert [layer.line for layer in layers] == [132, 174]
    assert [layer.index for layer in layers] == [16, 23]
    for layer in layers:
        assert layer.anchors == YOLOV3_TINY_ANCHORS
        assert layer.num == 6
        assert layer.classes == 80
        assert layer.batch == 1


@needs_upstream
def test_yolov3_tiny_layer_shapes():
    shapes = layer_shapes(read_cfg(UPSTREAM_CFG / "yolov3-tiny.cfg"))

    assert [(shape.w, shape.h, shape.c) for shape in shapes] == YOLOV3_TINY_SHAPES
    for shape in shapes:
        assert shape.outputs == shape.w * shape.h * shape.c

    # Layer 11 is [maxpool] size=2 stride=1, whose default padding keeps 13x13.
    assert shapes[11].type == "maxpool"
    assert shapes[11].line == 93


@needs_upstream
@pytest.mark.parametrize("file_name", sorted(UPSTREAM_LAST_LAYERS))
def test_upstream_last_layer(file_name):
    count, last = UPSTREAM_LAST_LAYERS[file_name]
    shapes = layer_shapes(read_cfg(UPSTREAM_CFG / file_name))

    assert len(shapes) == count
    assert (shapes[-1].type, shapes[-1].w, shapes[-1].h) == last[:3]
    assert (shapes[-1].c, shapes[-1].outputs) == last[3:]


@needs_upstream
@pytest.mark.parametrize("path", DETECTOR_CFGS, ids=lambda path: path.name)
def test_upstream_detector_cfg(path):
    text = path.read_text()
    layers = yolo_layers(parse_cfg(text, name=path.name))

    assert len(layers) == text.count("[yolo]")
    for layer in layers:
        assert len(layer.anchors) == 2 * layer.num
        assert all(0 <= index < layer.num for index in layer.mask)


@needs_upstream
@pytest.mark.parametrize("path", UPSTREAM_CFGS, ids=lambda path: path.name)
def test_upstream_cfg_parses(path):
    # Upstream parse_network_cfg builds every cfg of the pinned tree, so each
    # one must infer without raising.
    sections = read_cfg(path)
    shapes = layer_shapes(sections)

    assert len(shapes) == len(sections) - 1
    assert [shape.line for shape in shapes] == [s.line for s in sections[1:]]


@needs_upstream
def test_upstream_folder_complete():
    names = {path.name for path in UPSTREAM_CFGS}

    assert len(DETECTOR_CFGS) == 10
    assert {"yolov3.cfg", "yolov3-tiny.cfg", "yolov2.cfg"} <= names


# Syntax.


def test_parse_comments_and_spaces():
    sections = parse_cfg(
        "# leading comment\n"
        "[net]\n"
        "  width = 416\n"
        "; semicolon comment\n"
        "\theight\t=\t320 \n"
        "\n"
        "[yolo]\n"
        "mask = 0, 1,2\n"
        "anchors = 10,13,  16,30\n"
    )

    assert [section.type for section in sections] == ["net", "yolo"]
    assert [section.line for section in sections] == [2, 7]
    assert sections[0].options == {"width": "416", "height": "320"}
    assert sections[1].options == {"mask": "0,1,2", "anchors": "10,13,16,30"}


def test_parse_spaces_inside_names():
    # Darknet's strip() removes inner spaces too, so "[ net ]" is "[net]".
    sections = parse_cfg("[ net ]\nig nore _thresh = . 5\n")

    assert sections[0].type == "net"
    assert sections[0].options == {"ignore_thresh": ".5"}


def test_parse_repeated_sections():
    sections = parse_cfg("[net]\n[conv]\nfilters=1\n[conv]\nfilters=2\n[conv]\n")

    assert [section.type for section in sections] == ["net", "conv", "conv", "conv"]
    assert [section.options for section in sections[1:]] == [
        {"filters": "1"},
        {"filters": "2"},
        {},
    ]


def test_parse_repeated_key_keeps_first():
    sections = parse_cfg("[net]\nwidth=416\nwidth=608\n")

    assert sections[0].options == {"width": "416"}


def test_parse_value_keeps_later_equals():
    sections = parse_cfg("[net]\nkey=a=b\n")

    assert sections[0].options == {"key": "a=b"}


def test_parse_option_before_section():
    with pytest.raises(CfgError, match=r"^<string>:2: option 'width=416' comes before"):
        parse_cfg("# comment\nwidth=416\n[net]\n")


def test_parse_line_without_equals():
    with pytest.raises(CfgError, match=r"^test\.cfg:3: invalid line 'width416'"):
        parse_cfg("[net]\nheight=416\nwidth416\n", name="test.cfg")


def test_parse_empty_value():
    with pytest.raises(CfgError, match=r"^<string>:2: option 'width' has no value"):
        parse_cfg("[net]\nwidth = \n")


def test_parse_unclosed_header():
    with pytest.raises(CfgError, match=r"^<string>:1: invalid section header '\[net'"):
        parse_cfg("[net\nwidth=416\n")


def test_parse_crlf_header():
    with pytest.raises(CfgError, match="carriage return") as caught:
        parse_cfg("[net]\r\nwidth=416\r\n")

    assert caught.value.line == 1


def test_parse_crlf_value_reads_like_atoi():
    # Darknet keeps "\r" in values, and atoi stops before it.
    text = "[net]\nwidth=8\r\nheight=4\r\nchannels=3\r\n[conv]\nfilters=2\r\n"
    sections = parse_cfg(text)
    shapes = layer_shapes(sections)

    assert sections[0].options["width"] == "8\r"
    assert (shapes[0].w, shapes[0].h, shapes[0].c) == (8, 4, 2)


def test_read_cfg_names_file(tmp_path):
    path = tmp_path / "broken.cfg"
    path.write_text("[net]\nwidth=416\nbatch\n")

    with pytest.raises(CfgError) as caught:
        read_cfg(path)

    assert str(caught.value).startswith(f"{path}:3: ")
    assert caught.value.name == str(path)
    assert caught.value.line == 3


@pytest.mark.parametrize(
    ("name", "layer_type"),
    [
        ("net", "net"),
        ("network", "net"),
        ("conv", "convolutional"),
        ("convolutional", "convolutional"),
        ("deconv", "deconvolutional"),
        ("max", "maxpool"),
        ("avg", "avgpool"),
        ("soft", "softmax"),
        ("conn", "connected"),
        ("lrn", "normalization"),
        ("yolo", "yolo"),
        ("YOLO", None),
        ("unknown", None),
    ],
)
def test_section_layer_type(name, layer_type):
    assert Section(name, 1, {}).layer_type == layer_type


# Size inference of each layer type.


def test_convolutional_shape():
    shapes = shapes_of(conv(8, size=3, stride=2, pad=1) + conv(4, size=3), 65, 33)

    assert (shapes[0].w, shapes[0].h, shapes[0].c) == (33, 17, 8)
    assert (shapes[1].w, shapes[1].h, shapes[1].c) == (31, 15, 4)
    assert shapes[1].outputs == 31 * 15 * 4


def test_convolutional_truncates_like_c():
    # (2 - 3) / 2 is 0 in C but -1 with Python's floor division.
    shapes = shapes_of(conv(4, size=3, stride=2), width=2, height=3)

    assert (shapes[0].w, shapes[0].h) == (1, 1)


def test_convolutional_empty_output():
    expected = r"^line 7: \[convolutional\] output would be 0x0x4 for input 4x4x3"

    with pytest.raises(CfgError, match=expected):
        shapes_of(conv(4, size=5), width=4, height=4)


def test_maxpool_stride_one():
    shapes = shapes_of("\n[maxpool]\nsize=2\nstride=1\n", width=13, height=13)

    assert (shapes[0].w, shapes[0].h, shapes[0].c) == (13, 13, 3)


def test_maxpool_padding():
    body = (
        "\n[maxpool]\nsize=3\nstride=2\n"
        "\n[max]\nsize=3\nstride=2\npadding=0\n"
        "\n[maxpool]\nstride=2\n"
    )
    shapes = shapes_of(body, width=24, height=16)

    # The default padding is size - 1 in total, not per side.
    assert (shapes[0].w, shapes[0].h) == (12, 8)
    assert (shapes[1].w, shapes[1].h) == (5, 3)

    # size defaults to stride.
    assert (shapes[2].w, shapes[2].h) == (3, 2)


def test_upsample_shape():
    body = "\n[upsample]\n\n[upsample]\nstride=3\n\n[upsample]\nstride=-2\n"
    shapes = shapes_of(body, width=5, height=4)

    assert (shapes[0].w, shapes[0].h, shapes[0].c) == (10, 8, 3)
    assert (shapes[1].w, shapes[1].h, shapes[1].c) == (30, 24, 3)
    assert (shapes[2].w, shapes[2].h, shapes[2].c) == (15, 12, 3)


def test_reorg_shape():
    body = (
        conv(64)
        + "\n[reorg]\nstride=2\n"
        + "\n[reorg]\nstride=4\nreverse=1\n"
        + "\n[reorg]\nextra=5\n"
    )
    shapes = shapes_of(body, width=26, height=14)

    assert (shapes[1].w, shapes[1].h, shapes[1].c) == (13, 7, 256)
    assert (shapes[2].w, shapes[2].h, shapes[2].c) == (52, 28, 16)
    assert (shapes[3].w, shapes[3].h, shapes[3].c) == (0, 0, 0)
    assert shapes[3].outputs == 52 * 28 * 16 + 5


def test_route_concatenates_channels():
    body = conv(4) + conv(5) + conv(6) + "\n[route]\nlayers = -1, 0\n"
    shapes = shapes_of(body)

    assert (shapes[3].w, shapes[3].h, shapes[3].c) == (32, 32, 10)
    assert shapes[3].outputs == 32 * 32 * 10


def test_route_absolute_and_negative():
    body = conv(4) + conv(5) + conv(6) + "\n[route]\nlayers=1\n\n[route]\nlayers=-4\n"
    shapes = shapes_of(body)

    assert shapes[3].c == 5
    assert shapes[4].c == 4


def test_route_size_mismatch():
    body = conv(4) + conv(5, stride=2) + conv(6) + "\n[route]\nlayers=0,1,-3\n"
    shapes = shapes_of(body)

    # Like parse_route, an input of another size zeroes w, h and c, and the
    # third input (layer 0 again), which matches the first, still adds its
    # channels.
    assert (shapes[3].w, shapes[3].h, shapes[3].c) == (0, 0, 4)
    assert shapes[3].outputs == 32 * 32 * 4 + 16 * 16 * 5 + 32 * 32 * 4


def test_route_size_mismatch_blocks_convolution():
    body = conv(4) + conv(5, stride=2) + "\n[route]\nlayers=0,1\n" + conv(2)

    with pytest.raises(CfgError, match=r"^line 22: \[convolutional\] input must be"):
        shapes_of(body)


def test_route_before_first_layer():
    body = conv(4) + conv(4) + "\n[route]\nlayers = -1, -9\n"

    with pytest.raises(CfgError) as caught:
        layer_shapes(parse_cfg(make_cfg(body)), name="net.cfg")

    assert str(caught.value) == (
        "net.cfg:19: [route] layers=-9 points before the first layer"
    )


def test_route_not_before_itself():
    body = conv(4) + conv(4) + "\n[route]\nlayers=2\n"

    with pytest.raises(CfgError, match=r"layers=2 points at layer 2, but only layers"):
        shapes_of(body)


def test_route_missing_layers():
    with pytest.raises(CfgError, match="missing required option layers"):
        shapes_of(conv(4) + "\n[route]\n")


def test_shortcut_shape():
    body = conv(8) + conv(4, stride=2) + conv(8) + "\n[shortcut]\nfrom=-3\n"
    shapes = shapes_of(body)

    # The output has the previous layer's size, whatever the size of "from".
    assert (shapes[3].w, shapes[3].h, shapes[3].c) == (16, 16, 8)


def test_shortcut_before_first_layer():
    with pytest.raises(CfgError, match=r"\[shortcut\] from=-2 points before"):
        shapes_of(conv(4) + "\n[shortcut]\nfrom=-2\n")


def test_shortcut_missing_from():
    with pytest.raises(CfgError, match="missing required option from"):
        shapes_of(conv(4) + "\n[shortcut]\n")


def test_flat_layers():
    body = (
        conv(12, size=3, stride=2)
        + "\n[avgpool]\n"
        + "\n[connected]\noutput=30\n"
        + "\n[softmax]\ngroups=3\n"
        + "\n[cost]\n"
    )
    shapes = shapes_of(body)

    assert (shapes[1].w, shapes[1].h, shapes[1].c, shapes[1].outputs) == (1, 1, 12, 12)
    assert (shapes[2].w, shapes[2].h, shapes[2].c, shapes[2].outputs) == (1, 1, 30, 30)
    assert (shapes[3].w, shapes[3].h, shapes[3].c, shapes[3].outputs) == (0, 0, 0, 30)
    assert (shapes[4].w, shapes[4].h, shapes[4].c, shapes[4].outputs) == (0, 0, 0, 30)


def test_crnn_swaps_width_and_height():
    shapes = shapes_of("\n[crnn]\noutput_filters=6\n", width=12, height=8)

    assert (shapes[0].w, shapes[0].h, shapes[0].c) == (8, 12, 6)


def test_batch_per_subdivision():
    text = "[net]\nbatch=64\nsubdivisions=16\ntime_steps=2\nwidth=32\nheight=32\n"
    text += "channels=3\n" + conv(18) + "\n[yolo]\nmask=0,1,2\nnum=3\nclasses=1\n"
    layers = yolo_layers(parse_cfg(text))

    assert layers[0].batch == 8


# [yolo] options.


def test_yolo_defaults():
    layers = yolo_layers(parse_cfg(make_cfg(conv(25) + "\n[yolo]\n")))

    assert len(layers) == 1
    assert layers[0].classes == 20
    assert layers[0].num == 1
    assert layers[0].mask == (0,)
    assert layers[0].anchors == (0.5, 0.5)
    assert layers[0].jitter == 0.2
    assert layers[0].ignore_thresh == 0.5
    assert layers[0].truth_thresh == 1.0
    assert layers[0].random == 0
    assert layers[0].max_boxes == 90
    assert (layers[0].w, layers[0].h) == (32, 32)
    assert layers[0].batch == 1


def test_yolo_mask_defaults_to_all_anchors():
    body = conv(4 * 7) + "\n[yolo]\nnum=4\nclasses=2\n"
    layers = yolo_layers(parse_cfg(make_cfg(body)))

    assert layers[0].mask == (0, 1, 2, 3)


def test_yolo_missing_anchors_are_half():
    body = conv(2 * 7) + "\n[yolo]\nmask=1,2\nnum=3\nclasses=2\nanchors=10,13,16\n"
    layers = yolo_layers(parse_cfg(make_cfg(body)))

    assert layers[0].anchors == (10.0, 13.0, 16.0, 0.5, 0.5, 0.5)


def test_yolo_options_read_like_c():
    # atoi and atof read the longest numeric prefix, and an empty piece is 0.
    body = conv(15) + (
        "\n[yolo]\nmask=0,2,1\nnum=3\nclasses=0\nmax=30boxes\nrandom=1.9\n"
        "jitter=.25\nignore_thresh=6e-1\nanchors=1.5,,0x10,7x,-2\n"
    )
    layers = yolo_layers(parse_cfg(make_cfg(body)))

    assert layers[0].mask == (0, 2, 1)
    assert layers[0].max_boxes == 30
    assert layers[0].random == 1
    assert layers[0].jitter == 0.25
    assert layers[0].ignore_thresh == 0.6
    assert layers[0].anchors == (1.5, 0.0, 16.0, 7.0, -2.0, 0.5)


def test_yolo_index_counts_all_layers():
    body = conv(25) + "\n[yolo]\n" + "\n[route]\nlayers=-2\n" + "\n[yolo]\n"
    layers = yolo_layers(parse_cfg(make_cfg(body)))

    assert [layer.index for layer in layers] == [1, 3]
    assert [layer.line for layer in layers] == [13, 18]


def test_yolo_channel_mismatch():
    body = conv(256) + "\n[yolo]\nmask=0,1,2\nnum=9\nclasses=80\n"

    with pytest.raises(CfgError) as caught:
        yolo_layers(parse_cfg(make_cfg(body)), name="net.cfg")

    message = str(caught.value)
    assert message.startswith("net.cfg:13: [yolo] needs len(mask)*(classes+5)")
    assert "= 255 input channels" in message
    assert "32x32x256" in message
    assert caught.value.section_type == "yolo"
    assert caught.value.line == 13


def test_yolo_mask_out_of_range():
    body = conv(3 * 85) + "\n[yolo]\nmask=6,7,9\nnum=9\nclasses=80\n"

    with pytest.raises(CfgError, match=r"mask=6,7,9 contains 9, which is not an"):
        yolo_layers(parse_cfg(make_cfg(body)))


def test_yolo_too_many_anchors():
    body = conv(85) + "\n[yolo]\nnum=1\nclasses=80\nanchors=1,2,3\n"

    with pytest.raises(CfgError, match="anchors has 3 values, but num=1 allows"):
        yolo_layers(parse_cfg(make_cfg(body)))


def test_yolo_after_flat_layer():
    body = conv(4) + "\n[softmax]\n" + "\n[yolo]\nclasses=1\n"

    with pytest.raises(CfgError, match=r"\[yolo\] input must be an image"):
        yolo_layers(parse_cfg(make_cfg(body)))


def test_region_channel_mismatch():
    body = conv(100) + "\n[region]\nnum=5\nclasses=20\n"

    with pytest.raises(CfgError, match=r"\[region\] expects .* = 32000 input values"):
        layer_shapes(parse_cfg(make_cfg(body, width=16, height=16)))


def test_region_is_not_yolo():
    body = conv(125) + "\n[region]\nnum=5\nclasses=20\n"
    sections = parse_cfg(make_cfg(body))

    assert yolo_layers(sections) == []
    assert layer_shapes(sections)[-1].c == 125


# Network-level errors.


def test_unknown_layer_type():
    with pytest.raises(CfgError, match=r"^<x>:13: \[convolution\] unknown section"):
        layer_shapes(parse_cfg(make_cfg(conv(4) + "\n[convolution]\n")), name="<x>")


def test_first_section_not_net():
    with pytest.raises(CfgError, match=r"^line 1: \[conv\] the first section must"):
        layer_shapes(parse_cfg("[conv]\nfilters=1\n"))


def test_second_net_section():
    with pytest.raises(CfgError, match=r"only the first section may be \[net\]"):
        layer_shapes(parse_cfg(make_cfg("\n[network]\n")))


def test_no_sections():
    with pytest.raises(CfgError, match="the configuration has no sections"):
        layer_shapes(parse_cfg("# only a comment\n"))


def test_no_input_size():
    with pytest.raises(CfgError, match=r"^line 1: \[net\] missing input size"):
        layer_shapes(parse_cfg("[net]\nwidth=416\nheight=416\n"))


def test_zero_stride():
    with pytest.raises(CfgError, match=r"stride=0 is invalid"):
        shapes_of(conv(4, stride=0))


def test_zero_subdivisions():
    with pytest.raises(CfgError, match=r"subdivisions=0 is invalid"):
        layer_shapes(parse_cfg(make_cfg("") + "subdivisions=0\n"))


def test_zero_time_steps():
    with pytest.raises(CfgError, match=r"time_steps=0 is invalid"):
        layer_shapes(parse_cfg(make_cfg("") + "time_steps=0\n"))


@pytest.mark.parametrize("size", [0, -416])
def test_size_override_not_positive(size):
    sections = parse_cfg(make_cfg(conv(4)))

    with pytest.raises(ValueError, match="must be a positive number of pixels"):
        layer_shapes(sections, width=size)


def test_size_override_not_integer():
    sections = parse_cfg(make_cfg(conv(4)))

    with pytest.raises(TypeError):
        layer_shapes(sections, height=416.0)


def test_read_yolo_layers_names_file(tmp_path):
    path = tmp_path / "small.cfg"
    path.write_text(make_cfg(conv(20) + "\n[yolo]\nclasses=1\nnum=4\nmask=0,1,2\n"))

    with pytest.raises(CfgError) as caught:
        read_yolo_layers(path)

    assert str(caught.value).startswith(f"{path}:13: [yolo] ")


def test_upstream_cfg_shipped():
    from pydarknet_loss.cfg import upstream_cfg

    assert [o.w for o in read_yolo_layers(upstream_cfg())] == [19, 38, 76]
    assert upstream_cfg("yolov3-tiny.cfg").is_file()
    with pytest.raises(FileNotFoundError, match="yolov9.cfg"):
        upstream_cfg("yolov9.cfg")
