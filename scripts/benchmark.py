"""Benchmark the binding against a C driver, the numpy derivation and itself.

Run from the repository root with the package installed:

    python -P scripts/benchmark.py

Every number is measured in this one run, on yolov3.cfg's three [yolo]
layers at 608x608 with seeded logits and 10 to 30 truth boxes per image:

(a) the binding's ``YoloLayer.forward`` against ``scripts/bench_driver.c``,
    a C program linked with the same upstream objects, built with the
    same flags by ``pydarknet_loss/_build.py``.
(b) the binding against ``pydarknet_loss.derivation.yolo_loss``.
(c) one batch split across two threads against one call.
(d) peak resident memory of a forward pass, in a fresh process per case,
    against the size of the logits.

Times are the median of a few repetitions after one warm-up call.
"""

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

YOLOV3_ANCHORS = (
    10, 13, 16, 30, 33, 23, 30, 61, 62, 45, 59, 119, 116, 90, 156, 198, 373, 326
)  # fmt: skip
# (mask, grid, region index) of each [yolo] layer of yolov3.cfg at 608x608
YOLOV3_LAYERS = (((6, 7, 8), 19, 82), ((3, 4, 5), 38, 94), ((0, 1, 2), 76, 106))
CLASSES = 80
NET = 608
BATCHES = (1, 16, 64)
# The derivation works in float64 with many full-size temporaries, so
# batch 64 at 76x76 would need well over 10 GiB.
DERIVATION_BATCHES = (1, 16)
SEED = 20180914
THREAD_REPEATS = 31


def machine_summary():
    """Return lines naming the CPU, cores and the environment that matters."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True)
    return [
        f"CPU: {cpu}, {os.cpu_count()} cores visible",
        f"Python {platform.python_version()}, numpy {np.__version__}, "
        f"{gcc.stdout.splitlines()[0]}",
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}",
        # other processes on the cores skew every time below, (c) most
        f"load average at start: {' '.join(map(str, os.getloadavg()))}",
    ]


def build_driver(work):
    """Compile bench_driver.c against the extension's upstream objects."""
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    spec = importlib.util.spec_from_file_location(
        "pydarknet_build", ROOT / "pydarknet_loss" / "_build.py"
    )
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)

    tree = build.source_tree()
    build.check_tree(tree)
    compiler = new_compiler()
    customize_compiler(compiler)
    objects = build.compile_upstream(compiler, tree, str(work))

    include_dirs = [str(tree / "include"), str(tree / "src"), str(build.GLUE)]
    objects += compiler.compile(
        [str(build.GLUE / "pdl_report.c"), str(ROOT / "scripts" / "bench_driver.c")],
        output_dir=str(work / "driver"),
        include_dirs=include_dirs,
        extra_postargs=build.GLUE_CFLAGS,
    )
    compiler.link_executable(
        objects, "bench_driver", output_dir=str(work), libraries=["m"]
    )
    return work / "bench_driver"


def make_inputs(rng, batch, grid):
    """Return float32 logits and [batch, 30, 5] truth with 10 to 30 boxes."""
    logits = rng.standard_normal((batch, 255, grid, grid), dtype=np.float32)
    truth = np.zeros((batch, 30, 5), dtype=np.float32)
    for image in range(batch):
        k = int(rng.integers(10, 31))
        truth[image, :k, 0:2] = rng.uniform(0.01, 0.99, size=(k, 2))
        truth[image, :k, 2:4] = rng.uniform(0.02, 0.6, size=(k, 2))
        truth[image, :k, 4] = rng.integers(0, CLASSES, size=k)
    return logits, truth


