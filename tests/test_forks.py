"""Named backends built from modified copies of the upstream tree.

Each modified tree changes src/yolo_layer.c the way a fork might, and
compare must flag exactly the components that the change touches.  The
backends are built once per session, in parallel, into a temporary
cache.
"""

import json
import math
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pydarknet_loss import backends, cli, forks
from pydarknet_loss.compare import (
    CompareReport,
    GoldenFileError,
    compare_backends,
    generate_cases,
    read_golden,
    record_golden,
    verify_golden,
)
from pydarknet_loss.testing import assert_matches_golden

UPSTREAM = Path(__file__).resolve().parents[1] / "darknet_src" / "upstream"

# (backend name, text in upstream src/yolo_layer.c, replacement, expected
# differing components).  Each text must occur in the upstream file.
MODIFICATIONS = {
    "unchanged": ([], []),
    "sigmoid-xy": (
        [
            (
                "delta[index + 0*stride] = scale * (tx - x[index + 0*stride]);",
                "delta[index + 0*stride] = scale * (tx - x[index + 0*stride])"
                " * x[index + 0*stride] * (1 - x[index + 0*stride]);",
            ),
            (
                "delta[index + 1*stride] = scale * (ty - x[index + 1*stride]);",
                "delta[index + 1*stride] = scale * (ty - x[index + 1*stride])"
                " * x[index + 1*stride] * (1 - x[index + 1*stride]);",
            ),
        ],
        ["x", "y"],
    ),
    "ignore-ge": (
        [("best_iou > l.ignore_thresh", "best_iou >= l.ignore_thresh")],
        ["no_object"],
    ),
    "box-scale-1": (
        [("(2-truth.w*truth.h)", "1")],
        ["x", "y", "w", "h"],
    ),
}


def _modified_tree(root, replacements):
    tree = root / "tree"
    shutil.copytree(UPSTREAM, tree, ignore=shutil.ignore_patterns("*.o", "obj"))
    layer = tree / "src" / "yolo_layer.c"
    text = layer.read_text()
    for old, new in replacements:
        assert old in text, f"upstream yolo_layer.c no longer contains {old!r}"
        text = text.replace(old, new)
    layer.write_text(text)
    return tree


@pytest.fixture(scope="session")
def fork_backends(tmp_path_factory):
    """Build every modified tree into its own backend; return them by name."""
    if not (UPSTREAM / "src" / "yolo_layer.c").is_file():
        pytest.skip(f"upstream tree not fetched into {UPSTREAM}")
    cache = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("PYDARKNET_LOSS_CACHE")
    os.environ["PYDARKNET_LOSS_CACHE"] = str(cache)

    def build(name):
        tree = _modified_tree(tmp_path_factory.mktemp(name), MODIFICATIONS[name][0])
        return forks.build_backend(tree, name, jobs=1)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        manifests = list(pool.map(build, MODIFICATIONS))
    yield {m["name"]: backends.load_backend(m["name"]) for m in manifests}

    if previous is None:
        del os.environ["PYDARKNET_LOSS_CACHE"]
    else:
        os.environ["PYDARKNET_LOSS_CACHE"] = previous


@pytest.fixture(scope="session")
def cases():
    return generate_cases(seed=0)


@pytest.mark.parametrize("name", sorted(MODIFICATIONS))
def test_compare_flags_changed_components(fork_backends, cases, name):
    report = compare_backends("reference", fork_backends[name], cases)
    assert sorted(report.differing) == sorted(MODIFICATIONS[name][1]), report.format()


def test_unchanged_tree_matches_bit_for_bit(fork_backends, cases):
    report = compare_backends(
        "reference", fork_backends["unchanged"], cases, tolerance=0
    )
    assert report.ok, report.format()


def test_backends_load_side_by_side(fork_backends, cases):
    case = cases[0]
    layers = [
        fork_backends[name].layer(**case.layer_arguments())
        for name in ("unchanged", "sigmoid-xy", "box-scale-1")
    ]
    results = [layer.forward(case.logits, case.truth) for layer in layers]

    reference = backends.load_backend("reference").layer(**case.layer_arguments())
    expected = reference.forward(case.logits, case.truth)

    assert np.array_equal(results[0].delta, expected.delta)
    assert not np.array_equal(results[1].delta, expected.delta)
    assert not np.array_equal(results[2].delta, expected.delta)
    assert not np.array_equal(results[1].delta, results[2].delta)


