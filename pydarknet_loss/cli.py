"""Command-line tool: ``pydarknet-loss check``.

Without arguments, ``check`` runs every ``[yolo]`` layer of upstream
``cfg/yolov3.cfg`` on the shipped labels of Darknet's sample images with
seeded logits, and prints which loss each component of Darknet's delta
is minus the gradient of.  The exit status is 0 when the expected
identities hold, 1 when one fails, 2 on invalid input.
"""

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np

from pydarknet_loss import forks_cli
from pydarknet_loss.cfg import CfgError, read_yolo_layers, upstream_cfg
from pydarknet_loss.check import TOLERANCE, check_layer, seeded_logits
from pydarknet_loss.labels import LabelError, default_labels_dir, load_truth
from pydarknet_loss.layer import YoloLayer


def default_cfg():
    """Return the path of upstream ``cfg/yolov3.cfg`` shipped in the package."""
    return upstream_cfg("yolov3.cfg")


class InputError(ValueError):
    """A command-line input that cannot be used."""


def _read_arrays(path):
    """Return the arrays of a .npy or .npz file by name."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {path.stem: loaded}
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    # A damaged file fails inside numpy or zipfile with many error types.
    except Exception as error:
        raise InputError(f"cannot read logits from {path}: {error!r}") from None


def load_logits(path, layers, batch):
    """Return one logits array per layer from a .npy or .npz file.

    Arrays named ``layer<index>`` (Darknet's layer index, as in
    ``layer82``) go to that layer; other arrays go to the one layer whose
    shape ``[batch, channels, h, w]`` they have.  Layers without an array
    are left out.
    """
    path = Path(path)
    arrays = _read_arrays(path)
    if not arrays:
        raise InputError(f"{path} contains no logits array")

    def shape(o):
        return (batch, len(o.mask) * (5 + o.classes), o.h, o.w)

    expected = ", ".join(f"layer{o.index} {shape(o)}" for o in layers)
    chosen = {}
    for key, array in arrays.items():
        if array.dtype.kind not in "fiu":
            raise InputError(
                f"logits array '{key}' has dtype {array.dtype}; expected real numbers"
            )
        if re.fullmatch(r"layer\d+", key):
            matches = [o for o in layers if key == f"layer{o.index}"]
            if not matches:
                raise InputError(
                    f"logits array '{key}' names no [yolo] layer: {expected}"
                )
        else:
            matches = [o for o in layers if array.shape == shape(o)]
        if len(matches) != 1 or array.shape != shape(matches[0]):
            raise InputError(
                f"logits array '{key}' with shape {array.shape} matches "
                f"{len(matches)} [yolo] layers for {batch} images; expected "
                f"one of: {expected}"
            )
        if matches[0].index in chosen:
            raise InputError(f"two logits arrays for layer{matches[0].index}")
        chosen[matches[0].index] = array
    return chosen


def run_check(args):
    """Run every selected layer; return (report dict, list of LayerCheck)."""
    cfg = Path(args.cfg) if args.cfg else default_cfg()
    layers = read_yolo_layers(cfg)
    if not layers:
        raise InputError(f"{cfg} has no [yolo] layer")

    labels = Path(args.labels) if args.labels else default_labels_dir()
    truth, names = load_truth(labels, max_boxes=min(o.max_boxes for o in layers))
    batch = truth.shape[0]

    if args.logits:
        given = load_logits(args.logits, layers, batch)
    else:
        given = {o.index: seeded_logits(o, truth, args.seed + o.index) for o in layers}

    checks = []
    for options in layers:
        if options.index not in given:
            continue
        layer = YoloLayer.from_options(options)
        try:
            checks.append(check_layer(layer, given[options.index], truth))
        except ValueError as error:
            raise InputError(_name_image(error, names)) from None

    # Without one responsible entry the x, y identity was never tested.
    responsible = sum(c.components[0].entries for c in checks)
    failures = []
    if not responsible:
        failures.append(
            "no truth was assigned to an anchor of these layers, so the x, y "
            "identity was not checked"
        )

    report = {
        "cfg": str(cfg),
        "labels": str(labels),
        "images": names,
        "logits": str(args.logits) if args.logits else f"seeded ({args.seed})",
        "tolerance": TOLERANCE,
        "layers": [_layer_dict(check) for check in checks],
        "failures": failures,
        "ok": not failures and all(check.ok for check in checks),
    }
    return report, checks


def _name_image(error, names):
    """Return the layer's truth error with the image and box it is about."""
    found = re.search(r"truth\[(\d+), (\d+)\]", str(error))
    if not found:
        return str(error)
    image, row = int(found[1]), int(found[2])
    return f"{names[image]}, box {row + 1}: {error}"


