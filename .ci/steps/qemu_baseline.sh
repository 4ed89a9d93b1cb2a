#!/usr/bin/env bash
# CI step (issue 14, item 8): the portable path on a CPU without AVX.
# Runs an installed (or checkout-built) pyce under qemu's user-mode emulation
# of a Nehalem CPU (SSE4.2, no AVX): the dispatch must pick 'baseline', list
# nothing else as supported, and compute every public function without an
# illegal instruction -- the SIGILL an AVX copy of a shared inline function
# would cause (issue 20, item 3).
#
#   .ci/steps/qemu_baseline.sh              # the pyce the active Python imports
#   PYTHONPATH=$PWD .ci/steps/qemu_baseline.sh   # a checkout built by scripts/dev-build.sh
#
# Needs qemu-x86_64 (Debian/Ubuntu: qemu-user) and an x86-64 Python with
# numpy, pytest and ml_dtypes. Emulation is slow: the smoke script and a
# short kernel-test selection run in a few minutes.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Not resolved through symlinks: a virtual environment's python finds its
# site-packages from the path it was started as.
python="$(command -v "${PYTHON:-python3}")"
# shellcheck source=.ci/lib.sh
source "$repo/.ci/lib.sh"
# CI installs qemu's user-mode emulators when they are missing (as root).
if ! command -v qemu-x86_64 >/dev/null && [ "$(id -u)" -eq 0 ]; then
    ensure_commands qemu-user:qemu-x86_64
fi
command -v qemu-x86_64 >/dev/null || { echo "qemu_baseline: qemu-x86_64 not found" >&2; exit 1; }
emulate=(qemu-x86_64 -cpu Nehalem)

cd "$repo"
"${emulate[@]}" "$python" "$repo/.ci/steps/qemu_smoke.py"
# A short selection of the kernel tests: every dtype, option and path of the
# cross-entropy family on small shapes. (-p no:cacheprovider: nothing written.)
run_pytest "${emulate[@]}" "$python" -m pytest -q -p no:cacheprovider -x \
    tests/test_aliasing.py tests/test_option_checks.py tests/test_plain_call.py \
    -k "not forced_isa"
echo "qemu_baseline: the portable path runs on a CPU without AVX"
