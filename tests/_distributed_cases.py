"""What each rank of tests/test_distributed.py runs (a module the spawned processes import).

Every rank builds the same full problem from a seed, takes its own shard,
calls pyce.torch.distributed and compares with the single-process PyTorch
result it computes itself; it writes its measured errors (or the error it
raised) to a pickle the parent test reads. Nothing here asserts: the parent
does, so that pytest names the failing case.
"""

from __future__ import annotations

import datetime
import os
import pickle
import time
import traceback
import zlib

import numpy as np

# Rank counts and the uneven splits of a V-class vocabulary the tests use
# (every list of widths sums to V; a rank may hold 0 columns).
V = 1037
SPLITS = {
    2: [[700, 337], [1, 1036]],
    3: [[500, 0, 537], [100, 600, 337]],
    4: [[250, 260, 270, 257], [1, 2, 3, 1031]],
}
# The ranks' order along the vocabulary differs from their rank order in
# the second split of each size (rank r holds the r-th shard of this order).
ORDERS = {2: [[0, 1], [1, 0]], 3: [[0, 1, 2], [2, 0, 1]], 4: [[0, 1, 2, 3], [3, 1, 0, 2]]}

OPTION_SETS = {
    "plain": {},
    "weight": {"weight": True},
    "ignore": {"ignore": True},
    "ignore-class": {"ignore_index": 5},
    "smooth": {"label_smoothing": 0.1},
    "smooth-weight-ignore": {"label_smoothing": 0.3, "weight": True, "ignore": True},
    "z_loss": {"z_loss": 1e-3},
    "softcap": {"softcap": 4.0},
    "everything": {"label_smoothing": 0.2, "weight": True, "ignore": True, "z_loss": 2e-3, "softcap": 6.0},
}
REDUCTIONS = ["mean", "sum", "none"]


def shard_bounds(world, split):
    """(vocab_start, width) of every rank."""
    widths = SPLITS[world][split]
    order = ORDERS[world][split]
    starts = np.concatenate([[0], np.cumsum(widths)[:-1]])
    bounds = [None] * world
    for position, r in enumerate(order):
        bounds[r] = (int(starts[position]), int(widths[position]))
    return bounds


def make_problem(seed, n_rows, dtype, options):
    import torch

    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((n_rows, V)) * 3.0).to(dtype)
    target = torch.from_numpy(rng.integers(0, V, n_rows))
    kw = {k: v for k, v in options.items() if k not in ("weight", "ignore")}
    if options.get("ignore"):
        target[::4] = -100
    if "ignore_index" in options:
        target[::3] = options["ignore_index"]
    weight = torch.from_numpy(rng.random(V) + 0.5).to(dtype) if options.get("weight") else None
    return x, target, weight, kw


def reference(x, target, weight, kw, reduction, grad_output):
    """Single-process float64 loss and gradient (PyTorch; z_loss and softcap
    composed from torch operations as pyce.torch does)."""
    import torch

    from pyce.torch._composite import torch_cross_entropy

    x64 = x.detach().to(torch.float64).requires_grad_()
    w64 = None if weight is None else weight.to(torch.float64)
    loss = torch_cross_entropy(x64, target, weight=w64, reduction=reduction, **kw)
    loss.backward(grad_output.to(torch.float64))
    return loss.detach(), x64.grad


def _float64(a):
    if hasattr(a, "detach"):
        import torch

        a = a.detach().to(torch.float64).numpy()
    return np.asarray(a, dtype=np.float64)


def rel(a, b):
    """max |a - b| / max |b| (nan where both are nan counts as equal)."""
    a, b = _float64(a), _float64(b)
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-300)
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a - b))
    return float(np.max(diff) / scale) if diff.size else 0.0


