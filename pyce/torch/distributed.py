"""Vocabulary-parallel cross-entropy over ``torch.distributed``: when the LM head is split by classes.

Rank r of a process group holds the columns ``[vocab_start_r, vocab_start_r +
V_r)`` of the logits (and the matching rows of the head's weight); the ranks'
shards tile the whole vocabulary ``[0, V)`` in any order and any widths.
Every function here returns what one process would compute on the whole
vocabulary -- label smoothing over all V classes, class weights, ignore_index,
z_loss and softcap included -- and the autograd gradient of each rank's own
shard. The transport is ``torch.distributed`` (gloo on CPUs, or any backend
torch has); pyce adds only its kernels and this arithmetic.

Communication per call (R ranks, N rows, gloo's ring all-gather: every rank
sends and receives ``(R - 1)`` times its own contribution):

* one all-gather of a fixed header per rank (``HEADER_VALUES`` float64: the
  shapes, options and a hash of the targets), so that a rank passing a bad
  shape or other options makes *every* rank raise the same clear error
  instead of a collective hanging;
* one all-gather of k float64 values per row: the shard's log-sum-exp and
  target logit, plus the target's class weight (with ``weight``) and the
  shard's ``sum_j w_j z_j`` (with label smoothing); k = 2 to 4, so each rank
  receives ``8 k (R - 1)`` bytes per row. Every rank then merges the rows in
  rank order, so every rank gets the same loss, bit for bit.
* the backward pass of :func:`vocab_parallel_cross_entropy` communicates
  nothing: each rank writes its shard's gradient from the saved global
  log-sum-exp (one read of the shard, one write).
* :func:`vocab_parallel_linear_cross_entropy` runs the row exchange once per
  chunk of rows, and one all-reduce (sum) of the input gradient (N x D values
  of the input's dtype) when a gradient is wanted.

Shard kernels: ``pyce._core.shard_stats`` (per row: the shard's max-shifted
sum of exps as its log-sum-exp, the target logit, ``sum w z``; one read of
the shard) and ``pyce._core.shard_grad`` (the shard's gradient given the
global log-sum-exp; one read, one write).

Importing this module needs PyTorch; ``pyce.torch`` does not import it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from .. import _core
from .. import _vocab_shard as vs
from .._linear_call import LinearCall
from .._validation import (
    REDUCTIONS,
    check_ignore_index,
    check_label_smoothing,
    check_reduction,
    check_softcap,
    check_z_loss,
    compute_dtype,
)
from ..metrics import (
    EvalResult,
    check_topk,
    evaluate_rows,
    evaluation_sums,
    result_from_rows,
    result_from_sums,
)
from ._tensors import as_numpy as _as_numpy
from .linear import _numpy_dtypes, _TorchOps

__all__ = [
    "vocab_parallel_cross_entropy",
    "vocab_parallel_linear_cross_entropy",
    "vocab_parallel_evaluate",
    "evaluate_across_ranks",
    "HEADER_VALUES",
]

_DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2, torch.float16: 3}
_REDUCTION_NAMES = {code: name for name, code in REDUCTIONS.items()}

# What every rank tells the others about its call, in this order (float64).
_FIELDS = (
    "form",
    "rows",
    "width",
    "vocab_start",
    "dtype",
    "reduction",
    "ignore_index",
    "label_smoothing",
    "z_loss",
    "softcap",
    "weighted",
    "target_hash",
    "failed",
    "weight_sum",
    "owned_weight",
    "hidden",
    "shift",
    "filter_eps",
    "chunk_rows",
    "wants_grad",
    "topk_hash",
)
HEADER_VALUES = len(_FIELDS)
_AT = {name: i for i, name in enumerate(_FIELDS)}
# The fields that must be the same on every rank, and how an error names them.
_SAME = {
    "form": "the function called",
    "rows": "the number of rows (targets)",
    "dtype": "the logits' dtype",
    "reduction": "reduction",
    "ignore_index": "ignore_index",
    "label_smoothing": "label_smoothing",
    "z_loss": "z_loss",
    "softcap": "softcap",
    "weighted": "whether class weights are given",
    "target_hash": "the targets (every rank passes the same global class ids)",
    "hidden": "the hidden size D",
    "shift": "shift",
    "filter_eps": "filter_eps",
    "wants_grad": "whether a gradient is wanted (requires_grad)",
    "topk_hash": "topk",
}
_FORMS = {"logits": 1.0, "linear": 2.0, "evaluate": 3.0, "evaluate_rows": 4.0}


class _Failed(Exception):
    """Stands for an error another rank raised (re-raised with that rank's type)."""


def _group_size_rank(group):
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "pyce.torch.distributed needs an initialised process group: call "
            "torch.distributed.init_process_group(...) first (e.g. under torchrun)"
        )
    return dist.get_world_size(group), dist.get_rank(group)


