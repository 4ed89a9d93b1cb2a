#!/usr/bin/env bash
# Build pyce on a many-core machine, check it there, and measure how it scales.
#
# Usage (from the repository root):  bash benchmarks/many_cores.sh OUTDIR
# Writes OUTDIR/machine.txt, OUTDIR/tests.txt, OUTDIR/scaling.txt (+ .json) and
# OUTDIR/main.txt. Used for the 1 -> 16 thread figures in README.md, on a
# 16-core machine that has Python with numpy, ml_dtypes, pybind11,
# scikit-build-core, cmake and a C++ compiler but no network.
set -uo pipefail
out=${1:?usage: many_cores.sh OUTDIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

{
  date -u; uname -a; nproc
  lscpu
  grep -m1 MemTotal /proc/meminfo
  $py -c "import sys, numpy; print(sys.version); print('numpy', numpy.__version__)"
} > "$out/machine.txt" 2>&1

# Build with every core; --no-build-isolation: the machine has no network.
CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
  $py -m pip install -q --no-build-isolation --no-deps . > "$out/build.txt" 2>&1 \
  || { cat "$out/build.txt"; exit 1; }

# Run from outside the checkout so the installed package is the one imported.
cd /tmp
$py -c "import pyce; print(pyce.cpu_info())" | tee -a "$out/machine.txt"

# The kernel and thread tests at this machine's thread count (16 here).
timeout 150 $py -m pytest -q -p no:cacheprovider -m kernels "$OLDPWD/tests" \
  > "$out/tests.txt" 2>&1
echo "tests exit $?" | tee -a "$out/tests.txt"; tail -3 "$out/tests.txt"

# 1, 2, 4, 8, 16 threads against the stream probe at each count.
timeout 240 $py -m pyce.bench --scaling --shapes 4096x32000,2048x128256 --no-peers --quiet \
  --json "$out/scaling.json" > "$out/scaling.txt" 2>&1
echo "scaling exit $?"

# The main table at full thread count, against PyTorch when it is there.
JAX_PLATFORMS=cpu timeout 240 $py -m pyce.bench --peers torch --quiet \
  --shapes 64x1000,4096x32000,2048x128256,8x256000 \
  --json "$out/main.json" > "$out/main.txt" 2>&1
echo "main exit $?"
