"""Shared pytest configuration for pyce's tests."""

import os

# Qt without a display: the explorer's tests render offscreen.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_report_header(config):
    try:
        import pyce
    except ImportError as exc:  # pragma: no cover
        return f"pyce: not importable ({exc})"
    info = pyce.cpu_info()
    return (f"pyce {pyce.__version__}: isa={info['isa']} supported={info['supported']} "
            f"openmp={info['openmp']} threads={info['threads']}")
