"""The ``pydarknet-loss check`` command."""

import json
import subprocess
import sys

import numpy as np
import pytest

from pydarknet_loss import check, cli
from pydarknet_loss.cfg import read_yolo_layers
from pydarknet_loss.labels import default_labels_dir, load_truth


def run(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "pydarknet_loss", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def test_default_check_passes(tmp_path):
    completed = run("check", cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for index in (82, 94, 106):
        assert f"[yolo] layer {index}" in completed.stdout
    assert completed.stdout.rstrip().splitlines()[-1].startswith("OK:")
    assert completed.stderr == ""


def test_console_script_runs(tmp_path):
    completed = subprocess.run(
        ["pydarknet-loss", "check", "--seed", "3"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_json_report_verdicts(capsys):
    assert cli.main(["check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert len(report["images"]) == 7
    for layer in report["layers"]:
        components = layer["components"]
        assert components["x"]["verdict"] == "BCE on sigmoid"
        assert components["y"]["verdict"] == "BCE on sigmoid"
        assert components["w"]["verdict"] == "squared error"
        assert components["no_object"]["verdict"] == "BCE on sigmoid"
        assert components["x"]["entries"] > 0
        assert layer["ignored"] > 0
        assert components["x"]["max_diff_mse"] > 100 * report["tolerance"]


def test_labels_file_and_list(tmp_path, capsys):
    images = tmp_path / "images"
    labels = tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    (labels / "a.txt").write_text("3 0.5 0.5 0.2 0.3\n16 0.25 0.7 0.05 0.1\n")
    listing = tmp_path / "train.txt"
    listing.write_text(f"{images / 'a.jpg'}\n")

    for source in (labels / "a.txt", labels, listing):
        assert cli.main(["check", "--json", "--labels", str(source)]) == 0
        report = json.loads(capsys.readouterr().out)
        assert len(report["images"]) == 1


def test_logits_npz_by_name_and_shape(tmp_path, capsys):
    truth, _ = load_truth(default_labels_dir())
    layers = read_yolo_layers(cli.default_cfg())
    by_name = {
        "layer94": check.seeded_logits(layers[1], truth, 5),
    }
    np.savez(tmp_path / "named.npz", **by_name)
    np.save(tmp_path / "shaped.npy", check.seeded_logits(layers[2], truth, 5))

    assert cli.main(["check", "--json", "--logits", str(tmp_path / "named.npz")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [layer["index"] for layer in report["layers"]] == [94]

    assert cli.main(["check", "--json", "--logits", str(tmp_path / "shaped.npy")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [layer["index"] for layer in report["layers"]] == [106]


def test_logits_of_no_layer_rejected(tmp_path, capsys):
    np.save(tmp_path / "odd.npy", np.zeros((7, 255, 20, 20), dtype=np.float32))
    assert cli.main(["check", "--logits", str(tmp_path / "odd.npy")]) == 2
    assert "matches 0 [yolo] layers" in capsys.readouterr().err


def test_other_cfg(tmp_path, capsys):
    tiny = cli.default_cfg().with_name("yolov3-tiny.cfg")
    assert cli.main(["check", "--json", "--cfg", str(tiny)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [layer["grid"] for layer in report["layers"]] == [[13, 13], [26, 26]]


def test_invalid_labels_exit_two(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("80 0.5 0.5 0.1 0.1\n")
    assert cli.main(["check", "--labels", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad, box 1:" in err
    assert "class must be an integer in [0, 80)" in err


def test_broken_identity_exits_one(monkeypatch, capsys):
    real = check.yolo_loss

    def doubled_xy(logits, truth, **options):
        loss = real(logits, truth, **options)
        loss.gradient[loss.masks["x"]] *= 2
        return loss

    monkeypatch.setattr(check, "yolo_loss", doubled_xy)
    assert cli.main(["check"]) == 1
    out = capsys.readouterr().out
    assert "FAILED: x: delta is not -gradient of BCE reading" in out
    assert "FAILED: y" not in out


def test_label_on_image_edge_exits_two(tmp_path, capsys):
    edge = tmp_path / "edge.txt"
    edge.write_text("0 1.0 0.5 0.2 0.3\n")
    assert cli.main(["check", "--labels", str(edge)]) == 2
    assert "x must be in (0, 1)" in capsys.readouterr().err


BAD_LOGITS_FILES = {
    "truncated npz": "truncated.npz",
    "empty npy": "empty.npy",
    "no arrays": "none.npz",
    "unknown layer name": "layer99.npz",
    "named layer wrong shape": "layer82.npz",
    "complex": "complex.npz",
}


def write_bad_logits(folder, name):
    path = folder / name
    if name == "truncated.npz":
        np.savez(path, layer82=np.zeros((7, 255, 19, 19), np.float32))
        path.write_bytes(path.read_bytes()[:1000])
    elif name == "empty.npy":
        path.write_bytes(b"")
    elif name == "none.npz":
        np.savez(path)
    elif name == "layer99.npz":
        np.savez(path, layer99=np.zeros((7, 255, 19, 19), np.float32))
    elif name == "layer82.npz":
        np.savez(path, layer82=np.zeros((7, 255, 38, 38), np.float32))
    else:
        np.savez(path, layer82=np.zeros((7, 255, 19, 19), np.complex64))
    return path


@pytest.mark.parametrize("name", BAD_LOGITS_FILES.values(), ids=BAD_LOGITS_FILES.keys())
def test_bad_logits_file_exits_two(tmp_path, capsys, name):
    path = write_bad_logits(tmp_path, name)
    assert cli.main(["check", "--logits", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pydarknet-loss: error:")
    assert "Traceback" not in err


def test_empty_labels_check_nothing(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert cli.main(["check", "--json", "--labels", str(empty)]) == 1
    text = capsys.readouterr().out
    assert "NaN" not in text
    report = json.loads(text)
    assert report["ok"] is False
    assert "x, y identity was not checked" in report["failures"][0]
    assert report["layers"][0]["stats"]["avg_iou"] is None


def test_negative_seed_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["check", "--seed", "-83"])
    assert exit_info.value.code == 2
    assert "--seed: must be a non-negative integer" in capsys.readouterr().err


def test_build_symlink_loop_exits_two(tmp_path, monkeypatch, capsys):
    # Path.resolve raises RuntimeError on a loop, which is not a difference.
    monkeypatch.setenv("PYDARKNET_LOSS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "l1").symlink_to(tmp_path / "l2")
    (tmp_path / "l2").symlink_to(tmp_path / "l1")
    status = cli.main(["build", "--src", str(tmp_path / "l1"), "--name", "loop"])
    assert status == 2
    assert capsys.readouterr().err.startswith("pydarknet-loss: error:")
