"""The examples in pyce's docstrings run, and print what they say.

Every module of the installed pyce whose source holds a docstring example
(``>>>``) is run through doctest, so a new module's examples are tested without
being listed here. Modules under pyce.torch need torch (skipped without it);
an example that imports an optional package only it needs (transformers) is
left out when that package is not installed, and the module's other examples run.
"""

import doctest
import importlib
import importlib.util
import pathlib
import re

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
    tests = doctest.DocTestFinder().find(module)
    assert any(t.examples for t in tests), f"{name} has '>>>' in its source but doctest found no example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    for test in tests:
        if not _needs_missing_package(test):
            runner.run(test)
    result = runner.summarize(verbose=False)
    if result.attempted == 0:
        pytest.skip(f"every example of {name} needs a package that is not installed")
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


# Optional packages a docstring example may import beyond torch.
_OPTIONAL_EXAMPLE_PACKAGES = ("transformers",)


def _needs_missing_package(test):
    """Whether one of ``test``'s examples imports an optional package that is not installed."""
    source = "".join(example.source for example in test.examples)
    return any(
        re.search(rf"^\s*(?:import|from)\s.*\b{package}\b", source, re.MULTILINE)
        and importlib.util.find_spec(package) is None
        for package in _OPTIONAL_EXAMPLE_PACKAGES
    )
