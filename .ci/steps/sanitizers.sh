#!/usr/bin/env bash
# CI step (issue 14): the extension built with AddressSanitizer and
# UndefinedBehaviorSanitizer, running the kernel tests. Any out-of-bounds
# access, use after free or undefined behaviour in the C++ core aborts the
# run with a report, and the step fails.
#
# Self-contained: its own build directory (build/sanitizers, or
# $PYCE_SANITIZER_BUILD), its own copy of the Python package with the
# instrumented _core next to it; nothing in the checkout or the environment
# is replaced. Python itself is not instrumented, so the ASan runtime is
# preloaded. Needs gcc or clang with the sanitizer runtimes, cmake, and the
# test dependencies (pytest, numpy, hypothesis, ml_dtypes) in the active
# Python (pybind11 is installed into it when missing).
#
# Which kernels: PYCE_SANITIZER_ISAS (default: baseline), the others' objects
# are not compiled. Instrumented kernels are slow to build: on 2 cores, one
# ISA at -O1 is about 10 CPU-minutes (cross_entropy.cpp alone 3.6; at -O3
# it did not finish in 30 minutes). Baseline is the path every CPU can take
# and the one whose scalar tails and loops differ most from a vector body;
# the vector ISAs run the same tests uninstrumented in CI's per-ISA runs.
#
# What runs by default: issue 14's items -- the aliasing tests, the
# hypothesis fuzz and property tests, the option checks, the plain-call path
# -- the cross-entropy kernel tests (every dtype, option and layout) and the
# vocabulary-shard kernels (where the whole kernel suite under the sanitizers
# found a null read that this selection had missed), and the few-class and
# strided-class kernels with their tiles (237 tests, about 30 s; the whole suite takes
# about 15 minutes here, this selection about 8). Other pytest arguments
# replace the selection, e.g. `-m kernels tests` for the whole kernel suite.
#
#   .ci/steps/sanitizers.sh                          # the default above
#   .ci/steps/sanitizers.sh -m kernels tests         # the whole kernel suite
#   PYCE_SANITIZER_ISAS="baseline avx512" .ci/steps/sanitizers.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=.ci/lib.sh
source "$repo/.ci/lib.sh"
build="${PYCE_SANITIZER_BUILD:-$repo/build/sanitizers}"
python="${PYTHON:-python3}"
# -g1: line tables for the reports' stack traces, not full debug info (a
# quicker build). UBSan's findings abort like ASan's (no recovery).
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g1"

"$python" -m pybind11 --cmakedir >/dev/null 2>&1 || "$python" -m pip install -q "pybind11>=2.12"

isas="${PYCE_SANITIZER_ISAS:-baseline}"

generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
launcher=()
if command -v ccache >/dev/null; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    # Cache hits across checkouts (CI's clone, a worktree): paths relative to
    # the checkout, and the build directory's path kept out of the hash.
    export CCACHE_BASEDIR="$repo" CCACHE_NOHASHDIR=1
fi
# CMakeLists.txt adds an ISA's kernels when check_cxx_compiler_flag sets
# PYCE_COMPILER_<ISA>; preset to OFF, the check is skipped and so are they.
skip_isas=()
for isa in AVX2 AVX512; do
    [[ " $isas " == *" ${isa,,} "* ]] || skip_isas+=("-DPYCE_COMPILER_$isa=OFF")
done
if [ ! -f "$build/CMakeCache.txt" ]; then
    # RelWithDebInfo: pybind11 strips Release modules (no symbols in the
    # reports). -O1 everywhere (the usual level for sanitizers), no LTO.
    cmake -S "$repo" -B "$build" "${generator[@]}" "${launcher[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -DNDEBUG" -DPYCE_KERNEL_OPTIMIZATION=-O1 \
        -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF \
        -DCMAKE_CXX_FLAGS="$sanitize" -DCMAKE_MODULE_LINKER_FLAGS="$sanitize" \
        -DCMAKE_SHARED_LINKER_FLAGS="$sanitize" "${skip_isas[@]}" \
        -DPython_EXECUTABLE="$(command -v "$python")" \
        -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" >/dev/null
fi
build_start=$SECONDS
cmake --build "$build" -j "${PYCE_BUILD_JOBS:-2}"
echo "sanitizers: build took $((SECONDS - build_start)) s"

# The package as it is in the checkout, with the instrumented core.
pkg="$build/package"
rm -rf "$pkg"
mkdir -p "$pkg"
cp -r "$repo/pyce" "$pkg/pyce"
find "$pkg/pyce" \( -name '_core*.so' -o -name '__pycache__' \) -prune -exec rm -rf {} +
cp "$build"/_core*.so "$pkg/pyce/"

runtime="$("${CXX:-c++}" -print-file-name=libasan.so)"
[ -f "$runtime" ] || { echo "sanitizers: no libasan.so from ${CXX:-c++}" >&2; exit 1; }
# The C++ runtime too: ASan resolves its __cxa_throw interceptor when it
# starts, and Python does not load libstdc++; without it the first C++
# exception (an IndexError for a bad target) aborts with "CHECK failed".
cxx_runtime="$("${CXX:-c++}" -print-file-name=libstdc++.so)"
[ -f "$cxx_runtime" ] || cxx_runtime=""
# Python's own allocations are not ASan's concern (detect_leaks=0); the
# extension must not touch memory it does not own, and no UB may pass.
# A report aborts the process (abort_on_error, halt_on_error): pytest dies
# with SIGABRT and this step fails.
export LD_PRELOAD="$runtime${cxx_runtime:+ $cxx_runtime}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# gui/: pytest -m kernels collects the explorer's test modules too.
export PYTHONPATH="$pkg:$repo/gui${PYTHONPATH:+:$PYTHONPATH}"
# Python >= 3.11: do not put the checkout (the working directory) first on
# sys.path, where its own pyce would shadow the instrumented one.
export PYTHONSAFEPATH=1
export QT_QPA_PLATFORM=offscreen

# The tests must import the instrumented core, not an installed pyce.
(cd "$repo" && "$python" -c "
import sys, pyce._core
core = pyce._core.__file__
assert core.startswith(sys.argv[1]), f'sanitizers: pyce._core from {core}, not the instrumented build'
print('sanitizers: testing', core, pyce.cpu_info()['supported'])
" "$pkg/")

run() {
    local isa="$1"
    shift
    echo "--- sanitizers: PYCE_CPU_CAPABILITY=$isa pytest $* ---"
    local start=$SECONDS
    # --capture=sys: pytest captures Python's output only; a sanitizer's
    # report (written to file descriptor 2 just before the abort) reaches the
    # log instead of dying with the test's captured output.
    (cd "$repo" && PYCE_CPU_CAPABILITY="$isa" run_pytest "$python" -m pytest -q -p no:cacheprovider --capture=sys "$@")
    echo "sanitizers: $isa took $((SECONDS - start)) s"
}

args=("$@")
[ "${#args[@]}" -gt 0 ] || args=(tests/test_aliasing.py tests/test_fuzz.py tests/test_properties.py
    tests/test_option_checks.py tests/test_plain_call.py tests/test_cross_entropy.py tests/test_vocab_shard.py
    tests/test_short_rows.py tests/test_strided_classes.py tests/test_strided_metrics.py)
for isa in $isas; do run "$isa" "${args[@]}"; done
echo "sanitizers: clean"
