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


def cross_entropy(
    logits,
    target,
    *,
    axis=-1,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    return_lse=False,
):
    """Cross-entropy between ``softmax(logits)`` and ``target``, as PyTorch.

    ``target`` is an integer array of class indices (the logits' shape without
    the class axis) or a float array of probabilities (the logits' shape).
    ``z_loss`` adds ``z_loss * lse**2`` per row that is not ignored;
    ``softcap`` replaces the logits by ``softcap * tanh(logits / softcap)`` first;
    ``return_lse`` also returns every row's log-sum-exp.
    """
    out = cross_entropy_with_grad(
        logits,
        target,
        axis=axis,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        return_lse=return_lse,
    )
    return (out[0], out[2]) if return_lse else out[0]


def cross_entropy_backward(
    logits,
    target,
    grad_output=1.0,
    *,
    axis=-1,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    return_lse=False,
):
    """Gradient of ``cross_entropy(...)`` w.r.t. the logits, times ``grad_output``."""
    out = cross_entropy_with_grad(
        logits,
        target,
        axis=axis,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        grad_output=grad_output,
        z_loss=z_loss,
        softcap=softcap,
        return_lse=return_lse,
    )
    return (out[1], out[2]) if return_lse else out[1]


def cross_entropy_with_grad(
    logits,
    target,
    *,
    axis=-1,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    grad_output=1.0,
    z_loss=0.0,
    softcap=None,
    return_lse=False,
):
    """``(loss, grad)`` (and the rows' lse if asked): the loss and its gradient, in float64."""
    _check_reduction(reduction)
    logits = np.asarray(logits)
    axis = axis % logits.ndim
    z, t, soft, target_shape = _classes_last(logits, target, axis)
    cap_slope = 1.0
    if softcap is not None:
        # Gemma 2's soft cap: z' = c tanh(z / c); dz'/dz = 1 - tanh(z / c)^2.
        capped = np.tanh(z / softcap)
        cap_slope = 1.0 - capped**2
        z = softcap * capped
    loss_rows, grad_rows, divisor = _row_terms(z, t, soft, weight, ignore_index, label_smoothing)
    lse = logsumexp(z, axis=-1)
    if z_loss:
        # PaLM's z-loss on every scored row: z * lse^2, gradient 2 z lse softmax(z).
        scored = np.ones(len(z), dtype=bool) if soft else (t != ignore_index)
        with np.errstate(invalid="ignore", over="ignore"):
            loss_rows = loss_rows + np.where(scored, z_loss * lse**2, 0.0)
            grad_rows = grad_rows + np.where(scored, 2 * z_loss * lse, 0.0)[:, None] * softmax(z, axis=-1)
    grad_rows = grad_rows * cap_slope
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


# --------------------------------------------------------------------------
# Evaluation metrics, divergences and the focal loss (issue 5)
# --------------------------------------------------------------------------

__all__ += [
    "evaluate",
    "expected_calibration_error",
    "entropy",
    "kl_divergence",
    "kl_divergence_with_grad",
    "focal_loss",
    "focal_loss_with_grad",
]


def _rows_last(x, axis):
    """``x`` in float64 with the class axis moved last and flattened to (rows, C)."""
    x = np.asarray(x, dtype=np.float64)
    axis = axis % x.ndim
    z = np.moveaxis(x, axis, -1)
    return z.reshape(-1, z.shape[-1]), z.shape[:-1]


def expected_calibration_error(confidence, correct, n_bins=15):
    """ECE of Guo et al. (2017): ``sum_b |B_b| / n * |acc(B_b) - conf(B_b)|``.

    The bins split (0, 1] into ``n_bins`` equal intervals ``(lo, hi]``;
    ``confidence`` is each prediction's probability, ``correct`` whether it was
    right. nan if there are no predictions or a confidence is nan.
    """
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=np.float64).reshape(-1)
    if conf.size == 0 or np.isnan(conf).any():
        return np.nan
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        # The first bin also takes a confidence of exactly 0.
        in_bin = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def evaluate(logits, target, *, axis=-1, ignore_index=-100, topk=(1, 5)):
    """Language-model evaluation metrics over the rows that are not ignored.

    Returns a dict: ``loss`` (mean -log q_t), ``perplexity`` (exp of it),
    ``accuracy`` ({k: fraction of rows whose target is in the top k}),
    ``entropy`` (mean H(q)), ``ece`` (expected calibration error of the
    top-1 prediction, 15 bins) and ``n_tokens`` (rows scored).

    The target's rank is the number of classes with a strictly larger logit,
    ``#{j : z_j > z_t}``; it is in the top k when its rank is below k (ties
    with the target do not count against it).
    """
    z, shape = _rows_last(logits, axis)
    t = np.asarray(target).astype(np.int64).reshape(-1)
    keep = t != ignore_index
    z, t = z[keep], t[keep]
    n = int(keep.sum())
    rows = np.arange(n)
    logq = log_softmax(z, axis=-1)
    q = softmax(z, axis=-1)
    with np.errstate(invalid="ignore", over="ignore"):
        nll = -logq[rows, t] if n else np.zeros(0)
        # H(q) = -sum q log q with 0 log 0 = 0 (nan for a row without a distribution).
        ent = _entropy_rows(logq)
        rank = np.sum(z > z[rows, t][:, None], axis=-1) if n else np.zeros(0)
        conf = np.max(q, axis=-1) if n else np.zeros(0)
    mean = (lambda v: float(np.mean(v))) if n else (lambda v: float("nan"))
    loss = mean(nll)
    return {
        "loss": loss,
        "perplexity": float(np.exp(loss)),
        "accuracy": {int(k): mean(rank < k) for k in topk},
        "entropy": mean(ent),
        "ece": expected_calibration_error(conf, rank == 0) if n else float("nan"),
        "n_tokens": n,
    }