def logits_cases(rank, world, group):
    import torch

    from pyce.torch.distributed import vocab_parallel_cross_entropy

    out = {}
    # Every option and reduction on each split: float64 on the first, float32 on the second.
    for split, dtype in enumerate((torch.float64, torch.float32)):
        start, width = shard_bounds(world, split)[rank]
        for name, options in OPTION_SETS.items():
            for reduction in REDUCTIONS:
                seed = zlib.crc32(f"{split}/{name}/{reduction}".encode())
                x, target, weight, kw = make_problem(seed, 23, dtype, options)
                g = (
                    torch.from_numpy(np.random.default_rng(seed + 1).random(23)).to(dtype)
                    if reduction == "none"
                    else torch.tensor(0.75, dtype=dtype)
                )
                shard = x[:, start : start + width].clone().requires_grad_()
                w = None if weight is None else weight[start : start + width]
                loss = vocab_parallel_cross_entropy(
                    shard, target, vocab_start=start, group=group, weight=w, reduction=reduction, **kw
                )
                loss.backward(g)
                ref_loss, ref_grad = reference(x, target, weight, kw, reduction, g)
                out[("logits", split, str(dtype), name, reduction)] = {
                    "loss": rel(loss.detach(), ref_loss),
                    "grad": rel(shard.grad, ref_grad[:, start : start + width]),
                    "dtype": str(loss.dtype),
                    "shape": tuple(loss.shape),
                    "grad_dtype": str(shard.grad.dtype),
                }
    return out


def bfloat16_case(rank, world, group):
    """bfloat16 shards against the single-process pyce.torch.cross_entropy on bfloat16."""
    import torch

    import pyce.torch
    from pyce.torch.distributed import vocab_parallel_cross_entropy

    start, width = shard_bounds(world, 0)[rank]
    x, target, _, _ = make_problem(7, 19, torch.bfloat16, {"ignore": True})
    shard = x[:, start : start + width].clone().requires_grad_()
    loss = vocab_parallel_cross_entropy(shard, target, vocab_start=start, group=group, label_smoothing=0.1)
    loss.backward()
    full = x.clone().requires_grad_()
    single = pyce.torch.cross_entropy(full, target, label_smoothing=0.1)
    single.backward()
    out = {
        ("bf16",): {
            "loss": rel(loss.float(), single.float()),
            "grad": rel(shard.grad.float(), full.grad[:, start : start + width].float()),
            "dtype": str(loss.dtype),
        }
    }
    # The linear form in bfloat16 against pyce.torch.linear_cross_entropy in one process.
    from pyce.torch.distributed import vocab_parallel_linear_cross_entropy

    start, width = shard_bounds(world, 1)[rank]  # the linear form needs a row of W per rank
    rng = np.random.default_rng(5)
    h = torch.from_numpy(rng.standard_normal((19, 16))).to(torch.bfloat16)
    W = torch.from_numpy(rng.standard_normal((V, 16)) * 0.3).to(torch.bfloat16)
    h_r, W_r = h.clone().requires_grad_(), W[start : start + width].clone().requires_grad_()
    loss = vocab_parallel_linear_cross_entropy(h_r, W_r, target, vocab_start=start, group=group)
    loss.backward()
    h_1, W_1 = h.clone().requires_grad_(), W.clone().requires_grad_()
    single = pyce.torch.linear_cross_entropy(h_1, W_1, target)
    single.backward()
    out[("bf16-linear",)] = {
        "loss": rel(loss.float(), single.float()),
        "grad_input": rel(h_r.grad.float(), h_1.grad.float()),
        "grad_weight": rel(W_r.grad.float(), W_1.grad[start : start + width].float()),
        "dtype": str(loss.dtype),
    }
    return out


