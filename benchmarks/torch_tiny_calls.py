"""Per-call cost of pyce.torch.cross_entropy against torch.nn.functional.cross_entropy.

At small shapes (64 x 10) a loss step is all overhead: autograd, tensor <-> array
views, argument checks. This times forward + ``loss.backward()`` (with the input's
``.grad`` set to None first, as ``optimizer.zero_grad()`` does) and forward
alone under ``torch.no_grad()``, interleaving the two implementations batch by
batch so that both see the same machine load, and prints the medians and their
ratio in wall-clock time and in this thread's CPU time (which the load of other
processes on a shared machine does not inflate). The last columns time an
autograd.Function that does nothing: the floor of any Function-based loss.

    python benchmarks/torch_tiny_calls.py [--shapes 64x10,64x1000] [--calls 4000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import pyce.torch
from pyce.bench.tiny_calls import nothing_function

# The least a Python autograd.Function costs (a 0-d loss forward, a fresh zero
# gradient backward): no cross-entropy built on torch.autograd.Function can be
# cheaper; it bounds the speed-up over PyTorch at tiny shapes. The same floor as
# `pyce bench --suite tiny-calls`.
nothing = nothing_function(torch).apply


def fwd_bwd(fn, x, t):
    def step():
        x.grad = None
        fn(x, t).backward()

    return step


def fwd_only(fn, x, t):
    def step():
        with torch.no_grad():
            fn(x, t)

    return step


def interleaved_medians(steps, calls, batch=50):
    """Median microseconds per call of each step: the steps take turns, ``batch`` calls
    at a time, until each has made ``calls`` calls. Returns (wall, cpu) medians; cpu
    is this thread's CPU time, which other processes' load does not inflate (the
    machine is shared)."""
    for step in steps:  # warm-up
        for _ in range(200):
            step()
    wall = [[] for _ in steps]
    cpu = [[] for _ in steps]
    for _ in range(max(1, calls // batch)):
        for step, w, c in zip(steps, wall, cpu):
            w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            for _ in range(batch):
                step()
            c.append((time.thread_time_ns() - c0) / batch)
            w.append((time.perf_counter_ns() - w0) / batch)
    return ([statistics.median(v) / 1e3 for v in wall], [statistics.median(v) / 1e3 for v in cpu])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="64x10,64x1000,1024x1000")
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    dtype = getattr(torch, args.dtype)
    print(
        f"torch {torch.__version__}, {args.dtype}, torch threads {args.torch_threads}, "
        f"pyce threads {pyce.get_num_threads()}, medians of {args.calls} interleaved calls"
    )
    print(
        f"{'shape':>10} {'what':>8} | {'pyce us':>8} {'torch us':>8} {'ratio':>6} (wall) |"
        f" {'pyce us':>8} {'torch us':>8} {'ratio':>6} (thread CPU) |"
        f" {'empty Function us':>8} {'torch/it':>6}"
    )
    for spec in args.shapes.split(","):
        n, c = (int(v) for v in spec.split("x"))
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, c, generator=g).to(dtype).requires_grad_(True)
        t = torch.randint(0, c, (n,), generator=g)
        for what, make in (("fwd+bwd", fwd_bwd), ("fwd", fwd_only)):
            (ours, theirs, least), (ours_cpu, theirs_cpu, least_cpu) = interleaved_medians(
                [make(pyce.torch.cross_entropy, x, t), make(F.cross_entropy, x, t), make(nothing, x, t)],
                args.calls,
            )
            print(
                f"{spec:>10} {what:>8} | {ours:8.2f} {theirs:8.2f} {theirs / ours:5.2f}x        |"
                f" {ours_cpu:8.2f} {theirs_cpu:8.2f} {theirs_cpu / ours_cpu:5.2f}x"
                f"        | {least_cpu:8.2f} {theirs_cpu / least_cpu:5.2f}x"
            )


if __name__ == "__main__":
    main()
