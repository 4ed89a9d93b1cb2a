"""pyce._core's type stubs name exactly the functions the compiled module has."""

import ast
import pathlib

import pyce
from pyce import _core


def test_stub_matches_the_compiled_module():
    stub = pathlib.Path(pyce.__file__).with_name("_core.pyi")
    assert stub.exists(), "pyce/_core.pyi is not installed"
    tree = ast.parse(stub.read_text())
    stubbed = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    compiled = {name for name in dir(_core) if not name.startswith("_")}
    assert stubbed == compiled


def test_package_is_marked_typed():
    assert pathlib.Path(pyce.__file__).with_name("py.typed").exists()
