"""Shared fixtures: the three YOLOv3 layers and seeded inputs."""

import numpy as np
import pytest

from pydarknet_loss import YoloLayer
from pydarknet_loss.compare import YOLOV3_ANCHORS

# yolov3.cfg at 608: the mask and grid of each [yolo] layer, coarse first.
YOLOV3_LAYERS = (((6, 7, 8), 19), ((3, 4, 5), 38), ((0, 1, 2), 76))


def yolov3_layer(position, classes=80, **options):
    mask, grid = YOLOV3_LAYERS[position]
    layer = YoloLayer(
        classes=classes,
        anchors=YOLOV3_ANCHORS,
        mask=mask,
        net_w=608,
        net_h=608,
        index=(82, 94, 106)[position],
        **options,
    )
    return layer, grid


def random_truth(rng, batch, k, classes=80):
    """Return truth rows with centres inside the image.

    Sizes are log-uniform in [0.01, 0.9], so that some truths have their
    best anchor in each YOLOv3 layer.
    """
    truth = np.zeros((batch, k, 5), dtype=np.float32)
    truth[:, :, 0:2] = rng.uniform(0.01, 0.99, size=(batch, k, 2))
    truth[:, :, 2:4] = np.exp(rng.uniform(np.log(0.01), np.log(0.9), (batch, k, 2)))
    truth[:, :, 4] = rng.integers(0, classes, size=(batch, k))
    return truth


@pytest.fixture
def rng():
    return np.random.default_rng(20180914)
