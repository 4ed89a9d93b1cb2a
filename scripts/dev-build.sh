#!/usr/bin/env bash
# Developer build: compile pyce._core into this checkout's pyce/ (no install),
# incrementally, in build/dev. Then run Python or pytest from the checkout with
#   PYTHONPATH="$PWD:$PWD/gui" pytest tests/...
# Extra arguments go to CMake's configure step, e.g. -DPYCE_OPENMP=OFF.
# ccache, when installed, makes rebuilds across checkouts cheap.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${PYCE_BUILD_DIR:-$repo/build/dev}"
launcher=()
if command -v ccache >/dev/null; then
    export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(dirname "$repo")}"
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$repo" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
        -DPython_EXECUTABLE="$(command -v python)" \
        -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" "${launcher[@]}" "$@"
elif [ "$#" -gt 0 ]; then
    cmake "$build" "$@"
fi
cmake --build "$build" -j "${PYCE_BUILD_JOBS:-2}"
cp "$build"/_core*.so "$repo/pyce/"
echo "dev-build: $(ls "$repo"/pyce/_core*.so)"
