"""Named backends built from modified copies of the upstream tree.

Each modified tree changes src/yolo_layer.c the way a fork might, and
compare must flag exactly the components that the change touches.  The
backends are built once per session, in parallel, into a temporary
cache.
"""

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pydarknet_loss import backends, forks
from pydarknet_loss.compare import compare_backends, generate_cases, record_golden
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
