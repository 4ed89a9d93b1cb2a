#!/usr/bin/env bash
# The extension built without OpenMP (-DPYCE_OPENMP=OFF), as on a compiler that
# has none: it must say so and pass the kernel tests on one thread.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
src="$work/no-openmp"
copy_checkout "$src"
python -m pip install -q cmake ninja pybind11
PYCE_BUILD_DIR="$src/build/no-openmp" "$src/scripts/dev-build.sh" -DPYCE_OPENMP=OFF >"$work/no-openmp-build.log" 2>&1 \
    || { tail -30 "$work/no-openmp-build.log"; exit 1; }
cd "$src"
PYTHONPATH="$src:$src/gui" python -c "
import pyce
info = pyce.cpu_info()
assert info['openmp'] is False, info
print('no-OpenMP build:', info)
"
PYTHONPATH="$src:$src/gui" run_pytest python -m pytest -q -p no:cacheprovider -m kernels tests