def linear_cases(rank, world, group):
    import torch
    import torch.nn.functional as F

    from pyce.torch._composite import torch_cross_entropy
    from pyce.torch.distributed import vocab_parallel_linear_cross_entropy

    out = {}
    start, width = shard_bounds(world, 1)[rank]
    D = 24
    cases = {
        "plain": ({}, "mean", 0),
        "everything": (OPTION_SETS["everything"], "mean", 0),
        "sum-bias-shift": ({"label_smoothing": 0.1}, "sum", 2),
        "none": ({"z_loss": 1e-3}, "none", 0),
        "frozen-head": ({}, "mean", 0),
        "filter": ({"filter_eps": 1e-3}, "mean", 0),
    }
    for dtype in (torch.float64, torch.float32):
        for name, (options, reduction, shift) in cases.items():
            rng = np.random.default_rng(len(name))
            h = torch.from_numpy(rng.standard_normal((3, 9, D))).to(dtype)
            # Large logits for the filter case: peaked rows, whose small entries it may drop.
            W = torch.from_numpy(rng.standard_normal((V, D)) * (4.0 if name == "filter" else 0.5)).to(dtype)
            b = torch.from_numpy(rng.standard_normal(V)).to(dtype) if "bias" in name else None
            _, target, weight, kw = make_problem(
                len(name), 27, dtype, {k: v for k, v in options.items() if k != "filter_eps"}
            )
            filter_eps = options.get("filter_eps")
            target = target.reshape(3, 9)
            h_r = h.clone().requires_grad_()
            W_r = W[start : start + width].clone().requires_grad_(name != "frozen-head")
            b_r = None if b is None else b[start : start + width].clone().requires_grad_()
            w_r = None if weight is None else weight[start : start + width]
            loss = vocab_parallel_linear_cross_entropy(
                h_r,
                W_r,
                target,
                vocab_start=start,
                group=group,
                linear_bias_shard=b_r,
                weight=w_r,
                reduction=reduction,
                shift=shift,
                chunk_size=5,
                filter_eps=filter_eps,
                **kw,
            )
            g = (
                torch.from_numpy(np.random.default_rng(3).random(tuple(loss.shape))).to(dtype)
                if reduction == "none"
                else torch.tensor(1.25, dtype=dtype)
            )
            loss.backward(g)
            # Single process, float64.
            h64 = h.to(torch.float64).requires_grad_()
            W64 = W.to(torch.float64).requires_grad_()
            b64 = None if b is None else b.to(torch.float64).requires_grad_()
            hs, ts = (h64[:, :-shift], target[:, shift:]) if shift else (h64, target)
            logits = F.linear(hs, W64, b64).reshape(-1, V)
            ref = torch_cross_entropy(
                logits,
                ts.reshape(-1),
                reduction=reduction,
                weight=None if weight is None else weight.to(torch.float64),
                **kw,
            )
            if reduction == "none":
                ref = ref.reshape(ts.shape)
            ref.backward(g.to(torch.float64))
            m = {
                "loss": rel(loss.detach(), ref.detach()),
                "grad_bias": 0.0 if b is None else rel(b_r.grad, b64.grad[start : start + width]),
            }
            if name == "frozen-head":
                m["grad_weight"] = 0.0 if W_r.grad is None else float("inf")
                m["grad_input"] = rel(h_r.grad, h64.grad)
            elif filter_eps:
                # pyce.linear_cross_entropy_with_grad's bound: every dropped entry of
                # dL/dlogits is below filter_eps * s (s = 1/divisor for the mean).
                s = filter_eps * 1.25 / float((target != -100).sum())
                bound_h = s * W.abs().to(torch.float64).sum(dim=0)
                bound_w = s * h.abs().to(torch.float64).reshape(-1, D).sum(dim=0)
                err_h = (h_r.grad.to(torch.float64) - h64.grad).abs().reshape(-1, D)
                err_w = (W_r.grad.to(torch.float64) - W64.grad[start : start + width]).abs()
                m["grad_input_over_bound"] = float((err_h / bound_h).max())
                m["grad_weight_over_bound"] = float((err_w / bound_w).max())
            else:
                m["grad_input"] = rel(h_r.grad, h64.grad)
                m["grad_weight"] = rel(W_r.grad, W64.grad[start : start + width])
            out[("linear", str(dtype), name)] = m
    return out


