"""One-pass evaluation metrics for language models and classifiers: ``pyce.evaluate``.

The C++ kernel reads every logit once and returns four numbers per row (the
loss ``-log q_t``, the entropy ``H(q)``, the top probability and the target's
rank); everything here is O(rows): means over the rows that are not ignored,
top-k accuracies from the ranks and the expected calibration error.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import numpy as np

from . import _core
from ._validation import check_ignore_index, class_layout, split_target

__all__ = ["EvalResult", "evaluate"]

ECE_BINS = 15


@dataclass(frozen=True)
# A result, not something users construct: its fields are documented as Attributes.
class EvalResult:  # numpydoc ignore=PR01
    """What :func:`pyce.evaluate` measured.

    Attributes
    ----------
    loss : float
        Mean cross-entropy ``-log q(target)`` over the scored tokens (nats).
    perplexity : float
        ``exp(loss)``: the "effective vocabulary size" the model hesitates over.
    accuracy : dict of int to float
        ``{k: fraction of scored tokens whose target is among the top k}``.
    entropy : float
        Mean entropy ``H(q)`` of the predicted distributions (nats).
    ece : float
        Expected calibration error of the top-1 prediction (15 equal-width bins).
    n_tokens : int
        Rows scored (those whose target is not ``ignore_index``).

    All the float fields are nan when no token was scored.

    Examples
    --------
    >>> import numpy as np, pyce
    >>> result = pyce.evaluate(np.array([[2.0, 1.0, 3.0], [0.0, 5.0, 0.0]]), np.array([2, 0]))
    >>> result.n_tokens, result.accuracy[1], round(result.loss, 4)
    (2, 0.5, 2.7105)
    """

    loss: float
    perplexity: float
    accuracy: dict = field(default_factory=dict)
    entropy: float = math.nan
    ece: float = math.nan
    n_tokens: int = 0

    def __str__(self) -> str:
        acc = ", ".join(f"top-{k} {v:.4f}" for k, v in sorted(self.accuracy.items()))
        return (
            f"loss {self.loss:.4f} nats | perplexity {self.perplexity:.3f} | {acc} | "
            f"entropy {self.entropy:.4f} | ECE {self.ece:.4f} | {self.n_tokens} tokens"
        )


def check_topk(topk):
    if isinstance(topk, (int, np.integer)):
        topk = (topk,)
    try:
        ks = [operator.index(k) for k in topk]
    except TypeError:
        raise TypeError(f"topk must be an integer or a sequence of integers, got {topk!r}") from None
    for k in ks:
        if k < 1:
            raise ValueError(f"topk values must be >= 1, got {k}")
    return tuple(dict.fromkeys(ks))  # unique, in the order given


def _bin_index(confidence, n_bins=ECE_BINS):
    """The calibration bin (edges[b], edges[b + 1]] of each confidence, edges
    = linspace(0, 1, n_bins + 1): searchsorted(edges, c, 'left') - 1, clipped
    to the bins, without a binary search per value (which took 70 ms of a
    2M-position pyce.evaluate). ceil(n_bins c) - 1 is that bin wherever
    n_bins c is not within 1e-9 of an integer (c * n_bins and the edges k /
    n_bins are each off by ~1e-16); the values that are take searchsorted."""
    scaled = confidence * n_bins
    with np.errstate(invalid="ignore"):  # nan: any bin (its sums are nan; _ece_from_bins says so)
        bins = np.ceil(scaled).astype(np.intp)
    bins -= 1
    near = np.abs(scaled - np.rint(scaled)) < 1e-9
    if near.any():
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        bins[near] = np.searchsorted(edges, confidence[near], side="left") - 1
    np.clip(bins, 0, n_bins - 1, out=bins)
    return bins


def _ece_bins(confidence, correct, n_bins=ECE_BINS):
    """Per calibration bin (lo, hi] of equal width: (count, sum of confidence, sum of hits)."""
    bins = _bin_index(confidence, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(bins, weights=correct.astype(np.float64), minlength=n_bins)
    return count, conf_sum, correct_sum


def _ece_from_bins(count, conf_sum, correct_sum):
    """ECE from the bins of _ece_bins (nan when empty or a confidence was nan)."""
    n = np.sum(count)
    if n == 0 or np.isnan(conf_sum).any():
        return math.nan
    used = count > 0
    gap = np.abs(correct_sum[used] - conf_sum[used]) / count[used]
    return float(np.sum(count[used] * gap) / n)


def _ece(confidence, correct, n_bins=ECE_BINS):
    """Expected calibration error over bins (lo, hi] of equal width (Guo et al., 2017)."""
    if confidence.size == 0 or np.isnan(confidence).any():
        return math.nan
    return _ece_from_bins(*_ece_bins(confidence, correct, n_bins))


def evaluate(logits, target, *, axis=-1, ignore_index=-100, topk=(1, 5)) -> EvalResult:
    """Evaluation metrics of a batch of predictions, from one pass over the logits.

    Computes the mean loss, perplexity, top-k accuracies, mean predictive
    entropy and expected calibration error without materialising anything of
    the logits' size: each logit is read from memory once.

    Parameters
    ----------
    logits : array_like of float32, float64, float16 or bfloat16
        Unnormalised scores, classes along ``axis`` (e.g. a (batch, time, vocab)
        language-model output).
    target : array_like of int
        Class indices, the logits' shape without the class axis.
    axis : int, optional
        The class axis (default: the last).
    ignore_index : int, optional
        Rows with this target are not scored (default -100).
    topk : int or sequence of int, optional
        The k of the top-k accuracies (default ``(1, 5)``).

    Returns
    -------
    EvalResult
        ``loss``, ``perplexity``, ``accuracy`` (a dict k -> accuracy),
        ``entropy``, ``ece`` and ``n_tokens``.

    Notes
    -----
    The target is in the top k when its rank ``#{j : z_j > z_target}`` -- the
    number of classes with a strictly larger logit -- is below k. Ties with
    the target count in its favour (``torch.topk`` breaks ties by position, so
    the two can differ only when logits are exactly equal).

    ECE uses the top-1 prediction: its probability ``max_j q_j`` is the
    confidence, and it is correct when the target's rank is 0. The scored
    tokens are split into 15 bins ``(b/15, (b+1)/15]`` by confidence and
    ``ECE = sum_b n_b / n * |accuracy_b - mean confidence_b|``.

    A row holding nan has a nan loss and entropy, and makes the means and ECE nan.

    Raises
    ------
    IndexError
        A target outside ``[0, C)`` that is not ``ignore_index``.
    ValueError
        Mismatched shapes, no classes, or a k < 1.
    TypeError
        Non-float logits or a non-integer target.

    Examples
    --------
    >>> import numpy as np, pyce
    >>> logits = np.array([[2.0, 1.0, 3.0], [0.0, 5.0, 0.0]])
    >>> r = pyce.evaluate(logits, np.array([2, 0]), topk=(1, 2))
    >>> r.n_tokens, r.accuracy
    (2, {1: 0.5, 2: 1.0})
    >>> round(r.loss, 4)
    2.7105
    """
    ks = check_topk(topk)
    loss, ent, max_prob, rank = evaluate_rows(logits, target, axis=axis, ignore_index=ignore_index)
    return result_from_rows(loss, ent, max_prob, rank, ks)


def evaluate_rows(logits, target, *, axis=-1, ignore_index=-100):
    """The kernel's per-row (loss, entropy, max_prob, rank) over the scored rows,
    with :func:`evaluate`'s checks (also used to merge ranks' evaluations)."""
    logits, axis, rows = class_layout(logits, "logits", axis)
    ignore_index = check_ignore_index(ignore_index)
    indices, probabilities = split_target(target, logits, axis)
    if indices is None:
        raise TypeError("evaluate needs integer class-index targets, got a float array")
    t = np.ascontiguousarray(indices, dtype=np.int64).reshape(-1)
    loss, ent, max_prob, rank = _core.evaluate(rows, t, ignore_index)
    scored = t != ignore_index
    if np.count_nonzero(scored) < t.size:
        loss, ent, max_prob, rank = loss[scored], ent[scored], max_prob[scored], rank[scored]
    return loss, ent, max_prob, rank


def result_from_rows(loss, ent, max_prob, rank, ks) -> EvalResult:
    """The EvalResult of the kernel's per-row numbers over the scored rows only
    (also used by ``pyce.linear_evaluate``, which computes them chunk by chunk)."""
    n = int(loss.size)
    if n == 0:
        return EvalResult(math.nan, math.nan, {k: math.nan for k in ks}, math.nan, math.nan, 0)
    mean_loss = float(np.sum(loss) / n)
    with np.errstate(over="ignore", invalid="ignore"):
        perplexity = float(np.exp(mean_loss))
    return EvalResult(
        loss=mean_loss,
        perplexity=perplexity,
        accuracy={k: float(np.count_nonzero(rank < k) / n) for k in ks},
        entropy=float(np.sum(ent) / n),
        ece=_ece(max_prob, rank == 0),
        n_tokens=n,
    )


def evaluation_sums(loss, ent, max_prob, rank, ks) -> np.ndarray:
    """What several batches' evaluations add up to (float64): the scored rows,
    the sums of loss and entropy, the top-k hits per k, and the calibration
    bins' counts, confidence sums and hit sums. Summed over batches (or
    ranks), :func:`result_from_sums` turns them into the EvalResult of all
    the rows together."""
    count, conf_sum, correct_sum = _ece_bins(max_prob, rank == 0)
    hits = [np.count_nonzero(rank < k) for k in ks]
    return np.concatenate(
        [[loss.size, np.sum(loss), np.sum(ent)], hits, count, conf_sum, correct_sum]
    ).astype(np.float64)


def result_from_sums(sums, ks) -> EvalResult:
    """The EvalResult of :func:`evaluation_sums` (added over batches)."""
    n = int(sums[0])
    if n == 0:
        return EvalResult(math.nan, math.nan, {k: math.nan for k in ks}, math.nan, math.nan, 0)
    mean_loss = float(sums[1] / n)
    with np.errstate(over="ignore", invalid="ignore"):
        perplexity = float(np.exp(mean_loss))
    hits = sums[3 : 3 + len(ks)]
    bins = sums[3 + len(ks) :].reshape(3, ECE_BINS)
    return EvalResult(
        loss=mean_loss,
        perplexity=perplexity,
        accuracy={k: float(h / n) for k, h in zip(ks, hits)},
        entropy=float(sums[2] / n),
        ece=_ece_from_bins(bins[0], bins[1], bins[2]),
        n_tokens=n,
    )
