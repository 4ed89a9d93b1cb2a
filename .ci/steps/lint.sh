#!/usr/bin/env bash
# Linters: ruff (lint and format check) and mypy on pyce/, configured in
# pyproject.toml, and clang-format on csrc/ (.clang-format). The stubs of the
# compiled core are checked by tests/test_stubs.py (mypy's stubtest cannot
# introspect pybind11 signatures). Fix a failure with `ruff check --fix .`,
# `ruff format .` and `clang-format -i` on the files named.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$repo"
python -m pip install -q "ruff==0.17.6" "mypy==2.4.1"
ruff check .
ruff format --check .
mypy
ensure_commands clang-format:clang-format
find csrc \( -name '*.cpp' -o -name '*.hpp' \) -print0 | sort -z | xargs -0 clang-format --dry-run --Werror
echo "lint: ruff, ruff format, mypy and clang-format ($(clang-format --version | grep -o '[0-9][0-9.]*' | head -1)) clean"
