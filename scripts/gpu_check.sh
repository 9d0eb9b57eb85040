#!/usr/bin/env bash
# Build the CUDA module offline and compare the GPU path with the CPU path.
#
# For a machine with an NVIDIA GPU, nvcc and no network.  It needs the
# fetched upstream tree in darknet_src/upstream/ and the wheels that
# scripts/gpu_wheels.sh downloads into wheelhouse/ (or $WHEELHOUSE).
# Exit status: 0 when the GPU tests pass, 1 on a failure, 3 when the build
# succeeded but no CUDA device was found.
set -euo pipefail
cd "$(dirname "$0")/.."

wheelhouse=${WHEELHOUSE:-wheelhouse}
venv=${VENV:-$(mktemp -d)/venv}
python=${PYTHON:-python3.11}

if [ ! -f darknet_src/upstream/src/yolo_layer.c ]; then
    echo "pydarknet_loss: darknet_src/upstream/ is missing; fetch it where there is network" >&2
    exit 1
fi
if [ ! -d "$wheelhouse" ]; then
    echo "pydarknet_loss: wheel folder $wheelhouse not found; run scripts/gpu_wheels.sh" >&2
    exit 1
fi

offline=(--no-index --find-links "$wheelhouse")
"$python" -m venv "$venv"

# cuBLAS and cuRAND go in first: the build looks for their headers in the
# interpreter's site-packages when the toolkit lacks them.
"$venv/bin/pip" install -q "${offline[@]}" nvidia-cublas nvidia-curand

start=$(date +%s)
PYDARKNET_CUDA=1 "$venv/bin/pip" install -v "${offline[@]}" '.[test,cuda]' 2>&1 \
    | grep '^ *pydarknet_loss:' | sed 's/^ *//'
echo "pydarknet_loss: build took $(( $(date +%s) - start )) s"

# -P keeps the source folder off sys.path, so the installed package is tested.
devices=$("$venv/bin/python" -P -c \
    'from pydarknet_loss import cuda; print(cuda.device_count())')
if [ "$devices" = 0 ]; then
    reason=$("$venv/bin/python" -P -c \
        'from pydarknet_loss import _yolo_cuda; print(_yolo_cuda.device_count()[1])')
    echo "pydarknet_loss: the CUDA module is built, but no CUDA device was found: $reason"
    "$venv/bin/python" -P -m pytest -q -p no:cacheprovider tests/test_cuda.py
    exit 3
fi

"$venv/bin/python" -P -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py
"$venv/bin/python" -P scripts/gpu_timing.py
