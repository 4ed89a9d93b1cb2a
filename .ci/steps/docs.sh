#!/usr/bin/env bash
# CI step: the documentation site (docs/) builds without a single warning
# (sphinx -W: a broken reference, a missing image, a public function whose
# docstring lacks a numpydoc section all fail it), and every example in it --
# the pages' and the docstrings' the API reference includes -- runs as a doctest.
#
# Uses the pyce installed in the current environment when there is one (as in
# .ci/run, after `pip install .[test]`, with torch and transformers, which the
# pyce.torch reference and its examples need), adding the `docs` extra's
# packages; otherwise makes a venv and installs pyce with them (a compile).
# Self-contained: `bash .ci/steps/docs.sh` from anywhere.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
step_start=$(date +%s)
cd "$work"  # away from the checkout: the installed pyce is documented

# The `docs` extra's requirements, read from pyproject.toml (written once, there).
docs_requirements() {
    python - "$repo/pyproject.toml" <<'PY'
import sys
try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["docs"]))
PY
}

if python -c "import pyce" 2>/dev/null; then
    echo "docs: documenting the installed $(python -c 'import pyce; print("pyce", pyce.__version__, "from", pyce.__file__)')"
    docs_requirements > "$work/docs-requirements.txt"
    python -m pip install --quiet -r "$work/docs-requirements.txt"
else
    echo "docs: no pyce installed here; building one into a fresh venv"
    python3 -m venv "$work/venv"
    # shellcheck disable=SC1091
    source "$work/venv/bin/activate"
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet "torch==2.13.0"  # pinned: never a different torch
    python -m pip install --quiet "$repo[docs,hf]"
fi

python -m sphinx -W --keep-going -q -b html "$repo/docs" "$work/html"
echo "docs: html built ($(find "$work/html" -name '*.html' | wc -l) pages)"
python -m sphinx -W --keep-going -q -b doctest "$repo/docs" "$work/doctest"
summary="$(grep -A3 '^Doctest summary' "$work/doctest/output.txt" | tr -s ' \n' ' ')"
echo "docs: doctest: $summary"
if ! grep -q "^ *0 failures in tests" "$work/doctest/output.txt" \
        || grep -q "^ *0 tests$" "$work/doctest/output.txt"; then
    echo "CI: documentation examples failed" >&2
    exit 1
fi
echo "CI: docs step passed in $(( $(date +%s) - step_start )) s"
