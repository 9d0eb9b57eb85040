"""Read Darknet label files into truth arrays for the [yolo] layer.

A Darknet label file describes one image, one object per line::

    class x_center y_center width height

The class is a 0-based index into the names file (``coco.names`` for the
yolov3 COCO model), and the four box values are normalised to [0, 1] by the
image width and height. Darknet's truth rows put the class last, so the
readers here return rows ordered ``(x, y, w, h, class)``.
"""

from __future__ import annotations

import math
import os
import pathlib
import re
from importlib.resources import files

import numpy as np

__all__ = [
    "LabelError",
    "default_labels_dir",
    "derive_label_path",
    "load_truth",
    "read_labels",
]

# Number of values in one truth row: x, y, w, h, class.
TRUTH_ROW_SIZE = 5

# The substitutions that fill_truth_detection in Darknet's src/data.c (commit
# 61c9d02e) applies, in this order, to an image path to find its label file.
# Darknet's find_replace (src/utils.c) replaces only the first match, and it
# matches anywhere in the path, so directory names are rewritten too.
LABEL_PATH_REPLACEMENTS = (
    ("images", "labels"),
    ("JPEGImages", "labels"),
    ("raw", "labels"),
    (".jpg", ".txt"),
    (".png", ".txt"),
    (".JPG", ".txt"),
    (".JPEG", ".txt"),
)

# Decimal digits, optionally signed with "+", as C's fscanf "%d" reads them.
_CLASS_ID = re.compile(r"\+?[0-9]+")

_FLOAT32_MAX = float(np.finfo(np.float32).max)

_FIELD_NAMES = ("class", "x_center", "y_center", "width", "height")


class LabelError(ValueError):
    """Invalid or missing label data, located by file and 1-based line.

    Parameters
    ----------
    path : str or os.PathLike
        The label file or image list that failed.
    reason : str
        What is wrong, as a sentence without the location.
    line : int, optional
        The 1-based line number in ``path``, or None when the error concerns
        the whole file.
    """

    def __init__(
        self, path: str | os.PathLike[str], reason: str, line: int | None = None
    ) -> None:
        self.path = pathlib.Path(path)
        self.reason = reason
        self.line = line

        location = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{location}: {reason}")


def default_labels_dir() -> pathlib.Path:
    """Return the folder of label files shipped with the package.

    The folder contains one label file per sample image in upstream Darknet's
    ``data/`` folder (``dog.txt``, ``eagle.txt``, ...), with COCO class ids.

    Returns
    -------
    pathlib.Path
        The ``data/labels`` folder inside the installed package.

    Raises
    ------
    RuntimeError
        If the package is not installed as plain files (for example, imported
        from a zip archive), so the folder has no file system path.
    """
    folder = files("pydarknet_loss") / "data" / "labels"

    if not isinstance(folder, pathlib.Path):
        raise RuntimeError(
            f"the shipped labels at {folder} are not plain files. Install "
            "pydarknet_loss as a regular package, not from a zip archive."
        )

    return folder


def derive_label_path(image_path: str) -> str:
    """Derive an image's label file path the way Darknet's training loader does.

    The path text is rewritten by the substitutions in
    ``LABEL_PATH_REPLACEMENTS``, each replacing its first match only, as
    ``fill_truth_detection`` in Darknet's ``src/data.c`` does. For example,
    ``VOC2007/JPEGImages/000005.jpg`` becomes ``VOC2007/labels/000005.txt``.

    Parameters
    ----------
    image_path : str
        An image path as written in a Darknet image list.

    Returns
    -------
    str
        The label path. It equals ``image_path`` when no substitution matched,
        for example for ``.jpeg`` or ``.bmp`` images, which Darknet does not map.
    """
    label_path = image_path

    for pattern, replacement in LABEL_PATH_REPLACEMENTS:
        label_path = label_path.replace(pattern, replacement, 1)

    return label_path


