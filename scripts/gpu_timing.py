"""Print GPU against CPU forward times of the three YOLOv3 layers at 608x608.

Run by scripts/gpu_check.sh after the GPU tests.  Times are wall-clock
medians over a few repeats of ``YoloLayer.forward`` in training mode,
including the host-device copies of the GPU path.
"""

import statistics
import sys
import time

import numpy as np

from pydarknet_loss import YoloLayer, cuda

ANCHORS = (10, 13, 16, 30, 33, 23, 30, 61, 62, 45, 59, 119, 116, 90, 156, 198, 373, 326)
LAYERS = (((6, 7, 8), 19), ((3, 4, 5), 38), ((0, 1, 2), 76))
BATCHES = (1, 64)
REPEATS = 3


def median_seconds(run):
    run()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_truth(rng, batch, k=20):
    truth = np.zeros((batch, k, 5), dtype=np.float32)
    truth[:, :, 0:2] = rng.uniform(0.01, 0.99, size=(batch, k, 2))
    truth[:, :, 2:4] = rng.uniform(0.02, 0.9, size=(batch, k, 2))
    truth[:, :, 4] = rng.integers(0, 80, size=(batch, k))
    return truth


def main():
    cuda.load_module()
    rng = np.random.default_rng(0)
    header = f"{'mask':<10}{'grid':>6}{'batch':>7}"
    print(header + f"{'cpu ms':>10}{'gpu ms':>10}{'speed-up':>10}")
    for mask, grid in LAYERS:
        layer = YoloLayer(classes=80, anchors=ANCHORS, mask=mask, net_w=608, net_h=608)
        for batch in BATCHES:
            shape = (batch, layer.channels, grid, grid)
            logits = rng.normal(0, 2, size=shape).astype(np.float32)
            truth = random_truth(rng, batch)
            cpu = median_seconds(lambda: layer.forward(logits, truth))
            gpu = median_seconds(lambda: layer.forward(logits, truth, device="cuda"))
            print(
                f"{str(mask):<10}{grid:>6}{batch:>7}{cpu * 1e3:>10.1f}"
                f"{gpu * 1e3:>10.1f}{cpu / gpu:>9.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
