"""``pyce bench``: time pyce against the memory-bandwidth floor and its peers.

Method (DESIGN.md section 7). In the same run, on the same thread count, the
bench measures streaming bandwidth with pyce's own C++ probes
(``pyce._core.stream_read`` / ``stream_scale``) on a float32 buffer of exactly
the logits' byte count, and uses it as the floor of each operation:

=========  ===================================  ============================
op         what is timed                        floor (bytes that must move)
=========  ===================================  ============================
forward    ``cross_entropy(x, t)``              read x once
fused      ``cross_entropy_with_grad(x, t)``    read x + write a new gradient
fused_out  ``... (x, t, out=buffer)``           read x + write a reused gradient
inplace    ``... (x, t, inplace=True)``         read x + write x in place
backward   ``cross_entropy_backward(x, t)``     read x + write a new gradient
logsumexp  ``logsumexp(x)``                     read x once
=========  ===================================  ============================

Each figure is the best of ``--repeat`` runs after a warm-up call; a run of a
very short call averages enough back-to-back calls to last ``--min-time``. Each
op is timed alternately with the probe that bounds it (``time_against_floor``),
so that drifting bandwidth on a shared machine moves both alike; the header's
bandwidths come from a separate measurement before the shape's ops.
Each op is also timed on a few of its rows kept in cache (``measure_in_cache``),
scaled to all rows: the floor its arithmetic sets, beside the one memory sets.
Peers: the NumPy float64 reference (``pyce.reference``), PyTorch
(``torch.nn.functional.cross_entropy``, with autograd for the gradient) and JAX
(``jax.jit`` of the same loss), each when importable.

Run ``pyce bench --help`` for the options. Measuring functions and table
formatting are kept apart: ``time_call``, ``measure_floors``, ``measure_memory``,
``measure_scaling`` measure; ``fmt_*``, ``render_table`` and ``*_table`` format.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from typing import Callable, Optional, Sequence

import numpy as np

__all__ = ["main"]

#: The reference shapes of DESIGN.md section 7: (rows, classes).
DEFAULT_SHAPES = ((64, 1000), (4096, 32000), (2048, 128256), (8, 256000))
#: Small shapes for ``--quick``.
QUICK_SHAPES = ((64, 1000), (32, 32000))
DEFAULT_DTYPES = ("float32", "bfloat16")
KNOWN_DTYPES = ("float32", "float64", "bfloat16", "float16")
OPS = ("forward", "fused", "fused_out", "inplace", "backward", "logsumexp")
PEERS = ("numpy", "torch", "jax")
#: Logit bytes of the slice each op is also timed on in cache (``measure_in_cache``):
#: with its gradient, well inside the last-level cache of any current x86 CPU.
IN_CACHE_BYTES = 4 << 20
#: The NumPy reference is skipped above this many elements unless told otherwise.
REFERENCE_LIMIT = 50_000_000

#: What each op's floor is: the probe that moves the same bytes the op must move.
FLOOR_KIND = {"forward": "read", "logsumexp": "read", "fused": "copy", "fused_out": "copy",
              "backward": "copy", "inplace": "inplace"}
#: Bytes an op must move, as a multiple of the logits' bytes.
TRAFFIC = {"read": 1, "copy": 2, "inplace": 2, "copy_fresh": 2}
#: Which peer computation each pyce op is compared with (a peer has no in-place
#: variant: fused inplace is compared with the peer's forward+backward).
PEER_OP = {"forward": "forward", "fused": "fused", "fused_out": "fused", "inplace": "fused",
           "backward": "backward", "logsumexp": "logsumexp"}
OP_LABEL = {"forward": "forward", "fused": "fused", "fused_out": "fused out=", "inplace": "fused inplace",
            "backward": "backward", "logsumexp": "logsumexp"}
UNSUPPORTED = "unsupported by this pyce build"


class PeerUnavailable(Exception):
    """A peer cannot run this op/dtype (the message says why)."""


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------

def parse_shape(text: str) -> tuple:
    """``"4096x32000"`` -> ``(4096, 32000)`` (rows x classes)."""
    parts = text.strip().lower().replace("×", "x").split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        n, v = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"a shape is ROWSxCLASSES, e.g. 4096x32000; got {text!r}") from None
    if n < 1 or v < 1:
        raise ValueError(f"shape {text!r} must have at least one row and one class")
    return (n, v)


def parse_list(text: str, allowed: Sequence[str], what: str) -> list:
    """A comma-separated list, each item checked against ``allowed``."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise ValueError(f"empty list of {what}")
    for item in items:
        if item not in allowed:
            raise ValueError(f"unknown {what[:-1]} {item!r}; choose from {', '.join(allowed)}")
    return items


def shape_str(shape) -> str:
    return f"{shape[0]}x{shape[1]}"


# --------------------------------------------------------------------------
# Formatting (pure functions, no measuring)
# --------------------------------------------------------------------------

def fmt_ms(seconds: Optional[float]) -> str:
    """Milliseconds with about four significant digits (``"12.34"``, ``"0.0312"``)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    ms = seconds * 1e3
    if ms >= 1000:
        return f"{ms:.0f}"
    if ms >= 100:
        return f"{ms:.1f}"
    if ms >= 10:
        return f"{ms:.2f}"
    if ms >= 1:
        return f"{ms:.3f}"
    return f"{ms:.4f}"


def fmt_ratio(x: Optional[float]) -> str:
    """A ratio as ``"1.07x"`` (``"123x"`` when large, ``"-"`` when missing)."""
    if x is None or not math.isfinite(x):
        return "-"
    if x >= 100:
        return f"{x:.0f}x"
    if x >= 10:
        return f"{x:.1f}x"
    return f"{x:.2f}x"


def fmt_gbs(x: Optional[float]) -> str:
    """A bandwidth in GB/s (``"47.3"``)."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.1f}" if x < 1000 else f"{x:.0f}"