def entropy(logits, axis=-1):
    """Entropy ``H(softmax(logits)) = -sum q log q`` (0 log 0 = 0) along ``axis``, in float64."""
    z, shape = _rows_last(logits, axis)
    return _entropy_rows(log_softmax(z, axis=-1)).reshape(shape)


def _entropy_rows(logq):
    """-sum q log q over the last axis (0 log 0 = 0); nan where log q has a nan."""
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.exp(logq)
        h = -np.sum(np.where(q > 0, q * logq, 0.0), axis=-1)
    return np.where(np.isnan(logq).any(axis=-1), np.nan, h)


_KL_REDUCTIONS = ("batchmean", "sum", "mean", "none")


def kl_divergence_with_grad(
    student_logits, teacher_logits, *, temperature=1.0, axis=-1, reduction="batchmean", grad_output=1.0
):
    """``(loss, grad)`` of the distillation loss, in float64.

    Per row: ``T^2 KL(p || q)`` with ``p = softmax(teacher / T)``,
    ``q = softmax(student / T)``, ``KL(p || q) = sum_c p_c (log p_c - log q_c)``
    (0 where p_c = 0); its gradient w.r.t. the student logits is ``T (q - p)``.
    Reductions: 'batchmean' (sum / rows), 'sum', 'mean' (sum / (rows * C)),
    'none' (one value per row).
    """
    if reduction not in _KL_REDUCTIONS:
        raise ValueError(f"reduction must be one of {_KL_REDUCTIONS}, got {reduction!r}")
    T = float(temperature)
    s, shape = _rows_last(student_logits, axis)
    t, _ = _rows_last(teacher_logits, axis)
    N, C = s.shape
    logp = log_softmax(t / T, axis=-1)
    logq = log_softmax(s / T, axis=-1)
    with np.errstate(invalid="ignore", over="ignore"):
        p, q = np.exp(logp), np.exp(logq)
        kl = np.sum(np.where(p > 0, p * (logp - logq), 0.0), axis=-1)
        # No distribution on either side (a nan or +inf logit, or all -inf): nan.
        kl = np.where(np.isnan(logp).any(axis=-1) | np.isnan(logq).any(axis=-1), np.nan, kl)
        loss_rows = T * T * kl
        grad_rows = T * (q - p)
    g = np.asarray(grad_output, dtype=np.float64)
    if reduction == "none":
        loss = loss_rows.reshape(shape)
        grad = grad_rows * np.broadcast_to(g, shape).reshape(-1, 1)
    else:
        divisor = {"batchmean": N, "sum": 1, "mean": N * C}[reduction]
        loss = np.float64(np.sum(loss_rows) / divisor)
        grad = grad_rows * (g / divisor)
    ax = axis % np.ndim(student_logits)
    return loss, np.moveaxis(grad.reshape(shape + (C,)), -1, ax)


def kl_divergence(student_logits, teacher_logits, *, temperature=1.0, axis=-1, reduction="batchmean"):
    """``T^2 KL(softmax(teacher / T) || softmax(student / T))``; see kl_divergence_with_grad."""
    return kl_divergence_with_grad(
        student_logits, teacher_logits, temperature=temperature, axis=axis, reduction=reduction
    )[0]


