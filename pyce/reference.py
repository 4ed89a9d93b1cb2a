"""Plain-NumPy reference implementation of every public pyce function.

This module is the oracle the test-suite compares the C++ kernels against, and
the easiest place to read the mathematics. It favours clarity over speed:
everything is computed in float64, with the textbook formulas, and results are
returned in float64 (scalars as ``numpy.float64``).

Notation, for one row of logits ``z`` over ``C`` classes::

    lse(z)        = log(sum_c exp(z_c))            (computed as m + log(sum exp(z - m)))
    q             = softmax(z) = exp(z - lse(z))   (the model's distribution)
    log q         = z - lse(z)
    CE(p, q)      = -sum_c p_c log q_c  = H(p) + KL(p || q)
    d CE / d z    = (sum_c p_c) q - p    (= q - p for a distribution p)

The cross-entropy functions follow ``torch.nn.functional.cross_entropy``
exactly: class weights, ``ignore_index``, label smoothing (mix the target with
the uniform distribution: ``(1 - eps) * y + eps / C``), probability targets and
the three reductions, including PyTorch's normalisation of the weighted mean.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "logsumexp",
    "softmax",
    "log_softmax",
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_with_grad",
]


def logsumexp(x, axis=-1, keepdims=False):
    """log(sum(exp(x))) along ``axis``, computed stably in float64."""
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    # Shifting by the max keeps exp() in [0, 1]. A row whose max is +-inf
    # cannot be shifted (inf - inf is nan); shift by 0 instead so that
    # all -inf gives -inf and any +inf gives +inf (or nan with a nan).
    shift = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.log(np.sum(np.exp(x - shift), axis=axis, keepdims=True)) + shift
    if not keepdims:
        out = np.squeeze(out, axis=axis)
    return out


def log_softmax(x, axis=-1):
    """log of the softmax along ``axis``: ``(x - m) - log(sum(exp(x - m)))``, in float64.

    ``m`` is the row's max. As in PyTorch, a row holding +inf or nan, or made
    only of -inf, has no distribution: every entry of that row is nan.
    """
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        shifted = x - m
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax(x, axis=-1):
    """``exp(x - logsumexp(x))`` along ``axis``, in float64."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.exp(log_softmax(x, axis=axis))


def _classes_last(logits, target, axis):
    """Move the class axis last and flatten to (rows, C); return the pieces.

    Returns ``(z, t, soft, target_shape)`` where ``z`` is (N, C) float64,
    ``t`` is (N,) int64 class indices or (N, C) float64 probabilities.
    """
    logits = np.asarray(logits, dtype=np.float64)
    axis = axis % logits.ndim
    z = np.moveaxis(logits, axis, -1)
    target_shape = z.shape[:-1]
    C = z.shape[-1]
    target = np.asarray(target)
    soft = np.issubdtype(target.dtype, np.floating)
    if soft:
        t = np.moveaxis(target.astype(np.float64), axis, -1).reshape(-1, C)
    else:
        t = target.astype(np.int64).reshape(-1)
    return z.reshape(-1, C), t, soft, target_shape


def _row_terms(z, t, soft, weight, ignore_index, label_smoothing):
    """Per-row losses, per-row gradients (before reduction) and the mean's divisor.

    Every case writes the row's loss as a weighted sum of negative log-probs,
    ``loss = -sum_c coef_c * log q_c``, whose gradient w.r.t. the logits is
    ``sum(coef) * q - coef``.
    """
    N, C = z.shape
    eps = float(label_smoothing)
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)
    logq = log_softmax(z, axis=-1)
    q = softmax(z, axis=-1)
    with np.errstate(invalid="ignore", over="ignore"):
        if soft:
            # PyTorch: target' = (1 - eps) * target + eps / C, weighted per class,
            # multiplied out over every class (so 0 * -inf is nan, as in torch).
            coef = ((1.0 - eps) * t + eps / C) * w
            loss = -np.sum(coef * logq, axis=-1)
            grad = np.sum(coef, axis=-1, keepdims=True) * q - coef
            # The mean divides by the number of rows, whatever the weights.
            return loss, grad, float(N)

        valid = t != ignore_index
        rows = np.arange(N)
        safe_t = np.where(valid, t, 0)
        w_t = w[safe_t]
        # The NLL part looks only at the target class: w[t] * -log q[t].
        onehot = np.zeros((N, C))
        onehot[rows, safe_t] = 1.0
        loss = (1.0 - eps) * w_t * -logq[rows, safe_t]
        grad = ((1.0 - eps) * w_t)[:, None] * (q - onehot)
        if eps > 0.0:
            # The smoothing part (only when eps > 0, as PyTorch) is the
            # cross-entropy with the weighted uniform distribution.
            loss = loss + (eps / C) * -np.sum(w * logq, axis=-1)
            grad = grad + (eps / C) * (np.sum(w) * q - w)
    loss[~valid] = 0.0
    grad[~valid] = 0.0
    # PyTorch normalises the (weighted) mean by the sum of w[target] over the
    # rows that are not ignored -- the smoothing part too.
    divisor = float(np.sum(w_t[valid]))
    return loss, grad, divisor


