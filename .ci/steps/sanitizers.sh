#!/usr/bin/env bash
# CI step (issue 14): the extension built with AddressSanitizer and
# UndefinedBehaviorSanitizer, running the kernel tests (pytest -m kernels).
# Any out-of-bounds access, use after free or undefined behaviour in the C++
# core aborts the run with a report.
#
# Self-contained: its own build directory (build/sanitizers, or
# $PYCE_SANITIZER_BUILD), its own copy of the Python package with the
# instrumented _core next to it; nothing in the checkout or the environment
# is replaced. Python itself is not instrumented, so the ASan runtime is
# preloaded. Needs gcc or clang with the sanitizer runtimes, cmake, and the
# test dependencies (pytest, numpy, hypothesis, ml_dtypes) in the active Python.
#
#   .ci/steps/sanitizers.sh                 # kernel tests, the best ISA
#   PYCE_SANITIZER_ISAS="avx512 avx2 baseline" .ci/steps/sanitizers.sh
#   .ci/steps/sanitizers.sh tests/test_aliasing.py   # other pytest arguments
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${PYCE_SANITIZER_BUILD:-$repo/build/sanitizers}"
python="${PYTHON:-python3}"
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$repo" -B "$build" "${generator[@]}" "${launcher[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_CXX_FLAGS="$sanitize" -DCMAKE_MODULE_LINKER_FLAGS="$sanitize" \
        -DCMAKE_SHARED_LINKER_FLAGS="$sanitize" \
        -DPython_EXECUTABLE="$(command -v "$python")" \
        -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" >/dev/null
fi
cmake --build "$build" -j "${PYCE_BUILD_JOBS:-2}"

# The package as it is in the checkout, with the instrumented core.
pkg="$build/package"
rm -rf "$pkg"
mkdir -p "$pkg"
cp -r "$repo/pyce" "$pkg/pyce"
find "$pkg/pyce" \( -name '_core*.so' -o -name '__pycache__' \) -prune -exec rm -rf {} +
cp "$build"/_core*.so "$pkg/pyce/"

runtime="$("${CXX:-c++}" -print-file-name=libasan.so)"
[ -f "$runtime" ] || { echo "sanitizers: no libasan.so from ${CXX:-c++}" >&2; exit 1; }
# Python's own allocations are not ASan's concern (detect_leaks=0); the
# extension must not touch memory it does not own, and no UB may pass.
export LD_PRELOAD="$runtime"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONPATH="$pkg${PYTHONPATH:+:$PYTHONPATH}"
# Python >= 3.11: do not put the checkout (the working directory) first on
# sys.path, where its own pyce would shadow the instrumented one.
export PYTHONSAFEPATH=1
export QT_QPA_PLATFORM=offscreen

args=("$@")
[ "${#args[@]}" -gt 0 ] || args=(-m kernels)
isas="${PYCE_SANITIZER_ISAS:-}"
[ -n "$isas" ] || isas="$(cd "$build" && "$python" -c 'import pyce; print(pyce.cpu_info()["isa"])')"
for isa in $isas; do
    echo "--- sanitizers: PYCE_CPU_CAPABILITY=$isa pytest ${args[*]} ---"
    (cd "$repo" && PYCE_CPU_CAPABILITY="$isa" "$python" -m pytest -q -p no:cacheprovider "${args[@]}")
done
echo "sanitizers: clean"