def _target_hash(target: np.ndarray) -> float:
    """A position-sensitive hash of the int64 targets, exact in a float64 (52 bits)."""
    if target.size == 0:
        return 0.0
    u = target.astype(np.uint64, copy=False).reshape(-1)
    mix = np.arange(1, u.size + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        h = np.bitwise_xor.reduce((u + np.uint64(1)) * (mix | np.uint64(1)))
        h = h ^ (np.sum(u * mix) >> np.uint64(7))
    return float(int(h) >> 12)


def _agree(group, fields: dict, failure: BaseException | None, same=tuple(_SAME), tiling=True) -> np.ndarray:
    """Exchange every rank's header; raise the same error on every rank if any
    rank failed its own checks or the ranks disagree. Returns the (R, H) headers."""
    world, rank = _group_size_rank(group)
    mine = np.zeros(HEADER_VALUES, dtype=np.float64)
    for name, value in fields.items():
        mine[_AT[name]] = float(value)
    mine[_AT["failed"]] = 1.0 if failure is not None else 0.0
    parts = [torch.empty(HEADER_VALUES, dtype=torch.float64) for _ in range(world)]
    dist.all_gather(parts, torch.from_numpy(mine), group=group)
    headers = torch.stack(parts).numpy()
    failed = np.flatnonzero(headers[:, _AT["failed"]])
    if failed.size:
        # Only on this rare path: tell everyone what went wrong where.
        messages: list = [None] * world
        note = None if failure is None else (type(failure).__name__, str(failure))
        dist.all_gather_object(messages, note, group=group)
        if failure is not None:
            raise failure
        first = int(failed[0])
        kind, text = messages[first]
        error = {"TypeError": TypeError, "IndexError": IndexError}.get(kind, ValueError)
        raise error(f"rank {first} of {world} rejected its inputs, so every rank stops: {kind}: {text}")
    for name in same:
        what = _SAME[name]
        column = headers[:, _AT[name]]
        differ = np.flatnonzero(~((column == column[0]) | (np.isnan(column) & np.isnan(column[0]))))
        if differ.size:
            r = int(differ[0])
            raise ValueError(
                f"the ranks disagree on {what}: rank {r} has {_show(name, column[r])}, rank 0 has "
                f"{_show(name, column[0])} (every rank of the group must make the same call)"
            )
    if tiling:
        _check_tiling(headers)
    return headers


def _show(name, value):
    if name == "dtype":
        return {v: str(k) for k, v in _DTYPE_CODES.items()}.get(int(value), value)
    if name == "reduction":
        return repr(_REDUCTION_NAMES.get(int(value), value))
    if name in ("rows", "hidden", "shift", "ignore_index"):
        return int(value)
    if name == "softcap" and value == 0:
        return "None"
    if name == "target_hash":
        return f"targets hashing to {int(value):#x}"
    return value


def _check_tiling(headers):
    starts = headers[:, _AT["vocab_start"]].astype(np.int64)
    widths = headers[:, _AT["width"]].astype(np.int64)
    order = np.lexsort((widths, starts))
    expected = 0
    for r in order:
        if starts[r] != expected:
            held = ", ".join(f"rank {i}: [{starts[i]}, {starts[i] + widths[i]})" for i in range(len(starts)))
            raise ValueError(
                "the ranks' vocabulary shards must tile [0, V) without gaps or overlaps (rank r's "
                f"vocab_start = the widths of the shards before it); they hold {held}"
            )
        expected += widths[r]
    if expected == 0:
        raise ValueError("the vocabulary is empty: every rank's shard has 0 columns")


def _check_vocab_start(vocab_start) -> int:
    if isinstance(vocab_start, bool) or not isinstance(vocab_start, (int, np.integer)):
        raise TypeError(f"vocab_start must be an int, got {vocab_start!r}")
    if vocab_start < 0:
        raise ValueError(f"vocab_start must be >= 0, got {vocab_start}")
    return int(vocab_start)


def _check_target(target, expected_shape, name="target"):
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(target).__name__}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices, got dtype {target.dtype}")
    if tuple(target.shape) != tuple(expected_shape):
        raise ValueError(f"{name} must have shape {tuple(expected_shape)}, got {tuple(target.shape)}")
    return np.ascontiguousarray(target.detach().cpu().numpy(), dtype=np.int64).reshape(-1)


def _check_class_weight(weight, width, dtype):
    """This rank's slice of the class weights, in the compute dtype, or None."""
    if weight is None:
        return None
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor or None, got {type(weight).__name__}")
    if tuple(weight.shape) != (width,):
        raise ValueError(
            f"weight must be this rank's slice of the class weights, shape ({width},) "
            f"(one per column of the shard), got {tuple(weight.shape)}"
        )
    if weight.requires_grad:
        raise ValueError("pyce.torch.distributed does not differentiate w.r.t. weight")
    return np.ascontiguousarray(weight.detach().cpu().to(torch.float64).numpy(), dtype=dtype)


def _check_global_targets(target, n_classes, ignore_index):
    bad = (target != ignore_index) & ((target < 0) | (target >= n_classes))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise IndexError(
            f"target {int(target[i])} at position {i} (flattened) is out of range for the "
            f"global vocabulary of {n_classes} classes: expected 0 <= target < {n_classes} "
            f"or ignore_index ({ignore_index})"
        )


