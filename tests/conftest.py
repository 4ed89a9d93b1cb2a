"""Shared pytest configuration for pyce's tests."""

import os
import sys

import pytest

# Qt without a display: the explorer's tests render offscreen.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# Test the installed pyce, not a source checkout without a compiled core:
# `python -m pytest` puts the current directory on sys.path. (Plain `pytest`
# does not, so this only matters for `python -m`.) A checkout built in place by
# scripts/dev-build.sh has pyce/_core*.so and is tested as it is.
_checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_sources = os.path.join(_checkout, "pyce")  # absent where the tests were copied out alone
_built_in_place = os.path.isdir(_sources) and any(
    name.startswith("_core") and name.endswith((".so", ".pyd")) for name in os.listdir(_sources)
)
if not _built_in_place:
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _checkout]


def pytest_report_header(config):
    try:
        import pyce
    except ImportError as exc:  # pragma: no cover
        return f"pyce: not importable ({exc})"
    info = pyce.cpu_info()
    return (
        f"pyce {pyce.__version__} from {os.path.dirname(pyce.__file__)}: "
        f"isa={info['isa']} supported={info['supported']} "
        f"openmp={info['openmp']} threads={info['threads']}"
    )


def pytest_generate_tests(metafunc):
    # `each_isa`: the test runs once per instruction set this CPU supports, with
    # the kernels of that ISA dispatched (and the previous table put back).
    if "each_isa" in metafunc.fixturenames:
        import pyce

        metafunc.parametrize("each_isa", pyce.cpu_info()["supported"], indirect=True)


@pytest.fixture
def each_isa(request):
    from pyce import _core

    previous = _core.set_capability(request.param)
    try:
        yield request.param
    finally:
        _core.set_capability(previous)
