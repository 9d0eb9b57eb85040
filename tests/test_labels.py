"""Tests for the Darknet label readers and the shipped sample labels."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pydarknet_loss.labels import (
    LabelError,
    default_labels_dir,
    derive_label_path,
    load_truth,
    read_labels,
)

COCO_CLASS_COUNT = 80

# Box count and sorted class ids per shipped label file.
SHIPPED_LABELS = {
    "dog": (3, [1, 7, 16]),
    "eagle": (1, [14]),
    "giraffe": (2, [22, 23]),
    "horses": (5, [17, 17, 17, 17, 17]),
    "kite": (17, [0] * 10 + [33] * 7),
    "person": (3, [0, 16, 17]),
    "scream": (1, [0]),
}

SIX_DECIMALS = r"[01]\.[0-9]{6}"
LABEL_LINE = re.compile(rf"[0-9]+( {SIX_DECIMALS}){{4}}")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# Shipped labels.


def test_shipped_labels_load_all_images():
    truth, names = load_truth(default_labels_dir())

    assert names == sorted(SHIPPED_LABELS)
    assert truth.dtype == np.float32
    assert truth.shape == (7, 17, 5)


def test_shipped_labels_box_counts_and_classes():
    truth, names = load_truth(default_labels_dir())

    for image, name in zip(truth, names, strict=True):
        expected_count, expected_classes = SHIPPED_LABELS[name]
        boxes = image[image[:, 0] != 0]

        assert len(boxes) == expected_count, name
        assert sorted(boxes[:, 4].astype(int).tolist()) == expected_classes, name


def test_shipped_labels_classes_are_coco_ids():
    for path in sorted(default_labels_dir().glob("*.txt")):
        classes = read_labels(path)[:, 4]

        assert np.all(classes == np.round(classes)), path.name
        assert classes.min() >= 0, path.name
        assert classes.max() < COCO_CLASS_COUNT, path.name


def test_shipped_labels_boxes_inside_image():
    for path in sorted(default_labels_dir().glob("*.txt")):
        x, y, width, height = read_labels(path)[:, :4].T

        assert np.all(x > 0), path.name
        assert np.all(x < 1), path.name
        assert np.all(y > 0), path.name
        assert np.all(y < 1), path.name
        assert np.all(width > 0), path.name
        assert np.all(height > 0), path.name

        # One unit of the sixth decimal covers the rounding of centre and size.
        assert np.all(x - width / 2 >= -1e-6), path.name
        assert np.all(x + width / 2 <= 1 + 1e-6), path.name
        assert np.all(y - height / 2 >= -1e-6), path.name
        assert np.all(y + height / 2 <= 1 + 1e-6), path.name


def test_shipped_labels_use_six_decimals():
    for path in sorted(default_labels_dir().glob("*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()

        assert lines, path.name
        for line in lines:
            assert LABEL_LINE.fullmatch(line), f"{path.name}: {line!r}"


def test_shipped_readme_is_not_a_label_file():
    folder = default_labels_dir()

    assert (folder / "README.md").is_file()
    assert "README" not in load_truth(folder)[1]


# read_labels.


def test_read_labels_reorders_class_last(tmp_path):
    path = write(tmp_path / "a.txt", "16 0.1 0.2 0.3 0.4\n2 0.5 0.6 0.7 0.8\n")

    boxes = read_labels(path)

    assert boxes.dtype == np.float32
    np.testing.assert_array_equal(
        boxes,
        np.array([[0.1, 0.2, 0.3, 0.4, 16], [0.5, 0.6, 0.7, 0.8, 2]], dtype=np.float32),
    )


def test_read_labels_empty_file(tmp_path):
    boxes = read_labels(write(tmp_path / "empty.txt", ""))

    assert boxes.shape == (0, 5)
    assert boxes.dtype == np.float32


def test_read_labels_skips_blank_lines(tmp_path):
    text = "\n0 0.5 0.5 0.1 0.1\r\n   \n\t\n1 0.25 0.75 0.2 0.3"
    boxes = read_labels(write(tmp_path / "a.txt", text))

    assert boxes.shape == (2, 5)
    assert boxes[1, 4] == 1
    assert boxes[1, 1] == np.float32(0.75)


def test_read_labels_scientific_notation(tmp_path):
    boxes = read_labels(write(tmp_path / "a.txt", "+3 5e-1 0.5 1E-1 0.1\n"))

    np.testing.assert_array_equal(
        boxes, np.array([[0.5, 0.5, 0.1, 0.1, 3]], dtype=np.float32)
    )


# load_truth sources.


def test_load_truth_label_file(tmp_path):
    path = write(tmp_path / "dog.txt", "16 0.3 0.6 0.2 0.5\n")

    truth, names = load_truth(path)

    assert names == ["dog"]
    assert truth.shape == (1, 1, 5)
    np.testing.assert_array_equal(truth[0, 0], np.float32([0.3, 0.6, 0.2, 0.5, 16]))


def test_load_truth_folder_sorted_without_readme(tmp_path):
    write(tmp_path / "b.txt", "1 0.2 0.2 0.1 0.1\n")
    write(tmp_path / "a.txt", "0 0.1 0.1 0.1 0.1\n")
    write(tmp_path / "README.txt", "not a label file\n")
    write(tmp_path / "README.md", "# not a label file\n")
    write(tmp_path / "notes.csv", "x,y\n")
    (tmp_path / "dir.txt").mkdir()

    truth, names = load_truth(tmp_path)

    assert names == ["a", "b"]
    assert truth.shape == (2, 1, 5)
    assert truth[0, 0, 4] == 0
    assert truth[1, 0, 4] == 1


def test_load_truth_image_list(tmp_path):
    data = tmp_path / "data"
    write(data / "voc" / "labels" / "000005.txt", "8 0.5 0.5 0.2 0.2\n")
    write(data / "coco" / "labels" / "train" / "1.txt", "0 0.1 0.2 0.3 0.4\n")
    write(data / "flat" / "shot.txt", "2 0.6 0.6 0.1 0.1\n")
    write(data / "flat" / "big.txt", "3 0.7 0.7 0.1 0.1\n")
    write(data / "flat" / "old.txt", "4 0.8 0.8 0.1 0.1\n")
    absolute_image = tmp_path / "abs" / "images" / "x.jpg"
    write(tmp_path / "abs" / "labels" / "x.txt", "5 0.9 0.9 0.1 0.1\n")

    entries = [
        "voc/JPEGImages/000005.jpg",
        "coco/images/train/1.jpg",
        "flat/shot.png",
        "",
        "flat/big.JPG",
        "flat/old.JPEG",
        str(absolute_image),
    ]
    image_list = write(data / "train.txt", "\n".join(entries) + "\n")

    truth, names = load_truth(image_list)

    assert names == [entry for entry in entries if entry]
    assert truth.shape == (6, 1, 5)
    np.testing.assert_array_equal(truth[:, 0, 4], np.float32([8, 0, 2, 3, 4, 5]))
    np.testing.assert_array_equal(truth[0, 0], np.float32([0.5, 0.5, 0.2, 0.2, 8]))


def test_load_truth_list_empty_labels(tmp_path):
    write(tmp_path / "labels" / "a.txt", "")
    write(tmp_path / "labels" / "b.txt", "")
    image_list = write(tmp_path / "list.txt", "images/a.jpg\nimages/b.jpg\n")

    truth, names = load_truth(image_list)

    assert names == ["images/a.jpg", "images/b.jpg"]
    assert truth.shape == (2, 0, 5)


@pytest.mark.parametrize(
    ("image_path", "label_path"),
    [
        ("VOC2007/JPEGImages/000005.jpg", "VOC2007/labels/000005.txt"),
        ("coco/images/train2014/a.jpg", "coco/labels/train2014/a.txt"),
        ("a/b.png", "a/b.txt"),
        ("a/b.JPG", "a/b.txt"),
        ("a/b.JPEG", "a/b.txt"),
        ("raw/b.jpg", "labels/b.txt"),
        # Only the first match of each pattern is replaced, anywhere in the path.
        ("images/images/b.jpg", "labels/images/b.txt"),
        ("a/b.jpg.jpg", "a/b.txt.jpg"),
        ("drawings/b.jpg", "dlabelsings/b.txt"),
        # Darknet maps neither of these extensions.
        ("a/b.jpeg", "a/b.jpeg"),
        ("a/b.bmp", "a/b.bmp"),
    ],
)
def test_derive_label_path_matches_darknet(image_path, label_path):
    assert derive_label_path(image_path) == label_path


# Padding and max_boxes.


def test_load_truth_pads_with_zero_rows(tmp_path):
    write(
        tmp_path / "a.txt",
        "1 0.1 0.2 0.3 0.4\n2 0.5 0.6 0.7 0.8\n3 0.2 0.2 0.1 0.1\n",
    )
    write(tmp_path / "b.txt", "")
    write(tmp_path / "c.txt", "4 0.9 0.9 0.05 0.05\n")

    truth, names = load_truth(tmp_path)

    assert names == ["a", "b", "c"]
    assert truth.shape == (3, 3, 5)
    np.testing.assert_array_equal(truth[0, 2], np.float32([0.2, 0.2, 0.1, 0.1, 3]))
    assert not truth[1].any()
    np.testing.assert_array_equal(truth[2, 0], np.float32([0.9, 0.9, 0.05, 0.05, 4]))
    assert not truth[2, 1:].any()


def test_load_truth_all_empty(tmp_path):
    write(tmp_path / "a.txt", "")
    write(tmp_path / "b.txt", "\n\n")

    truth, names = load_truth(tmp_path)

    assert names == ["a", "b"]
    assert truth.shape == (2, 0, 5)
    assert truth.dtype == np.float32


def test_load_truth_max_boxes_at_limit(tmp_path):
    path = write(tmp_path / "a.txt", "0 0.1 0.1 0.1 0.1\n0 0.2 0.2 0.1 0.1\n")

    truth, _ = load_truth(path, max_boxes=2)

    assert truth.shape == (1, 2, 5)


def test_load_truth_max_boxes_exceeded(tmp_path):
    write(tmp_path / "a.txt", "0 0.1 0.1 0.1 0.1\n")
    path = write(tmp_path / "b.txt", "0 0.1 0.1 0.1 0.1\n0 0.2 0.2 0.1 0.1\n")

    with pytest.raises(LabelError) as raised:
        load_truth(tmp_path, max_boxes=1)

    assert raised.value.path == path
    assert raised.value.line is None
    assert "2 boxes" in str(raised.value)
    assert "max_boxes=1" in str(raised.value)


def test_load_truth_negative_max_boxes(tmp_path):
    path = write(tmp_path / "a.txt", "")

    with pytest.raises(ValueError, match="max_boxes"):
        load_truth(path, max_boxes=-1)


# Errors.


def test_label_error_message_format(tmp_path):
    error = LabelError(tmp_path / "a.txt", "bad", 3)

    assert isinstance(error, ValueError)
    assert str(error) == f"{tmp_path / 'a.txt'}:3: bad"
    assert str(LabelError("a.txt", "bad")) == "a.txt: bad"


def test_load_truth_missing_source(tmp_path):
    missing = tmp_path / "missing.txt"

    with pytest.raises(LabelError, match="missing.txt") as raised:
        load_truth(missing)

    assert raised.value.path == missing


def test_read_labels_missing_file(tmp_path):
    with pytest.raises(LabelError, match="not found") as raised:
        read_labels(tmp_path / "missing.txt")

    assert raised.value.path == tmp_path / "missing.txt"


def test_read_labels_folder(tmp_path):
    with pytest.raises(LabelError, match="folder"):
        read_labels(tmp_path)


def test_read_labels_binary_file(tmp_path):
    path = tmp_path / "image.txt"
    path.write_bytes(b"\xff\xd8\xff\xe0 JFIF")

    with pytest.raises(LabelError, match="UTF-8"):
        read_labels(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.1", "found 4"),
        ("0 0.5 0.5 0.1 0.1 0.9", "found 6"),
        ("0 0.5 abc 0.1 0.1", "y_center 'abc' is not a number"),
        ("0 0.5 1_0 0.1 0.1", "y_center '1_0' is not a number"),
        ("0 nan 0.5 0.1 0.1", "x_center 'nan' is not a finite float32"),
        ("0 0.5 0.5 inf 0.1", "width 'inf' is not a finite float32"),
        ("0 0.5 0.5 0.1 -Infinity", "height '-Infinity' is not a finite float32"),
        ("0 0.5 0.5 1e39 0.1", "width '1e39' is not a finite float32"),
        ("1.5 0.5 0.5 0.1 0.1", "class '1.5' is not a non-negative integer"),
        ("-1 0.5 0.5 0.1 0.1", "class '-1' is not a non-negative integer"),
        ("1e1 0.5 0.5 0.1 0.1", "class '1e1' is not a non-negative integer"),
        ("0 0 0.5 0.1 0.1", "x_center '0' is 0 in float32"),
        ("0 0.000 0.5 0.1 0.1", "x_center '0.000' is 0 in float32"),
        ("0 1e-50 0.5 0.1 0.1", "x_center '1e-50' is 0 in float32"),
        ("0 0.5 0.5 0 0.1", "must both be positive"),
        ("0 0.5 0.5 0.1 -0.1", "must both be positive"),
    ],
)
def test_read_labels_invalid_line(tmp_path, line, message):
    path = write(tmp_path / "a.txt", f"0 0.5 0.5 0.2 0.2\n\n{line}\n")

    with pytest.raises(LabelError) as raised:
        read_labels(path)

    assert raised.value.path == path
    assert raised.value.line == 3
    assert message in str(raised.value)
    assert str(raised.value).startswith(f"{path}:3: ")


def test_load_truth_invalid_label_in_folder(tmp_path):
    write(tmp_path / "a.txt", "0 0.5 0.5 0.1 0.1\n")
    bad = write(tmp_path / "b.txt", "0 0.5 0.5 0.1 0.1\n7 0.5 0.5 0.1\n")

    with pytest.raises(LabelError) as raised:
        load_truth(tmp_path)

    assert raised.value.path == bad
    assert raised.value.line == 2


def test_load_truth_empty_folder(tmp_path):
    write(tmp_path / "README.md", "nothing here\n")

    with pytest.raises(LabelError, match="no label files") as raised:
        load_truth(tmp_path)

    assert raised.value.path == tmp_path


def test_load_truth_list_missing_label(tmp_path):
    write(tmp_path / "labels" / "a.txt", "0 0.5 0.5 0.1 0.1\n")
    image_list = write(tmp_path / "list.txt", "images/a.jpg\nimages/b.jpg\n")

    with pytest.raises(LabelError, match="not found") as raised:
        load_truth(image_list)

    assert raised.value.path == image_list
    assert raised.value.line == 2
    assert str(tmp_path / "labels" / "b.txt") in str(raised.value)
    assert "'images/b.jpg'" in str(raised.value)


def test_load_truth_list_unmapped_extension(tmp_path):
    write(tmp_path / "a.bmp", "0 0.5 0.5 0.1 0.1\n")
    image_list = write(tmp_path / "list.txt", "\na.bmp\n")

    with pytest.raises(LabelError, match="cannot derive a label path") as raised:
        load_truth(image_list)

    assert raised.value.path == image_list
    assert raised.value.line == 2


def test_load_truth_list_invalid_label(tmp_path):
    bad = write(tmp_path / "labels" / "a.txt", "0 0.5 0.5 0.1 0.1 extra\n")
    image_list = write(tmp_path / "list.txt", "images/a.jpg\n")

    with pytest.raises(LabelError, match="found 6") as raised:
        load_truth(image_list)

    assert raised.value.path == bad
    assert raised.value.line == 1


def test_byte_order_mark_ignored(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff3 0.5 0.5 0.2 0.3\n".encode("utf-8"))
    truth, _ = load_truth(path)
    assert truth.shape == (1, 1, 5)
    assert truth[0, 0, 4] == 3


@pytest.mark.parametrize("max_boxes", [float("nan"), "3", 2.0, True])
def test_max_boxes_not_integer_rejected(tmp_path, max_boxes):
    path = tmp_path / "a.txt"
    path.write_text("3 0.5 0.5 0.2 0.3\n")
    with pytest.raises(TypeError, match="max_boxes must be an integer"):
        load_truth(path, max_boxes=max_boxes)
