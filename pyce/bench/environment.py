"""The machine and software a benchmark ran on; thread counts."""

from __future__ import annotations

import os
import platform
import sys
from typing import Optional

import numpy as np


def cpu_model() -> Optional[str]:
    """The CPU's model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "cpu model", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _optional(name: str):
    try:
        return __import__(name)
    except Exception:  # ImportError, or a broken install
        return None


def versions() -> dict:
    """Versions of Python, NumPy, pyce and the peers (None when not installed)."""
    import pyce

    out = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyce": getattr(pyce, "__version__", None),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    for name in ("torch", "jax", "ml_dtypes", "matplotlib"):
        out[name] = package_version(name)
    return out


def package_version(name: str) -> Optional[str]:
    """An installed package's version, without importing it (None when absent)."""
    mod = sys.modules.get(name)
    if mod is not None and getattr(mod, "__version__", None):
        return str(mod.__version__)
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def set_threads(n: int) -> None:
    """Use ``n`` threads in pyce and (for a like-for-like comparison) in torch."""
    import pyce

    pyce.set_num_threads(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


# --------------------------------------------------------------------------
# Memory (each measurement in its own process, so that peaks don't mix)
# --------------------------------------------------------------------------


def thread_counts(max_threads: int) -> list:
    """1..N when N <= 8, else powers of two up to N plus N itself."""
    if max_threads <= 8:
        return list(range(1, max_threads + 1))
    counts, k = [], 1
    while k < max_threads:
        counts.append(k)
        k *= 2
    return counts + [max_threads]