def test_first_difference_names_entry(fork_backends, cases):
    report = compare_backends("reference", fork_backends["sigmoid-xy"], cases)
    first = report.components["x"].first
    assert first is not None
    assert first.channel == 0
    assert first.a != first.b


def test_golden_round_trip(fork_backends, tmp_path):
    path = tmp_path / "golden.npz"
    meta = record_golden(path)
    assert meta["backend"] == "reference"
    assert_matches_golden(fork_backends["unchanged"], path, tolerance=0)
    with pytest.raises(AssertionError, match="no_object"):
        assert_matches_golden(fork_backends["ignore-ge"], path)


def test_unknown_option_rejected(fork_backends):
    with pytest.raises(backends.OptionError, match="iou_normalizer"):
        fork_backends["unchanged"].layer(
            classes=1, anchors=(10, 10), net_w=32, net_h=32, iou_normalizer=1
        )


def test_fork_layer_checks_truth(fork_backends):
    layer = fork_backends["unchanged"].layer(
        classes=2, anchors=(10, 10), net_w=32, net_h=32
    )
    logits = np.zeros((1, 7, 4, 4), dtype=np.float32)
    truth = np.array([[[0.5, 0.5, 0.2, 0.2, 2]]], dtype=np.float32)
    with pytest.raises(ValueError, match="class must be an integer"):
        layer.forward(logits, truth)


def test_build_rejects_missing_tree(tmp_path):
    with pytest.raises(forks.BuildError, match="not found"):
        forks.build_backend(tmp_path / "missing", "missing")


def test_build_rejects_reserved_name():
    with pytest.raises(ValueError, match="reserved"):
        forks.check_name("reference")


@pytest.fixture(scope="session")
def real_fork(tmp_path_factory):
    """Build the tree named by PYDARKNET_FORK_SRC, for example an AlexeyAB checkout."""
    source = os.environ.get("PYDARKNET_FORK_SRC")
    if not source:
        pytest.skip("set PYDARKNET_FORK_SRC to a Darknet fork's tree to run")
    previous = os.environ.get("PYDARKNET_LOSS_CACHE")
    os.environ["PYDARKNET_LOSS_CACHE"] = str(tmp_path_factory.mktemp("fork-cache"))
    forks.build_backend(source, "real-fork")
    yield backends.load_backend("real-fork")
    if previous is None:
        del os.environ["PYDARKNET_LOSS_CACHE"]
    else:
        os.environ["PYDARKNET_LOSS_CACHE"] = previous


def test_real_fork_runs_every_case(real_fork, cases):
    options = {"iou_normalizer": 1} if "iou_normalizer" in real_fork.options else {}
    report = compare_backends("reference", real_fork, cases, options_b=options)

    # Objectness and class deltas of the AlexeyAB loss equal pjreddie's; a
    # fork that changes them shows up here.
    for name in ("objectness", "no_object", "classes"):
        assert report.components[name].over_tolerance == 0, report.format()


def test_cfg_section_sets_options(fork_backends):
    from pydarknet_loss.cfg import read_cfg, yolo_layers

    sections = read_cfg(UPSTREAM / "cfg" / "yolov3-tiny.cfg")
    section = next(s for s in sections if s.type == "yolo")
    options = yolo_layers(sections)[0]
    section.options["ignore_thresh"] = "0.6"
    layer = fork_backends["unchanged"].layer_from_cfg(options, section)
    assert layer.ignore_thresh == pytest.approx(0.6)

    section.options["iou_normalizer"] = "0.07"
    with pytest.raises(backends.OptionError, match="iou_normalizer"):
        fork_backends["unchanged"].layer_from_cfg(options, section)


def test_real_fork_reports_stats(real_fork, cases):
    case = cases[0]
    layer = real_fork.layer(**case.layer_arguments())
    stats = layer.forward(case.logits, case.truth).stats
    assert stats is not None
    assert stats.region == case.index
    assert stats.count >= 0


def _hankai_tree(root, forward):
    """Write the files hank-ai detection reads, with the given forward line."""
    lib = root / "src-lib"
    lib.mkdir(parents=True)
    for name in ("yolo_layer.hpp", "darknet_internal.hpp", "darknet_version.h.in"):
        (lib / name).write_text("")
    (lib / "yolo_layer.cpp").write_text(forward + "\n{\n}\n")
    return root


