"""Build a Darknet fork's YOLO layer into a named backend.

A backend is a plain shared library: the fork's own unit set, compiled
with the upstream Makefile's flags, plus the project's glue for the
fork's flavour.  Only the ``pdl_fork_`` functions are exported, so
backends built from different trees load side by side in one process,
next to the reference module, through :mod:`pydarknet_loss.backends`.
The fork's files are read, never changed.

Backends live in a cache outside the source tree:
``$PYDARKNET_LOSS_CACHE/<name>/`` (default ``~/.cache/pydarknet_loss``).
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from pydarknet_loss._build import UPSTREAM_CFLAGS

# Backend names become folder names and appear in reports.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
RESERVED_NAMES = ("reference",)

# The same upstream Makefile flags as the reference module: -Ofast on
# compile lines only, hidden visibility for the fork's own symbols.
FORK_CFLAGS = tuple(UPSTREAM_CFLAGS)
GLUE_CFLAGS = ("-std=gnu11", "-fPIC", "-O2", "-fvisibility=hidden")

# Only the prefixed API leaves the library, whatever the fork marks public.
VERSION_SCRIPT = "{ global: pdl_fork_*; local: *; };\n"

PJREDDIE_UNITS = ("activations.c", "blas.c", "box.c", "utils.c", "list.c", "cuda.c")
ALEXEYAB_UNITS = ("activations.c", "blas.c", "box.c", "utils.c", "list.c")

# hank-ai's units besides yolo_layer.cpp: what the layer calls, plus the
# CfgAndState singleton and the reporting units it links to.  The glue
# replaces get_current_iteration (darknet_network.cpp would pull in every
# layer type) and three reporting functions of darknet.cpp.
HANKAI_UNITS = (
    "activations.cpp",
    "blas.cpp",
    "box.cpp",
    "utils.cpp",
    "list.cpp",
    "darknet_cfg_and_state.cpp",
    "darknet_args_and_parms.cpp",
    "darknet_format_and_colour.cpp",
    "darknet_utils.cpp",
    "darknet_enums.cpp",
    "Chart.cpp",
)
# Units compiled with a forced include of the project's shim, by file.
HANKAI_UNIT_SHIMS = {"darknet_cfg_and_state.cpp": "pdl_fork_hankai_shim.h"}

# CMake's Release flags for hank-ai's tree, less its x86-only -mavx2 and
# -msse4 options, which would tie a backend to the build machine.
HANKAI_CXXFLAGS = (
    "-std=c++17",
    "-Wno-unused-result",
    "-fPIC",
    "-O3",
    "-ffp-contract=fast",
    "-fvisibility=hidden",
)

# Option fields that the AlexeyAB glue sets when the tree's struct layer
# has them; see darknet_src/glue/pdl_fork_alexeyab.c.
ALEXEYAB_LAYER_FIELDS = (
    "iou_thresh",
    "iou_normalizer",
    "obj_normalizer",
    "cls_normalizer",
    "delta_normalizer",
    "scale_x_y",
    "max_delta",
    "label_smooth_eps",
    "focal_loss",
    "objectness_smooth",
    "new_coords",
    "iou_loss",
    "iou_thresh_kind",
    "show_details",
    "nms_kind",
    "beta_nms",
    "jitter",
    "resize",
    "random",
    "track_history_size",
    "sim_thresh",
    "dets_for_track",
    "dets_for_show",
    "track_ciou_norm",
    "labels",
    "class_ids",
    "truth_size",
)
ALEXEYAB_NETWORK_FIELDS = ("total_bbox", "rewritten_bbox")
ALEXEYAB_CONSTANTS = ("CIOU", "DIOU_NMS")


class BuildError(RuntimeError):
    """A fork's tree or the toolchain cannot produce a backend."""


@dataclass(frozen=True)
class Flavour:
    """How to build one fork tree: its flavour and the compile inputs."""

    name: str
    layer_unit: str
    units: tuple
    glue: str
    include_dirs: tuple
    defines: tuple = ()
    source_dir: str = "src"


def cache_dir():
    """Return the backend cache: ``PYDARKNET_LOSS_CACHE`` or the default."""
    named = os.environ.get("PYDARKNET_LOSS_CACHE")
    if named:
        return Path(named).expanduser().resolve()
    return Path.home() / ".cache" / "pydarknet_loss"


