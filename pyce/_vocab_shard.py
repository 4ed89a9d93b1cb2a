"""The arithmetic of a vocabulary-parallel cross-entropy, one rank's half (NumPy only).

The classes are split across ranks: rank r holds the logit columns
``[vocab_start_r, vocab_start_r + V_r)``. Nothing here communicates; the
caller (``pyce.torch.distributed``) exchanges what :func:`shard_stats`
packs and passes every rank's rows to :func:`combine`. So the same code
runs in one process over several shards (the tests) and over real ranks.

Per row, for the global vocabulary of V classes, target t, smoothing eps,
class weights w (1 without), K = sum_j w_j, z the (soft-capped) logits:

    lse   = log sum_j exp(z_j)                   merged from the shards' lse
    loss  = (1 - eps) w_t (lse - z_t)            z_t, w_t from the owner of t
          + eps / V (K lse - sum_j w_j z_j)      sums over the shards
          + z_loss lse^2

and the gradient of shard r, with p_j = exp(z_j - lse), is

    g_j = scale ((1 - eps) w_t + eps K / V + 2 z_loss lse) p_j
          - scale eps / V w_j - scale (1 - eps) w_t [j == t]

(times dz/dx with a soft cap): exactly torch.nn.functional.cross_entropy
over the whole vocabulary, label smoothing included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _core

__all__ = ["ShardStats", "GlobalRows", "shard_stats", "combine", "row_losses", "reduce_losses", "shard_grad"]


@dataclass
class ShardStats:
    """What one rank's shard contributes per row (all float64, length N)."""

    lse: np.ndarray  # log-sum-exp of the shard's (capped) logits; -inf for an empty shard
    shift: np.ndarray  # what the kernel shifted its exps by (kept for the gradient)
    target_logit: np.ndarray  # z_t where this shard holds t, else 0
    target_weight: np.ndarray  # w_t where this shard holds t, else 0 (class weights only)
    dot: np.ndarray  # sum_j coef_j z_j over the shard (label smoothing only)

    def packed(self, weighted: bool, smoothing: bool) -> np.ndarray:
        """The (N, k) float64 rows the ranks exchange: lse, z_t[, w_t][, sum coef z]."""
        columns = [self.lse, self.target_logit]
        if weighted:
            columns.append(self.target_weight)
        if smoothing:
            columns.append(self.dot)
        return np.stack(columns, axis=1)


def packed_width(weighted: bool, smoothing: bool) -> int:
    """How many float64 values per row :meth:`ShardStats.packed` holds."""
    return 2 + int(weighted) + int(smoothing)


def shard_stats(
    logits: np.ndarray,
    target: np.ndarray,
    vocab_start: int,
    *,
    weight,
    ignore_index: int,
    label_smoothing: float,
    softcap,
) -> ShardStats:
    """One read of the (N, V_local) shard (pyce's kernel): lse, z_t, sum coef z per row.

    ``target`` holds global class ids (int64, already checked to lie in the
    global vocabulary); ``weight`` is this shard's slice in the compute dtype.
    """
    smoothing = label_smoothing > 0.0
    lse, shift, dot, target_logit = _core.shard_stats(
        logits,
        target,
        int(vocab_start),
        int(ignore_index),
        weight,
        smoothing,
        0.0 if softcap is None else float(softcap),
    )
    n_local = logits.shape[1]
    local = target - vocab_start
    owned = (local >= 0) & (local < n_local) & (target != ignore_index)
    target_weight = np.zeros(target.shape[0], dtype=np.float64)
    if weight is not None:
        target_weight[owned] = weight[local[owned]]
    return ShardStats(
        lse=lse,
        shift=shift,
        target_logit=target_logit,
        target_weight=target_weight,
        dot=np.zeros_like(lse) if dot is None else dot,
    )


@dataclass
class GlobalRows:
    """Every row's global quantities, the same on every rank (float64, length N)."""

    lse: np.ndarray
    target_logit: np.ndarray
    target_weight: np.ndarray  # 1 without class weights
    dot: np.ndarray  # sum_j coef_j z_j over the whole vocabulary (0 without smoothing)


