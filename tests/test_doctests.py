"""The examples in pyce's docstrings run, and print what they say.

Each module of the installed pyce that has docstring examples is run through
doctest; a module listed here without any example is an error too (its
examples were lost).
"""

import doctest
import importlib

import pytest

MODULES_WITH_EXAMPLES = [
    "pyce._softmax",
    "pyce._cross_entropy",
    "pyce._threads",
    "pyce._cache",
    "pyce.metrics",
    "pyce.divergence",
    "pyce.focal",
    "pyce.torch",
    "pyce.torch.hf",
]


@pytest.mark.parametrize("name", MODULES_WITH_EXAMPLES)
def test_docstring_examples(name):
    if name.startswith("pyce.torch"):
        pytest.importorskip("torch")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False)
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
