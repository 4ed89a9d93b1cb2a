"""Cost model of a vocabulary-parallel LM-head step (pyce.torch.distributed) on this machine.

One training step of the head -- loss, grad_input, grad_W (and nothing of
size N x V) -- at (N, D, V) = (4096, 512, 128256) float32 by default, with the
vocabulary split over R = 1, 2 and 4 processes (gloo on 127.0.0.1), against
the same step without splitting (``pyce.torch.linear_cross_entropy`` in one
process). Every process runs on the same machine, so the ranks share its
cores: this is a cost model (what splitting adds: the exchanges, their
waits, the smaller GEMMs' efficiency), not a speed-up. The threads are the
machine's cores divided among the ranks (at least 1 each).

Per step it reports: the wall time (the slowest rank, median of the timed
steps), the CPU time of all ranks together (the work done, whatever share
of a busy machine the processes got), the time each rank spends inside collectives (the exchange itself
and waiting for the other ranks), and the bytes each rank sends, from the
payloads the calls pass (gloo's ring all-gather: (R - 1) x the payload;
ring all-reduce: 2 (R - 1) / R x the payload).

    python benchmarks/vocab_parallel.py                      # about 4 minutes on 2 cores
    python benchmarks/vocab_parallel.py --rows 1024 --ranks 1 2 --steps 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import statistics
import tempfile
import time


class _CountingDist:
    """torch.distributed with the collectives the module calls counted and timed."""

    def __init__(self, dist, world):
        self._dist, self.world = dist, world
        self.sent = 0.0
        self.seconds = 0.0
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self._dist, name)

    def _timed(self, fn, *args, **kwargs):
        began = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds += time.perf_counter() - began
        self.calls += 1
        return out

    def all_gather(self, parts, tensor, group=None):
        self.sent += (self.world - 1) * tensor.numel() * tensor.element_size()
        return self._timed(self._dist.all_gather, parts, tensor, group=group)

    def all_reduce(self, tensor, op=None, group=None):
        self.sent += 2 * (self.world - 1) / self.world * tensor.numel() * tensor.element_size()
        return self._timed(self._dist.all_reduce, tensor, op=op, group=group)


def _head(V, D):
    import torch

    return torch.empty(V, D).normal_(0.0, 0.02, generator=torch.Generator().manual_seed(1))


def _rank_main(rank, world, port, out_dir, args):
    import torch
    import torch.distributed as dist

    import pyce
    import pyce.torch
    import pyce.torch.distributed as vp

    threads = max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(threads)
    pyce.set_num_threads(threads)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=600),
    )
    counter = _CountingDist(dist, world)
    vp.dist = counter  # the module's collectives go through the counter
    N, D, V = args["rows"], args["dim"], args["vocab"]
    base, extra = divmod(V, world)
    width = base + (rank < extra)
    start = rank * base + min(rank, extra)
    gen = torch.Generator().manual_seed(0)
    h = (torch.randn(N, D, generator=gen) * 0.5).requires_grad_()
    # The rows of the unsplit run's W: every split computes the same loss.
    W = _head(V, D)[start : start + width].clone().requires_grad_()
    target = torch.randint(0, V, (N,), generator=gen)
    times, cpu, comm, sent, calls = [], [], [], [], []
    for step in range(args["steps"] + 1):
        counter.sent = counter.seconds = counter.calls = 0
        dist.barrier()
        began, began_cpu = time.perf_counter(), time.process_time()
        loss = vp.vocab_parallel_linear_cross_entropy(h, W, target, vocab_start=start)
        loss.backward()
        elapsed, elapsed_cpu = time.perf_counter() - began, time.process_time() - began_cpu
        h.grad = W.grad = None
        if step:  # the first step warms up (page faults, BLAS buffers)
            times.append(elapsed)
            cpu.append(elapsed_cpu)
            comm.append(counter.seconds)
            sent.append(counter.sent)
            calls.append(counter.calls)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(
            {
                "times": times,
                "cpu": cpu,
                "comm": comm,
                "sent": sent,
                "calls": calls,
                "loss": loss.item(),
                "threads": threads,
            },
            f,
        )
    dist.destroy_process_group()


def _unsplit(args):
    """The same step in one process without pyce.torch.distributed."""
    import torch

    import pyce
    import pyce.torch

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    pyce.set_num_threads(threads)
    N, D, V = args["rows"], args["dim"], args["vocab"]
    gen = torch.Generator().manual_seed(0)
    h = (torch.randn(N, D, generator=gen) * 0.5).requires_grad_()
    W = _head(V, D).requires_grad_()
    target = torch.randint(0, V, (N,), generator=gen)
    times, cpu = [], []
    for step in range(args["steps"] + 1):
        began, began_cpu = time.perf_counter(), time.process_time()
        loss = pyce.torch.linear_cross_entropy(h, W, target)
        loss.backward()
        if step:
            times.append(time.perf_counter() - began)
            cpu.append(time.process_time() - began_cpu)
        h.grad = W.grad = None
    return statistics.median(times), statistics.median(cpu), loss.item()


def _split(world, args):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out_dir:
        mp.start_processes(_rank_main, args=(world, port, out_dir, args), nprocs=world, start_method="spawn")
        ranks = []
        for r in range(world):
            with open(os.path.join(out_dir, f"rank{r}.json")) as f:
                ranks.append(json.load(f))
    step = [max(r["times"][i] for r in ranks) for i in range(args["steps"])]
    return {
        "ms": 1e3 * statistics.median(step),
        # CPU seconds of all ranks together: the work, whatever share of the cores the ranks got.
        "cpu_s": statistics.median([sum(r["cpu"][i] for r in ranks) for i in range(args["steps"])]),
        "comm_ms": 1e3
        * statistics.median([statistics.mean(r["comm"][i] for r in ranks) for i in range(args["steps"])]),
        "sent_mb": ranks[0]["sent"][0] / 2**20,
        "calls": ranks[0]["calls"][0],
        "threads": ranks[0]["threads"],
        "loss": ranks[0]["loss"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=2, help="timed steps (after one warm-up)")
    opts = parser.parse_args(argv)
    args = {"rows": opts.rows, "dim": opts.dim, "vocab": opts.vocab, "steps": opts.steps}
    N, D, V = opts.rows, opts.dim, opts.vocab
    gflop = 3 * 2 * N * D * V / 1e9
    print(
        f"(N, D, V) = ({N}, {D}, {V}) float32, {os.cpu_count()} cores; one head step = "
        f"3 GEMMs = {gflop:.0f} GFLOP; median of {opts.steps} steps after a warm-up"
    )
    unsplit_s, unsplit_cpu, unsplit_loss = _unsplit(args)
    print(
        f"{'':30s} {'wall s':>7s} {'CPU s':>7s} {'x unsplit CPU':>13s} {'in collectives s':>16s} "
        f"{'sent MiB/rank':>13s} {'collectives':>11s} {'loss':>10s}"
    )
    print(
        f"{'unsplit (linear_cross_entropy)':30s} {unsplit_s:7.1f} {unsplit_cpu:7.1f} {1.0:13.2f} "
        f"{'-':>16s} {'-':>13s} {'-':>11s} {unsplit_loss:10.6f}",
        flush=True,
    )
    for world in opts.ranks:
        r = _split(world, args)
        label = f"{world} rank(s) x {r['threads']} thread(s)"
        print(
            f"{label:30s} {r['ms'] / 1e3:7.1f} {r['cpu_s']:7.1f} {r['cpu_s'] / unsplit_cpu:13.2f} "
            f"{r['comm_ms'] / 1e3:16.2f} {r['sent_mb']:13.2f} {r['calls']:11d} {r['loss']:10.6f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
