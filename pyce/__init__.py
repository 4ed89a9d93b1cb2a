"""pyce: fast, exact cross-entropy, softmax and log-sum-exp for NumPy on the CPU.

The compute core is C++ (AVX-512 / AVX2 / portable SIMD kernels, OpenMP
threads, chosen at import for the running CPU); the functions here validate
their inputs and follow ``torch.nn.functional.cross_entropy``'s semantics.
``pyce.reference`` is a plain-NumPy implementation of the same functions.
"""

from __future__ import annotations

import os as _os

# OpenMP's worker threads spin between parallel regions, by default for a long
# time (libgomp: 300,000 spins, milliseconds). When two OpenMP runtimes share a
# process (PyTorch bundles its own libgomp) or the machine is busy, long-spinning
# threads steal the cores others compute on. Never spinning is no better: waking
# a sleeping thread costs tens of microseconds (more in a VM), more than a
# small call's whole work. So pyce's runtime spins briefly -- about half a
# millisecond, enough for back-to-back calls to find their threads awake -- and
# then sleeps, unless the user chose a policy. (The runtime reads the variable
# when it loads, i.e. during the import below; other runtimes are unaffected.)
_SPIN_COUNT = "20000"
_wait_policy_set = "OMP_WAIT_POLICY" in _os.environ or "GOMP_SPINCOUNT" in _os.environ
if not _wait_policy_set:
    _os.environ["GOMP_SPINCOUNT"] = _SPIN_COUNT
try:
    from . import _core
except ImportError as exc:  # pragma: no cover - depends on how pyce was installed
    if "PYCE_CPU_CAPABILITY" in str(exc):
        # The core is there but refused the forced ISA: its message says it all.
        raise ImportError(f"pyce could not start: {exc}") from exc
    _here = _os.path.dirname(_os.path.abspath(__file__))
    raise ImportError(
        f"pyce's compiled core (pyce._core) could not be imported from {_here}: {exc}.\n"
        "If this is the source checkout, build and install it with `pip install .` and run "
        "Python (or `pytest`) from outside the source directory, or install it in "
        "editable mode with `pip install -e .`."
    ) from exc
finally:
    if not _wait_policy_set:
        del _os.environ["GOMP_SPINCOUNT"]
# Mid-sized calls use several threads only in a burst of calls, when the
# workers are still spinning (csrc/runtime/threading.hpp): 20,000 spins last about half
# a millisecond here, so 200 us is a safe window. With the user's own policy
# pyce assumes nothing.
_core.set_spin_window_us(0 if _wait_policy_set else 200)

from ._cache import cache_info, empty_cache, set_cache_limit
from ._cross_entropy import cross_entropy, cross_entropy_backward, cross_entropy_with_grad
from ._softmax import log_softmax, logsumexp, softmax
from ._threads import cpu_info, get_num_threads, max_threads, set_num_threads
from ._version import __version__ as __version__
from .divergence import entropy, kl_divergence, kl_divergence_with_grad
from .focal import focal_loss, focal_loss_with_grad
from .linear import linear_cross_entropy, linear_cross_entropy_with_grad, linear_evaluate
from .metrics import EvalResult, evaluate

__all__ = [
    "logsumexp",
    "softmax",
    "log_softmax",
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_with_grad",
    "set_num_threads",
    "get_num_threads",
    "max_threads",
    "cpu_info",
    "empty_cache",
    "set_cache_limit",
    "cache_info",
    "evaluate",
    "EvalResult",
    "entropy",
    "kl_divergence",
    "kl_divergence_with_grad",
    "focal_loss",
    "focal_loss_with_grad",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "linear_evaluate",
    "reference",
]


def __getattr__(name):
    # `pyce.reference` is imported on first use: it is the tests' oracle, not
    # something every user pays for at import.
    if name == "reference":
        import importlib

        return importlib.import_module(".reference", __name__)
    raise AttributeError(f"module 'pyce' has no attribute {name!r}")
