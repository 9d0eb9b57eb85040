"""The upstream fetch step: apt source entries and tree verification."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location(
    "fetch", ROOT / "darknet_src" / "fetch.py"
)
fetch = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(fetch)

UPSTREAM = ROOT / "darknet_src" / "upstream"


def write_etc(tmp_path, one_line="", deb822=""):
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text(one_line)
    (etc / "sources.list.d" / "debian.sources").write_text(deb822)
    return etc


def test_one_line_entries_keep_mirror_and_key(tmp_path):
    etc = write_etc(
        tmp_path,
        one_line=(
            "# a comment\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://mirror.local/debian"
            " bookworm main contrib\n"
            "deb-src http://ignored.local/debian bookworm main\n"
        ),
    )
    (entry,) = fetch.machine_deb_entries(etc)
    assert entry["URIs"] == "http://mirror.local/debian"
    assert entry["Suites"] == "bookworm"
    assert entry["Components"] == "main contrib"
    assert entry["Signed-By"] == "/k.gpg"


def test_deb822_entries_skip_disabled(tmp_path):
    etc = write_etc(
        tmp_path,
        deb822=(
            "Types: deb\n"
            "URIs: http://mirror.local/debian\n"
            "Suites: bookworm bookworm-updates\n"
            "Components: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            "\n"
            "Types: deb\n"
            "Enabled: no\n"
            "URIs: http://off.local/debian\n"
            "Suites: bookworm\n"
            "Components: main\n"
        ),
    )
    (entry,) = fetch.machine_deb_entries(etc)
    rendered = fetch.deb_src_sources([entry])
    assert rendered.startswith("Types: deb-src\n")
    assert "URIs: http://mirror.local/debian\n" in rendered
    assert "Suites: bookworm bookworm-updates\n" in rendered
    assert "off.local" not in rendered


@pytest.mark.skipif(not UPSTREAM.is_dir(), reason="upstream tree not fetched")
def test_verify_names_changed_file(tmp_path):
    tree = tmp_path / "darknet"
    shutil.copytree(UPSTREAM, tree, ignore=shutil.ignore_patterns("*.jpg", "*.o"))
    assert fetch.mismatched_files(tree) == []

    with open(tree / "src" / "yolo_layer.c", "a") as f:
        f.write("\n")
    (tree / "src" / "box.h").unlink()
    assert fetch.mismatched_files(tree) == ["src/yolo_layer.c", "src/box.h"]
    assert fetch.main(["--verify", str(tree)]) == 1


@pytest.mark.skipif(not UPSTREAM.is_dir(), reason="upstream tree not fetched")
def test_build_names_missing_file(tmp_path):
    tree = tmp_path / "darknet"
    shutil.copytree(UPSTREAM / "include", tree / "include")
    shutil.copytree(UPSTREAM / "src", tree / "src")
    (tree / "src" / "box.c").unlink()

    completed = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-temp", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "DARKNET_SRC": str(tree)},
        capture_output=True,
        text=True,
    )
    assert completed.returncode != 0
    assert "lacks src/box.c" in completed.stderr
