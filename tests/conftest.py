"""Shared pytest configuration for pyce's tests."""

import os
import sys

# Qt without a display: the explorer's tests render offscreen.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# Test the installed pyce, never the source checkout: `python -m pytest` puts
# the current directory on sys.path, and the checkout's pyce/ has no compiled
# core. (Plain `pytest` does not, so this only matters for `python -m`.)
_checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _checkout]


def pytest_report_header(config):
    try:
        import pyce
    except ImportError as exc:  # pragma: no cover
        return f"pyce: not importable ({exc})"
    info = pyce.cpu_info()
    return (f"pyce {pyce.__version__}: isa={info['isa']} supported={info['supported']} "
            f"openmp={info['openmp']} threads={info['threads']}")