def test_hankai_tree_detected(tmp_path):
    forward = "void forward_yolo_layer(Darknet::Layer & l, Darknet::NetworkState state)"
    flavour = forks.detect_flavour(_hankai_tree(tmp_path, forward))
    assert flavour.name == "hankai"
    assert flavour.source_dir == "src-lib"


def test_hankai_old_signature_rejected(tmp_path):
    forward = "void forward_yolo_layer(const layer l, network_state state)"
    with pytest.raises(forks.BuildError, match=r"v2\.1 and v3\.0"):
        forks.detect_flavour(_hankai_tree(tmp_path, forward))


def test_hankai_v20_layout_rejected(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "yolo_layer.cpp").write_text("")
    with pytest.raises(forks.BuildError, match=r"src/yolo_layer\.cpp"):
        forks.detect_flavour(tmp_path)


def test_hankai_missing_file_named(tmp_path):
    forward = "void forward_yolo_layer(Darknet::Layer & l, Darknet::NetworkState state)"
    tree = _hankai_tree(tmp_path, forward)
    (tree / "src-lib" / "darknet_internal.hpp").unlink()
    with pytest.raises(forks.BuildError, match="darknet_internal.hpp not found"):
        forks.detect_flavour(tree)


@pytest.fixture(scope="session")
def hankai_fork(tmp_path_factory):
    """Build the hank-ai tree named by PYDARKNET_HANKAI_SRC (about a minute)."""
    source = os.environ.get("PYDARKNET_HANKAI_SRC")
    if not source:
        pytest.skip("set PYDARKNET_HANKAI_SRC to a hank-ai/darknet tree to run")
    previous = os.environ.get("PYDARKNET_LOSS_CACHE")
    os.environ["PYDARKNET_LOSS_CACHE"] = str(tmp_path_factory.mktemp("hankai-cache"))
    forks.build_backend(source, "hankai")
    yield backends.load_backend("hankai")
    if previous is None:
        del os.environ["PYDARKNET_LOSS_CACHE"]
    else:
        os.environ["PYDARKNET_LOSS_CACHE"] = previous


def test_hankai_matches_reference_loss(hankai_fork, cases):
    assert hankai_fork.flavour == "hankai"
    report = compare_backends(
        "reference", hankai_fork, cases, options_b={"iou_normalizer": 1}
    )

    for name in ("objectness", "no_object", "classes"):
        assert report.components[name].over_tolerance == 0, report.format()

    # Box deltas differ only where two truths share a cell and anchor: the
    # AlexeyAB loss adds both truths' deltas, pjreddie's keeps the later.
    for name in ("x", "y", "w", "h"):
        first = report.components[name].first
        if first is not None:
            assert first.case == "shared-cell", report.format()


def test_hankai_stats_and_silence(hankai_fork, cases, capfd):
    case = next(c for c in cases if c.truth.shape[1] > 0)
    layer = hankai_fork.layer(**case.layer_arguments())
    expected = backends.load_backend("reference").layer(**case.layer_arguments())

    stats = layer.forward(case.logits, case.truth).stats
    reference = expected.forward(case.logits, case.truth).stats

    assert stats.region == reference.region
    assert stats.count == reference.count
    assert stats.avg_iou == pytest.approx(reference.avg_iou, abs=1e-6)
    assert np.isnan(stats.avg_class)
    assert np.isnan(stats.recall50)
    assert capfd.readouterr() == ("", "")


class _PatchedBackend:
    """The reference backend with chosen delta entries overwritten."""

    flavour = "pjreddie"

    def __init__(self, values, cost=None):
        self.name = "patched"
        self.values = values
        self.cost = cost
        self.reference = backends.load_backend("reference")
        self.arguments = None

    def layer(self, **arguments):
        self.arguments = arguments
        return self

    def forward(self, logits, truth):
        result = self.reference.layer(**self.arguments).forward(logits, truth)
        delta = result.delta.copy()
        for index, value in self.values.items():
            delta[index] = value
        cost = result.cost if self.cost is None else self.cost
        return replace(result, delta=delta, cost=cost)


