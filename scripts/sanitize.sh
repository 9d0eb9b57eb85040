#!/usr/bin/env bash
# Build the extension with AddressSanitizer and UndefinedBehaviorSanitizer
# into a venv of its own, then run the whole test suite against it.
#
# Usage: scripts/sanitize.sh [pytest arguments]
#
# The upstream units keep the upstream Makefile's flags (-Ofast included);
# the sanitizer flags come first through CFLAGS and LDFLAGS.  The sources
# are copied to build/sanitize/src first, because setuptools skips an
# extension whose output in build/ looks up to date, and that output may
# be an unsanitized build.  Needs gcc (libasan, libubsan), and Cython,
# setuptools, numpy, pytest and hypothesis in the Python that runs it,
# because the venv reuses its site packages and builds without isolation.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/build/sanitize
PYTHON=${PYTHON:-python3}

start=$(date +%s)
rm -rf "$WORK/src"
mkdir -p "$WORK/src"

# Tracked and new files, plus the fetched upstream tree that git ignores.
git ls-files -z --cached --others --exclude-standard \
    | xargs -0 cp --parents -t "$WORK/src"
if [ -d darknet_src/upstream ]; then
    cp -r darknet_src/upstream "$WORK/src/darknet_src/"
fi

if [ ! -x "$WORK/venv/bin/python" ]; then
    "$PYTHON" -m venv --system-site-packages "$WORK/venv"
fi

# float-cast-overflow is not part of -fsanitize=undefined in gcc; it
# catches a float that does not fit the int that upstream converts it to.
SANITIZERS=address,undefined,float-cast-overflow
# The CUDA module is not sanitized: nvcc objects and the CUDA runtime
# are outside what these sanitizers can instrument.
export PYDARKNET_CUDA=0
export CFLAGS="-fsanitize=$SANITIZERS -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
export LDFLAGS="-fsanitize=$SANITIZERS"
echo "sanitize: building with CFLAGS=$CFLAGS" >&2
"$WORK/venv/bin/python" -m pip install --quiet --no-build-isolation \
    --no-deps --force-reinstall "$WORK/src"

# Python itself is not built with ASan, so its runtime must load first.
LIBASAN=$(gcc -print-file-name=libasan.so)
# Python keeps objects alive until exit by design, so leak reports would
# be about the interpreter, not the extension.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
built=$(date +%s)

# -P keeps the source folder off sys.path, so the sanitized build is tested.
LD_PRELOAD=$LIBASAN "$WORK/venv/bin/python" -P -m pytest -p no:cacheprovider \
    "$ROOT/tests" "$@"

end=$(date +%s)
echo "sanitize: build $((built - start)) s, tests $((end - built)) s" >&2
