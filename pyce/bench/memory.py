"""Peak extra memory of one computation, measured in a fresh subprocess."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tracemalloc
from typing import Optional, Sequence

from .environment import _optional
from .ops import make_problem, pyce_op
from .peers import peer_op

MEMORY_KINDS = (
    "pyce forward",
    "pyce fused",
    "pyce fused inplace",
    "pyce backward",
    "torch forward",
    "torch forward+backward",
    "jax forward+backward",
    "numpy forward+backward",
)


def _proc_status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: ``echo 5 > /proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _memory_child(argv: Sequence[str]) -> None:
    """Subprocess body of :func:`measure_memory`: prints one JSON line."""
    kind, n, v, dtype_name, threads = argv[0], int(argv[1]), int(argv[2]), argv[3], int(argv[4])
    import pyce

    pyce.set_num_threads(threads)
    x, t = make_problem((n, v), dtype_name)
    if kind.startswith("pyce"):
        op = {
            "pyce forward": "forward",
            "pyce fused": "fused",
            "pyce fused inplace": "inplace",
            "pyce backward": "backward",
        }[kind]
        if op == "inplace":
            fn = lambda: pyce.cross_entropy_with_grad(x, t, inplace=True)  # noqa: E731
        else:
            fn = pyce_op(op, x, t)[0]
        small = make_problem((2, 8), dtype_name)
        pyce_op(op, *small)[0]()  # first-call set-up, not the measured call
    elif kind.startswith("torch"):
        fn, setup = peer_op("torch", "fused" if "backward" in kind else "forward", x, t)
        torch = sys.modules["torch"]
        torch.set_num_threads(threads)
        small = make_problem((2, 8), dtype_name)
        f2, s2 = peer_op("torch", "fused" if "backward" in kind else "forward", *small)
        if s2:
            s2()
        f2()
    elif kind.startswith("jax"):
        fn, setup = peer_op("jax", "fused", x, t)
        fn()  # compiles for this shape: the compiler's memory is not the op's
    elif kind.startswith("numpy"):
        fn, setup = peer_op("numpy", "fused", x, t)
    else:
        raise ValueError(kind)
    gc.collect()
    tracemalloc.start()
    reset_ok = _reset_peak_rss()
    rss0 = _proc_status_kb("VmRSS")
    hwm0 = _proc_status_kb("VmHWM")
    result = fn()
    hwm1 = _proc_status_kb("VmHWM")
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    out = {
        "kind": kind,
        "rss_before_kb": rss0,
        "hwm_before_kb": hwm0,
        "hwm_after_kb": hwm1,
        "peak_reset": reset_ok,
        "tracemalloc_peak_bytes": traced_peak,
        "logits_bytes": int(x.nbytes),
    }
    print("PYCE-MEMORY " + json.dumps(out))


def child_command(code: str, *args: str) -> list:
    """``python -c code args...`` for a fresh interpreter that imports the very
    pyce this process runs: its parent directory goes first on ``sys.path``, so
    a source checkout in the working directory (whose ``pyce/`` may lack the
    compiled core) does not shadow it. ``sys`` is imported for ``code``."""
    import pyce

    root = os.path.dirname(os.path.dirname(os.path.abspath(pyce.__file__)))
    prelude = "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    return [sys.executable, "-c", prelude + code, root, *args]


def measure_memory(kind: str, shape, dtype_name: str, threads: int, timeout: float = 600) -> dict:
    """Peak extra memory of one computation, measured in a fresh subprocess.

    Extra = peak RSS during the call (``VmHWM``, reset just before it) minus the
    RSS just before it: everything the call allocates and touches, including a
    returned gradient. Also the peak of NumPy's allocations seen by
    ``tracemalloc`` (NumPy reports its buffers to it; torch and JAX do not).
    Both in bytes and as a multiple of the logits' size.
    """
    code = "import pyce.bench as b; b._memory_child(sys.argv[1:])"
    cmd = child_command(code, kind, str(shape[0]), str(shape[1]), dtype_name, str(threads))
    res: dict = {"kind": kind, "shape": list(shape), "dtype": dtype_name}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        res["status"] = "error: timed out"
        return res
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("PYCE-MEMORY ")), None)
    if proc.returncode != 0 or line is None:
        err = (proc.stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[-1]
        res["status"] = "error: " + err
        return res
    data = json.loads(line[len("PYCE-MEMORY ") :])
    res.update(data)
    nbytes = data["logits_bytes"]
    if data["hwm_after_kb"] is not None and data["rss_before_kb"] is not None:
        base = (
            data["rss_before_kb"] if data["peak_reset"] else max(data["rss_before_kb"], data["hwm_before_kb"])
        )
        res["extra_rss_bytes"] = max(0, data["hwm_after_kb"] - base) * 1024
        res["extra_rss_x"] = res["extra_rss_bytes"] / nbytes
    else:
        res["extra_rss_bytes"] = res["extra_rss_x"] = None
    res["tracemalloc_x"] = data["tracemalloc_peak_bytes"] / nbytes
    res["status"] = "ok"
    return res


def memory_kinds(peers: Sequence[str], shape, reference_limit: int) -> list:
    """Which memory measurements to make, given the available peers."""
    kinds = ["pyce forward", "pyce fused", "pyce fused inplace", "pyce backward"]
    if "torch" in peers and _optional("torch") is not None:
        kinds += ["torch forward", "torch forward+backward"]
    if "jax" in peers and _optional("jax") is not None:
        kinds.append("jax forward+backward")
    if "numpy" in peers and (reference_limit <= 0 or shape[0] * shape[1] <= reference_limit):
        kinds.append("numpy forward+backward")
    return kinds


# --------------------------------------------------------------------------
# Scaling
# --------------------------------------------------------------------------
