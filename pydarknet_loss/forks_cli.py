"""Command-line subcommands for fork maintainers: build, compare, record, verify.

``compare`` and ``verify`` exit with 0 when every component of the delta
agrees within the tolerance, 1 when one differs, 2 on invalid input or a
failed build, so a fork's CI can call them directly.
"""

import json
import math
import sys

from pydarknet_loss import compare, forks
from pydarknet_loss.backends import OptionError, load_backend

# Layer arguments that --set accepts besides the backend's [yolo] options.
INTEGER_OPTIONS = ("max_boxes",)


def _option(text):
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _option_value(key, text, backend):
    """Convert the text of ``--set KEY=TEXT`` to the option's type."""
    if key in INTEGER_OPTIONS:
        try:
            return int(text)
        except ValueError:
            raise OptionError(f"{key} must be an integer, got {text!r}") from None

    # Words (AlexeyAB's iou_loss=ciou) and unknown keys stay text, because
    # the backend rejects those with the list of what it accepts.
    if key in backend.choices or key not in backend.options:
        return text
    try:
        return float(text)
    except ValueError:
        raise OptionError(f"{key} must be a number, got {text!r}") from None


def _options(pairs, backend):
    options = {}
    for pair in pairs or ():
        key, text = _option(pair)
        options[key] = _option_value(key, text, backend)
    return options


def _check_arguments(args):
    """Raise ValueError on an argument that argparse's types let through."""
    jobs = getattr(args, "jobs", None)
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs must be a positive integer, got {jobs}")
    seed = getattr(args, "seed", 0)
    if seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed}")
    tolerance = getattr(args, "tolerance", 0.0)
    if math.isnan(tolerance) or tolerance < 0:
        raise ValueError(f"--tolerance must be a non-negative number, got {tolerance}")


def add_commands(commands):
    """Add the fork subcommands to the ``pydarknet-loss`` argument parser."""
    build = commands.add_parser(
        "build",
        help="build a Darknet source tree into a named backend",
        description="Compile a Darknet tree's YOLO layer (pjreddie, AlexeyAB or "
        "hank-ai flavour, detected from its files) into a named backend in the cache "
        "($PYDARKNET_LOSS_CACHE, default ~/.cache/pydarknet_loss).",
    )
    build.add_argument("--src", required=True, help="root of the Darknet source tree")
    build.add_argument("--name", required=True, help="name of the backend to create")
    build.add_argument(
        "--jobs", type=int, help="compiler processes at once (default: the CPU count)"
    )
    build.add_argument(
        "--force",
        action="store_true",
        help="rebuild even when the cached library is up to date",
    )
    build.add_argument("--json", action="store_true", help="print the result as JSON")

    compare_parser = commands.add_parser(
        "compare",
        help="run two backends on the same inputs and compare their deltas",
        description="Run backends A and B ('reference' is the built-in "
        "pjreddie/darknet module) on seeded cases or on the cases of a golden "
        "file, and report the largest difference per component.",
    )
    compare_parser.add_argument("a", help="backend name")
    compare_parser.add_argument("b", help="backend name")
    compare_parser.add_argument(
        "--cases", help="golden .npz whose inputs to use (default: the seeded cases)"
    )
    compare_parser.add_argument(
        "--seed", type=int, default=0, help="seed of the generated cases (default 0)"
    )
    _add_check_options(compare_parser)
    compare_parser.add_argument(
        "--set-a",
        action="append",
        metavar="KEY=VALUE",
        help="[yolo] option or max_boxes for backend A only (repeatable)",
    )
    compare_parser.add_argument(
        "--set-b",
        action="append",
        metavar="KEY=VALUE",
        help="[yolo] option or max_boxes for backend B only (repeatable)",
    )

    record = commands.add_parser(
        "record",
        help="write seeded cases and a backend's results to a golden .npz",
        description="Run the seeded cases on a backend (default: reference) and "
        "store inputs, options, results and the upstream version in a .npz file.",
    )
    record.add_argument("path", help="golden .npz file to write")
    record.add_argument(
        "--backend",
        default="reference",
        help="backend whose results to store (default: reference)",
    )
    record.add_argument(
        "--seed", type=int, default=0, help="seed of the generated cases (default 0)"
    )
    record.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="[yolo] option or max_boxes for every case (repeatable)",
    )
    record.add_argument(
        "--json", action="store_true", help="print the metadata as JSON"
    )

    verify = commands.add_parser(
        "verify",
        help="hold a backend to a golden .npz",
        description="Run a backend on the cases of a golden file and compare its "
        "deltas with the stored ones.",
    )
    verify.add_argument("backend", help="backend name")
    verify.add_argument("path", help="golden .npz file written by 'record'")
    _add_check_options(verify)
    verify.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="[yolo] option or max_boxes for the checked backend (repeatable)",
    )


def _add_check_options(parser):
    parser.add_argument(
        "--tolerance",
        type=float,
        default=compare.DEFAULT_TOLERANCE,
        help="largest absolute difference of a delta entry that "
        f"still agrees (default {compare.DEFAULT_TOLERANCE:g})",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _to_json(data):
    # A bare NaN or Infinity is not JSON and strict parsers reject the whole
    # document, so allow_nan=False raises instead of writing one.
    return json.dumps(data, indent=2, allow_nan=False)


def _execute(args):
    _check_arguments(args)
    if args.command == "build":
        result = forks.build_backend(
            args.src, args.name, jobs=args.jobs, force=args.force
        )
        if args.json:
            return _to_json(result), 0
        state = (
            "up to date"
            if result["cached"]
            else f"built in {result['build_seconds']} s"
        )
        return (
            f"backend {result['name']} ({result['flavour']}) from "
            f"{result['source']}: {state}\n  {result['library']}"
        ), 0

    if args.command == "record":
        backend = load_backend(args.backend)
        meta = compare.record_golden(
            args.path,
            compare.generate_cases(args.seed),
            backend=backend,
            options=_options(args.set, backend),
        )
        if args.json:
            return _to_json(meta), 0
        return (
            f"recorded {len(meta['cases'])} cases from backend {meta['backend']} "
            f"in {compare.golden_path(args.path)}"
        ), 0

    if args.command == "compare":
        if args.cases:
            cases = compare.read_golden(args.cases)[1]
        else:
            cases = compare.generate_cases(args.seed)
        a = load_backend(args.a)
        b = load_backend(args.b)
        report = compare.compare_backends(
            a,
            b,
            cases,
            tolerance=args.tolerance,
            options_a=_options(args.set_a, a),
            options_b=_options(args.set_b, b),
        )
    else:
        backend = load_backend(args.backend)
        report = compare.verify_golden(
            backend,
            args.path,
            tolerance=args.tolerance,
            options=_options(args.set, backend),
        )
    text = _to_json(report.to_dict()) if args.json else report.format()
    return text, 0 if report.ok else 1


def run(args):
    """Run a fork subcommand; return the exit status."""
    try:
        text, status = _execute(args)
    # RuntimeError: a backend call failed, or Path.resolve met a symlink
    # loop.  Either is an error, not a difference between backends.
    except (forks.BuildError, OptionError, ValueError, OSError, RuntimeError) as error:
        print(f"pydarknet-loss: error: {error}", file=sys.stderr)
        return 2
    print(text)
    return status
