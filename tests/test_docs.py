"""The documentation site's API reference lists every public name (docs/api.rst).

Sphinx itself (`.ci/steps/docs.sh`, `-W`) checks that each one's docstring has
its numpydoc sections and runs every example; this test keeps the list whole
without Sphinx.
"""

import pathlib
import re

import pytest

import pyce

API_PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "api.rst"


def _documented(module):
    text = API_PAGE.read_text()
    # Directives follow `.. currentmodule:: <module>` until the next one.
    sections = re.split(r"^\.\. currentmodule:: (\S+)$", text, flags=re.M)
    names = set()
    for name, body in zip(sections[1::2], sections[2::2]):
        if name == module:
            names |= set(re.findall(r"^\.\. auto(?:function|class):: (\w+)$", body, flags=re.M))
    return names


def test_every_public_numpy_function_is_in_the_api_reference():
    public = set(pyce.__all__) - {"reference"}  # a module, described in the page's text
    assert _documented("pyce") == public


def test_every_public_torch_name_is_in_the_api_reference():
    pytest.importorskip("torch")
    import pyce.torch

    documented = _documented("pyce.torch")
    assert set(pyce.torch.__all__) <= documented
    assert all(hasattr(pyce.torch, name) for name in documented)


def test_every_public_distributed_function_is_in_the_api_reference():
    pytest.importorskip("torch")
    import pyce.torch.distributed as distributed

    functions = {name for name in distributed.__all__ if callable(getattr(distributed, name))}
    assert _documented("pyce.torch.distributed") == functions
