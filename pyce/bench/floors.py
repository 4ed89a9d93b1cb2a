"""The floors: streaming bandwidth probes, exp throughput, and each op timed in cache."""

from __future__ import annotations

import numpy as np

from .ops import IN_CACHE_BYTES, TRAFFIC, pyce_op
from .timing import time_call


def _probe_array(nbytes: int) -> np.ndarray:
    """A touched float32 array of ``nbytes`` bytes (rounded up to 4)."""
    a = np.empty(max(1, -(-nbytes // 4)), dtype=np.float32)
    a.fill(0.5)
    return a


def stream_probes():
    """``(read(x), scale(src, dst), source)``: pyce's C++ bandwidth probes, or NumPy
    stand-ins (flagged by ``source``) on a pyce build without them."""
    from pyce import _core

    if hasattr(_core, "stream_read") and hasattr(_core, "stream_scale"):
        return _core.stream_read, _core.stream_scale, "pyce._core"

    def read(x):
        return float(np.add.reduce(x, axis=None))

    def scale(src, dst, s=1.0):
        np.multiply(src, s, out=dst)

    return read, scale, "numpy (this pyce build has no stream probes)"


def _copy_time(scale, src, repeat, min_time):
    """Best time of copying ``src`` into an already-touched buffer of its size."""
    dst = np.empty_like(src)
    dst.fill(0.0)
    return time_call(lambda: scale(src, dst, 1.0), repeat=repeat, min_time=min_time).best


def measure_floors(nbytes: int, *, repeat: int = 5, min_time: float = 0.02, min_runs: int = 10) -> dict:
    """Floor times (seconds) for moving ``nbytes`` of logits, at pyce's current thread count.

    ``read``: read ``nbytes`` once; ``copy``: read them and write ``nbytes``
    elsewhere; ``inplace``: read and write back the same bytes. Each is the best
    of at least ``min_runs`` runs of the probe on a float32 buffer of exactly that
    size (probes are cheap, and a noisy floor would skew every ratio of its shape).
    """
    repeat = max(repeat, min_runs)
    read, scale, source = stream_probes()
    src = _probe_array(nbytes)
    out = {"nbytes": int(nbytes), "source": source}
    out["read"] = time_call(lambda: read(src), repeat=repeat, min_time=min_time).best
    out["copy"] = _copy_time(scale, src, repeat, min_time)  # its destination freed before the next probe
    # Into a new array each call, as a function returning a gradient must: the
    # page faults of first touch included (reported, not used as the floor).
    out["copy_fresh"] = time_call(
        lambda: scale(src, np.empty_like(src), 1.0), repeat=repeat, min_time=min_time
    ).best
    out["inplace"] = time_call(lambda: scale(src, src, 1.0), repeat=repeat, min_time=min_time).best
    return out


def measure_exp_throughput(*, repeat: int = 5) -> float:
    """Nanoseconds per element of the row sweeps' vectorised exp, on ONE thread.

    The input (64 KiB of float32) stays in L2, so this is the instruction
    throughput of exp with no memory traffic: every kernel computes one exp per
    logit, so ``elements x this / threads`` is a floor set by compute, as the
    bandwidth probes give one set by memory. When it exceeds the bandwidth
    floor (16-bit logits: half the bytes, the same exps), the kernel cannot
    reach the bandwidth floor on this machine.
    """
    from .. import _core

    # 64 KiB in and out (L2-resident, below malloc's mmap threshold, so no page
    # faults); many calls per timing so the call overhead stays small.
    x = -np.linspace(0.0, 80.0, 16384, dtype=np.float32)
    calls = 200

    def run():
        for _ in range(calls):
            _core.vector_exp(x, sweep=True)

    best = time_call(run, repeat=repeat, min_time=0.0).best
    return best / (calls * x.size) * 1e9


def bandwidths(floors: dict) -> dict:
    """GB/s of each floor (bytes counted in both directions for copy / inplace)."""
    n = floors["nbytes"]
    return {k: TRAFFIC[k] * n / floors[k] / 1e9 for k in TRAFFIC if k in floors}


def in_cache_rows(shape, itemsize: int, threads: int) -> int:
    """Rows of the slices ``measure_in_cache`` times: about ``IN_CACHE_BYTES`` of
    logits, and at least 4 per thread, so that the kernel shares whole rows out
    among its threads as it does on the full problem (never more than all rows)."""
    rows, cols = shape[0], int(np.prod(shape[1:]))
    k = max(4 * threads, IN_CACHE_BYTES // max(1, cols * itemsize))
    return int(min(rows, k))


def measure_in_cache(
    op: str, x: np.ndarray, t: np.ndarray, *, threads: int, repeat: int = 5, min_time: float = 0.02
) -> tuple:
    """``(seconds, rows)``: the time pyce's ``op`` takes on all of x's rows when
    its data is in cache, and the slice size it was measured on.

    The op runs over and over on the first ``rows`` rows, and on the first
    ``2 * rows``, so that they stay in cache; the difference of the two times is
    the cost of ``rows`` rows without the call's fixed cost (validation, thread
    wake-up), and that per-row cost is scaled to all rows. (A problem of fewer
    than ``2 * rows`` rows is timed whole, fixed cost included.) That is the time
    the op's arithmetic takes when it never waits for memory: a floor set by
    compute, beside the bandwidth floor. Where it exceeds the bandwidth floor,
    no tuning of memory traffic can bring the op to its floor on this machine.
    ``inplace`` runs on its own output after the first call (the kernels do the
    same work whatever the values).
    """
    rows = in_cache_rows(x.shape, x.itemsize, threads)

    def time_rows(k):
        xs, ts = np.ascontiguousarray(x[:k]), np.ascontiguousarray(t[:k])
        fn, _, keep = pyce_op(op, xs, ts)
        best = time_call(fn, repeat=repeat, min_time=min_time).best
        del keep
        return best

    n = x.shape[0]
    if 2 * rows > n:
        return time_rows(n), n
    one, two = time_rows(rows), time_rows(2 * rows)
    per_row = (two - one) / rows
    if per_row <= 0:  # noise larger than the fixed cost: fall back to the larger slice
        per_row = two / (2 * rows)
    return per_row * n, rows