def _compare_patched(case, values_a, values_b, cost_a=None, cost_b=None):
    a = _PatchedBackend(values_a, cost_a)
    b = _PatchedBackend(values_b, cost_b)
    return compare_backends(a, b, [case], tolerance=0)


# Entry (image, channel, row, column) 0 of channel 0 is a delta x entry.
X_ENTRY = (0, 0, 0, 0)
QUIET_NAN = np.float32("nan")
OTHER_NAN = np.uint32(0x7FC00001).view(np.float32)


def test_compare_counts_one_sided_nan_as_difference(cases):
    report = _compare_patched(cases[0], {X_ENTRY: QUIET_NAN}, {})
    x = report.components["x"]
    assert x.over_tolerance == 1
    assert math.isnan(x.max_difference)
    assert math.isnan(x.first.a)
    assert report.differing == ["x"]
    assert not report.ok
    assert "nan" in report.format()
    assert report.format().splitlines()[-1].startswith("FAILED")


def test_compare_nan_on_other_side_differs(cases):
    report = _compare_patched(cases[0], {}, {X_ENTRY: QUIET_NAN})
    assert report.components["x"].over_tolerance == 1
    assert not report.ok


def test_compare_nan_with_different_bits_differs(cases):
    report = _compare_patched(cases[0], {X_ENTRY: QUIET_NAN}, {X_ENTRY: OTHER_NAN})
    assert report.components["x"].over_tolerance == 1
    assert not report.ok


def test_compare_identical_nan_and_infinity_agree(cases):
    """Bit-identical NaNs and equal infinities are a reproduction, not a fault."""
    values = {X_ENTRY: QUIET_NAN, (0, 1, 0, 0): np.float32("inf")}
    report = _compare_patched(cases[0], values, dict(values))
    assert report.ok, report.format()
    assert report.components["x"].max_difference == 0


def test_compare_nan_cost_shows_nan(cases):
    report = _compare_patched(cases[0], {}, {}, cost_a=math.nan)
    assert math.isnan(report.cost_difference)
    assert "nan" in report.format().splitlines()[-2]


def test_nan_max_survives_later_cases(cases):
    """A NaN maximum from one case must not be replaced by a later finite one."""
    a = _PatchedBackend({X_ENTRY: QUIET_NAN})
    b = _PatchedBackend({})
    report = compare_backends(a, b, [cases[0], cases[0]], tolerance=0)
    assert math.isnan(report.components["x"].max_difference)
    assert report.components["x"].over_tolerance == 2


def _rewrite_golden(path, target, change):
    """Copy golden ``path`` to ``target`` with ``change(arrays)`` applied."""
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    change(arrays)
    np.savez(target, **arrays)
    return target


def _set_meta(arrays, change):
    meta = json.loads(str(arrays["meta"]))
    meta = change(meta)
    arrays["meta"] = np.array(json.dumps(meta))


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    path = tmp_path_factory.mktemp("golden") / "golden.npz"
    record_golden(path)
    return path


def _nan_delta(arrays):
    for key in arrays:
        if key.endswith("_delta"):
            arrays[key] = np.full_like(arrays[key], np.nan)


