"""Compile upstream Darknet's YOLO layer units for the extension modules.

Standard library only: ``setup.py`` loads this file by path before the
package can be imported.  Upstream files are compiled with the upstream
Makefile's flags, which include ``-Ofast``.  Those flags stay off every
link line, because gcc links ``crtfastmath.o`` into a shared object
linked with ``-Ofast``, and that object turns on flush-to-zero for the
whole Python process when it loads.
"""

import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLUE = ROOT / "darknet_src" / "glue"
DEFAULT_TREE = ROOT / "darknet_src" / "upstream"
MANIFEST = ROOT / "darknet_src" / "manifest.json"

# The C unit set that links on its own: yolo_layer.c and what it calls.
CPU_UNITS = ("activations.c", "blas.c", "box.c", "utils.c", "list.c", "cuda.c")
LAYER_UNIT = "yolo_layer.c"
REQUIRED = (
    "include/darknet.h",
    "src/yolo_layer.h",
    "src/" + LAYER_UNIT,
    *(f"src/{unit}" for unit in CPU_UNITS),
)

# Upstream Makefile: CFLAGS without OPENMP/DEBUG, plus OPTS=-Ofast.
# -UNDEBUG keeps upstream's asserts, as the Makefile builds them;
# hidden visibility keeps these symbols out of other loaded modules.
UPSTREAM_CFLAGS = [
    "-Wall",
    "-Wno-unused-result",
    "-Wno-unknown-pragmas",
    "-Wfatal-errors",
    "-fPIC",
    "-Ofast",
    "-UNDEBUG",
    "-fvisibility=hidden",
]
GLUE_CFLAGS = ["-std=gnu11", "-fvisibility=hidden"]


class BuildError(RuntimeError):
    """The upstream tree or the toolchain cannot produce the extension."""


def source_tree():
    """Return the upstream tree to build: ``DARKNET_SRC`` or the fetched one."""
    named = os.environ.get("DARKNET_SRC")
    if named:
        return Path(named).expanduser().resolve()
    return DEFAULT_TREE


def missing_files(tree, required=REQUIRED):
    """Return the required files that ``tree`` lacks."""
    return [name for name in required if not (Path(tree) / name).is_file()]


def check_tree(tree):
    """Raise BuildError naming every required file ``tree`` lacks."""
    if not Path(tree).is_dir():
        raise BuildError(f"Darknet source folder not found: {tree}")
    missing = missing_files(tree)
    if missing:
        raise BuildError(
            f"Darknet source folder {tree} lacks {', '.join(missing)}; "
            "point DARKNET_SRC at a pjreddie/darknet tree"
        )


def pinned_commit():
    """Return the upstream commit that the manifest pins."""
    return json.loads(MANIFEST.read_text())["commit"]


def compile_upstream(compiler, tree, build_temp, macros=()):
    """Compile the upstream unit set; return the object file paths.

    ``yolo_layer.c`` gets the project's forced-include header, which
    routes its printing and its ``srand`` call to the glue.
    """
    tree = Path(tree)
    include_dirs = [str(tree / "include"), str(tree / "src"), str(GLUE)]
    output_dir = str(Path(build_temp) / "upstream")
    sources = [str(tree / "src" / unit) for unit in CPU_UNITS]

    objects = compiler.compile(
        sources,
        output_dir=output_dir,
        macros=list(macros),
        include_dirs=include_dirs,
        extra_postargs=UPSTREAM_CFLAGS,
    )
    objects += compiler.compile(
        [str(tree / "src" / LAYER_UNIT)],
        output_dir=output_dir,
        macros=list(macros),
        include_dirs=include_dirs,
        extra_postargs=UPSTREAM_CFLAGS
        + ["-include", str(GLUE / "pdl_shim.h")],
    )
    return objects