def time_call(call, repeats):
    """Return the median seconds of ``call`` after one warm-up call."""
    call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def run_driver(driver, work, mask, grid, logits, truth, repeats):
    padded = np.zeros((truth.shape[0], 90, 5), dtype=np.float32)
    padded[:, : truth.shape[1]] = truth
    logits_path = work / "logits.f32"
    truth_path = work / "truth.f32"
    logits.tofile(logits_path)
    padded.tofile(truth_path)
    try:
        printed = subprocess.run(
            [
                str(driver), str(grid), str(logits.shape[0]), str(CLASSES),
                str(NET), str(repeats), str(logits_path), str(truth_path),
                ",".join(map(str, mask)), ",".join(map(str, YOLOV3_ANCHORS)),
            ],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        logits_path.unlink()
        truth_path.unlink()
    return float(printed.split()[0])


def make_layer(mask, index):
    from pydarknet_loss import YoloLayer

    return YoloLayer(
        classes=CLASSES, anchors=YOLOV3_ANCHORS, mask=mask, net_w=NET, net_h=NET,
        index=index,
    )  # fmt: skip


def repeats_for(batch):
    if batch == 1:
        return 9
    if batch == 16:
        return 5
    return 3


def bench_speed(driver, work, rng):
    """Return rows (grid, batch, C s, binding s, binding with out= s,
    derivation s or None)."""
    from pydarknet_loss.derivation import yolo_loss

    rows = []
    for mask, grid, index in YOLOV3_LAYERS:
        layer = make_layer(mask, index)
        for batch in BATCHES:
            logits, truth = make_inputs(rng, batch, grid)
            repeats = repeats_for(batch)
            c_time = run_driver(driver, work, mask, grid, logits, truth, repeats)
            binding = time_call(lambda: layer.forward(logits, truth), repeats)
            # The C driver reuses its buffers, and so does out=.
            out = (np.empty_like(logits), np.empty_like(logits))
            reused = time_call(lambda: layer.forward(logits, truth, out=out), repeats)
            derived = None
            if batch in DERIVATION_BATCHES:
                derived = time_call(
                    lambda: yolo_loss(
                        logits, truth, anchors=YOLOV3_ANCHORS, mask=mask,
                        net_w=NET, net_h=NET,
                    ),
                    max(1, repeats // 3),
                )  # fmt: skip
            rows.append((grid, batch, c_time, binding, reused, derived))
            print(f"  measured {grid}x{grid} batch {batch}", file=sys.stderr)
    return rows


def bench_call_cost(rng, batch=16):
    """Return the seconds of one forward on a 1x1 grid: the binding's fixed
    cost per call (checks, truth padding, layer set-up), nearly no C work."""
    mask, _, index = YOLOV3_LAYERS[0]
    layer = make_layer(mask, index)
    logits, truth = make_inputs(rng, batch, 1)
    out = (np.empty_like(logits), np.empty_like(logits))
    return time_call(lambda: layer.forward(logits, truth, out=out), 2001)


def bench_threads(rng, batch=16, threads=2, loop_seconds=2.0):
    """Return rows (grid, one-call s, split s, loop speed-up) for a batch
    split across threads.

    The split is timed two ways.  First, one call's halves are handed to
    a thread pool and joined.  Second, each thread runs its half in a
    loop for about ``loop_seconds``, against one thread running the whole
    batch as often.  The loop leaves out the hand-off and smooths the
    noise of a shared machine.
    """
    rows = []
    with ThreadPoolExecutor(threads) as pool:
        for mask, grid, index in YOLOV3_LAYERS:
            layer = make_layer(mask, index)
            logits, truth = make_inputs(rng, batch, grid)
            parts = [(logits[i::threads], truth[i::threads]) for i in range(threads)]
            parts = [(np.ascontiguousarray(z), t) for z, t in parts]
            # Each thread reuses its buffers: page faults on fresh arrays
            # take a lock in the kernel that the two threads would share.
            parts = [(z, t, (np.empty_like(z), np.empty_like(z))) for z, t in parts]
            whole_out = (np.empty_like(logits), np.empty_like(logits))

            def run(part, repeats=1):
                z, t, out = part
                for _ in range(repeats):
                    layer.forward(z, t, out=out)

            def split():
                list(pool.map(run, parts))

            def whole():
                layer.forward(logits, truth, out=whole_out)

            # Many repeats: on a shared two-core machine a single slow
            # repeat of either core skews a short median.
            one = time_call(whole, THREAD_REPEATS)
            halves = time_call(split, THREAD_REPEATS)

            calls = max(10, round(loop_seconds / one))
            start = time.perf_counter()
            for _ in range(calls):
                whole()
            serial = time.perf_counter() - start
            start = time.perf_counter()
            list(pool.map(lambda part: run(part, calls), parts))
            parallel = time.perf_counter() - start
            rows.append((grid, one, halves, serial / parallel))
    return rows


MEMORY_CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, {scripts!r})
from benchmark import make_inputs, make_layer, YOLOV3_LAYERS


def status_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])