def focal_loss_with_grad(
    logits, target, *, gamma=2.0, alpha=None, axis=-1, ignore_index=-100, reduction="mean", grad_output=1.0
):
    """``(loss, grad)`` of the softmax focal loss (Lin et al., 2017), in float64.

    Per row with target t that is not ignored: ``-alpha_t (1 - q_t)^gamma log q_t``,
    ``q = softmax(logits)``; ``alpha`` is None (1), a number, or one factor per
    class. 'mean' divides by the number of rows that are not ignored. The
    gradient w.r.t. the logits is ``G (q - onehot(t))`` with
    ``G = alpha_t ((1 - q_t)^gamma - gamma q_t (1 - q_t)^(gamma - 1) log q_t)``.
    """
    _check_reduction(reduction)
    z, shape = _rows_last(logits, axis)
    t = np.asarray(target).astype(np.int64).reshape(-1)
    N, C = z.shape
    valid = t != ignore_index
    safe_t = np.where(valid, t, 0)
    rows = np.arange(N)
    if alpha is None:
        a = np.ones(N)
    elif np.ndim(alpha) == 0:
        a = np.full(N, float(alpha))
    else:
        a = np.asarray(alpha, dtype=np.float64)[safe_t]
    logq = log_softmax(z, axis=-1)
    q = np.exp(logq)
    logp = logq[rows, safe_t]
    p = q[rows, safe_t]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        mod = (1.0 - p) ** gamma
        loss_rows = -a * mod * logp
        if gamma == 0:
            factor = a
        else:
            # p (1 - p)^(gamma - 1) log p -> 0 as p -> 1 (and as p -> 0).
            second = np.where((p < 1) & (p > 0), gamma * p * (1.0 - p) ** (gamma - 1.0) * logp, 0.0)
            factor = a * (mod - second)
        onehot = np.zeros((N, C))
        onehot[rows, safe_t] = 1.0
        grad_rows = factor[:, None] * (q - onehot)
    loss_rows[~valid] = 0.0
    grad_rows[~valid] = 0.0
    g = np.asarray(grad_output, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if reduction == "none":
            loss = loss_rows.reshape(shape)
            grad = grad_rows * np.broadcast_to(g, shape).reshape(-1, 1)
        else:
            divisor = float(valid.sum()) if reduction == "mean" else 1.0
            loss = np.float64(np.sum(loss_rows) / divisor)
            grad = grad_rows * (g / divisor)
    grad[~valid] = 0.0
    ax = axis % np.ndim(logits)
    return loss, np.moveaxis(grad.reshape(shape + (C,)), -1, ax)


def focal_loss(logits, target, *, gamma=2.0, alpha=None, axis=-1, ignore_index=-100, reduction="mean"):
    """The softmax focal loss; see focal_loss_with_grad."""
    return focal_loss_with_grad(
        logits, target, gamma=gamma, alpha=alpha, axis=axis, ignore_index=ignore_index, reduction=reduction
    )[0]


# --------------------------------------------------------------------------
# Fused linear cross-entropy (issue 17): the textbook version, logits and all
# --------------------------------------------------------------------------

__all__ += ["linear_cross_entropy", "linear_cross_entropy_with_grad", "linear_evaluate"]


def _shifted(hidden, target, shift):
    """hidden (..., T, D) and target (..., T) paired as row t with target t + shift."""
    if not shift:
        return hidden, target
    return hidden[..., :-shift, :], target[..., shift:]


def linear_cross_entropy_with_grad(
    hidden,
    linear_weight,
    target,
    *,
    linear_bias=None,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    shift=0,
    return_lse=False,
    grad_output=1.0,
):
    """``(loss, grad_hidden, grad_linear_weight[, grad_linear_bias][, lse])`` in float64.

    The logits ``z = hidden @ W.T + b`` are materialised; the loss is
    :func:`cross_entropy_with_grad` of them, and the chain rule gives
    ``grad_hidden = G @ W``, ``grad_W = G.T @ hidden``, ``grad_b = sum_rows G``
    with ``G = d loss / d z``. ``shift`` pairs hidden row t with target t + shift
    (the last ``shift`` rows of every sequence get no gradient).
    """
    h = np.asarray(hidden, dtype=np.float64)
    W = np.asarray(linear_weight, dtype=np.float64)
    y = np.asarray(target)
    hs, ys = _shifted(h, y, shift)
    z = hs @ W.T
    if linear_bias is not None:
        z = z + np.asarray(linear_bias, dtype=np.float64)
    out = cross_entropy_with_grad(
        z,
        ys,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        grad_output=grad_output,
        z_loss=z_loss,
        softcap=softcap,
        return_lse=return_lse,
    )
    loss, G = out[0], out[1]
    G = G.reshape(-1, W.shape[0])
    rows = hs.reshape(-1, W.shape[1])
    grad_hidden = np.zeros_like(h)
    if shift:
        grad_hidden[..., :-shift, :] = (G @ W).reshape(hs.shape)
    else:
        grad_hidden[...] = (G @ W).reshape(h.shape)
    values = (loss, grad_hidden, G.T @ rows)
    if linear_bias is not None:
        values += (G.sum(axis=0),)
    if return_lse:
        values += (out[2],)
    return values


def linear_cross_entropy(hidden, linear_weight, target, **options):
    """The loss of :func:`linear_cross_entropy_with_grad` (and the lse with ``return_lse``)."""
    out = linear_cross_entropy_with_grad(hidden, linear_weight, target, **options)
    return (out[0], out[-1]) if options.get("return_lse") else out[0]


def linear_evaluate(
    hidden, linear_weight, target, *, linear_bias=None, ignore_index=-100, topk=(1, 5), shift=0
):
    """:func:`evaluate` of the materialised logits ``hidden @ W.T + b`` (shifted as above)."""
    h = np.asarray(hidden, dtype=np.float64)
    hs, ys = _shifted(h, np.asarray(target), shift)
    z = hs @ np.asarray(linear_weight, dtype=np.float64).T
    if linear_bias is not None:
        z = z + np.asarray(linear_bias, dtype=np.float64)
    return evaluate(z, ys, ignore_index=ignore_index, topk=topk)
