"""Find a CUDA toolkit and compile upstream Darknet's CUDA YOLO path.

Standard library only: ``setup.py`` loads this file by path.  Environment
switches, each echoed in the build summary:

- ``PYDARKNET_CUDA``: ``0`` builds the CPU module only.  ``1`` fails the
  build when the CUDA module cannot be built.  Unset, the CUDA module is
  built when nvcc, cuBLAS and cuRAND are found.
- ``PYDARKNET_CUDA_ARCHS``: GPU targets, ``sm_XX`` for machine code and
  ``compute_XX`` for PTX, separated by commas or spaces.
- ``PYDARKNET_CUDA_LIBS``: a folder with ``include/`` and ``lib/`` that
  contains cuBLAS and cuRAND, such as ``site-packages/nvidia/cu13``.

nvcc is looked up on ``PATH``, then under ``CUDA_HOME``, then in
``/usr/local/cuda``.  cuBLAS and cuRAND come from the toolkit when it has
them, else from the PyPI wheels ``nvidia-cublas`` and ``nvidia-curand``
installed in the interpreter that runs the build.  pip's isolated build
environment keeps ``sys.prefix`` of that interpreter, so its
site-packages are found even though they are not on ``sys.path``.
"""

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# CUDA 13.0 dropped Volta (sm_70), so Turing is the oldest default target.
DEFAULT_ARCHS = ("sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "compute_90")
KERNEL_UNITS = ("activation_kernels.cu", "blas_kernels.cu")

# Header and shared library of each math library that upstream cuda.c calls.
MATH_LIBRARIES = {"cublas": "cublas_v2.h", "curand": "curand.h"}


class CudaUnavailable(Exception):
    """The CUDA module cannot be built here, for the reason in the message."""


@dataclass
class CudaConfig:
    """Tools, flags and folders that compile and link the CUDA module."""

    nvcc: Path
    version: str
    archs: tuple
    include_dirs: list = field(default_factory=list)
    library_dirs: list = field(default_factory=list)
    libraries: list = field(default_factory=list)
    rpaths: list = field(default_factory=list)
    sources: dict = field(default_factory=dict)


def cuda_mode():
    """Return ``PYDARKNET_CUDA`` as "off", "required" or "auto"."""
    value = os.environ.get("PYDARKNET_CUDA", "").strip().lower()
    if value in ("0", "off", "no", "false"):
        return "off"
    if value in ("1", "on", "yes", "true"):
        return "required"
    return "auto"


def find_nvcc():
    """Return the path of nvcc: on PATH, under CUDA_HOME or /usr/local/cuda."""
    candidates = []
    on_path = shutil.which("nvcc")
    if on_path:
        candidates.append(Path(on_path))
    if os.environ.get("CUDA_HOME"):
        candidates.append(Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc")
    candidates.append(Path("/usr/local/cuda/bin/nvcc"))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.resolve()
    return None


def nvcc_version(nvcc):
    """Return nvcc's release, such as "13.0"."""
    output = subprocess.run(
        [str(nvcc), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"release (\d+\.\d+)", output)
    if not match:
        raise CudaUnavailable(f"cannot read the release from '{nvcc} --version'")
    return match.group(1)


def supported_archs(nvcc):
    """Return the virtual architectures nvcc lists, such as {"compute_90"}."""
    result = subprocess.run(
        [str(nvcc), "--list-gpu-arch"], capture_output=True, text=True
    )
    return set(result.stdout.split()) if result.returncode == 0 else None


def requested_archs(nvcc):
    """Return the targets from ``PYDARKNET_CUDA_ARCHS`` or the defaults."""
    named = os.environ.get("PYDARKNET_CUDA_ARCHS", "")
    archs = tuple(re.split(r"[,\s]+", named.strip())) if named.strip() else None
    archs = archs or DEFAULT_ARCHS
    for arch in archs:
        if not re.fullmatch(r"(sm|compute)_\d+[af]?", arch):
            raise CudaUnavailable(
                f"PYDARKNET_CUDA_ARCHS entry {arch!r} is invalid: "
                "use sm_XX for machine code or compute_XX for PTX"
            )

    known = supported_archs(nvcc)
    if known is not None:
        unknown = [a for a in archs if "compute_" + a.split("_", 1)[1] not in known]
        if unknown:
            raise CudaUnavailable(
                f"nvcc at {nvcc} does not support {', '.join(unknown)}; it lists "
                f"{', '.join(sorted(known))}: set PYDARKNET_CUDA_ARCHS"
            )
    return archs


def gencode_flags(archs):
    """Return nvcc's -gencode flags for the targets."""
    flags = []
    for arch in archs:
        kind, number = arch.split("_", 1)
        code = f"sm_{number}" if kind == "sm" else f"compute_{number}"
        flags.append(f"-gencode=arch=compute_{number},code={code}")
    return flags


def toolkit_root(nvcc):
    """Return the toolkit folder of nvcc, as its --dryrun output names it.

    nvcc on PATH may be a wrapper script outside the toolkit, so its own
    location does not always say where the headers are.
    """
    result = subprocess.run(
        [str(nvcc), "--dryrun", "-E", "-x", "cu", os.devnull],
        capture_output=True,
        text=True,
    )
    match = re.search(r"^#\$ TOP=(.+)$", result.stderr + result.stdout, re.MULTILINE)
    if match:
        return Path(match.group(1).strip()).resolve()
    return nvcc.parent.parent


def toolkit_lib_dir(root):
    for name in ("lib64", "targets/x86_64-linux/lib", "lib"):
        if (root / name / "libcudart.so").exists():
            return root / name
    return None


def site_folders():
    """Return the target interpreter's site-packages folders, then sys.path."""
    folders = [sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    try:
        folders += site.getsitepackages()
    except AttributeError:
        pass
    folders += sys.path
    unique = []
    for folder in folders:
        if folder and folder not in unique and Path(folder).is_dir():
            unique.append(folder)
    return unique


def wheel_roots(major):
    """Return the folders where cuBLAS and cuRAND wheels may have been installed."""
    roots = []
    if os.environ.get("PYDARKNET_CUDA_LIBS"):
        roots.append(Path(os.environ["PYDARKNET_CUDA_LIBS"]).expanduser())
    roots += [Path(folder) / "nvidia" / f"cu{major}" for folder in site_folders()]
    return roots


def find_library(folder, name):
    """Return the linker argument for lib{name} in folder, or None.

    The PyPI wheels ship only versioned files such as libcublas.so.13,
    which ``-l:`` names exactly.
    """
    if (folder / f"lib{name}.so").exists():
        return name
    versioned = sorted(folder.glob(f"lib{name}.so.*"), key=lambda p: len(p.name))
    return f":{versioned[0].name}" if versioned else None


def find_math_library(name, header, toolkit_include, toolkit_lib, major):
    """Return (include dir, lib dir, linker name) of cuBLAS or cuRAND."""
    places = [(toolkit_include, toolkit_lib)]
    places += [(root / "include", root / "lib") for root in wheel_roots(major)]
    for include, lib in places:
        if include is None or lib is None or not (include / header).is_file():
            continue
        linker_name = find_library(lib, name)
        if linker_name:
            return include, lib, linker_name
    return None


def configure():
    """Return a CudaConfig, or raise CudaUnavailable saying why not."""
    nvcc = find_nvcc()
    if nvcc is None:
        raise CudaUnavailable(
            "nvcc not found on PATH, under CUDA_HOME or in /usr/local/cuda"
        )
    version = nvcc_version(nvcc)
    major = version.split(".")[0]
    root = toolkit_root(nvcc)
    include = root / "include"
    lib = toolkit_lib_dir(root)
    if lib is None or not (include / "cuda_runtime.h").is_file():
        raise CudaUnavailable(
            f"the CUDA toolkit at {root} lacks cuda_runtime.h or libcudart"
        )

    config = CudaConfig(nvcc=nvcc, version=version, archs=requested_archs(nvcc))
    config.include_dirs.append(str(include))
    config.library_dirs.append(str(lib))
    config.libraries.append("cudart")
    config.rpaths.append(str(lib))

    for name, header in MATH_LIBRARIES.items():
        found = find_math_library(name, header, include, lib, major)
        if found is None:
            raise CudaUnavailable(
                f"{header} not found in the toolkit at {root} nor in a "
                f"nvidia/cu{major} folder of site-packages: pip install "
                f"nvidia-{name}, or set PYDARKNET_CUDA_LIBS"
            )
        found_include, found_lib, linker_name = found
        for paths, value in (
            (config.include_dirs, str(found_include)),
            (config.library_dirs, str(found_lib)),
            (config.rpaths, str(found_lib)),
        ):
            if value not in paths:
                paths.append(value)
        config.libraries.append(linker_name)
        config.sources[name] = str(found_lib)

    # Wheels installed beside the package: site-packages/nvidia/cuXX/lib.
    config.rpaths.append(f"$ORIGIN/../nvidia/cu{major}/lib")
    return config


def summary(config):
    """Return the one-line build summary of a CudaConfig."""
    libraries = ", ".join(
        f"{name} from {path}" for name, path in config.sources.items()
    )
    return (
        f"building _yolo_cuda with nvcc {config.version} ({config.nvcc}) for "
        f"{' '.join(config.archs)}; {libraries}"
    )


def compile_kernels(config, tree, output_dir, host_flags, glue):
    """Compile upstream's .cu units with nvcc in parallel; return the objects."""
    tree = Path(tree)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    includes = [f"-I{tree / 'include'}", f"-I{tree / 'src'}", f"-I{glue}"]
    includes += [f"-I{folder}" for folder in config.include_dirs]

    def compile_one(unit):
        target = output_dir / (Path(unit).stem + ".o")
        command = [
            str(config.nvcc),
            *gencode_flags(config.archs),
            *includes,
            "-DGPU",
            "--compiler-options",
            ",".join(host_flags),
            "-c",
            str(tree / "src" / unit),
            "-o",
            str(target),
        ]
        print(" ".join(command), file=sys.stderr)
        subprocess.run(command, check=True)
        return str(target)

    workers = max(1, min(len(KERNEL_UNITS), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(compile_one, KERNEL_UNITS))