mask, grid, index = YOLOV3_LAYERS[{position}]
layer = make_layer(mask, index)
layer.forward(*make_inputs(np.random.default_rng(0), 1, grid))
# Writing 5 resets VmHWM to the current RSS; ru_maxrss cannot be reset
# and keeps the parent's peak across exec.
with open("/proc/self/clear_refs", "w") as clear_refs:
    clear_refs.write("5")
before = status_kib("VmRSS")
logits, truth = make_inputs(np.random.default_rng({seed}), {batch}, grid)
logits = logits.astype({dtype!r})
result = layer.forward(logits, truth)
print(json.dumps({{"before_kib": before, "peak_kib": status_kib("VmHWM")}}))
"""


def bench_memory():
    """Return rows (grid, batch, dtype, logits MiB, peak increase MiB)."""
    cases = [(2, 1, "float32"), (2, 16, "float32"), (2, 64, "float32"),
             (0, 64, "float32"), (2, 16, "float64")]  # fmt: skip
    rows = []
    for position, batch, dtype in cases:
        code = MEMORY_CHILD.format(
            scripts=str(ROOT / "scripts"), position=position, seed=SEED,
            batch=batch, dtype=dtype,
        )  # fmt: skip
        printed = subprocess.run(
            [sys.executable, "-P", "-c", code],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        usage = json.loads(printed)
        grid = YOLOV3_LAYERS[position][1]
        logits_mib = batch * 255 * grid * grid * 4 / 2**20
        increase_mib = (usage["peak_kib"] - usage["before_kib"]) / 1024
        rows.append((grid, batch, dtype, logits_mib, increase_mib))
    return rows


def print_tables(speed, call_cost, threads, memory):
    print()
    print("(a, b) one forward pass, median seconds")
    print(
        "| grid | batch | C driver | binding | binding, out= | overhead, out= "
        "| numpy derivation | derivation / binding |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for grid, batch, c_time, binding, reused, derived in speed:
        overhead = f"{100 * (reused / c_time - 1):+.1f}%"
        if derived is None:
            derived_text = ratio = "not run"
        else:
            derived_text = f"{derived:.4f}"
            ratio = f"{derived / binding:.1f}x"
        print(
            f"| {grid} | {batch} | {c_time:.4f} | {binding:.4f} | {reused:.4f} "
            f"| {overhead} "
            f"| {derived_text} | {ratio} |"
        )

    print()
    print(
        f"fixed cost of one call (1x1 grid, batch 16, out= buffers): "
        f"{call_cost * 1e6:.0f} us"
    )

    print()
    print("(c) batch 16: one call against two threads of 8 images each, out= buffers")
    print("| grid | one call s | two threads s | speed-up | speed-up, looped |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for grid, whole, split, looped in threads:
        print(
            f"| {grid} | {whole:.4f} | {split:.4f} | {whole / split:.2f}x "
            f"| {looped:.2f}x |"
        )

    print()
    print("(d) peak RSS increase (VmHWM) for making the inputs and one forward pass,")
    print("    fresh process per case; the target is at most 3: input, output, delta")
    print("| grid | batch | logits dtype | float32 logits MiB | increase MiB "
          "| increase / logits |")  # fmt: skip
    print("| ---: | ---: | --- | ---: | ---: | ---: |")
    for grid, batch, dtype, logits_mib, increase in memory:
        print(
            f"| {grid} | {batch} | {dtype} | {logits_mib:.1f} | {increase:.1f} "
            f"| {increase / logits_mib:.2f} |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()

    for line in machine_summary():
        print(line)
    started = time.perf_counter()
    (ROOT / "build").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "build") as folder:
        work = Path(folder)
        driver = build_driver(work)
        rng = np.random.default_rng(SEED)
        speed = bench_speed(driver, work, rng)
    call_cost = bench_call_cost(rng)
    threads = bench_threads(rng)
    memory = bench_memory()
    print_tables(speed, call_cost, threads, memory)
    print()
    print(f"total run time {time.perf_counter() - started:.0f} s")
    print(
        f"resource peak of this process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB"
    )


if __name__ == "__main__":
    main()