def _exchange_rows(group, packed: np.ndarray) -> np.ndarray:
    """All ranks' (N, k) packed rows as an (R, N, k) array (rank order)."""
    world, _ = _group_size_rank(group)
    if packed.size == 0:
        return np.zeros((world,) + packed.shape)
    mine = torch.from_numpy(np.ascontiguousarray(packed))
    parts = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(parts, mine, group=group)
    return torch.stack(parts).numpy()


class _Options:
    """The loss options, validated once (the same checks as pyce.cross_entropy)."""

    def __init__(self, ignore_index, reduction, label_smoothing, z_loss, softcap):
        self.reduction_code = check_reduction(reduction)
        self.reduction = _REDUCTION_NAMES[self.reduction_code]
        self.ignore_index = check_ignore_index(ignore_index)
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.z_loss = check_z_loss(z_loss)
        self.softcap = check_softcap(softcap)

    def header(self):
        return {
            "reduction": self.reduction_code,
            "ignore_index": self.ignore_index,
            "label_smoothing": self.label_smoothing,
            "z_loss": self.z_loss,
            "softcap": self.softcap or 0.0,
        }


class _ShardCall:
    """One vocabulary-parallel cross-entropy over (N, V_r) shard rows: the
    exchange, the global per-row quantities, the loss and the shard's gradient."""

    def __init__(self, group, options, vocab_start, weight, target, headers):
        self.group = group
        self.o = options
        self.vocab_start = vocab_start
        self.weight = weight
        self.target = target
        self.weighted = weight is not None
        self.smoothing = options.label_smoothing > 0.0
        self.n_classes = int(headers[:, _AT["width"]].sum())
        self.coef_total = (
            float(np.sum(headers[:, _AT["weight_sum"]])) if self.weighted else float(self.n_classes)
        )
        _check_global_targets(target, self.n_classes, options.ignore_index)
        self.scored = target != options.ignore_index

    def rows_of(self, logits_rows, target):
        """Shard statistics of some rows, exchanged and merged: (stats, global rows)."""
        stats = vs.shard_stats(
            logits_rows,
            target,
            self.vocab_start,
            weight=self.weight,
            ignore_index=self.o.ignore_index,
            label_smoothing=self.o.label_smoothing,
            softcap=self.o.softcap,
        )
        gathered = _exchange_rows(self.group, stats.packed(self.weighted, self.smoothing))
        return stats, vs.combine(gathered, self.weighted, self.smoothing)

    def losses(self, rows, scored):
        return vs.row_losses(
            rows,
            scored,
            n_classes=self.n_classes,
            coef_total=self.coef_total,
            label_smoothing=self.o.label_smoothing,
            z_loss=self.o.z_loss,
        )

    def grad(self, logits_rows, target, stats, rows, scale, out):
        vs.shard_grad(
            logits_rows,
            target,
            self.vocab_start,
            stats,
            rows,
            scale,
            out,
            weight=self.weight,
            ignore_index=self.o.ignore_index,
            n_classes=self.n_classes,
            coef_total=self.coef_total,
            label_smoothing=self.o.label_smoothing,
            z_loss=self.o.z_loss,
            softcap=self.o.softcap,
        )


def _logits_call(logits_shard, target, vocab_start, group, weight, options, form="logits"):
    """Local checks, the header exchange (raising on every rank), then the call."""
    failure = None
    fields = {"form": _FORMS[form], **options.header()}
    x = t = w = None
    try:
        if not isinstance(logits_shard, torch.Tensor):
            raise TypeError(f"logits_shard must be a torch.Tensor, got {type(logits_shard).__name__}")
        if logits_shard.dtype not in _DTYPE_CODES:
            raise TypeError(
                f"logits_shard must be float32, float64, bfloat16 or float16, got {logits_shard.dtype}"
            )
        if logits_shard.device.type != "cpu":
            raise ValueError(
                f"pyce.torch.distributed computes on CPU tensors, got one on {logits_shard.device}"
            )
        if logits_shard.dim() < 1:
            raise ValueError("logits_shard must have at least one dimension (its columns of the vocabulary)")
        width = logits_shard.shape[-1]
        vocab_start = _check_vocab_start(vocab_start)
        t = _check_target(target, logits_shard.shape[:-1])
        x = _as_numpy(logits_shard).reshape(t.size, width)
        w = _check_class_weight(weight, width, compute_dtype(x.dtype))
        fields.update(
            rows=t.size,
            width=width,
            vocab_start=vocab_start,
            dtype=_DTYPE_CODES[logits_shard.dtype],
            weighted=w is not None,
            target_hash=_target_hash(t),
            weight_sum=0.0 if w is None else float(np.sum(w, dtype=np.float64)),
        )
    except (TypeError, ValueError, IndexError, RuntimeError) as exc:
        failure = exc
    headers = _agree(group, fields, failure)
    return _ShardCall(group, options, vocab_start, w, t, headers), x


