"""pyce._core's type stubs (pyce/_core.pyi) match the compiled module.

mypy's stubtest cannot check pybind11 functions (they have no inspectable
signature), so this does its job: every compiled function is stubbed and
nothing else, and each stub has the parameters -- names, order, which have
defaults -- of the signature pybind11 writes on the first line of the docstring.
"""

import ast
import pathlib
import re

import pytest

import pyce
from pyce import _core


def _stub_functions():
    stub = pathlib.Path(pyce.__file__).with_name("_core.pyi")
    assert stub.exists(), "pyce/_core.pyi is not installed"
    tree = ast.parse(stub.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def _compiled_functions():
    return sorted(name for name in dir(_core) if not name.startswith("_"))


def _stub_parameters(node: ast.FunctionDef):
    """[(name, has_default)] of a stub's parameters, in order."""
    args = node.args.posonlyargs + node.args.args
    first_default = len(args) - len(node.args.defaults)
    params = [(a.arg, i >= first_default) for i, a in enumerate(args)]
    params += [(a.arg, d is not None) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults)]
    return params


def _split_top_level(text: str):
    """Split a parameter list at the commas outside brackets."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts]


def _compiled_parameters(name: str):
    """[(name, has_default)] from pybind11's signature line ``name(a: T, b: T = 1) -> R``."""
    first_line = (getattr(_core, name).__doc__ or "").splitlines()[0]
    match = re.match(rf"{name}\((.*)\) ->", first_line)
    assert match, f"_core.{name} has no pybind11 signature line: {first_line!r}"
    params = []
    for part in _split_top_level(match.group(1)):
        if part in ("*", "/"):
            continue
        params.append((part.split(":")[0].strip(), "=" in part))
    return params


def test_stub_names_exactly_the_compiled_functions():
    assert set(_stub_functions()) == set(_compiled_functions())


@pytest.mark.parametrize("name", _compiled_functions())
def test_stub_signature_matches_the_compiled_one(name):
    stub = _stub_functions().get(name)
    assert stub is not None, f"_core.{name} is not stubbed"
    assert _stub_parameters(stub) == _compiled_parameters(name)


def test_package_is_marked_typed():
    assert pathlib.Path(pyce.__file__).with_name("py.typed").exists()
