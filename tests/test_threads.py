"""Concurrency: forward releases the GIL and keeps each call's buffers apart."""

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple

import numpy as np

from conftest import random_truth, yolov3_layer
from pydarknet_loss import _yolo_cpu

WORKERS = 4


def run_case(layer, logits, truth):
    result = layer.forward(logits, truth)
    return result.output, result.delta, result.cost, result.stats


def assert_same(got, expected):
    output, delta, cost, stats = got
    np.testing.assert_array_equal(output, expected[0])
    np.testing.assert_array_equal(delta, expected[1])
    assert cost == expected[2]
    # NaN averages, from images without trained truths, compare equal here
    np.testing.assert_array_equal(astuple(stats), astuple(expected[3]))


def make_cases(rng, count, grid):
    return [
        (
            rng.normal(size=(2, 255, grid, grid)).astype(np.float32),
            random_truth(rng, 2, int(rng.integers(0, 30))),
        )
        for _ in range(count)
    ]


def test_separate_layers_match_serial(rng):
    layers = [yolov3_layer(position) for position in (0, 1, 2)]
    jobs = []
    for layer, grid in layers:
        for logits, truth in make_cases(rng, 3, grid):
            jobs.append((layer, logits, truth))
    serial = [run_case(*job) for job in jobs]

    with ThreadPoolExecutor(WORKERS) as pool:
        concurrent = list(pool.map(lambda job: run_case(*job), jobs))

    for got, expected in zip(concurrent, serial, strict=True):
        assert_same(got, expected)


def test_shared_layer_matches_serial(rng):
    layer, grid = yolov3_layer(1)
    cases = make_cases(rng, 12, grid)
    serial = [run_case(layer, *case) for case in cases]

    with ThreadPoolExecutor(WORKERS) as pool:
        concurrent = list(pool.map(lambda case: run_case(layer, *case), cases))

    for got, expected in zip(concurrent, serial, strict=True):
        assert_same(got, expected)


def count_while(call):
    """Run ``call`` and return how often another thread counted meanwhile.

    With a switch interval far longer than the call, this thread never
    gives up the GIL unless ``call`` releases it, so a count above zero
    shows a release.  The counting thread sleeps between increments, which
    releases the GIL and lets ``call`` take it back when it returns.
    """
    counter = [0]
    stop = threading.Event()
    started = threading.Event()

    def count():
        started.set()
        while not stop.is_set():
            counter[0] += 1
            time.sleep(0)

    interval = sys.getswitchinterval()
    thread = threading.Thread(target=count)
    thread.start()
    started.wait()
    sys.setswitchinterval(1000)
    try:
        before = counter[0]
        call()
        after = counter[0]
    finally:
        sys.setswitchinterval(interval)
        stop.set()
        thread.join()
    return after - before


def test_forward_releases_gil(rng):
    layer, grid = yolov3_layer(2)
    batch = 8
    logits = rng.normal(size=(batch, 255, grid, grid)).astype(np.float32)
    truth = np.zeros((batch, 90, 5), dtype=np.float32)
    truth[:, :30] = random_truth(rng, batch, 30)
    output = np.empty_like(logits)
    delta = np.empty_like(logits)

    # The private call leaves out the Python-side checks, so that only the
    # C call itself can let the other thread run.
    def forward():
        _yolo_cpu.forward(
            logits,
            truth,
            layer.mask,
            layer.anchors,
            output,
            delta,
            layer.classes,
            layer.net_w,
            layer.net_h,
            layer.ignore_thresh,
            layer.truth_thresh,
            layer.max_boxes,
            layer.index,
        )

    def hold_gil():
        # sum() over a range runs in C without releasing the GIL
        sum(range(20_000_000))

    assert count_while(hold_gil) == 0
    assert count_while(forward) > 0
