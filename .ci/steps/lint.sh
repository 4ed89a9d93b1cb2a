#!/usr/bin/env bash
# Linters: ruff (lint and format check) and mypy on pyce/ (configured in
# pyproject.toml), clang-format on csrc/ (.clang-format), mypy's stubtest on the
# compiled core (tests/test_stubs.py checks pyce/_core.pyi: stubtest cannot
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$repo"
python -m pip install -q "ruff==0.17.6" "mypy==2.4.1"
ruff check .
ruff format --check .
mypy
ensure_commands clang-format:clang-format
find csrc -name '*.cpp' -o -name '*.hpp' | sort | xargs clang-format --dry-run --Werror