def test_golden_with_nan_delta_fails_verify(golden, tmp_path, capsys):
    path = _rewrite_golden(golden, tmp_path / "nan.npz", _nan_delta)
    report = verify_golden("reference", path)
    assert not report.ok
    for name in ("x", "y", "w", "h", "no_object", "classes"):
        assert report.components[name].over_tolerance > 0, name
    with pytest.raises(AssertionError, match="nan"):
        assert_matches_golden("reference", path)

    assert cli.main(["verify", "reference", str(path)]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_verify_json_is_strict_with_nan(golden, tmp_path, capsys):
    """compare/verify --json must not write bare NaN, which is not JSON."""
    path = _rewrite_golden(golden, tmp_path / "nan.npz", _nan_delta)
    assert cli.main(["verify", "reference", str(path), "--json"]) == 1

    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    report = json.loads(capsys.readouterr().out, parse_constant=reject)
    assert report["ok"] is False
    assert report["components"]["x"]["max_difference"] is None
    assert report["max_cost_difference"] is not None


@pytest.mark.parametrize("tolerance", [math.nan, -1.0, "1e-5", True])
def test_invalid_tolerance_rejected(cases, tolerance):
    with pytest.raises(ValueError, match="tolerance"):
        compare_backends("reference", "reference", cases[:1], tolerance=tolerance)


@pytest.mark.parametrize("tolerance", ["nan", "-1"])
def test_cli_invalid_tolerance_exits_2(golden, tolerance, capsys):
    for argv in (
        ["compare", "reference", "reference"],
        ["verify", "reference", str(golden)],
    ):
        assert cli.main([*argv, f"--tolerance={tolerance}"]) == 2
        error = capsys.readouterr().err
        assert error.startswith("pydarknet-loss: error: --tolerance"), error


def _truncate(golden, target):
    target.write_bytes(golden.read_bytes()[: golden.stat().st_size // 2])
    return target


def _drop_key(golden, target):
    return _rewrite_golden(golden, target, lambda arrays: arrays.pop("003_delta"))


def _meta_list(golden, target):
    return _rewrite_golden(
        golden, target, lambda arrays: _set_meta(arrays, lambda meta: [meta])
    )


def _cases_not_list(golden, target):
    def change(meta):
        meta["cases"] = "all"
        return meta

    return _rewrite_golden(golden, target, lambda a: _set_meta(a, change))


def _case_field_missing(golden, target):
    def change(meta):
        del meta["cases"][2]["anchors"]
        return meta

    return _rewrite_golden(golden, target, lambda a: _set_meta(a, change))


def _case_field_wrong_type(golden, target):
    def change(meta):
        meta["cases"][0]["classes"] = "80"
        return meta

    return _rewrite_golden(golden, target, lambda a: _set_meta(a, change))


def _option_sets_shape(golden, target):
    def change(meta):
        meta["cases"][0]["options"] = {"max_boxes": 5}
        return meta

    return _rewrite_golden(golden, target, lambda a: _set_meta(a, change))


def _no_cases(golden, target):
    def change(meta):
        meta["cases"] = []
        return meta

    return _rewrite_golden(golden, target, lambda a: _set_meta(a, change))


def _meta_not_json(golden, target):
    return _rewrite_golden(
        golden, target, lambda arrays: arrays.update(meta=np.array("{"))
    )


def _npy_file(golden, target):
    np.save(target, np.zeros(3))
    return target.with_name(target.name + ".npy")


def _empty_file(golden, target):
    target.write_bytes(b"")
    return target


GOLDEN_FAULTS = {
    "truncated": (_truncate, "truncated"),
    "empty": (_empty_file, "truncated"),
    "missing array": (_drop_key, "'003_delta' is missing"),
    "meta is a list": (_meta_list, "not an object"),
    "cases not a list": (_cases_not_list, "no list of cases"),
    "case field missing": (_case_field_missing, "no field anchors"),
    "case field wrong type": (_case_field_wrong_type, "'classes' is '80'"),
    "option sets shape": (_option_sets_shape, "layer arguments"),
    "no cases": (_no_cases, "no cases"),
    "meta not JSON": (_meta_not_json, "not valid JSON"),
    "npy file": (_npy_file, ".npy array"),
}


@pytest.mark.parametrize("fault", sorted(GOLDEN_FAULTS))
def test_bad_golden_raises_golden_file_error(golden, tmp_path, fault):
    make, message = GOLDEN_FAULTS[fault]
    path = make(golden, tmp_path / "bad.npz")
    with pytest.raises(GoldenFileError, match=message):
        read_golden(path)


@pytest.mark.parametrize("fault", sorted(GOLDEN_FAULTS))
def test_cli_bad_golden_exits_2_without_traceback(golden, tmp_path, fault, capsys):
    make, message = GOLDEN_FAULTS[fault]
    path = make(golden, tmp_path / "bad.npz")
    for argv in (
        ["verify", "reference", str(path)],
        ["compare", "reference", "reference", "--cases", str(path)],
    ):
        assert cli.main(argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith("pydarknet-loss: error: "), captured.err
        assert message in captured.err
        assert len(captured.err.strip().splitlines()) == 1


def test_compare_rejects_zero_cases():
    with pytest.raises(ValueError, match="no cases"):
        compare_backends("reference", "reference", [])
    with pytest.raises(ValueError, match="no cases"):
        record_golden("unused.npz", [])


def test_report_without_cases_not_ok():
    report = CompareReport(a="a", b="b", tolerance=0, cases=[], components={})
    assert not report.ok
    assert report.format().splitlines()[-1] == "FAILED: no cases were compared."


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "reference", "reference", "--seed", "-1"], "--seed"),
        (["record", "unused.npz", "--seed", "-1"], "--seed"),
        (["build", "--src", ".", "--name", "x", "--jobs", "-1"], "--jobs"),
        (["build", "--src", ".", "--name", "x", "--jobs", "0"], "--jobs"),
        (["record", "unused.npz", "--set", "max_boxes=5"], "max_boxes=5"),
        (["record", "unused.npz", "--set", "max_boxes=five"], "integer"),
        (["compare", "reference", "reference", "--set-b", "max_boxes=1000"], "90"),
        (["compare", "reference", "reference", "--set-a", "classes=3"], "shape"),
        (["compare", "reference", "reference", "--set-b", "iou=1"], "no [yolo]"),
        (["verify", "reference", "missing.npz", "--set", "ignore_thresh=x"], "number"),
    ],
)
def test_cli_input_error_is_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("pydarknet-loss: error: "), captured.err
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_record_set_max_boxes_is_integer(tmp_path, capsys):
    """--set max_boxes arrives as text and must reach the layer as an int."""
    path = tmp_path / "golden.npz"
    argv = ["record", str(path), "--set", "max_boxes=85", "--set", "ignore_thresh=0.6"]
    assert cli.main(argv) == 0
    meta = read_golden(path)[0]
    assert {case["max_boxes"] for case in meta["cases"]} == {85}
    assert meta["cases"][0]["options"]["ignore_thresh"] == 0.6
    capsys.readouterr()

    argv = ["verify", "reference", str(path), "--set", "ignore_thresh=0.6"]
    assert cli.main(argv) == 0, capsys.readouterr().err