def _finite_or_none(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def _strict_json(value):
    """Return ``value`` with non-finite floats as None, which JSON can hold."""
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _layer_dict(check):
    return {
        "index": check.index,
        "grid": list(check.grid),
        "mask": list(check.mask),
        "components": {
            c.name: {
                "entries": c.entries,
                "max_diff_bce": c.diff_bce,
                "max_diff_mse": c.diff_mse,
                "verdict": c.verdict,
            }
            for c in check.components
        },
        "ignored": check.ignored,
        "untrained_max_delta": check.untrained_max,
        "cost": check.cost,
        "delta_norm2": check.delta_norm2,
        "loss_bce": check.loss_bce,
        "loss_mse": check.loss_mse,
        "stats": {k: _finite_or_none(v) for k, v in check.stats.items()},
        "numpy_stats": {k: _finite_or_none(v) for k, v in check.numpy_stats.items()},
        "failures": check.failures,
        "ok": check.ok,
    }


def format_report(report, checks):
    """Return the human-readable report as text."""
    lines = [
        f"cfg:    {report['cfg']}",
        f"labels: {report['labels']} ({len(report['images'])} images)",
        f"logits: {report['logits']}",
        "",
    ]
    header = f"  {'component':<11}{'entries':>8}  {'max|d+g| BCE':>12}  "
    header += f"{'max|d+g| MSE':>12}  which loss"
    for check in checks:
        w, h = check.grid
        lines.append(
            f"[yolo] layer {check.index}: grid {w}x{h}, "
            f"mask {','.join(map(str, check.mask))}; objectness entries: "
            f"{check.components[4].entries} responsible, {check.ignored} ignored, "
            f"{check.components[5].entries} no-object"
        )
        lines.append(header)
        for c in check.components:
            lines.append(
                f"  {c.name:<11}{c.entries:>8}  {c.diff_bce:>12.3g}  "
                f"{c.diff_mse:>12.3g}  {c.verdict}"
            )
        lines.append(
            f"  {'untrained':<11}{'':>8}  max |delta| {check.untrained_max:.3g}"
        )
        lines.append(
            f"  cost {check.cost:.6g} (||delta||^2 {check.delta_norm2:.6g}); "
            f"loss: BCE reading {check.loss_bce:.6g}, MSE reading {check.loss_mse:.6g}"
        )
        s, ns = check.stats, check.numpy_stats
        lines.append(
            f"  Darknet: Avg IOU {s['avg_iou']:.6f}, Class {s['avg_class']:.6f}, "
            f"Obj {s['avg_obj']:.6f}, No Obj {s['avg_no_obj']:.6f}, "
            f".5R {s['recall50']:.6f}, .75R {s['recall75']:.6f}, count {s['count']}"
        )
        lines.append(
            f"  numpy:   Avg IOU {ns['avg_iou']:.6f}, Class {ns['avg_class']:.6f}, "
            f"Obj {ns['avg_obj']:.6f}, No Obj {ns['avg_no_obj']:.6f}, "
            f".5R {ns['recall50']:.6f}, .75R {ns['recall75']:.6f}, count {ns['count']}"
        )
        for failure in check.failures:
            lines.append(f"  FAILED: {failure}")
        lines.append("")

    if report["ok"]:
        lines.append(
            "OK: Darknet's delta is -gradient of the BCE reading on every "
            f"component (tolerance {report['tolerance']:g}); x and y are not "
            "the gradient of squared error after the sigmoid."
        )
    else:
        for failure in report["failures"]:
            lines.append(f"FAILED: {failure}")
        lines.append("FAILED: an expected identity does not hold (see above).")
    return "\n".join(lines)


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pydarknet-loss",
        description="Call Darknet's real YOLO layer and show which loss its "
        "gradient belongs to.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check",
        help="compare Darknet's delta with the BCE and MSE readings",
        description="Run every [yolo] layer of a cfg on real boxes and compare "
        "Darknet's delta with the negative gradient of each reading of the loss.",
    )
    check.add_argument("--cfg", help="Darknet .cfg file (default: upstream yolov3.cfg)")
    check.add_argument(
        "--labels",
        help="a label file, a folder of label files, or a Darknet image list "
        "(default: the shipped labels of Darknet's sample images)",
    )
    check.add_argument(
        "--logits",
        help=".npy or .npz of [batch, channels, h, w] logits, one array per "
        "[yolo] layer, named layer<index> or matched by shape "
        "(default: seeded logits)",
    )
    check.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        help="seed of the generated logits, a non-negative integer (default 0)",
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    forks_cli.add_commands(commands)
    return parser


def main(argv=None):
    """Run the command line; return the exit status."""
    try:
        status = _main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (``| head``) has gone.  As Python's signal docs advise,
        # point stdout at devnull so the flush at exit cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return status


def _main(argv):
    args = build_parser().parse_args(argv)
    if args.command != "check":
        return forks_cli.run(args)
    try:
        report, checks = run_check(args)
    except (InputError, CfgError, LabelError, ValueError, TypeError, OSError) as error:
        print(f"pydarknet-loss: error: {error}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            "pydarknet-loss: error: not enough memory for these layers; "
            "check the cfg's width, height and batch",
            file=sys.stderr,
        )
        return 2

    if args.json:
        print(json.dumps(_strict_json(report), indent=2, allow_nan=False))
    else:
        print(format_report(report, checks))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
