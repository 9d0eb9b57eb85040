#!/usr/bin/env bash
# Download the wheels that scripts/gpu_check.sh installs on a machine
# without network access: Python 3.11 on x86-64 Linux, into wheelhouse/
# (or the folder given as the first argument).  Needs PyPI access.
set -euo pipefail
cd "$(dirname "$0")/.."

wheelhouse=${1:-wheelhouse}
mkdir -p "$wheelhouse"

# --platform and --python-version make pip resolve for the GPU machine's
# interpreter, whatever runs this script; they require binary wheels only.
python3 -m pip download \
    --dest "$wheelhouse" \
    --only-binary=:all: \
    --python-version 3.11 \
    --implementation cp \
    --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 \
    --platform manylinux_2_5_x86_64 \
    --platform any \
    "cython>=3.0" "numpy>=1.23" "setuptools>=64" "pytest>=7" "hypothesis>=6" \
    "nvidia-cublas>=13,<14" "nvidia-curand>=10.4,<11"

du -sh "$wheelhouse"
ls -l "$wheelhouse"