def _check_reduction(reduction):
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def cross_entropy(logits, target, *, axis=-1, weight=None, ignore_index=-100,
                  reduction="mean", label_smoothing=0.0, z_loss=0.0, return_lse=False):
    """Cross-entropy between ``softmax(logits)`` and ``target``, as PyTorch.

    ``target`` is an integer array of class indices (the logits' shape without
    the class axis) or a float array of probabilities (the logits' shape).
    ``z_loss`` adds ``z_loss * lse**2`` per row that is not ignored;
    ``return_lse`` also returns every row's log-sum-exp.
    """
    out = cross_entropy_with_grad(
        logits, target, axis=axis, weight=weight, ignore_index=ignore_index,
        reduction=reduction, label_smoothing=label_smoothing, z_loss=z_loss,
        return_lse=return_lse)
    return (out[0], out[2]) if return_lse else out[0]


def cross_entropy_backward(logits, target, grad_output=1.0, *, axis=-1, weight=None,
                           ignore_index=-100, reduction="mean", label_smoothing=0.0,
                           z_loss=0.0, return_lse=False):
    """Gradient of ``cross_entropy(...)`` w.r.t. the logits, times ``grad_output``."""
    out = cross_entropy_with_grad(
        logits, target, axis=axis, weight=weight, ignore_index=ignore_index,
        reduction=reduction, label_smoothing=label_smoothing, grad_output=grad_output,
        z_loss=z_loss, return_lse=return_lse)
    return (out[1], out[2]) if return_lse else out[1]


def cross_entropy_with_grad(logits, target, *, axis=-1, weight=None, ignore_index=-100,
                            reduction="mean", label_smoothing=0.0, grad_output=1.0,
                            z_loss=0.0, return_lse=False):
    """``(loss, grad)`` (and the rows' lse if asked): the loss and its gradient, in float64."""
    _check_reduction(reduction)
    logits = np.asarray(logits)
    axis = axis % logits.ndim
    z, t, soft, target_shape = _classes_last(logits, target, axis)
    loss_rows, grad_rows, divisor = _row_terms(z, t, soft, weight, ignore_index, label_smoothing)
    lse = logsumexp(z, axis=-1)
    if z_loss:
        # PaLM's z-loss on every scored row: z * lse^2, gradient 2 z lse softmax(z).
        scored = np.ones(len(z), dtype=bool) if soft else (t != ignore_index)
        with np.errstate(invalid="ignore", over="ignore"):
            loss_rows = loss_rows + np.where(scored, z_loss * lse**2, 0.0)
            grad_rows = grad_rows + np.where(scored, 2 * z_loss * lse, 0.0)[:, None] * softmax(z, axis=-1)
    g_out = np.asarray(grad_output, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if reduction == "none":
            loss = loss_rows.reshape(target_shape)
            scale = np.broadcast_to(g_out, target_shape).reshape(-1, 1)
        elif reduction == "sum":
            loss = np.float64(np.sum(loss_rows))
            scale = g_out
        else:
            loss = np.float64(np.sum(loss_rows) / divisor)
            scale = g_out / divisor
        grad = grad_rows * scale
    # Ignored rows have no gradient, even when the divisor is 0 (all ignored).
    if not soft:
        grad[t == ignore_index] = 0.0
    grad = np.moveaxis(grad.reshape(target_shape + (z.shape[-1],)), -1, axis)
    if return_lse:
        return loss, grad, lse.reshape(target_shape)
    return loss, grad