def combine(gathered: np.ndarray, weighted: bool, smoothing: bool) -> GlobalRows:
    """Merge the (R, N, k) packed rows of all ranks, in rank order.

    Every rank runs this on the same gathered array, so every rank gets the
    same bits. lse = M + log sum_r exp(lse_r - M) with M = max_r lse_r.
    """
    lse_r = gathered[:, :, 0]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        top = lse_r.max(axis=0)
        # All shards -inf: shift by 0, so that the sum is 0 and lse -inf
        # (+inf and nan stay, and make the row nan as in PyTorch).
        shift = np.where(top == -np.inf, 0.0, top)
        lse = shift + np.log(np.exp(lse_r - shift).sum(axis=0))
    column = 2
    target_weight = np.ones_like(lse)
    if weighted:
        target_weight = gathered[:, :, column].sum(axis=0)
        column += 1
    dot = gathered[:, :, column].sum(axis=0) if smoothing else np.zeros_like(lse)
    return GlobalRows(
        lse=lse, target_logit=gathered[:, :, 1].sum(axis=0), target_weight=target_weight, dot=dot
    )


def row_losses(
    rows: GlobalRows,
    scored: np.ndarray,
    *,
    n_classes: int,
    coef_total: float,
    label_smoothing: float,
    z_loss: float,
) -> np.ndarray:
    """Every row's loss (0 where not ``scored``), float64.

    ``n_classes`` is the global V, ``coef_total`` K = sum of all class weights (V without).
    """
    eps = label_smoothing
    with np.errstate(invalid="ignore", over="ignore"):
        loss = (1.0 - eps) * rows.target_weight * (rows.lse - rows.target_logit)
        if eps > 0.0:
            loss = loss + (eps / n_classes) * (coef_total * rows.lse - rows.dot)
        if z_loss:
            loss = loss + z_loss * rows.lse * rows.lse
    return np.where(scored, loss, 0.0)


def divisor(rows: GlobalRows, scored: np.ndarray) -> float:
    """The mean's divisor: sum of w_t over the scored rows (their count without weights)."""
    return float(np.sum(np.where(scored, rows.target_weight, 0.0)))


def reduce_losses(losses: np.ndarray, reduction: str, mean_divisor: float):
    """The reduced loss as a float (nan for a mean over nothing), or the rows for 'none'."""
    if reduction == "none":
        return losses
    total = float(np.sum(losses))
    if reduction == "sum":
        return total
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.float64(total) / np.float64(mean_divisor))


def grad_coefficients(
    stats: ShardStats,
    rows: GlobalRows,
    scale: np.ndarray,
    *,
    n_classes: int,
    coef_total: float,
    label_smoothing: float,
    z_loss: float,
):
    """The per-row (mul, sub, at_target) of :func:`shard_grad` for this rank's shard.

    ``scale`` is each row's upstream gradient (grad_output, / the divisor for
    the mean), float64 of length N.
    """
    eps = label_smoothing
    with np.errstate(invalid="ignore", over="ignore"):
        alpha = (1.0 - eps) * rows.target_weight
        q_weight = alpha + (eps * coef_total / n_classes if eps > 0.0 else 0.0)
        if z_loss:
            q_weight = q_weight + 2.0 * z_loss * rows.lse
        # p_j = exp(z_j - shift) * exp(shift - lse); a shard row that is all
        # -inf has p = 0 there (its shift is 0, lse may be far below it).
        factor = np.where(stats.lse == -np.inf, 0.0, np.exp(stats.shift - rows.lse))
        mul = scale * q_weight * factor
        sub = scale * (eps / n_classes) if eps > 0.0 else None
        at_target = scale * alpha
    if sub is not None:
        sub = np.ascontiguousarray(np.broadcast_to(sub, mul.shape), dtype=np.float64)
    return (
        np.ascontiguousarray(mul, dtype=np.float64),
        sub,
        np.ascontiguousarray(at_target, dtype=np.float64),
    )


def shard_grad(
    logits: np.ndarray,
    target: np.ndarray,
    vocab_start: int,
    stats: ShardStats,
    rows: GlobalRows,
    scale: np.ndarray,
    out: np.ndarray,
    *,
    weight,
    ignore_index: int,
    n_classes: int,
    coef_total: float,
    label_smoothing: float,
    z_loss: float,
    softcap,
) -> None:
    """Writes the shard's gradient into ``out`` (the logits' shape and dtype; may be ``logits``)."""
    mul, sub, at_target = grad_coefficients(
        stats,
        rows,
        scale,
        n_classes=n_classes,
        coef_total=coef_total,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
    )
    _core.shard_grad(
        logits,
        target,
        int(vocab_start),
        int(ignore_index),
        weight,
        stats.shift,
        mul,
        sub,
        at_target,
        0.0 if softcap is None else float(softcap),
        out,
    )