def test_record_reports_written_path(tmp_path, monkeypatch, capsys):
    """numpy appends .npz to the name; the message must name that file."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(["record", "gold"]) == 0
    assert capsys.readouterr().out.strip().endswith(" in gold.npz")
    assert (tmp_path / "gold.npz").is_file()
    assert not (tmp_path / "gold").exists()


def test_cli_broken_pipe_exits_quietly(tmp_path):
    """A reader that closes the pipe early (``| head``) gets no traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pydarknet_loss", "check", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    process.stdout.close()
    error = process.stderr.read().decode()
    assert process.wait() == 1
    assert error == ""


def test_build_cache_hits_unchanged_tree(fork_backends):
    """Rebuilding unchanged sources must reuse the library, not recompile."""
    manifest = forks.read_manifest("unchanged")
    again = forks.build_backend(manifest["source"], "unchanged")
    assert again["cached"] is True
    assert again["fingerprint"] == manifest["fingerprint"]
    assert again["library"] == manifest["library"]


def test_fingerprint_ignores_objects_folder(tmp_path):
    """The fingerprint covers sources and flags, not the temporary folder."""
    if not (UPSTREAM / "src" / "yolo_layer.c").is_file():
        pytest.skip(f"upstream tree not fetched into {UPSTREAM}")
    tree = _modified_tree(tmp_path, [])
    flavour = forks.detect_flavour(tree)
    glue = forks.glue_dir()

    def fingerprint(objects):
        folder = tmp_path / objects
        commands = forks._compile_commands(tree, flavour, glue, folder)
        return forks._fingerprint(tree, flavour, glue, commands, folder)

    first = fingerprint("objects-a")
    assert fingerprint("objects-b") == first

    layer = tree / "src" / "yolo_layer.c"
    layer.write_text(layer.read_text() + "\n/* changed */\n")
    assert fingerprint("objects-a") != first


def test_failed_build_leaves_no_cache_folder(tmp_path, monkeypatch):
    if not (UPSTREAM / "src" / "yolo_layer.c").is_file():
        pytest.skip(f"upstream tree not fetched into {UPSTREAM}")
    monkeypatch.setenv("PYDARKNET_LOSS_CACHE", str(tmp_path / "cache"))
    tree = _modified_tree(tmp_path, [])
    layer = tree / "src" / "yolo_layer.c"
    layer.write_text("#error deliberately broken\n" + layer.read_text())

    with pytest.raises(forks.BuildError, match="compile failed"):
        forks.build_backend(tree, "broken")
    assert not (tmp_path / "cache" / "broken").exists()