class _VocabParallelCrossEntropy(torch.autograd.Function):
    """Forward: the shard's statistics, one exchange, the global loss. Backward: the
    shard's gradient from the saved global log-sum-exp (no communication)."""

    @staticmethod
    def forward(ctx, logits_shard, call, x):
        stats, rows = call.rows_of(x, call.target)
        losses = call.losses(rows, call.scored)
        divisor = vs.divisor(rows, call.scored)
        loss = vs.reduce_losses(losses, call.o.reduction, divisor)
        ctx.call, ctx.x, ctx.stats, ctx.rows, ctx.divisor = call, x, stats, rows, divisor
        ctx.shape = logits_shard.shape
        if call.o.reduction == "none":
            rows_loss = torch.from_numpy(np.asarray(losses)).reshape(logits_shard.shape[:-1])
            return rows_loss.to(logits_shard.dtype)
        return torch.tensor(loss, dtype=logits_shard.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        call = ctx.call
        g = grad_output.detach().to(torch.float64).reshape(-1).numpy()
        n = ctx.x.shape[0]
        if call.o.reduction == "none":
            scale = np.ascontiguousarray(g, dtype=np.float64)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                value = g[0] / ctx.divisor if call.o.reduction == "mean" else g[0]
            scale = np.full(n, value, dtype=np.float64)
        grad = torch.empty(ctx.x.shape, dtype=_torch_dtype(ctx.x))
        call.grad(ctx.x, call.target, ctx.stats, ctx.rows, scale, _as_numpy(grad))
        return grad.reshape(ctx.shape), None, None


def _torch_dtype(a: np.ndarray):
    if a.dtype.itemsize == 2 and a.dtype.kind != "f":
        return torch.bfloat16
    return {
        np.dtype(np.float32): torch.float32,
        np.dtype(np.float64): torch.float64,
        np.dtype(np.float16): torch.float16,
    }.get(a.dtype, torch.bfloat16)


def vocab_parallel_cross_entropy(
    logits_shard,
    target,
    *,
    vocab_start,
    group=None,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
):
    """Cross-entropy over logits whose vocabulary is split across the ranks of ``group``.

    Every rank of the group calls this together (a collective). The result is
    ``torch.nn.functional.cross_entropy`` of the whole logits (all ranks' shards
    side by side), the same on every rank; ``loss.backward()`` gives each rank
    the gradient of its own shard.

    Parameters
    ----------
    logits_shard : torch.Tensor of shape (..., V_r)
        This rank's columns ``[vocab_start, vocab_start + V_r)`` of the logits,
        classes last (e.g. ``(N, V_r)`` or ``(B, T, V_r)``); CPU, float32,
        float64, bfloat16 or float16. Widths may differ between ranks.
    target : torch.Tensor of int, shape (...)
        Global class ids in ``[0, V)`` (or ``ignore_index``), the same on every rank.
    vocab_start : int
        The first class this rank holds.
    group : torch.distributed.ProcessGroup, optional
        The ranks that share the vocabulary (default: the whole world).
    weight : torch.Tensor of shape (V_r,), optional
        This rank's slice of the class weights.
    ignore_index, reduction, label_smoothing, z_loss, softcap
        As :func:`pyce.torch.cross_entropy`, over the global vocabulary:
        smoothing mixes in ``eps / V`` for all V classes, and the weighted mean
        divides by the sum of ``weight[target]`` (each from the rank that owns it).

    Returns
    -------
    torch.Tensor
        The loss in the logits' dtype (0-d, or the target's shape for 'none').

    Raises
    ------
    ValueError, TypeError, IndexError
        On every rank, when any rank passes a bad shape, dtype or option, the
        ranks disagree (rows, options, targets), or the shards do not tile
        ``[0, V)``. (A rank that never calls in waits for the process group's
        timeout.)

    Notes
    -----
    Collectives: one all-gather of a small header and one of 2-4 float64 per
    row (see the module's documentation); none in the backward pass.

    Examples
    --------
    Under ``torchrun --nproc_per_node=2``, each rank holding half of a
    32000-class vocabulary::

        rank = torch.distributed.get_rank()
        shard = full_logits[:, rank * 16000:(rank + 1) * 16000].requires_grad_()
        loss = vocab_parallel_cross_entropy(shard, target, vocab_start=rank * 16000)
        loss.backward()    # shard.grad: this rank's columns of the gradient
    """
    options = _Options(ignore_index, reduction, label_smoothing, z_loss, softcap)
    call, x = _logits_call(logits_shard, target, vocab_start, group, weight, options)
    return _VocabParallelCrossEntropy.apply(logits_shard, call, x)


# ---------------------------------------------------------------------------
# The fused linear form: logits = input @ W_r.T (+ b_r), never materialised
# ---------------------------------------------------------------------------


class _ShardLinearCall(LinearCall):
    """pyce's chunked linear cross-entropy engine (pyce._linear_call) over one
    rank's rows of the head: the per-chunk kernel call becomes the shard
    statistics, one exchange and the shard's gradient."""

    def _lay_out_targets(self, target):
        # The parent pairs rows with targets (shift) and finds the rows with
        # work; its bounds check and weighted divisor need the whole
        # vocabulary, so they wait for the other ranks (finish_layout): here the
        # targets are global ids and the weight is only this rank's slice.
        saved = self.V, self.weight
        self.V, self.weight = np.iinfo(np.int64).max, None
        try:
            super()._lay_out_targets(target)
        finally:
            self.V, self.weight = saved

    def finish_layout(self, shard: "_ShardCall", headers, chunk_rows: int):
        self.shard = shard
        self.chunk_rows = chunk_rows
        if shard.weighted:
            # Sum of w[target] over the scored rows: each rank's share is in its header.
            self.divisor = float(np.sum(headers[:, _AT["owned_weight"]]))

    def _kernel(self, L, t_c, g_out, grad):
        t_c = np.ascontiguousarray(t_c, dtype=np.int64)
        shard = self.shard
        stats, rows = shard.rows_of(L, t_c)
        scored = t_c != self.ignore_index
        losses = shard.losses(rows, scored)
        if grad is not None:
            n = L.shape[0]
            scale = (
                np.ascontiguousarray(g_out, dtype=np.float64)
                if g_out.size == n and self.reduction == REDUCTIONS["none"]
                else np.full(n, float(g_out[0]))
            )
            shard.grad(L, t_c, stats, rows, scale, grad)
        if self.reduction == REDUCTIONS["none"]:
            return losses.astype(self.compute_dtype)
        return float(np.sum(losses))


def _owned_weight_sum(target, vocab_start, weight, ignore_index):
    """Sum of w[target] over the rows whose target this rank's shard holds."""
    local = target - vocab_start
    owned = (target != ignore_index) & (local >= 0) & (local < weight.size)
    return float(np.sum(weight[local[owned]], dtype=np.float64))


class _VocabParallelLinear(torch.autograd.Function):
    """Forward: chunk by chunk, logits GEMM, shard statistics, exchange, shard
    gradient and the two gradient GEMMs; then the all-reduce of grad_input.
    Backward: the saved gradients times grad_output."""

    @staticmethod
    def forward(ctx, input, linear_weight, linear_bias, call, wants_grad):
        per_row = call.reduction == REDUCTIONS["none"]
        ctx.call, ctx.input_shape = call, input.shape
        ctx.dtypes = (input.dtype, linear_weight.dtype)
        ctx.has_bias = linear_bias is not None
        ctx.want_weight = linear_weight.requires_grad
        if wants_grad and not per_row:
            ctx.grads = _linear_grads(call, ctx)
        else:
            # The loss only; 'none' computes its gradients in backward, where
            # each row's grad_output is known (the chunks run again there).
            call.forward(_TorchOps)
            ctx.grads = None
        loss = call.loss()
        if call.reduction == REDUCTIONS["none"]:
            return torch.from_numpy(np.asarray(loss)).to(input.dtype)
        return torch.tensor(float(loss), dtype=input.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        call = ctx.call
        if call.reduction == REDUCTIONS["none"]:
            # Every rank runs backward together (the chunks exchange rows again).
            g = grad_output.detach().to(torch.float64).reshape(-1).numpy()
            rows = np.zeros(call.n_rows)
            if call.in_scope is None:
                rows[:] = g
            else:
                rows[call.in_scope] = g
            grads = _linear_grads(call, ctx, grad_output_rows=rows)
            return grads + (None, None)
        grads, ctx.grads = ctx.grads, None
        if grads is None:
            raise RuntimeError(
                "vocab_parallel_linear_cross_entropy: no gradient was prepared in forward "
                "(nothing required grad then)"
            )
        g = grad_output.reshape(())
        if float(g) != 1.0:
            grads = tuple(None if t is None else t * g.to(t.dtype) for t in grads)
        return grads + (None, None)


def _linear_grads(call, ctx, grad_output_rows=None):
    """(grad_input, grad_weight_shard, grad_bias_shard) of the chunked engine,
    the input gradient all-reduced over the group (CCE's reduce_e_grad)."""
    # A frozen head (its shard without requires_grad) skips the grad_weight product.
    grad_hidden, grad_weight, grad_bias = call.with_grad(
        _TorchOps, grad_output_rows=grad_output_rows, want_weight=ctx.want_weight
    )
    # Summed in the compute dtype (float32 for 16-bit inputs, so no rank's
    # share is rounded to 16 bits before the sum).
    gh = torch.from_numpy(np.ascontiguousarray(grad_hidden, dtype=call.compute_dtype))
    dist.all_reduce(gh, op=dist.ReduceOp.SUM, group=call.shard.group)
    input_dtype, weight_dtype = ctx.dtypes
    return (
        gh.reshape(ctx.input_shape).to(input_dtype),
        None if grad_weight is None else torch.from_numpy(grad_weight).to(weight_dtype),
        None if grad_bias is None else torch.from_numpy(grad_bias).to(weight_dtype),
    )


def vocab_parallel_linear_cross_entropy(
    input,
    linear_weight_shard,
    target,
    *,
    vocab_start,
    group=None,
    linear_bias_shard=None,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    shift=0,
    filter_eps=None,
    chunk_size=None,
):
    """Cross-entropy of ``input @ W.T + b`` where the head ``W`` (V x D) is split by rows across ranks.

    Rank r holds ``linear_weight_shard = W[vocab_start : vocab_start + V_r]``
    (and the same rows of the bias); every rank passes the same ``input``
    and ``target``. The loss is that of one process over the whole head, the
    same on every rank, computed chunk of rows by chunk without any (N, V)
    array (pyce's fused linear engine, ``pyce.linear_cross_entropy``). With
    gradients, each rank gets its own shard's ``grad W_r`` (and ``grad b_r``)
    and the full input gradient, summed over the ranks by one all-reduce
    inside, as Cut Cross-Entropy's ``reduce_e_grad``.

    Parameters
    ----------
    input : torch.Tensor of shape (..., D)
        Hidden states (CPU; float32, float64, or bfloat16/float16 computed in
        float32 as ``pyce.torch.linear_cross_entropy``); the same on every rank.
    linear_weight_shard : torch.Tensor of shape (V_r, D)
        This rank's rows of the head's weight (``torch.nn.Linear(D, V).weight``),
        at least one (the logits form also takes empty shards).
    target : torch.Tensor of int, shape (...)
        Global class ids (the input's shape without D), the same on every rank.
    vocab_start : int
        The first class (row of ``W``) this rank holds.
    group : torch.distributed.ProcessGroup, optional
        The ranks that share the head (default: the whole world).
    linear_bias_shard : torch.Tensor of shape (V_r,), optional
        This rank's slice of the head's bias.
    weight, ignore_index, reduction, label_smoothing, z_loss, softcap
        As :func:`vocab_parallel_cross_entropy`.
    shift : int, optional
        Score position t of each sequence against target t + shift (input
        ``(..., T, D)``), as ``pyce.linear_cross_entropy``.
    filter_eps : float or 'auto', optional
        Gradient filtering per vocabulary block of each rank's shard (Cut
        Cross-Entropy's; the bound of ``pyce.linear_cross_entropy_with_grad``
        holds per rank).
    chunk_size : int, optional
        Rows per chunk; by default the smallest any rank would choose (every
        rank must process the same chunks: each chunk is one exchange).

    Returns
    -------
    torch.Tensor
        The loss in the input's dtype (0-d, or the scored rows' shape for 'none').

    Notes
    -----
    When any of input, weight or bias requires grad, the gradients are
    computed in the forward pass (one GEMM for the logits and two for the
    gradients per chunk, no recomputation) and the input gradient is
    all-reduced there; ``backward`` scales them by grad_output. With
    reduction='none' each row's grad_output is needed, so the gradients are
    computed in backward instead (the chunks
    run again, with their exchanges: every rank calls backward together). A
    frozen head (a shard without requires_grad) skips the grad_weight product.
    Collectives: the header, one row exchange per chunk (2-4 float64 per row
    and rank), and one all-reduce of N x D input-gradient values.

    Examples
    --------
    Under ``torchrun --nproc_per_node=2``, each rank holding half of the LM
    head's rows (a 32000-token vocabulary) and all of the hidden states::

        rank = torch.distributed.get_rank()
        w_shard = lm_head_weight[rank * 16000:(rank + 1) * 16000].detach().requires_grad_()
        loss = vocab_parallel_linear_cross_entropy(hidden, w_shard, target,
                                                   vocab_start=rank * 16000, shift=1)
        loss.backward()    # hidden.grad summed over ranks, w_shard.grad this rank's rows
    """
    options = _Options(ignore_index, reduction, label_smoothing, z_loss, softcap)
    failure = None
    wants_grad = any(
        isinstance(t, torch.Tensor) and t.requires_grad
        for t in (input, linear_weight_shard, linear_bias_shard)
    )
    fields = {"form": _FORMS["linear"], "wants_grad": wants_grad, **options.header()}
    call = w = t = None
    try:
        for name, value in (("input", input), ("linear_weight_shard", linear_weight_shard)):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
            if value.device.type != "cpu":
                raise ValueError(
                    f"pyce.torch.distributed computes on CPU tensors; {name} is on {value.device}"
                )
        if input.dtype not in _DTYPE_CODES:
            raise TypeError(f"input must be float32, float64, bfloat16 or float16, got {input.dtype}")
        vocab_start = _check_vocab_start(vocab_start)
        t = _check_target(target, input.shape[:-1])
        h = _as_numpy(input)
        W = _as_numpy(linear_weight_shard)
        b = None if linear_bias_shard is None else _as_numpy(linear_bias_shard)
        width = W.shape[0] if W.ndim == 2 else 0
        w = _check_class_weight(weight, width, compute_dtype(h.dtype))
        call = _ShardLinearCall(
            h,
            W,
            t.reshape(tuple(target.shape)),
            linear_bias=b,
            weight=w,
            ignore_index=options.ignore_index,
            reduction=options.reduction,
            label_smoothing=options.label_smoothing,
            z_loss=options.z_loss,
            softcap=options.softcap or None,
            shift=shift,
            return_lse=False,
            filter_eps=filter_eps,
            chunk_size=chunk_size,
            dtypes=_numpy_dtypes(),
            compute_dtype=compute_dtype(h.dtype),
            names=("input", "linear_weight_shard", "target", "linear_bias_shard"),
        )
        fields.update(
            rows=call.row_target.size,
            width=width,
            vocab_start=vocab_start,
            dtype=_DTYPE_CODES[input.dtype],
            weighted=w is not None,
            target_hash=_target_hash(call.row_target),
            hidden=call.D,
            shift=call.shift,
            filter_eps=call.filter_eps,
            chunk_rows=call.chunk_rows,
            weight_sum=0.0 if w is None else float(np.sum(w, dtype=np.float64)),
            owned_weight=0.0
            if w is None
            else _owned_weight_sum(call.row_target, vocab_start, w, options.ignore_index),
        )
    except (TypeError, ValueError, IndexError, RuntimeError) as exc:
        failure = exc
    headers = _agree(group, fields, failure)
    shard = _ShardCall(group, options, vocab_start, w, call.row_target, headers)
    # Every rank must cut the same chunks (one exchange each): the smallest any rank chose.
    call.finish_layout(shard, headers, int(headers[:, _AT["chunk_rows"]].min()))
    return _VocabParallelLinear.apply(input, linear_weight_shard, linear_bias_shard, call, wants_grad)


# ---------------------------------------------------------------------------
# Evaluation across ranks
# ---------------------------------------------------------------------------


def vocab_parallel_evaluate(
    logits_shard, target, *, vocab_start, group=None, ignore_index=-100, topk=(1, 5)
) -> EvalResult:
    """``pyce.evaluate`` of logits whose vocabulary is split across the ranks of ``group``.

    Every rank calls it with its shard (as :func:`vocab_parallel_cross_entropy`)
    and gets the same :class:`pyce.EvalResult` that ``pyce.evaluate`` gives for
    the whole logits in one process: loss, perplexity, top-k accuracies (the
    target's rank counted over every shard), entropy and ECE.

    Parameters
    ----------
    logits_shard : torch.Tensor of shape (..., V_r)
        This rank's columns of the logits (CPU; float32, float64, bfloat16, float16).
    target : torch.Tensor of int, shape (...)
        Global class ids (or ``ignore_index``), the same on every rank.
    vocab_start : int
        The first class this rank holds.
    group, ignore_index, topk
        As :func:`vocab_parallel_cross_entropy` and :func:`pyce.evaluate`.

    Returns
    -------
    pyce.EvalResult

    Notes
    -----
    Two reads of the shard (``pyce.evaluate``'s kernel, then the count of
    logits above the target's) and three collectives: the header, one
    all-gather of 4 float64 per row and rank, one all-reduce of an int64 per row.

    Examples
    --------
    Under ``torchrun --nproc_per_node=2``, each rank holding half of the logits'
    columns::

        rank = torch.distributed.get_rank()
        shard = full_logits[:, rank * 16000:(rank + 1) * 16000]
        result = vocab_parallel_evaluate(shard, target, vocab_start=rank * 16000)
        print(result.perplexity)    # the same on every rank
    """
    options = _Options(ignore_index, "sum", 0.0, 0.0, None)
    ks, topk_hash, topk_error = (), 0.0, None
    try:
        ks = check_topk(topk)
        topk_hash = _topk_hash(ks)
    except (TypeError, ValueError) as exc:
        topk_error = exc
    with torch.no_grad():
        call, x = _eval_call(logits_shard, target, vocab_start, group, options, topk_hash, topk_error)
    n_local = x.shape[1]
    t = call.target
    local = t - call.vocab_start
    owned = call.scored & (local >= 0) & (local < n_local)
    # pyce.evaluate's kernel on the shard: rows whose target is elsewhere are
    # scored against column 0 (only their lse, entropy and top probability
    # are used); unscored rows get an ignore value no column of the shard has.
    skip = call.o.ignore_index if not 0 <= call.o.ignore_index < n_local else -1
    kernel_target = np.where(call.scored, np.where(owned, local, 0), skip).astype(np.int64)
    if n_local:
        loss, ent, max_prob, _ = _core.evaluate(x, kernel_target, skip)
        z_col = _as_float64(x[np.arange(x.shape[0]), np.where(call.scored, kernel_target, 0)])
    else:
        loss = ent = max_prob = z_col = np.zeros(x.shape[0])
    with np.errstate(invalid="ignore", over="ignore"):
        lse_r = np.where(n_local > 0, loss + z_col, -np.inf)
        mass = lse_r - ent  # sum_j q_j z_j, q the shard's own softmax
        packed = np.stack([lse_r, np.where(owned, z_col, 0.0), mass, max_prob], axis=1)
    packed[~call.scored] = 0.0
    gathered = _exchange_rows(group, packed)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        every_lse = gathered[:, :, 0]
        top = every_lse.max(axis=0)
        shift = np.where(top == -np.inf, 0.0, top)
        lse = shift + np.log(np.exp(every_lse - shift).sum(axis=0))
        share = np.exp(every_lse - lse)  # each shard's share of the probability mass
        z_t = gathered[:, :, 1].sum(axis=0)
        row_loss = lse - z_t
        row_entropy = lse - np.sum(share * gathered[:, :, 2], axis=0)
        row_max_prob = np.max(share * gathered[:, :, 3], axis=0)
    # The target's rank: the logits above z_t, counted on every shard.
    above = _count_above(logits_shard, x, z_t, call.scored)
    counts = torch.from_numpy(above)
    dist.all_reduce(counts, op=dist.ReduceOp.SUM, group=group)
    s = call.scored
    return result_from_rows(
        row_loss[s], row_entropy[s], row_max_prob[s], counts.numpy()[s].astype(np.float64), ks
    )


def _as_float64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).astype(np.float64)


def _count_above(logits_shard, x, z_t, scored, chunk=256):
    """Per row, #{j in the shard : z_j > z_t} (int64), in chunks of rows."""
    n = x.shape[0]
    out = np.zeros(n, dtype=np.int64)
    if x.shape[1] == 0:
        return out
    rows = logits_shard.detach().reshape(n, x.shape[1])
    zt = torch.from_numpy(z_t)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        out[a:b] = (rows[a:b].to(torch.float64) > zt[a:b, None]).sum(dim=1).numpy()
    out[~scored] = 0
    return out


def _eval_call(logits_shard, target, vocab_start, group, options, topk_hash, topk_error):
    failure = topk_error
    fields = {"form": _FORMS["evaluate"], "topk_hash": topk_hash, **options.header()}
    x = t = None
    try:
        if failure is not None:
            raise failure
        if not isinstance(logits_shard, torch.Tensor):
            raise TypeError(f"logits_shard must be a torch.Tensor, got {type(logits_shard).__name__}")
        if logits_shard.dtype not in _DTYPE_CODES:
            raise TypeError(
                f"logits_shard must be float32, float64, bfloat16 or float16, got {logits_shard.dtype}"
            )
        if logits_shard.dim() < 1:
            raise ValueError("logits_shard must have at least one dimension (its columns of the vocabulary)")
        width = logits_shard.shape[-1]
        vocab_start = _check_vocab_start(vocab_start)
        t = _check_target(target, logits_shard.shape[:-1])
        x = _as_numpy(logits_shard).reshape(t.size, width)
        fields.update(
            rows=t.size,
            width=width,
            vocab_start=vocab_start,
            dtype=_DTYPE_CODES[logits_shard.dtype],
            target_hash=_target_hash(t),
        )
    except (TypeError, ValueError, IndexError, RuntimeError) as exc:
        failure = exc
    headers = _agree(group, fields, failure)
    return _ShardCall(group, options, vocab_start, None, t, headers), x


def evaluate_across_ranks(
    logits, target, *, group=None, axis=-1, ignore_index=-100, topk=(1, 5)
) -> EvalResult:
    """``pyce.evaluate`` over the union of every rank's batch (data-parallel evaluation).

    Each rank evaluates its own rows (full vocabulary) with pyce's one-pass
    kernel; one all-reduce of a few sums -- the scored tokens, the sums of loss
    and entropy, the top-k hit counts and the 15 calibration bins' counts,
    confidences and hits -- merges them, weighting every rank by its tokens.
    Every rank gets the :class:`pyce.EvalResult` that ``pyce.evaluate`` gives on
    all the ranks' rows concatenated (ECE included, which averaging the ranks'
    results would not give).

    Parameters
    ----------
    logits : torch.Tensor or array_like
        This rank's logits, classes along ``axis``.
    target : torch.Tensor or array_like of int
        This rank's targets.
    group : torch.distributed.ProcessGroup, optional
        The ranks to merge (default: the whole world).
    axis, ignore_index, topk
        As :func:`pyce.evaluate`; ``topk`` must be the same on every rank.

    Returns
    -------
    pyce.EvalResult

    Examples
    --------
    Under ``torchrun --nproc_per_node=2``, each rank evaluating its own batch::

        result = evaluate_across_ranks(logits_of_my_batch, targets_of_my_batch)
        print(result.loss, result.n_tokens)    # over every rank's tokens, on every rank
    """
    failure = None
    ks = ()
    sums = None
    try:
        ks = check_topk(topk)
        if isinstance(logits, torch.Tensor):
            logits = _as_numpy(logits)
        if isinstance(target, torch.Tensor):
            target = target.detach().cpu().numpy()
        loss, ent, max_prob, rank = evaluate_rows(logits, target, axis=axis, ignore_index=ignore_index)
        sums = evaluation_sums(loss, ent, max_prob, rank, ks)
    except (TypeError, ValueError, IndexError) as exc:
        failure = exc
    # Each rank has its own rows: only the call and topk must agree.
    _agree(
        group,
        {"form": _FORMS["evaluate_rows"], "topk_hash": _topk_hash(ks)},
        failure,
        same=("form", "topk_hash"),
        tiling=False,
    )
    total = torch.from_numpy(sums)
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    return result_from_sums(total.numpy(), ks)


def _topk_hash(ks) -> float:
    """The ks as one exact float64 (k < 2^16 each; a hash mixes longer lists)."""
    h = 0
    for k in ks:
        h = (h * 65537 + int(k)) % (1 << 52)
    return float(h)
