"""Build pydarknet_loss: upstream Darknet's YOLO layer as a Cython module.

Environment switches, each echoed in the build summary:

- ``DARKNET_SRC``: the Darknet source folder to compile (default: the
  pinned tree, fetched into ``darknet_src/upstream/`` when missing).
- ``PYDARKNET_CUDA``, ``PYDARKNET_CUDA_ARCHS``, ``PYDARKNET_CUDA_LIBS``:
  whether and for which GPUs the CUDA module is built; see
  ``pydarknet_loss/_build_cuda.py``.
"""

import functools
import importlib.util
import shutil
import sys
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PACKAGE = ROOT / "pydarknet_loss"
UPSTREAM_DATA = PACKAGE / "_upstream"
# Copy of darknet_src/glue that the installed package builds named
# backends with; darknet_src/glue stays the one committed source.
GLUE_DATA = PACKAGE / "_glue_src"

# Upstream files that the package carries at run time: the default
# network for the main job and the COCO class names.
DATA_FILES = ("cfg/yolov3.cfg", "cfg/yolov3-tiny.cfg", "data/coco.names", "LICENSE")


def load_by_path(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = load_by_path("pydarknet_build", PACKAGE / "_build.py")
fetch = load_by_path("pydarknet_fetch", ROOT / "darknet_src" / "fetch.py")
build_cuda = load_by_path("pydarknet_build_cuda", PACKAGE / "_build_cuda.py")


def say(message):
    print(f"pydarknet_loss: {message}", file=sys.stderr)


@functools.cache
def prepare_tree():
    """Return the upstream tree to compile, fetching the pinned one if needed."""
    tree = build.source_tree()
    if tree == build.DEFAULT_TREE:
        try:
            fetch.fetch(tree)
        except fetch.FetchError as error:
            raise build.BuildError(str(error)) from None
        say(f"upstream {build.pinned_commit()} (verified) in {tree}")
    else:
        differing = fetch.mismatched_files(tree)
        build.check_tree(tree)
        if differing:
            say(f"DARKNET_SRC={tree} differs from the pinned tree in: "
                + ", ".join(differing))
        else:
            say(f"DARKNET_SRC={tree} matches the pinned tree")
    build.check_tree(tree)
    return tree


def copy_data(tree):
    for name in DATA_FILES:
        target = UPSTREAM_DATA / name
        target.parent.mkdir(parents=True, exist_ok=True)
        source = Path(tree) / name
        if source.is_file():
            shutil.copyfile(source, target)


def copy_glue():
    GLUE_DATA.mkdir(exist_ok=True)
    # The C++ glue (*.cpp) is for hank-ai-flavoured trees.
    for source in sorted([*build.GLUE.glob("*.[ch]"), *build.GLUE.glob("*.cpp")]):
        shutil.copyfile(source, GLUE_DATA / source.name)

    # Golden files record which upstream version the reference ran.
    UPSTREAM_DATA.mkdir(exist_ok=True)
    shutil.copyfile(build.MANIFEST, UPSTREAM_DATA / "manifest.json")


class BuildPy(build_py):
    def run(self):
        copy_data(prepare_tree())
        copy_glue()
        super().run()


def configure_cuda(extensions):
    """Return the CUDA build settings, or None after dropping the CUDA module."""
    mode = build_cuda.cuda_mode()
    reason = "PYDARKNET_CUDA=0"
    if mode != "off":
        try:
            config = build_cuda.configure()
        except build_cuda.CudaUnavailable as error:
            if mode == "required":
                raise build.BuildError(f"PYDARKNET_CUDA=1 but {error}") from None
            reason = str(error)
        else:
            say(build_cuda.summary(config))
            return config

    say(f"building the CPU module only, not _yolo_cuda: {reason}")
    extensions[:] = [ext for ext in extensions if ext.name != cuda.name]
    return None


def build_cuda_extension(command, ext, config):
    """Compile upstream with -DGPU and the kernels with nvcc, then link ext.

    The objects go to their own folder because the CPU module compiles the
    same sources without -DGPU.
    """
    temp = Path(command.build_temp) / "cuda"
    compiler = command.compiler
    saved_include_dirs = list(compiler.include_dirs)
    for folder in config.include_dirs:
        compiler.add_include_dir(folder)
    try:
        objects = build.compile_upstream(
            compiler, command.tree, temp, macros=[("GPU", None)]
        )
    finally:
        compiler.set_include_dirs(saved_include_dirs)

    objects += build_cuda.compile_kernels(
        config, command.tree, temp / "kernels", build.UPSTREAM_CFLAGS, build.GLUE
    )

    ext.extra_objects = objects
    ext.depends = list(ext.depends) + objects
    ext.extra_compile_args = build.GLUE_CFLAGS
    ext.include_dirs = [
        str(command.tree / "include"),
        str(command.tree / "src"),
        str(build.GLUE),
        *config.include_dirs,
    ]
    ext.define_macros = [("GPU", None)]
    ext.library_dirs = list(config.library_dirs)
    # nvcc compiles the kernels as C++, so they need the C++ runtime.
    ext.libraries = ["m", "stdc++", *config.libraries]
    ext.extra_link_args = [f"-Wl,-rpath,{folder}" for folder in config.rpaths]

    saved_temp = command.build_temp
    command.build_temp = str(temp)
    try:
        build_ext.build_extension(command, ext)
    finally:
        command.build_temp = saved_temp


class BuildExt(build_ext):
    def run(self):
        self.tree = prepare_tree()
        copy_data(self.tree)
        self.cuda = configure_cuda(self.extensions)
        super().run()

    def build_extension(self, ext):
        if ext.name == cuda.name:
            build_cuda_extension(self, ext, self.cuda)
            return
        ext.extra_objects = build.compile_upstream(
            self.compiler, self.tree, self.build_temp
        )
        # setuptools relinks only when a source or dependency is newer
        # than the module.  Upstream objects are not sources to it, so a
        # tree named by DARKNET_SRC would otherwise leave an old link.
        ext.depends = list(ext.depends) + ext.extra_objects
        ext.extra_compile_args = build.GLUE_CFLAGS
        ext.include_dirs = [
            str(self.tree / "include"),
            str(self.tree / "src"),
            str(build.GLUE),
        ]
        super().build_extension(ext)


cpu = Extension(
    "pydarknet_loss._yolo_cpu",
    sources=[
        "pydarknet_loss/_yolo_cpu.pyx",
        "darknet_src/glue/pdl_glue.c",
        "darknet_src/glue/pdl_report.c",
    ],
    libraries=["m"],
)

# Built only when configure_cuda finds nvcc, cuBLAS and cuRAND.
cuda = Extension(
    "pydarknet_loss._yolo_cuda",
    sources=[
        "pydarknet_loss/_yolo_cuda.pyx",
        "darknet_src/glue/pdl_glue.c",
        "darknet_src/glue/pdl_cuda.c",
        "darknet_src/glue/pdl_report.c",
    ],
)

setup(
    ext_modules=cythonize([cpu, cuda], compiler_directives={"language_level": 3}),
    cmdclass={"build_py": BuildPy, "build_ext": BuildExt},
)
