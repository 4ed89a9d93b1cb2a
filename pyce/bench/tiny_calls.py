"""``pyce bench --suite tiny-calls``: the per-call cost of a small loss step.

At 64 x 10 a training step's loss is all overhead: autograd's bookkeeping, the
tensor <-> array views, the argument checks; the kernel's own work is a few
microseconds. This suite times, per shape:

- pyce.torch: ``pyce.torch.cross_entropy(x, t).backward()`` (``x.grad`` set to
  None first, as ``optimizer.zero_grad()`` does);
- its floor: the same step through an ``autograd.Function`` that does nothing
  (``nothing_function``): no loss built on ``torch.autograd.Function`` can be
  cheaper, so PyTorch's time over the floor's is the most any such loss can
  gain on PyTorch ("bound");
- PyTorch: ``F.cross_entropy(x, t).backward()``, the peer;
- NumPy: ``pyce.cross_entropy_with_grad(x, t, out=g)``, the plain call without
  autograd.

The pyce.torch step and its floor are timed alternately (``time_against_floor``),
so their ratio comes from one stretch of the same run.
"""

from __future__ import annotations

import numpy as np

from .environment import _optional
from .format import fmt_ratio, render_table
from .timing import time_against_floor, time_call

#: The shapes (rows, classes) of the suite: a small classifier's batch, and one
#: with enough classes for the kernel's work to show.
SHAPES = ((64, 10), (64, 1000))


def nothing_function(torch):
    """An ``autograd.Function`` that does nothing (a 0-d loss forward, a fresh
    zero gradient backward): the least a Python-level autograd loss costs."""

    class NothingFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, target):
            ctx.shape = x.shape
            return x.new_zeros(())

        @staticmethod
        def backward(ctx, grad_output):
            return grad_output.new_zeros(ctx.shape), None

    return NothingFunction


def _step(loss_fn, x, t):
    def step():
        x.grad = None
        loss_fn(x, t).backward()

    return step


def run(shapes=SHAPES, *, repeat: int = 5, min_time: float = 0.02, peers: bool = True, progress=None) -> dict:
    """Time each shape's steps (see the module's docstring); one dict per shape."""
    import pyce

    torch = _optional("torch")
    rows = []
    for n, c in shapes:
        if progress:
            progress.start(f"tiny-calls {n}x{c}")
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, c)).astype(np.float32)
        t = rng.integers(0, c, n).astype(np.int64)
        g = np.empty_like(x)
        row: dict = {"label": f"{n}x{c}", "op": "torch_step", "shape": [n, c], "dtype": "float32"}
        row["numpy_s"] = time_call(
            lambda: pyce.cross_entropy_with_grad(x, t, out=g), repeat=repeat, min_time=min_time
        ).best
        if torch is None:
            row["status"] = "torch not installed"
        else:
            import pyce.torch as ptorch

            xt = torch.from_numpy(x.copy()).requires_grad_(True)
            tt = torch.from_numpy(t)
            nothing = nothing_function(torch).apply
            tm, floor = time_against_floor(
                _step(ptorch.cross_entropy, xt, tt),
                _step(nothing, xt, tt),
                rounds=repeat,
                min_time=min_time,
            )
            row.update(
                pyce_s=tm.best, pyce_samples_s=tm.samples, floor_s=floor.best, x_floor=tm.best / floor.best
            )
            if peers:
                import torch.nn.functional as F

                row["torch_s"] = time_call(
                    _step(F.cross_entropy, xt, tt), repeat=repeat, min_time=min_time
                ).best
                row["vs_torch"] = row["torch_s"] / tm.best
                row["bound_vs_torch"] = row["torch_s"] / floor.best
        rows.append(row)
        if progress:
            progress.advance()
    return {"suite": "tiny-calls", "rows": rows}


def _us(seconds):
    return "-" if seconds is None else f"{seconds * 1e6:.1f}"


def format_result(result: dict) -> str:
    headers = [
        "case",
        "pyce.torch us",
        "floor us",
        "x floor",
        "torch us",
        "vs torch",
        "bound vs torch",
        "numpy call us",
    ]
    table = []
    for r in result["rows"]:
        table.append(
            [
                r["label"],
                _us(r.get("pyce_s")) if "pyce_s" in r else r.get("status", ""),
                _us(r.get("floor_s")),
                fmt_ratio(r.get("x_floor")),
                _us(r.get("torch_s")),
                fmt_ratio(r.get("vs_torch")),
                fmt_ratio(r.get("bound_vs_torch")),
                _us(r["numpy_s"]),
            ]
        )
    notes = (
        "forward + loss.backward() per call, float32, x.grad reset each step; "
        "floor: the same step through an autograd.Function that does nothing, timed alternately "
        "with pyce.torch (the least any autograd.Function-based loss costs); "
        "vs torch: F.cross_entropy's step time / pyce.torch's; "
        "bound vs torch: F.cross_entropy's / the floor's, the most such a loss can gain on PyTorch; "
        "numpy call: pyce.cross_entropy_with_grad(out=), no autograd."
    )
    aligned = render_table(headers, table, align="l" + "r" * (len(headers) - 1))
    return "suite tiny-calls\n" + aligned + "\n" + notes