def evaluate_cases(rank, world, group):
    import torch

    import pyce
    from pyce.torch.distributed import evaluate_across_ranks, vocab_parallel_evaluate

    out = {}
    start, width = shard_bounds(world, 1)[rank]
    for dtype in (torch.float64, torch.float32):
        x, target, _, _ = make_problem(11, 40, dtype, {"ignore": True})
        # A peaked row and a tie with the target, so that ranks and ECE bins matter.
        x[1] = 0.0
        x[1, target[1]] = 30.0
        single = pyce.evaluate(x.numpy(), target.numpy(), topk=(1, 5, 50))
        split = vocab_parallel_evaluate(
            x[:, start : start + width], target, vocab_start=start, group=group, topk=(1, 5, 50)
        )
        out[("vocab_evaluate", str(dtype))] = {"single": single, "split": split}
        # Data parallel: rank r evaluates rows r, r + world, ... (uneven counts).
        mine = slice(rank, None, world)
        merged = evaluate_across_ranks(x[mine], target[mine], group=group, topk=(1, 5, 50))
        out[("data_evaluate", str(dtype))] = {"single": single, "split": merged}
    return out


def error_cases(rank, world, group):
    """Bad calls: every rank must raise (type name, message)."""
    import torch

    from pyce.torch.distributed import vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy

    out = {}
    start, width = shard_bounds(world, 0)[rank]
    x, target, weight, _ = make_problem(3, 8, torch.float64, {"weight": True})
    shard = x[:, start : start + width]

    def attempt(name, fn):
        try:
            fn()
            out[("error", name)] = None
        except Exception as exc:  # recorded for the parent to check
            out[("error", name)] = (type(exc).__name__, str(exc))

    attempt(
        "rows",
        lambda: vocab_parallel_cross_entropy(
            shard[:7] if rank == world - 1 else shard,
            target[:7] if rank == world - 1 else target,
            vocab_start=start,
            group=group,
        ),
    )
    attempt(
        "local-shape",
        lambda: vocab_parallel_cross_entropy(
            shard, target[:5] if rank == 0 else target, vocab_start=start, group=group
        ),
    )
    attempt(
        "dtype",
        lambda: vocab_parallel_cross_entropy(
            shard.float() if rank == 1 else shard, target, vocab_start=start, group=group
        ),
    )
    attempt(
        "overlap",
        lambda: vocab_parallel_cross_entropy(
            shard, target, vocab_start=start + (1 if rank == 1 else 0), group=group
        ),
    )
    attempt(
        "option",
        lambda: vocab_parallel_cross_entropy(
            shard, target, vocab_start=start, group=group, label_smoothing=0.1 * (rank == 0)
        ),
    )
    attempt(
        "target-differs",
        lambda: vocab_parallel_cross_entropy(
            shard, (target + 1) % V if rank == 1 else target, vocab_start=start, group=group
        ),
    )
    big = target.clone()
    big[3] = V + 5
    attempt("target-range", lambda: vocab_parallel_cross_entropy(shard, big, vocab_start=start, group=group))
    attempt(
        "weight-shape",
        lambda: vocab_parallel_cross_entropy(
            shard,
            target,
            vocab_start=start,
            group=group,
            weight=weight[start : start + width + (1 if rank == 0 else 0)],
        ),
    )
    h = torch.zeros(8, 4, dtype=torch.float64)
    W = torch.zeros(width, 4 if rank != 1 else 5, dtype=torch.float64)
    attempt(
        "linear-hidden",
        lambda: vocab_parallel_linear_cross_entropy(h, W, target, vocab_start=start, group=group),
    )
    # After all of these the group still works.
    loss = vocab_parallel_cross_entropy(shard, target, vocab_start=start, group=group)
    out[("error", "after")] = float(loss)
    return out


def run(rank, world, port, out_dir, parts):
    import torch
    import torch.distributed as dist

    import pyce

    torch.set_num_threads(1)
    pyce.set_num_threads(1)
    results = {}
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=30),
        )
        group = None
        for part in parts:
            began = time.perf_counter()
            results.update(globals()[part](rank, world, group))
            results[("seconds", part)] = time.perf_counter() - began
        dist.destroy_process_group()
    except Exception:
        results["crash"] = traceback.format_exc()
    with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump(results, f)
