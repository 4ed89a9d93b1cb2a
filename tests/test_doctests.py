"""The examples in pyce's docstrings run, and print what they say.

Every module of the installed pyce whose source holds a docstring example
(``>>>``) is run through doctest, so a new module's examples are tested without
being listed here. Modules under pyce.torch need torch (skipped without it).
"""

import doctest
import importlib
import pathlib

import pytest

import pyce

_ROOT = pathlib.Path(pyce.__file__).parent


def _modules_with_examples():
    names = []
    for path in sorted(_ROOT.rglob("*.py")):
        if path.name == "__main__.py" or ">>>" not in path.read_text(encoding="utf-8"):
            continue
        parts = path.relative_to(_ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def test_examples_are_found():
    assert {"pyce._softmax", "pyce._cross_entropy", "pyce.metrics"} <= set(_modules_with_examples())


@pytest.mark.parametrize("name", _modules_with_examples())
def test_docstring_examples(name):
    if name.startswith("pyce.torch"):
        pytest.importorskip("torch")
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert result.attempted > 0, f"{name} has '>>>' in its source but doctest found no example"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