def read_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one Darknet label file into truth rows.

    Parameters
    ----------
    path : str or os.PathLike
        The label file. Blank lines are skipped, and an empty file means an
        image with no objects.

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``[k, 5]``, one row ``(x, y, w, h, class)`` per
        line, in file order. The file's leading class id moves to the last
        column, which is Darknet's truth row order.

    Raises
    ------
    LabelError
        If the file is missing or not UTF-8 text, or if a line has any of these
        faults:

        - not exactly five numbers;
        - a non-finite value;
        - a class id that is not a non-negative integer;
        - ``x_center`` equal to 0;
        - a width or height that is not positive.

    Notes
    -----
    The box values are not checked against [0, 1], because Darknet accepts
    such files and clamps the box edges to the image when it loads them for
    training (``correct_boxes`` in ``src/data.c``). This reader returns the
    values unclamped.
    """
    path = pathlib.Path(path)
    text = _read_text(path)

    return _parse_label_text(text, path)


def load_truth(
    source: str | os.PathLike[str], max_boxes: int | None = None
) -> tuple[np.ndarray, list[str]]:
    """Load the truth boxes for a batch of images.

    Parameters
    ----------
    source : str or os.PathLike
        One of:

        - a label file, which gives a batch of one image;
        - a folder, whose ``*.txt`` files sorted by name give one image each
          (a ``README.txt`` is skipped);
        - a Darknet image list such as ``train.txt``: one image path per line,
          each image's label path derived by ``derive_label_path``. Relative
          paths are resolved from the list's folder.

        A file is read as a label file when it is empty or when at least one of
        its lines consists only of numbers. Otherwise it is read as an image
        list, and blank lines in it are skipped.
    max_boxes : int, optional
        Maximum number of boxes allowed per image. None means no limit.

    Returns
    -------
    truth : numpy.ndarray
        float32 array of shape ``[batch, k, 5]``, where ``k`` is the largest
        box count in the batch. Each image's rows are ``(x, y, w, h, class)``
        in file order, followed by rows of zeros. When every image has no
        boxes, the shape is ``[batch, 0, 5]``.
    names : list of str
        One name per image in batch order: the label file's stem (``"dog"``)
        for a label file or a folder, and the image path as written in the
        list for an image list.

    Raises
    ------
    LabelError
        In any of these cases:

        - ``source`` does not exist;
        - a folder contains no label files;
        - a label path derived from a list entry is the entry itself or does
          not exist;
        - a label file is invalid (see ``read_labels``);
        - an image has more than ``max_boxes`` boxes.
    ValueError
        If ``max_boxes`` is negative.

    Notes
    -----
    Darknet's [yolo] layer (``forward_yolo_layer`` in ``src/yolo_layer.c``)
    reads an image's truth rows until the first row with ``x == 0``, so rows
    of zeros are how Darknet marks unused rows. That is why ``read_labels``
    rejects a box with ``x_center`` 0: the layer would take it as the end of
    the list and ignore it and every box after it. The layer reserves 90 rows
    per image; ``YoloLayer.forward`` pads ``truth`` to that size itself.

    Unlike Darknet's ``fill_truth_detection``, which silently keeps the first
    ``max_boxes`` boxes after shuffling them, this raises when an image has
    too many boxes, and it neither shuffles nor augments the boxes.
    """
    if max_boxes is not None:
        if isinstance(max_boxes, bool) or not isinstance(max_boxes, (int, np.integer)):
            raise TypeError(f"max_boxes must be an integer or None, got {max_boxes!r}")
        if max_boxes < 0:
            raise ValueError(f"max_boxes must be non-negative or None, got {max_boxes}")

    source = pathlib.Path(source)

    if not source.exists():
        raise LabelError(source, "label file, folder or image list not found")

    if source.is_dir():
        boxes_per_image, names, label_paths = _load_folder(source)
    else:
        boxes_per_image, names, label_paths = _load_file(source)

    if max_boxes is not None:
        _check_box_counts(boxes_per_image, label_paths, max_boxes)

    return _pad_truth(boxes_per_image), names


def _load_folder(
    folder: pathlib.Path,
) -> tuple[list[np.ndarray], list[str], list[pathlib.Path]]:
    label_paths = sorted(
        path
        for path in folder.glob("*.txt")
        if path.is_file() and path.stem.upper() != "README"
    )

    if not label_paths:
        raise LabelError(folder, "folder contains no label files (*.txt)")

    boxes_per_image = [read_labels(path) for path in label_paths]
    names = [path.stem for path in label_paths]

    return boxes_per_image, names, label_paths


def _load_file(
    path: pathlib.Path,
) -> tuple[list[np.ndarray], list[str], list[pathlib.Path]]:
    text = _read_text(path)

    if _is_label_text(text):
        return [_parse_label_text(text, path)], [path.stem], [path]

    boxes_per_image = []
    names = []
    label_paths = []

    for line_number, line in enumerate(text.split("\n"), start=1):
        entry = line.strip()
        if not entry:
            continue

        label_path = _label_path_for_entry(path, line_number, entry)

        boxes_per_image.append(read_labels(label_path))
        names.append(entry)
        label_paths.append(label_path)

    return boxes_per_image, names, label_paths


def _label_path_for_entry(
    list_path: pathlib.Path, line_number: int, entry: str
) -> pathlib.Path:
    derived = derive_label_path(entry)

    if derived == entry:
        patterns = ", ".join(pattern for pattern, _ in LABEL_PATH_REPLACEMENTS)
        raise LabelError(
            list_path,
            f"cannot derive a label path from image {entry!r}, because it "
            f"contains none of {patterns} (the file was read as an image list "
            "because none of its lines consists only of numbers)",
            line_number,
        )

    # Darknet resolves relative entries from its working directory, but the
    # list's own folder keeps a list usable from anywhere.
    label_path = list_path.parent / derived

    if not label_path.is_file():
        raise LabelError(
            list_path,
            f"label file {label_path} for image {entry!r} not found",
            line_number,
        )

    return label_path


def _check_box_counts(
    boxes_per_image: list[np.ndarray],
    label_paths: list[pathlib.Path],
    max_boxes: int,
) -> None:
    for boxes, label_path in zip(boxes_per_image, label_paths, strict=True):
        if len(boxes) > max_boxes:
            raise LabelError(
                label_path,
                f"{len(boxes)} boxes, more than max_boxes={max_boxes}",
            )


def _pad_truth(boxes_per_image: list[np.ndarray]) -> np.ndarray:
    rows = max(len(boxes) for boxes in boxes_per_image)
    truth = np.zeros((len(boxes_per_image), rows, TRUTH_ROW_SIZE), np.float32)

    for index, boxes in enumerate(boxes_per_image):
        truth[index, : len(boxes)] = boxes

    return truth


def _read_text(path: pathlib.Path) -> str:
    try:
        # utf-8-sig drops the byte order mark some editors write first.
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LabelError(path, "label file not found") from None
    except IsADirectoryError:
        raise LabelError(path, "expected a label file, found a folder") from None
    except UnicodeDecodeError as error:
        raise LabelError(path, f"not a UTF-8 text file ({error.reason})") from None


def _parse_number(token: str) -> float | None:
    # float() also accepts digit separators ("1_000"), which Darknet's fscanf
    # does not, so such a token is not a number here either.
    if "_" in token:
        return None

    try:
        return float(token)
    except ValueError:
        return None


def _is_label_text(text: str) -> bool:
    lines = [line.split() for line in text.split("\n") if line.strip()]

    if not lines:
        return True

    return any(
        all(_parse_number(token) is not None for token in tokens) for tokens in lines
    )


def _parse_label_text(text: str, path: pathlib.Path) -> np.ndarray:
    rows = []

    for line_number, line in enumerate(text.split("\n"), start=1):
        tokens = line.split()
        if not tokens:
            continue

        rows.append(_parse_label_line(tokens, path, line_number))

    if not rows:
        return np.zeros((0, TRUTH_ROW_SIZE), np.float32)

    return np.array(rows, dtype=np.float32)


def _parse_label_line(
    tokens: list[str], path: pathlib.Path, line_number: int
) -> list[float]:
    if len(tokens) != len(_FIELD_NAMES):
        raise LabelError(
            path,
            "expected 5 fields (class x_center y_center width height), "
            f"found {len(tokens)}",
            line_number,
        )

    values = []

    for name, token in zip(_FIELD_NAMES, tokens, strict=True):
        value = _parse_number(token)

        if value is None:
            raise LabelError(path, f"{name} {token!r} is not a number", line_number)

        # Truth rows are float32: a value finite in float64 may not be.
        if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
            raise LabelError(
                path, f"{name} {token!r} is not a finite float32", line_number
            )

        values.append(value)

    if not _CLASS_ID.fullmatch(tokens[0]):
        raise LabelError(
            path,
            f"class {tokens[0]!r} is not a non-negative integer",
            line_number,
        )

    class_id, x, y, width, height = values

    if np.float32(x) == 0:
        raise LabelError(
            path,
            f"x_center {tokens[1]!r} is 0 in float32, which Darknet's [yolo] "
            "layer reads as the end of the truth list. Move the box centre "
            "inside the image.",
            line_number,
        )

    # Darknet takes the log of the width and height (delta_yolo_box in
    # src/yolo_layer.c), so a box without a positive size gives NaN or -inf.
    if width <= 0 or height <= 0:
        raise LabelError(
            path,
            f"width {tokens[3]!r} and height {tokens[4]!r} must both be positive",
            line_number,
        )

    return [x, y, width, height, class_id]