def fmt_mb(nbytes: Optional[float]) -> str:
    """Bytes as MB (10^6), e.g. ``"524.3"``."""
    if nbytes is None or not math.isfinite(nbytes):
        return "-"
    return f"{nbytes / 1e6:.1f}"


class Span(str):
    """A table cell that spans all remaining columns (a note in place of numbers)."""


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
                 align: Optional[str] = None) -> str:
    """Plain-text table. ``align`` has one ``l``/``r`` per column (default:
    first three left, rest right). A row may end with a :class:`Span`, which
    is printed as-is after the cells before it and takes no column width."""
    ncol = len(headers)
    align = align or ("l" * min(3, ncol) + "r" * max(0, ncol - 3))
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            if isinstance(cell, Span):
                break
            widths[i] = max(widths[i], len(cell))

    def line(cells):
        out = []
        for i, cell in enumerate(cells):
            if isinstance(cell, Span):
                out.append(str(cell))
                break
            out.append(cell.ljust(widths[i]) if align[i] == "l" else cell.rjust(widths[i]))
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def progress_line(done: int, total: int, label: str = "", width: int = 20) -> str:
    """``[#####...............] 5/20 fused 4096x32000 float32``."""
    total = max(total, 1)
    filled = min(width, int(width * done / total))
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label}".rstrip()