def glue_dir():
    """Return the folder of the project's glue sources.

    An installed package carries a copy (``_glue_src``, made by setup.py);
    a source checkout uses ``darknet_src/glue`` itself.
    """
    shipped = Path(str(files("pydarknet_loss") / "_glue_src"))
    if (shipped / "pdl_fork.h").is_file():
        return shipped
    source = Path(__file__).resolve().parents[1] / "darknet_src" / "glue"
    if (source / "pdl_fork.h").is_file():
        return source
    raise BuildError(
        f"the project's glue sources are missing: neither {shipped} nor "
        f"{source} contains pdl_fork.h; reinstall pydarknet_loss"
    )


def check_name(name):
    """Raise ValueError unless ``name`` can name a backend."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"invalid backend name {name!r}: use 1 to 64 letters, digits, "
            "'_', '.' or '-', starting with a letter or digit"
        )
    if name in RESERVED_NAMES:
        raise ValueError(f"backend name {name!r} is reserved for the built-in module")


def _read(path):
    return Path(path).read_text(encoding="utf-8", errors="replace")


def _struct_body(header_text, struct):
    """Return the text between ``struct NAME {`` and its closing ``};``."""
    match = re.search(rf"struct\s+{struct}\s*\{{", header_text)
    if not match:
        return ""
    depth = 1
    position = match.end()
    while depth and position < len(header_text):
        depth += {"{": 1, "}": -1}.get(header_text[position], 0)
        position += 1
    return header_text[match.end() : position]


def _has_field(body, field):
    return re.search(rf"[\w\s\*]\b{field}\s*(\[[^\]]*\])?\s*[;,]", body) is not None


def detect_flavour(src):
    """Detect the flavour of the Darknet tree at ``src`` from its own files.

    Parameters
    ----------
    src : str or os.PathLike
        Root of a Darknet source tree.

    Returns
    -------
    Flavour

    Raises
    ------
    BuildError
        If the folder is missing, lacks a file the flavour needs, or is a
        flavour that cannot be built yet.
    """
    src = Path(src).expanduser().resolve()
    if not src.is_dir():
        raise BuildError(f"Darknet source folder not found: {src}")

    if (src / "src-lib" / "yolo_layer.cpp").is_file():
        return _hankai_flavour(src)
    if (src / "src" / "yolo_layer.cpp").is_file():
        raise BuildError(
            f"{src / 'src' / 'yolo_layer.cpp'} is a hank-ai v2.0 tree, whose "
            "C++ layer still takes the C layer and network_state types; only "
            "hank-ai trees with src-lib/yolo_layer.cpp and Darknet::Layer "
            "(v3.1 and later) can be built"
        )

    layer_c = src / "src" / "yolo_layer.c"
    header = src / "include" / "darknet.h"
    for required in (layer_c, header, src / "src" / "yolo_layer.h"):
        if not required.is_file():
            raise BuildError(f"{src} is not a Darknet tree: {required} not found")

    header_text = _read(header)
    layer_text = _read(layer_c)
    include_dirs = (str(src / "include"), str(src / "src"))

    alexeyab_signature = re.search(r"layer\s+make_yolo_layer\s*\(([^)]*)\)", layer_text)
    alexeyab_forward = re.search(
        r"void\s+forward_yolo_layer\s*\(\s*const\s+layer\s+\w+\s*,\s*network_state\s",
        layer_text,
    )
    if alexeyab_forward:
        arguments = alexeyab_signature.group(1).split(",") if alexeyab_signature else []
        if len(arguments) != 8:
            raise BuildError(
                f"{layer_c} uses network_state but its make_yolo_layer takes "
                f"{len(arguments)} arguments, not AlexeyAB's 8 (with max_boxes)"
            )
        return _alexeyab_flavour(src, header_text, layer_text, include_dirs)

    if re.search(
        r"void\s+forward_yolo_layer\s*\(\s*const\s+layer\s+\w+\s*,\s*network\s",
        layer_text,
    ):
        return Flavour(
            name="pjreddie",
            layer_unit="yolo_layer.c",
            units=PJREDDIE_UNITS,
            glue="pdl_fork_pjreddie.c",
            include_dirs=include_dirs,
        )
    raise BuildError(
        f"{layer_c} has neither pjreddie's forward_yolo_layer(const layer, "
        "network) nor AlexeyAB's forward_yolo_layer(const layer, network_state)"
    )


def _alexeyab_flavour(src, header_text, layer_text, include_dirs):
    layer_body = _struct_body(header_text, "layer")
    network_body = _struct_body(header_text, "network")
    defines = [
        f"PDL_HAS_{field}"
        for field in ALEXEYAB_LAYER_FIELDS
        if _has_field(layer_body, field)
    ]
    defines += [
        f"PDL_HAS_NET_{field}"
        for field in ALEXEYAB_NETWORK_FIELDS
        if _has_field(network_body, field)
    ]
    defines += [
        f"PDL_HAS_{name}"
        for name in ALEXEYAB_CONSTANTS
        if re.search(rf"\b{name}\b", header_text)
    ]

    # A tree whose struct layer has truth_size reads a sixth value, the track id.
    truth_values = 6 if "PDL_HAS_truth_size" in defines else 5
    defines.append(f"PDL_TRUTH_VALUES={truth_values}")

    return Flavour(
        name="alexeyab",
        layer_unit="yolo_layer.c",
        units=ALEXEYAB_UNITS,
        glue="pdl_fork_alexeyab.c",
        include_dirs=include_dirs,
        defines=tuple(defines),
    )


def _hankai_flavour(src):
    """Return the hank-ai flavour for the C++ tree at ``src``."""
    lib = src / "src-lib"
    for required in ("yolo_layer.hpp", "darknet_internal.hpp", "darknet_version.h.in"):
        if not (lib / required).is_file():
            raise BuildError(f"{src} is not a hank-ai tree: {lib / required} not found")

    layer_text = _read(lib / "yolo_layer.cpp")
    if not re.search(
        r"void\s+forward_yolo_layer\s*\(\s*Darknet::Layer\s*&\s*\w+\s*,"
        r"\s*Darknet::NetworkState\s",
        layer_text,
    ):
        raise BuildError(
            f"{lib / 'yolo_layer.cpp'} has no forward_yolo_layer(Darknet::Layer &, "
            "Darknet::NetworkState); hank-ai v2.1 and v3.0 trees still take the "
            "C layer and network_state types, and only v3.1 and later can be built"
        )
    return Flavour(
        name="hankai",
        layer_unit="yolo_layer.cpp",
        units=HANKAI_UNITS,
        glue="pdl_fork_hankai.cpp",
        include_dirs=(str(lib),),
        source_dir="src-lib",
    )


def _opencv_flags():
    """Return (compile flags, link flags) for OpenCV 4, from pkg-config.

    Raises
    ------
    BuildError
        If pkg-config or OpenCV's development files are missing.
    """
    try:
        result = subprocess.run(
            ["pkg-config", "--cflags", "--libs", "opencv4"],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        result = None
    if result is None or result.returncode != 0:
        raise BuildError(
            "OpenCV headers not found: hank-ai's darknet_internal.hpp includes "
            "opencv2/opencv.hpp, and 'pkg-config --cflags --libs opencv4' failed; "
            "install OpenCV's development files (Debian: apt-get install "
            "pkg-config libopencv-dev)"
        )
    flags = result.stdout.split()
    compile_flags = [flag for flag in flags if flag.startswith(("-I", "-D"))]
    link_flags = [flag for flag in flags if flag not in compile_flags]
    return compile_flags, link_flags


def _write_version_header(src, objects_dir):
    """Write the darknet_version.h that hank-ai's CMake would generate.

    The tree's darknet_version.h.in is filled in with placeholders, since
    the version is read only by reporting code the backend never runs.
    """
    template = _read(src / "src-lib" / "darknet_version.h.in")
    values = {
        "DARKNET_VERSION_STRING": "unknown",
        "DARKNET_VERSION_SHORT": "0.0.0",
        "DARKNET_BRANCH_NAME": "unknown",
    }
    for key, value in values.items():
        template = template.replace("${" + key + "}", value)
    (objects_dir / "darknet_version.h").write_text(template)


def _hankai_compile_commands(src, flavour, glue, objects_dir):
    """Return (command, object) pairs for a hank-ai backend."""
    compiler = os.environ.get("CXX", "c++")
    opencv_cflags, _ = _opencv_flags()
    _write_version_header(src, objects_dir)
    includes = [
        *(f"-I{path}" for path in flavour.include_dirs),
        f"-I{objects_dir}",
        f"-I{glue}",
        *opencv_cflags,
    ]
    commands = []

    for unit in (flavour.layer_unit, *flavour.units):
        source = src / flavour.source_dir / unit
        if not source.is_file():
            raise BuildError(f"{flavour.name} unit {source} not found")
        shim = HANKAI_UNIT_SHIMS.get(unit)
        forced = ["-include", str(glue / shim)] if shim else []
        target = objects_dir / (Path(unit).stem + ".o")
        command = [compiler, *HANKAI_CXXFLAGS, *includes, *forced, "-c", str(source)]
        commands.append(([*command, "-o", str(target)], target))

    target = objects_dir / "glue_pdl_fork_hankai.o"
    command = [compiler, *HANKAI_CXXFLAGS, *includes, "-c", str(glue / flavour.glue)]
    commands.append(([*command, "-o", str(target)], target))

    # pdl_report.c provides pdl_srand, the shim's stand-in for std::srand.
    target = objects_dir / "glue_pdl_report.o"
    command = [
        os.environ.get("CC", "cc"),
        *GLUE_CFLAGS,
        f"-I{glue}",
        "-c",
        str(glue / "pdl_report.c"),
    ]
    commands.append(([*command, "-o", str(target)], target))
    return commands


def _compile_commands(src, flavour, glue, objects_dir):
    """Return (command, object) pairs for every unit of the backend."""
    if flavour.name == "hankai":
        return _hankai_compile_commands(src, flavour, glue, objects_dir)
    compiler = os.environ.get("CC", "cc")
    includes = [f"-I{path}" for path in (*flavour.include_dirs, str(glue))]
    defines = [f"-D{define}" for define in flavour.defines]
    commands = []

    for unit in flavour.units:
        source = src / "src" / unit
        if not source.is_file():
            raise BuildError(f"{flavour.name} unit {source} not found")
        target = objects_dir / (Path(unit).stem + ".o")
        commands.append(
            (
                [
                    compiler,
                    *FORK_CFLAGS,
                    *includes,
                    "-c",
                    str(source),
                    "-o",
                    str(target),
                ],
                target,
            )
        )

    layer = src / "src" / flavour.layer_unit
    target = objects_dir / "yolo_layer.o"
    shim = ["-include", str(glue / "pdl_fork_shim.h")]
    commands.append(
        (
            [
                compiler,
                *FORK_CFLAGS,
                *includes,
                *shim,
                "-c",
                str(layer),
                "-o",
                str(target),
            ],
            target,
        )
    )

    glue_units = [flavour.glue, "pdl_report.c"]
    if flavour.name == "pjreddie":
        glue_units.append("pdl_glue.c")
    for unit in glue_units:
        target = objects_dir / ("glue_" + Path(unit).stem + ".o")
        commands.append(
            (
                [
                    compiler,
                    *GLUE_CFLAGS,
                    *includes,
                    *defines,
                    "-c",
                    str(glue / unit),
                    "-o",
                    str(target),
                ],
                target,
            )
        )
    return commands


def _compiler_version(compiler):
    try:
        result = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, check=False
        )
    except OSError as error:
        # The build itself reports the missing compiler.
        return f"unavailable: {error}"
    return result.stdout


def _fingerprint(src, flavour, glue, commands, objects_dir):
    """Return a digest of everything that goes into the library.

    The digest covers the compile commands without the temporary objects
    folder, the flavour, each compiler's ``--version`` output, and the
    contents of the tree's sources and headers and of the glue.  Two
    builds of the same inputs get the same digest, so the second finds the
    cached library.
    """
    digest = hashlib.sha256()

    # The objects folder is a fresh temporary folder per build, so its
    # name is left out, or no build would ever match a cached one.
    text = json.dumps([c for c, _ in commands]).replace(str(objects_dir), "")
    digest.update(text.encode())
    digest.update(json.dumps(dataclasses.asdict(flavour)).encode())
    for compiler in sorted({command[0] for command, _ in commands}):
        digest.update(_compiler_version(compiler).encode())
    tree_files = [
        *sorted((src / flavour.source_dir).glob("*.[ch]")),
        *sorted((src / flavour.source_dir).glob("*.[ch]pp")),
        *sorted((src / "include").glob("*.h")),
    ]
    for path in tree_files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for path in sorted([*Path(glue).glob("*.[ch]"), *Path(glue).glob("*.cpp")]):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _objects_dir(target_dir):
    """Yield a temporary objects folder inside ``target_dir``.

    On an error, ``target_dir`` is removed too if that leaves it empty, so
    a failed first build leaves no empty backend folder in the cache.  A
    folder that contains an earlier backend stays.
    """
    try:
        with tempfile.TemporaryDirectory(prefix="objects-", dir=target_dir) as work:
            yield work
    except BaseException:
        with contextlib.suppress(OSError):
            target_dir.rmdir()
        raise


def _run(command):
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(
            f"compile failed ({' '.join(command)}):\n{result.stderr.strip()}"
        )


def build_backend(src, name, *, jobs=None, force=False):
    """Build the Darknet tree at ``src`` into the backend called ``name``.

    Parameters
    ----------
    src : str or os.PathLike
        Root of a Darknet source tree (``include/darknet.h``,
        ``src/yolo_layer.c``, ...).  It is only read.
    name : str
        Backend name, used by :func:`pydarknet_loss.backends.load_backend`
        and the command-line tool.
    jobs : int, optional
        Compiler processes run at once.  Default: the CPU count.
    force : bool
        Rebuild even when the cache contains a library built from the same
        sources, flags and glue.

    Returns
    -------
    dict
        The backend's manifest, also written to ``<cache>/<name>/backend.json``:
        ``name``, ``flavour``, ``source``, ``library``, ``fingerprint``,
        ``build_seconds`` and ``cached``.

    Raises
    ------
    ValueError
        On an invalid name.
    BuildError
        If the flavour cannot be detected or built, or a compile fails.
    """
    check_name(name)
    src = Path(src).expanduser().resolve()
    flavour = detect_flavour(src)
    glue = glue_dir()
    target_dir = cache_dir() / name
    target_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    with _objects_dir(target_dir) as work:
        work = Path(work)
        commands = _compile_commands(src, flavour, glue, work)
        fingerprint = _fingerprint(src, flavour, glue, commands, work)

        # A fresh file name per build: dlopen returns an already loaded
        # library for a path it has seen, so a rebuilt backend must not
        # reuse the old path within one process.
        library = target_dir / f"libpdl_{name}_{fingerprint}.so"
        manifest_path = target_dir / "backend.json"
        if library.is_file() and manifest_path.is_file() and not force:
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("library") == str(library):
                return {**manifest, "cached": True}

        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            list(pool.map(_run, [command for command, _ in commands]))

        script = work / "exports.map"
        script.write_text(VERSION_SCRIPT)
        partial = work / library.name
        compiler = os.environ.get("CC", "cc")
        libraries = ["-lm", "-lpthread"]
        if flavour.name == "hankai":
            # --as-needed keeps only the OpenCV libraries that are used.
            compiler = os.environ.get("CXX", "c++")
            libraries = ["-Wl,--as-needed", *_opencv_flags()[1], *libraries]
        _run(
            [
                compiler,
                "-shared",
                "-o",
                str(partial),
                *[str(target) for _, target in commands],
                f"-Wl,--version-script={script}",
                "-Wl,-Bsymbolic",
                "-Wl,--no-undefined",
                *libraries,
            ]
        )
        for old in target_dir.glob(f"libpdl_{name}_*.so"):
            old.unlink()
        shutil.move(str(partial), library)

    manifest = {
        "name": name,
        "flavour": flavour.name,
        "source": str(src),
        "library": str(library),
        "fingerprint": fingerprint,
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return {**manifest, "cached": False}


def read_manifest(name):
    """Return the manifest of the built backend ``name``.

    Raises
    ------
    BuildError
        If no backend of that name is in the cache.
    """
    check_name(name)
    path = cache_dir() / name / "backend.json"
    if not path.is_file():
        raise BuildError(
            f"backend {name!r} not found in {cache_dir()}; build it with "
            f"'pydarknet-loss build --src PATH --name {name}'"
        )
    return json.loads(path.read_text())
