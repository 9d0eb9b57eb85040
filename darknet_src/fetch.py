"""Fetch the pinned upstream Darknet tree into ``darknet_src/upstream/``.

The source comes from Debian's ``darknet`` source package, which packages
pjreddie/darknet at commit 61c9d02e unchanged in every file compiled here.
apt's own client downloads it with a private sources list, lists folder
and cache, so the machine's apt configuration is left untouched.  The
``deb-src`` entries are derived from the machine's own ``deb`` entries,
so a local mirror is used where the machine has one.  Every archive and
every upstream file the build reads is checked against
``manifest.json``.

Run ``python darknet_src/fetch.py`` by hand, or let ``setup.py`` run it
when the tree is missing.  Where apt is missing, point ``DARKNET_SRC`` at
a checkout of the pinned commit instead.
"""

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = json.loads((HERE / "manifest.json").read_text())
UPSTREAM = HERE / "upstream"


class FetchError(RuntimeError):
    """The upstream source could not be fetched or failed verification."""


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mismatched_files(tree):
    """Return the manifest's files that are missing or differ in ``tree``."""
    tree = Path(tree)
    bad = []
    for name, expected in MANIFEST["sha256"].items():
        path = tree / name
        if not path.is_file() or sha256(path) != expected:
            bad.append(name)
    return bad


def _one_line_entries(path):
    """Yield ``deb`` entries of a one-line-style sources file as dicts."""
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        words = line.split()[1:]
        options = {}
        if words and words[0].startswith("["):
            # Options such as [signed-by=... arch=...] may hold spaces
            # only inside the brackets.
            bracket = []
            while words:
                word = words.pop(0)
                bracket.append(word)
                if word.endswith("]"):
                    break
            for item in " ".join(bracket)[1:-1].split():
                key, _, value = item.partition("=")
                options[key] = value
        if len(words) < 2:
            continue
        yield {
            "URIs": words[0],
            "Suites": words[1],
            "Components": " ".join(words[2:]),
            "Signed-By": options.get("signed-by", ""),
        }


def _deb822_entries(path):
    """Yield ``deb`` entries of a deb822-style ``.sources`` file as dicts."""
    stanza = {}
    key = None
    lines = Path(path).read_text().splitlines() + [""]
    for line in lines:
        if line.startswith("#"):
            continue
        if not line.strip():
            types = stanza.get("Types", "").split()
            enabled = stanza.get("Enabled", "yes").lower() != "no"
            if "deb" in types and enabled:
                yield stanza
            stanza, key = {}, None
        elif line[0] in " \t" and key:
            stanza[key] += "\n" + line.strip()
        else:
            key, _, value = line.partition(":")
            key = key.strip()
            stanza[key] = value.strip()


def machine_deb_entries(etc="/etc/apt"):
    """Return the machine's enabled ``deb`` entries, both file formats."""
    etc = Path(etc)
    entries = []
    one_line = [etc / "sources.list"]
    one_line += sorted(glob.glob(str(etc / "sources.list.d" / "*.list")))
    for path in one_line:
        if Path(path).is_file():
            entries.extend(_one_line_entries(path))
    for path in sorted(glob.glob(str(etc / "sources.list.d" / "*.sources"))):
        entries.extend(_deb822_entries(path))
    return entries


def deb_src_sources(entries):
    """Render ``deb-src`` stanzas (deb822) mirroring the given entries."""
    stanzas = []
    for entry in entries:
        fields = ["Types: deb-src"]
        for key in ("URIs", "Suites", "Components", "Signed-By"):
            value = entry.get(key, "")
            if value:
                fields.append(f"{key}: {value}")
        stanzas.append("\n".join(fields))
    return "\n\n".join(stanzas) + "\n"


def _apt(state, *args):
    options = [
        "-o", f"Dir::Etc::SourceList={state / 'darknet.sources'}",
        "-o", "Dir::Etc::SourceParts=/nonexistent",
        "-o", f"Dir::State::Lists={state / 'lists'}",
        "-o", f"Dir::Cache={state / 'cache'}",
        "-o", "APT::Sandbox::User=root",
        "-q",
    ]
    return subprocess.run(
        ["apt-get", *options, *args],
        cwd=state / "download",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def download_debian_source(state):
    """Download the pinned Debian source package into ``state/download``."""
    if shutil.which("apt-get") is None:
        raise FetchError(
            "apt-get not found: set DARKNET_SRC to a checkout of "
            f"pjreddie/darknet at commit {MANIFEST['commit']}"
        )
    entries = machine_deb_entries()
    if not entries:
        raise FetchError("no 'deb' entries found under /etc/apt to derive deb-src")

    for sub in ("lists/partial", "cache/archives/partial", "download"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    # apt reads a list file as deb822 when its name ends in ".sources".
    (state / "darknet.sources").write_text(deb_src_sources(entries))

    # Some entries (third-party repositories) carry no source indexes, so
    # a partial update is expected; the download below decides.
    update = _apt(state, "update")
    debian = MANIFEST["debian"]
    pinned = f"{debian['source']}={debian['version']}"
    download = _apt(state, "source", "--download-only", pinned)
    if download.returncode != 0:
        raise FetchError(
            f"apt-get source {pinned} failed:\n{update.stdout}\n{download.stdout}"
        )

    for name, expected in debian["files"].items():
        path = state / "download" / name
        if not path.is_file():
            raise FetchError(f"apt-get did not download {name}")
        if sha256(path) != expected:
            raise FetchError(f"checksum mismatch for {name}")
    return state / "download" / debian["orig"]


def unpack(archive, destination):
    """Unpack the upstream tarball's single top folder into ``destination``."""
    staging = Path(tempfile.mkdtemp(dir=destination.parent))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        (top,) = list(staging.iterdir())
        if destination.exists():
            shutil.rmtree(destination)
        top.rename(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fetch(destination=UPSTREAM, force=False):
    """Make ``destination`` hold the verified upstream tree; return its path."""
    destination = Path(destination)
    if not force and destination.is_dir() and not mismatched_files(destination):
        return destination

    state = Path(tempfile.mkdtemp(prefix="pydarknet-apt-"))
    try:
        archive = download_debian_source(state)
        unpack(archive, destination)
    finally:
        shutil.rmtree(state, ignore_errors=True)

    bad = mismatched_files(destination)
    if bad:
        raise FetchError(f"unpacked tree fails verification: {', '.join(bad)}")
    return destination


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--verify",
        metavar="TREE",
        help="only check TREE against the pinned checksums",
    )
    parser.add_argument("--force", action="store_true", help="download again")
    args = parser.parse_args(argv)

    if args.verify:
        bad = mismatched_files(args.verify)
        for name in bad:
            print(f"pydarknet_loss: {args.verify}: {name} missing or differs")
        return 1 if bad else 0

    try:
        path = fetch(force=args.force)
    except FetchError as error:
        print(f"pydarknet_loss: {error}", file=sys.stderr)
        return 1
    print(f"pydarknet_loss: upstream Darknet {MANIFEST['commit']} ready in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
