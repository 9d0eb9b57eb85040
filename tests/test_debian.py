"""Cross-check against Debian's libdarknet.so, an independent build.

Debian's ``darknet`` package compiles the same upstream commit with the
upstream Makefile.  The test runs the library in a subprocess, because
a shared object linked with -Ofast turns on flush-to-zero in the process
that loads it.  It skips where the package is not installed
(``apt-get install darknet``).
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import random_truth
from pydarknet_loss.check import seeded_logits
from pydarknet_loss.cfg import read_yolo_layers
from pydarknet_loss.cli import default_cfg
from pydarknet_loss import YoloLayer

LIBRARY = Path("/usr/lib/darknet")
DRIVER = Path(__file__).with_name("debian_yolo.c")

pytestmark = pytest.mark.skipif(
    not (LIBRARY / "libdarknet.so").is_file() or shutil.which("gcc") is None,
    reason="Debian's darknet package (libdarknet.so) or gcc is not installed",
)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    binary = tmp_path_factory.mktemp("debian") / "debian_yolo"
    subprocess.run(
        [
            "gcc",
            "-O2",
            "-o",
            str(binary),
            str(DRIVER),
            f"-I{LIBRARY / 'include'}",
            f"-L{LIBRARY}",
            "-ldarknet",
            f"-Wl,-rpath,{LIBRARY}",
            "-lm",
        ],
        check=True,
    )
    return binary


def run_debian(driver, tmp_path, layer, logits, truth):
    batch, _, h, w = logits.shape
    padded = np.zeros((batch, 90, 5), dtype=np.float32)
    padded[:, : truth.shape[1]] = truth
    head = np.array(
        [
            batch,
            w,
            h,
            layer.n,
            layer.total,
            layer.classes,
            layer.net_w,
            layer.net_h,
            layer.max_boxes,
        ],
        dtype=np.int32,
    )
    thresholds = np.array([layer.ignore_thresh, layer.truth_thresh], np.float32)
    parts = (
        head,
        thresholds,
        layer.mask.astype(np.int32),
        layer.anchors,
        logits,
        padded,
    )
    (tmp_path / "in").write_bytes(b"".join(p.tobytes() for p in parts))

    completed = subprocess.run(
        [str(driver), str(tmp_path / "in"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
    )
    values = np.fromfile(tmp_path / "out", dtype=np.float32)
    output, delta = values[: logits.size], values[logits.size : 2 * logits.size]
    return (
        output.reshape(logits.shape),
        delta.reshape(logits.shape),
        values[-1],
        completed.stdout,
    )


@pytest.mark.parametrize("position", range(3))
def test_matches_debian_build(driver, tmp_path, position):
    options = read_yolo_layers(default_cfg())[position]
    layer = YoloLayer.from_options(options)
    truth = random_truth(np.random.default_rng(position), 2, 15)
    logits = seeded_logits(options, truth, position)

    result = layer.forward(logits, truth)
    output, delta, cost, printed = run_debian(driver, tmp_path, layer, logits, truth)

    np.testing.assert_array_equal(result.output, output)
    np.testing.assert_array_equal(result.delta, delta)
    # The float32 sum of squares depends on vectorization, which differs
    # in a sanitizer build; the default build matches it exactly.
    assert result.cost == pytest.approx(cost, rel=1e-5)
    assert f"count: {result.stats.count}" in printed
    assert f"Avg IOU: {result.stats.avg_iou:f}" in printed