class Progress:
    """A one-line progress bar on a stream; silent unless enabled (a TTY and not ``--quiet``)."""

    def __init__(self, total: int, enabled: bool, stream=None):
        self.total, self.done, self.enabled = total, 0, enabled
        self.stream = stream if stream is not None else sys.stderr
        self._width = 0

    def _write(self, text: str) -> None:
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def start(self, label: str) -> None:
        """Show ``label`` as the task now running."""
        if self.enabled:
            self._write(progress_line(self.done, self.total, label))

    def advance(self) -> None:
        self.done += 1

    def close(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


# --------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------

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

    out = {"python": platform.python_version(), "numpy": np.__version__,
           "pyce": getattr(pyce, "__version__", None), "platform": platform.platform(),
           "machine": platform.machine(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count()}
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


def numpy_dtype(name: str):
    """The NumPy dtype for a dtype name; bfloat16 comes from ``ml_dtypes``."""
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise PeerUnavailable("bfloat16 needs ml_dtypes (pip install ml_dtypes)") from None
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def make_problem(shape, dtype_name: str, seed: int = 0):
    """Random logits (standard normal x 2, in the dtype, touched) and int64 targets."""
    n, v = shape
    rng = np.random.default_rng(seed)
    dt = numpy_dtype(dtype_name)
    if dt == np.float64:
        x = rng.standard_normal((n, v))
    else:
        x = rng.standard_normal((n, v), dtype=np.float32)
    x *= 2
    if x.dtype != dt:
        x = x.astype(dt)
    t = rng.integers(0, v, size=n, dtype=np.int64)
    return x, t


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Timing:
    """Best per-call time of ``runs`` runs, each the mean of ``calls`` calls."""
    best: float
    samples: list
    calls: int

    def to_json(self) -> dict:
        return {"best_s": self.best, "samples_s": self.samples, "calls_per_run": self.calls,
                "runs": len(self.samples)}


def time_call(fn: Callable[[], object], *, repeat: int = 5, setup: Optional[Callable] = None,
              warmup: int = 1, min_time: float = 0.02, max_calls: int = 2000,
              budget: float = 30.0) -> Timing:
    """Best-of-``repeat`` per-call time of ``fn()`` in seconds, after ``warmup`` calls.

    ``setup()`` (untimed) runs before every call, e.g. to restore an input an
    in-place call overwrote. A run times ``calls`` calls one by one and takes
    their mean, with ``calls`` chosen from the warm-up so that a run lasts at
    least ``min_time``. Very slow calls get fewer runs so that the whole
    measurement stays within about ``budget`` seconds (at least one run).
    """
    clock = time.perf_counter
    first = None
    for _ in range(max(1, warmup)):
        if setup is not None:
            setup()
        t0 = clock()
        fn()
        first = clock() - t0
    first = max(first, 1e-7)
    calls = int(min(max_calls, max(1, math.ceil(min_time / first))))
    runs = max(1, min(repeat, int(budget / (first * calls))))
    samples = []
    for _ in range(runs):
        total = 0.0
        for _ in range(calls):
            if setup is not None:
                setup()
            t0 = clock()
            fn()
            total += clock() - t0
        samples.append(total / calls)
    return Timing(min(samples), samples, calls)


def time_against_floor(fn: Callable[[], object], floor_fn: Callable[[], object], *,
                       setup: Optional[Callable] = None, rounds: int = 5,
                       min_time: float = 0.02) -> tuple:
    """``(op Timing, floor Timing)``: ``fn`` and its floor probe timed alternately.

    On a shared machine the memory bandwidth drifts as other tenants come and
    go: a floor measured once per shape and an op timed a minute later can
    disagree by tens of percent. Timing each op next to the probe that bounds
    it, round after round, keeps their ratio honest.
    """
    op_samples, floor_samples = [], []
    op = floor = None
    for _ in range(max(1, rounds)):
        floor = time_call(floor_fn, repeat=1, min_time=min_time)
        op = time_call(fn, setup=setup, repeat=1, min_time=min_time)
        floor_samples += floor.samples
        op_samples += op.samples
    return (Timing(min(op_samples), op_samples, op.calls),
            Timing(min(floor_samples), floor_samples, floor.calls))


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


def measure_floors(nbytes: int, *, repeat: int = 5, min_time: float = 0.02,
                   min_runs: int = 10) -> dict:
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
    dst = np.empty_like(src)
    dst.fill(0.0)
    out["copy"] = time_call(lambda: scale(src, dst, 1.0), repeat=repeat, min_time=min_time).best
    dst = None  # free it before the in-place probe
    # Into a new array each call, as a function returning a gradient must: the
    # page faults of first touch included (reported, not used as the floor).
    out["copy_fresh"] = time_call(lambda: scale(src, np.empty_like(src), 1.0), repeat=repeat,
                                  min_time=min_time).best
    out["inplace"] = time_call(lambda: scale(src, src, 1.0), repeat=repeat,
                               min_time=min_time).best
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


def pyce_op(op: str, x: np.ndarray, t: np.ndarray):
    """``(fn, setup, keep)`` timing one pyce op on ``(x, t)``; ``keep`` holds buffers alive."""
    import pyce

    if op == "forward":
        return (lambda: pyce.cross_entropy(x, t)), None, None
    if op == "fused":
        return (lambda: pyce.cross_entropy_with_grad(x, t)), None, None
    if op == "backward":
        return (lambda: pyce.cross_entropy_backward(x, t)), None, None
    if op == "logsumexp":
        return (lambda: pyce.logsumexp(x, axis=-1)), None, None
    if op == "fused_out":
        # A training loop reuses its gradient buffer: no page faults of fresh memory.
        out = np.zeros_like(x)
        return (lambda: pyce.cross_entropy_with_grad(x, t, out=out)), None, out
    if op == "inplace":
        buf = x.copy()
        return ((lambda: pyce.cross_entropy_with_grad(buf, t, inplace=True)),
                (lambda: np.copyto(buf, x)), buf)
    raise ValueError(f"unknown op {op!r}")


def in_cache_rows(shape, itemsize: int, threads: int) -> int:
    """Rows of the slices ``measure_in_cache`` times: about ``IN_CACHE_BYTES`` of
    logits, and at least 4 per thread, so that the kernel shares whole rows out
    among its threads as it does on the full problem (never more than all rows)."""
    rows, cols = shape[0], int(np.prod(shape[1:]))
    k = max(4 * threads, IN_CACHE_BYTES // max(1, cols * itemsize))
    return int(min(rows, k))


def measure_in_cache(op: str, x: np.ndarray, t: np.ndarray, *, threads: int, repeat: int = 5,
                     min_time: float = 0.02) -> tuple:
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


def check_pyce_support(op: str, dtype_name: str) -> Optional[str]:
    """None when this pyce build runs ``op`` on ``dtype_name`` logits, else why not.

    Tried on a tiny (2, 8) problem so that an unsupported dtype costs nothing.
    """
    try:
        x, t = make_problem((2, 8), dtype_name)
    except PeerUnavailable as exc:
        return str(exc)
    fn, setup, _ = pyce_op(op, x, t)
    try:
        if setup:
            setup()
        fn()
    except TypeError as exc:
        return f"{UNSUPPORTED} (TypeError: {exc})"
    except Exception as exc:  # a failure, not a missing feature: still report it
        return f"error: {type(exc).__name__}: {exc}"
    return None


def _torch_tensor(torch, x: np.ndarray):
    """A torch tensor sharing ``x``'s memory (bfloat16 via an int16 view)."""
    if x.dtype.name == "bfloat16":
        return torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(x)


def peer_op(peer: str, op: str, x: np.ndarray, t: np.ndarray):
    """``(fn, setup)`` timing ``peer``'s version of ``op`` (see ``PEER_OP``).

    Raises :class:`PeerUnavailable` when the peer is not installed or has no such op.
    """
    if peer == "numpy":
        import pyce.reference as ref

        fns = {"forward": lambda: ref.cross_entropy(x, t),
               "fused": lambda: ref.cross_entropy_with_grad(x, t),
               "backward": lambda: ref.cross_entropy_backward(x, t),
               "logsumexp": lambda: ref.logsumexp(x, axis=-1)}
        return fns[op], None

    if peer == "torch":
        torch = _optional("torch")
        if torch is None:
            raise PeerUnavailable("torch not installed")
        import torch.nn.functional as F

        xt, tt = _torch_tensor(torch, x), torch.from_numpy(t)
        if op == "forward":
            def fwd():
                with torch.no_grad():
                    return F.cross_entropy(xt, tt)
            return fwd, None
        if op == "logsumexp":
            def lse():
                with torch.no_grad():
                    return torch.logsumexp(xt, dim=-1)
            return lse, None
        xg = xt.detach().requires_grad_(True)

        def clear():
            xg.grad = None  # as optimizer.zero_grad(set_to_none=True)

        if op == "fused":
            def fused():
                F.cross_entropy(xg, tt).backward()
                return xg.grad
            return fused, clear
        if op == "backward":
            state = {}

            def forward_untimed():
                clear()
                state["loss"] = F.cross_entropy(xg, tt)

            def backward():
                state.pop("loss").backward()
                return xg.grad
            return backward, forward_untimed
        raise PeerUnavailable(f"no torch op for {op}")

    if peer == "jax":
        jax = _optional("jax")
        if jax is None:
            raise PeerUnavailable("jax not installed")
        import jax.numpy as jnp

        xj, tj = jnp.asarray(x), jnp.asarray(t.astype(np.int32))

        def loss(z, tgt):
            logp = jax.nn.log_softmax(z, axis=-1)
            picked = jnp.take_along_axis(logp, tgt[:, None], axis=-1)
            return -jnp.mean(picked.astype(jnp.float32))

        if op == "forward":
            f = jax.jit(loss)
        elif op == "fused":
            f = jax.jit(jax.value_and_grad(loss))
        elif op == "backward":
            f = jax.jit(jax.grad(loss))
        elif op == "logsumexp":
            def f_raw(z, tgt):
                return jax.nn.logsumexp(z, axis=-1)
            f = jax.jit(f_raw)
        else:
            raise PeerUnavailable(f"no jax op for {op}")
        return (lambda: jax.block_until_ready(f(xj, tj))), None

    raise ValueError(f"unknown peer {peer!r}")


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

MEMORY_KINDS = ("pyce forward", "pyce fused", "pyce fused inplace", "pyce backward",
                "torch forward", "torch forward+backward", "jax forward+backward",
                "numpy forward+backward")


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
        op = {"pyce forward": "forward", "pyce fused": "fused",
              "pyce fused inplace": "inplace", "pyce backward": "backward"}[kind]
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
    out = {"kind": kind, "rss_before_kb": rss0, "hwm_before_kb": hwm0, "hwm_after_kb": hwm1,
           "peak_reset": reset_ok, "tracemalloc_peak_bytes": traced_peak,
           "logits_bytes": int(x.nbytes)}
    print("PYCE-MEMORY " + json.dumps(out))


def measure_memory(kind: str, shape, dtype_name: str, threads: int, timeout: float = 600) -> dict:
    """Peak extra memory of one computation, measured in a fresh subprocess.

    Extra = peak RSS during the call (``VmHWM``, reset just before it) minus the
    RSS just before it: everything the call allocates and touches, including a
    returned gradient. Also the peak of NumPy's allocations seen by
    ``tracemalloc`` (NumPy reports its buffers to it; torch and JAX do not).
    Both in bytes and as a multiple of the logits' size.
    """
    import pyce

    # The child imports the very pyce this process runs (not, say, a source
    # checkout in the working directory): its parent directory goes first.
    root = os.path.dirname(os.path.dirname(os.path.abspath(pyce.__file__)))
    code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); import pyce.bench as b; "
            "b._memory_child(sys.argv[1:])")
    cmd = [sys.executable, "-c", code, root, kind, str(shape[0]), str(shape[1]), dtype_name,
           str(threads)]
    res = {"kind": kind, "shape": list(shape), "dtype": dtype_name}
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
    data = json.loads(line[len("PYCE-MEMORY "):])
    res.update(data)
    nbytes = data["logits_bytes"]
    if data["hwm_after_kb"] is not None and data["rss_before_kb"] is not None:
        base = data["rss_before_kb"] if data["peak_reset"] else max(data["rss_before_kb"],
                                                                    data["hwm_before_kb"])
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

def thread_counts(max_threads: int) -> list:
    """1..N when N <= 8, else powers of two up to N plus N itself."""
    if max_threads <= 8:
        return list(range(1, max_threads + 1))
    counts, k = [], 1
    while k < max_threads:
        counts.append(k)
        k *= 2
    return counts + [max_threads]


def measure_scaling(shape, dtype_name: str, ops: Sequence[str], counts: Sequence[int], *,
                    repeat: int = 5, min_time: float = 0.02, progress: Optional[Progress] = None,
                    problem=None) -> list:
    """Time pyce's ``ops`` at each thread count in ``counts`` with the floor re-measured at
    that count; restores the thread count it found. One dict per (op, threads)."""
    import pyce

    x, t = problem if problem is not None else make_problem(shape, dtype_name)
    before = pyce.get_num_threads()
    rows = []
    try:
        for n in counts:
            set_threads(n)
            floors = measure_floors(x.nbytes, repeat=repeat, min_time=min_time)
            bw = bandwidths(floors)
            for op in ops:
                if progress:
                    progress.start(f"scaling {op} {shape_str(shape)} {dtype_name} {n} thr")
                fn, setup, keep = pyce_op(op, x, t)
                tm = time_call(fn, setup=setup, repeat=repeat, min_time=min_time)
                del keep
                kind = FLOOR_KIND[op]
                traffic = TRAFFIC[kind] * x.nbytes
                rows.append({"shape": list(shape), "dtype": dtype_name, "op": op, "threads": n,
                             "time": tm.to_json(), "floor_kind": kind, "floor_s": floors[kind],
                             "stream_gbs": bw[kind], "gbs": traffic / tm.best / 1e9,
                             "fraction_of_stream": floors[kind] / tm.best})
                if progress:
                    progress.advance()
    finally:
        set_threads(before)
    base = {r["op"]: r["time"]["best_s"] for r in rows if r["threads"] == counts[0]}
    for r in rows:
        r["speedup_vs_1"] = base[r["op"]] / r["time"]["best_s"]
    return rows


# --------------------------------------------------------------------------
# The main benchmark
# --------------------------------------------------------------------------

def run_benchmark(shapes, dtypes, ops, peers, *, repeat=5, min_time=0.02,
                  reference_limit=REFERENCE_LIMIT, progress: Optional[Progress] = None,
                  floor_runs: int = 10, peer_ops: Optional[Sequence[str]] = None) -> list:
    """Time every (shape, dtype, op) for pyce and its peers; one dict per row.

    Two passes: pyce on every shape first, then the peers. PyTorch's OpenMP
    workers and JAX's thread pool keep cores busy for a while after a call, and
    on a machine with few cores that would slow whatever is timed next; so no
    pyce measurement follows a peer's. Peers are measured once per (shape,
    dtype, peer computation) and shared by the pyce ops compared with it (fused,
    fused out= and fused inplace share the peer's forward+backward).
    ``peer_ops`` limits which peer computations run (default: all).
    """
    peer_ops = set(PEER_OP.values()) if peer_ops is None else set(peer_ops)
    cases = []  # (shape, dtype_name, rows)
    for shape in shapes:
        for dtype_name in dtypes:
            cases.append((shape, dtype_name, _time_pyce(shape, dtype_name, ops, repeat=repeat,
                                                        min_time=min_time, floor_runs=floor_runs,
                                                        progress=progress)))
    for shape, dtype_name, rows in cases:
        if any(row.get("pyce") for row in rows):
            _time_peers(shape, dtype_name, ops, rows, peers, peer_ops, repeat=repeat,
                        min_time=min_time, reference_limit=reference_limit, progress=progress)
        elif progress:
            compared = {PEER_OP[o] for o in ops} & peer_ops
            for _ in range(len(peers) * len(compared)):
                progress.advance()
    return [row for _, _, rows in cases for row in rows]


def _time_pyce(shape, dtype_name, ops, *, repeat, min_time, floor_runs, progress) -> list:
    """One row per op: pyce's time, and its floor probe timed alternately with it."""
    support = {op: check_pyce_support(op, dtype_name) for op in ops}
    if all(support.values()):
        if progress:
            for _ in ops:
                progress.advance()
        return [_row(shape, dtype_name, op, status=support[op]) for op in ops]
    x, t = make_problem(shape, dtype_name)
    import pyce

    threads = pyce.get_num_threads()
    if progress:
        progress.start(f"floor {shape_str(shape)} {dtype_name}")
    floors = measure_floors(x.nbytes, repeat=repeat, min_time=min_time, min_runs=floor_runs)
    # The probes each op is timed against, on buffers of the logits' size.
    read, scale, _ = stream_probes()
    probe_src, probe_dst = _probe_array(x.nbytes), _probe_array(x.nbytes)
    floor_fns = {"read": lambda: read(probe_src),
                 "copy": lambda: scale(probe_src, probe_dst, 1.0),
                 "inplace": lambda: scale(probe_src, probe_src, 1.0)}
    rows = []
    for op in ops:
        row = _row(shape, dtype_name, op, status=support[op])
        row["bytes"] = TRAFFIC[FLOOR_KIND[op]] * x.nbytes
        row["floor_kind"] = FLOOR_KIND[op]
        row["floor_s"] = floors[FLOOR_KIND[op]]
        row["floor_source"] = floors["source"]
        if FLOOR_KIND[op] == "copy":
            row["floor_fresh_s"] = floors["copy_fresh"]
        if progress:
            progress.start(f"{OP_LABEL[op]} {shape_str(shape)} {dtype_name} (pyce)")
        if support[op] is None:
            try:
                fn, setup, keep = pyce_op(op, x, t)
                tm, floor_tm = time_against_floor(fn, floor_fns[FLOOR_KIND[op]], setup=setup,
                                                  rounds=repeat, min_time=min_time)
                del keep
                row["floor_s"] = floor_tm.best
                row["floor_samples_s"] = floor_tm.samples
                row["pyce"] = tm.to_json()
                row["gbs"] = row["bytes"] / tm.best / 1e9
                row["x_floor"] = tm.best / row["floor_s"]
                row["in_cache_s"], row["in_cache_rows"] = measure_in_cache(
                    op, x, t, threads=threads, repeat=repeat, min_time=min_time)
            except Exception as exc:
                row["status"] = f"error: {type(exc).__name__}: {exc}"
        if progress:
            progress.advance()
        rows.append(row)
    return rows


def _time_peers(shape, dtype_name, ops, rows, peers, peer_ops, *, repeat, min_time,
                reference_limit, progress) -> None:
    """Time the peers on the same problem and add them (and pyce's speed-up) to ``rows``."""
    x, t = make_problem(shape, dtype_name)
    peer_cache = {}
    for op, row in zip(ops, rows):
        for peer in peers:
            key = (peer, PEER_OP[op])
            if PEER_OP[op] not in peer_ops:
                peer_cache[key] = {"status": "skipped: --quick compares peers on "
                                             "forward and fused only"}
            if key not in peer_cache:
                if progress:
                    progress.start(f"{OP_LABEL[PEER_OP[op]]} {shape_str(shape)} {dtype_name} ({peer})")
                peer_cache[key] = _time_peer(peer, PEER_OP[op], x, t, repeat=repeat,
                                             min_time=min_time, reference_limit=reference_limit)
                if progress:
                    progress.advance()
            entry = dict(peer_cache[key])
            if entry.get("status") == "ok" and row.get("pyce"):
                entry["speedup"] = entry["best_s"] / row["pyce"]["best_s"]
            row["peers"][peer] = entry
    if x.nbytes >= (64 << 20):  # autograd graphs / jax buffers in cycles; gc is slow with torch loaded
        del x, t, peer_cache
        gc.collect()


def _row(shape, dtype_name, op, status=None) -> dict:
    return {"shape": list(shape), "dtype": dtype_name, "op": op, "op_label": OP_LABEL[op],
            "status": status or "ok", "pyce": None, "peers": {}}


def _time_peer(peer, op, x, t, *, repeat, min_time, reference_limit) -> dict:
    """Time one peer computation; a dict with ``status`` 'ok', 'skipped: ...' or 'n/a: ...'."""
    if peer == "numpy" and reference_limit > 0 and x.size > reference_limit:
        return {"status": f"skipped: above {reference_limit / 1e6:g}M elements "
                          "(--reference-limit 0 runs it)"}
    try:
        fn, setup = peer_op(peer, op, x, t)
        tm = time_call(fn, setup=setup, repeat=repeat, min_time=min_time)
    except PeerUnavailable as exc:
        return {"status": f"n/a: {exc}"}
    except Exception as exc:
        return {"status": f"n/a: {type(exc).__name__}: {str(exc)[:200]}"}
    out = {"status": "ok", "op": op}
    out.update(tm.to_json())
    return out


def available_peers(requested: Sequence[str]) -> tuple:
    """``(usable peers, {peer: why not})`` for the requested peers."""
    usable, missing = [], {}
    for peer in requested:
        if peer == "numpy" or _optional(peer) is not None:
            usable.append(peer)
        else:
            missing[peer] = "not installed"
    return usable, missing


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------

def results_table(results: Sequence[dict], peers: Sequence[str]) -> str:
    """The main table: one line per (shape, dtype, op)."""
    headers = ["shape", "dtype", "op", "pyce ms", "GB/s", "floor ms", "x floor", "in-cache ms"]
    for p in peers:
        headers += [f"{p} ms", f"vs {p}"]
    rows = []
    for r in results:
        cells = [shape_str(r["shape"]), r["dtype"], r["op_label"]]
        if r["status"] != "ok":
            rows.append(cells + [Span(r["status"])])
            continue
        best = r["pyce"]["best_s"]
        cells += [fmt_ms(best), fmt_gbs(r["gbs"]), fmt_ms(r["floor_s"]), fmt_ratio(r["x_floor"]),
                  fmt_ms(r.get("in_cache_s"))]
        for p in peers:
            e = r["peers"].get(p, {"status": "n/a"})
            if e.get("status") == "ok":
                cells += [fmt_ms(e["best_s"]), fmt_ratio(e.get("speedup"))]
            else:
                word = e.get("status", "n/a").split(":")[0]
                cells += [word, ""]
        rows.append(cells)
    return render_table(headers, rows)


def table_notes(results: Sequence[dict], peers: Sequence[str], missing: dict) -> list:
    """Footnotes: what the columns mean, and why a peer cell is empty."""
    notes = ["x floor = pyce time / time of pyce's stream probe moving the same bytes "
             "(read: forward, logsumexp; read+write: fused, backward; in place: fused inplace).",
             "GB/s counts the bytes the op must move (logits read, plus gradient written).",
             f"in-cache ms = the same op on its first R and 2R rows (R: about "
             f"{IN_CACHE_BYTES >> 20} MB of logits, at least 4 rows per thread), each called over "
             "and over so that it stays in cache; the cost of the R extra rows, scaled to all "
             "rows: the time the op's arithmetic takes without waiting for memory. Where it "
             "exceeds floor ms, the op is bound by compute on this machine and x floor cannot "
             "reach 1.",
             "vs PEER = PEER time / pyce time (>1: pyce faster). fused inplace is compared "
             "with the peer's forward+backward; torch backward = loss.backward() alone; "
             "jax backward = jit(grad(loss)).",
             "fused and backward return a new gradient array; from the second call of a "
             "shape on its memory comes from pyce's buffer cache, already mapped (run with "
             "PYCE_CACHE_MB=0 to see every call pay the first-touch page faults instead)."]
    by_status = {}  # status -> {peer: [where]}, in first-seen order
    for r in results:
        for p, e in r["peers"].items():
            s = e.get("status", "ok")
            if s != "ok":
                where = by_status.setdefault(s, {}).setdefault(p, [])
                key = f"{shape_str(r['shape'])} {r['dtype']}"
                if key not in where:
                    where.append(key)
    for s, who in by_status.items():
        places = sorted({w for ws in who.values() for w in ws}, key=lambda w: w)
        notes.append(f"{', '.join(who)}: {s} ({'; '.join(places)})")
    for p, why in missing.items():
        notes.append(f"{p}: {why}, not compared")
    return notes


def memory_table(rows: Sequence[dict]) -> str:
    headers = ["shape", "dtype", "what", "extra peak RSS MB", "x logits",
               "tracemalloc MB", "x logits"]
    out = []
    for r in rows:
        cells = [shape_str(r["shape"]), r["dtype"], r["kind"]]
        if r.get("status") != "ok":
            out.append(cells + [Span(r.get("status", "?"))])
            continue
        out.append(cells + [fmt_mb(r["extra_rss_bytes"]), fmt_ratio(r["extra_rss_x"]),
                            fmt_mb(r["tracemalloc_peak_bytes"]), fmt_ratio(r["tracemalloc_x"])])
    return render_table(headers, out)


def scaling_table(rows: Sequence[dict]) -> str:
    headers = ["shape", "dtype", "op", "threads", "ms", "speed-up", "GB/s",
               "stream GB/s", "of stream"]
    out = []
    for r in rows:
        out.append([shape_str(r["shape"]), r["dtype"], OP_LABEL[r["op"]], str(r["threads"]),
                    fmt_ms(r["time"]["best_s"]), fmt_ratio(r["speedup_vs_1"]), fmt_gbs(r["gbs"]),
                    fmt_gbs(r["stream_gbs"]), f"{100 * r['fraction_of_stream']:.0f}%"])
    return render_table(headers, out)


def header_lines(info: dict, ver: dict, bw: dict, threads: int, exp_ns=None) -> list:
    """The lines printed above the tables: machine, build, bandwidth, exp throughput."""
    isa = info.get("isa")
    compute = []
    if exp_ns:
        compute = [f"compute: the sweeps' exp takes {exp_ns:.3f} ns per element on one thread "
                   f"(L2-resident), i.e. {1 / exp_ns:.1f} G exps/s/thread; one exp per logit "
                   f"bounds any kernel at {threads / exp_ns:.1f} G logits/s on {threads} threads"]
    return [
        f"pyce {ver['pyce']}  isa={isa} openmp={info.get('openmp')} threads={threads}  "
        f"({ver['cpu_model'] or ver['machine']}, {ver['cpu_count']} logical CPUs)",
        "installed: " + ", ".join(f"{k} {ver[k]}" for k in ("numpy", "torch", "jax") if ver[k])
        + (f"; torch threads set to {threads}" if ver.get("torch") else "")
        + ("; jax uses its own thread pool" if ver.get("jax") else ""),
        f"streaming bandwidth ({fmt_mb(bw['nbytes'])} MB buffer, {bw['source']}): "
        f"read {fmt_gbs(bw['read'])} GB/s, read+write {fmt_gbs(bw['copy'])} GB/s, "
        f"in place {fmt_gbs(bw['inplace'])} GB/s (both directions counted); read+write into "
        f"a new array each call (page faults included) {fmt_gbs(bw.get('copy_fresh'))} GB/s",
    ] + compute


def format_report(report: dict) -> str:
    """Everything ``pyce bench`` prints, from the report it writes with ``--json``."""
    s = report["settings"]
    lines = header_lines(report["cpu_info"], report["versions"], report["bandwidth_gbs"],
                         report["threads"], report.get("exp_ns_per_element"))
    lines += ["", results_table(report["results"], s["peers"]), ""]
    lines += ["  " + n for n in table_notes(report["results"], s["peers"], s["missing_peers"])]
    if "scaling" in report:
        lines += ["", f"Thread scaling (1..{s['max_threads']} threads); 'of stream' = stream-probe "
                  "time / pyce time, both at that thread count:", scaling_table(report["scaling"])]
    if "memory" in report:
        lines += ["", "Peak extra memory of one call, each in a fresh process (RSS: VmHWM minus "
                  "the RSS before the call, returned gradient included; tracemalloc: NumPy's "
                  "allocations only):", memory_table(report["memory"])]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------

def plot_results(path: str, results: Sequence[dict], peers: Sequence[str],
                 scaling: Sequence[dict] = ()) -> None:
    """Bar charts of x floor and of the speed-up over each peer (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install matplotlib "
                           "(or pip install 'pyce[bench]')") from None
    ok = [r for r in results if r["status"] == "ok"]
    labels = [f"{shape_str(r['shape'])}\n{r['dtype']}\n{r['op_label']}" for r in ok]
    npanel = 3 if scaling else 2
    fig, axes = plt.subplots(npanel, 1, figsize=(max(8, 0.7 * len(ok) + 2), 4.5 * npanel))
    pos = np.arange(len(ok))
    ax = axes[0]
    ax.bar(pos, [r["x_floor"] for r in ok], color="tab:blue")
    ax.axhline(1.0, color="k", lw=1, ls="--", label="streaming floor")
    ax.set_yscale("log")
    ax.set_ylabel("pyce time / floor (log)")
    ax.set_title("pyce vs the memory-bandwidth floor (lower is better)")
    ax.set_xticks(pos, labels, fontsize=7)
    ax.legend()
    ax = axes[1]
    width = 0.8 / max(1, len(peers))
    for i, p in enumerate(peers):
        vals = [r["peers"].get(p, {}).get("speedup", np.nan) for r in ok]
        ax.bar(pos + (i - (len(peers) - 1) / 2) * width, vals, width, label=f"vs {p}")
    ax.axhline(1.0, color="k", lw=1, ls="--")
    ax.set_yscale("log")
    ax.set_ylabel("speed-up (peer time / pyce time)")
    ax.set_title("pyce speed-up over its peers (higher is better)")
    ax.set_xticks(pos, labels, fontsize=7)
    if peers:
        ax.legend()
    if scaling:
        ax = axes[2]
        keys = sorted({(shape_str(r["shape"]), r["dtype"], r["op"]) for r in scaling})
        for key in keys:
            pts = [r for r in scaling if (shape_str(r["shape"]), r["dtype"], r["op"]) == key]
            ax.plot([r["threads"] for r in pts], [r["gbs"] for r in pts], marker="o",
                    label=" ".join(key))
            ax.plot([r["threads"] for r in pts], [r["stream_gbs"] for r in pts], ls=":",
                    color=ax.lines[-1].get_color())
        ax.set_xticks(sorted({r["threads"] for r in scaling}))
        ax.set_xlabel("threads")
        ax.set_ylabel("GB/s (dotted: stream probe)")
        ax.set_title("thread scaling")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def build_parser(prog: str = "pyce bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Time pyce's cross-entropy kernels against the memory-bandwidth floor "
                    "(measured in the same run) and against the NumPy reference, PyTorch and "
                    "JAX when installed. Each figure is the best of --repeat runs after a "
                    "warm-up.",
        epilog="Example: pyce bench --shapes 4096x32000 --dtypes float32 --memory --scaling "
               "--json out.json --plot out.png")
    p.add_argument("--shapes", help="comma-separated ROWSxCLASSES (default: "
                   + ",".join(map(shape_str, DEFAULT_SHAPES)) + ")")
    p.add_argument("--dtypes", help="comma-separated, from " + ", ".join(KNOWN_DTYPES)
                   + " (default: float32,bfloat16)")
    p.add_argument("--ops", default=",".join(OPS),
                   help="comma-separated, from " + ", ".join(OPS) + " (default: all)")
    p.add_argument("--peers", default=",".join(PEERS),
                   help="comma-separated, from numpy (the float64 reference), torch, jax "
                        "(default: those installed)")
    p.add_argument("--no-peers", action="store_true", help="time pyce and the floor only")
    p.add_argument("--threads", type=int, help="threads for pyce and torch (default: pyce's)")
    p.add_argument("--repeat", type=int, default=None, help="runs per figure; the best is "
                   "reported (default 5; 3 with --quick)")
    p.add_argument("--min-time", type=float, default=None,
                   help="a run of a short call averages calls for at least this many seconds "
                        "(default 0.02; 0.005 with --quick)")
    p.add_argument("--reference-limit", type=float, default=REFERENCE_LIMIT,
                   help="skip the NumPy reference above this many elements, it is slow and "
                        "needs several float64 copies (default 50e6; 0: never skip)")
    p.add_argument("--quick", action="store_true",
                   help="a fast smoke run: small shapes (" + ",".join(map(shape_str, QUICK_SHAPES))
                   + "), 3 runs, peers on forward and fused only")
    p.add_argument("--memory", action="store_true",
                   help="also measure the peak extra memory of pyce fused / fused inplace / "
                        "PyTorch forward+backward (one subprocess per measurement)")
    p.add_argument("--scaling", action="store_true",
                   help="also time pyce at 1..N threads (N = CPU count), each against the "
                        "streaming bandwidth at that thread count")
    p.add_argument("--max-threads", type=int, default=None,
                   help="largest thread count for --scaling (default: os.cpu_count())")
    p.add_argument("--json", metavar="FILE", help="write every raw number to FILE")
    p.add_argument("--plot", metavar="FILE.png", help="draw the results (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None, prog: str = "pyce bench") -> int:
    """Entry point of ``pyce bench`` and ``python -m pyce.bench``; returns the exit status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        shapes = ([parse_shape(s) for s in args.shapes.split(",") if s.strip()] if args.shapes
                  else list(QUICK_SHAPES if args.quick else DEFAULT_SHAPES))
        if not shapes:
            raise ValueError("--shapes is empty")
        dtypes = parse_list(args.dtypes or ",".join(DEFAULT_DTYPES), KNOWN_DTYPES, "dtypes")
        ops = parse_list(args.ops, OPS, "ops")
        requested = [] if args.no_peers else parse_list(args.peers, PEERS, "peers")
    except ValueError as exc:
        parser.error(str(exc))
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.plot:  # fail before the long run, not after it
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install matplotlib "
                         "(or pip install 'pyce[bench]')")
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 5)
    if repeat < 1:
        parser.error("--repeat must be >= 1")
    reference_limit = int(args.reference_limit)
    if args.min_time is None:
        args.min_time = 0.005 if args.quick else 0.02

    import pyce

    peers, missing = available_peers(requested)
    if args.threads is not None:
        set_threads(args.threads)
    elif "torch" in peers:
        set_threads(pyce.get_num_threads())  # torch on the same thread count as pyce
    threads = pyce.get_num_threads()

    out = sys.stdout
    ver = versions()
    info = pyce.cpu_info()
    bw_bytes = (16 << 20) if args.quick else (512 << 20)
    floor_runs = repeat if args.quick else 10
    bw_floors = measure_floors(bw_bytes, repeat=repeat, min_time=args.min_time,
                               min_runs=floor_runs)
    bw = dict(bandwidths(bw_floors), nbytes=bw_bytes, source=bw_floors["source"])

    compared = {PEER_OP[o] for o in ops} & ({"forward", "fused"} if args.quick else set(OPS))
    n_tasks = len(shapes) * len(dtypes) * (len(ops) + len(compared) * len(peers))
    max_threads = args.max_threads or os.cpu_count() or 1
    counts = thread_counts(max_threads)
    if args.scaling:
        n_tasks += len(shapes) * len(dtypes) * len(ops) * len(counts)
    if args.memory:
        n_tasks += sum(len(memory_kinds(peers, sh, reference_limit)) for sh in shapes) * len(dtypes)
    progress = Progress(n_tasks, enabled=sys.stderr.isatty() and not args.quiet)

    report = {"schema": 1, "command": ["pyce", "bench"] + list(argv if argv is not None
                                                              else sys.argv[1:]),
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": ver, "cpu_info": info,
              "threads": threads,
              "settings": {"shapes": [list(s) for s in shapes], "dtypes": dtypes, "ops": ops,
                           "peers": peers, "missing_peers": missing, "repeat": repeat,
                           "min_time_s": args.min_time, "reference_limit": reference_limit,
                           "max_threads": max_threads},
              "bandwidth_gbs": bw,
              "exp_ns_per_element": measure_exp_throughput(repeat=repeat)}
    try:
        results = run_benchmark(shapes, dtypes, ops, peers, repeat=repeat,
                                min_time=args.min_time, reference_limit=reference_limit,
                                progress=progress, floor_runs=floor_runs,
                                peer_ops=("forward", "fused") if args.quick else None)
        report["results"] = results
        scaling = []
        if args.scaling:
            for shape in shapes:
                for dtype_name in dtypes:
                    ok_ops = [o for o in ops if check_pyce_support(o, dtype_name) is None]
                    if ok_ops:
                        scaling += measure_scaling(shape, dtype_name, ok_ops, counts,
                                                   repeat=repeat, min_time=args.min_time,
                                                   progress=progress)
            report["scaling"] = scaling
        memory = []
        if args.memory:
            for shape in shapes:
                for dtype_name in dtypes:
                    why = check_pyce_support("fused", dtype_name)
                    for kind in memory_kinds(peers, shape, reference_limit):
                        progress.start(f"memory {kind} {shape_str(shape)} {dtype_name}")
                        if why is not None and kind.startswith("pyce"):
                            memory.append({"kind": kind, "shape": list(shape),
                                           "dtype": dtype_name, "status": why})
                        elif why is None:
                            memory.append(measure_memory(kind, shape, dtype_name, threads))
                        progress.advance()
            report["memory"] = memory
    finally:
        progress.close()

    if args.json:  # first: the raw numbers survive a failure to print or plot
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=_json_default)
    print(format_report(report), file=out)
    if args.json:
        print(f"\nwrote {args.json}", file=out)
    if args.plot:
        plot_results(args.plot, results, peers, report.get("scaling", ()))
        print(f"wrote {args.plot}", file=out)
    return 0


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    return str(obj)


if __name__ == "__main__":
    sys.exit(main(prog="python -m pyce.bench"))
