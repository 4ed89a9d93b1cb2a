"""A batch's statistics, from pyce's kernels: a pure function of the batch, T and ε.

Rows holding nan or inf are not refused: pyce gives them a nan loss, and the
statistics say which rows they are and what the finite rows alone give. Rows
whose target is ``IGNORE_INDEX`` (-100, as in PyTorch) are not scored.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

import pyce

from .derive import exp_of_loss
from .state import IGNORE_INDEX, Batch

CALIBRATION_BINS = 15  # pyce.evaluate's ECE bins: (b/15, (b+1)/15]
TOP_K = (1, 5)


@dataclass(frozen=True)
class BatchStats:
    row_losses: np.ndarray  # (N,) from reduction='none': nan for a non-finite row, 0 ignored
    mean_loss: float  # pyce's mean over the scored rows (nan if one is not finite)
    finite_mean_loss: float  # the mean over the scored rows that are finite
    perplexity: float  # exp of the finite rows' mean loss
    nonfinite_rows: np.ndarray  # rows holding nan or ±inf
    ignored_rows: np.ndarray  # rows whose target is IGNORE_INDEX
    n_scored: int  # finite rows that are not ignored
    evaluation: Optional[pyce.EvalResult]  # pyce.evaluate on the finite rows: top-k, ECE
    bin_confidence: np.ndarray  # reliability diagram: mean confidence per bin (nan if empty)
    bin_accuracy: np.ndarray  # accuracy per bin
    bin_count: np.ndarray  # scored rows per bin

    @property
    def accuracy(self) -> float:
        return self.evaluation.accuracy[1] if self.evaluation else math.nan


def scaled(batch: Batch, temperature: float) -> np.ndarray:
    z = batch.logits
    return z if temperature == 1.0 else z / z.dtype.type(temperature)


def check_targets(targets: np.ndarray, n_rows: int, n_classes: int) -> np.ndarray:
    """Integer targets, one per row, in [0, V) or IGNORE_INDEX; errors name the rows."""
    targets = np.asarray(targets)
    if targets.dtype.kind not in "iu" or targets.shape != (n_rows,):
        raise ValueError(
            f"targets must be {n_rows} integer class indices, got "
            f"dtype {targets.dtype} and shape {targets.shape}"
        )
    targets = targets.astype(np.int64)
    bad = np.flatnonzero(((targets < 0) | (targets >= n_classes)) & (targets != IGNORE_INDEX))
    if bad.size:
        rows = ", ".join(f"row {r}: {targets[r]}" for r in bad[:5])
        more = f" and {bad.size - 5} more" if bad.size > 5 else ""
        raise IndexError(
            f"targets must be classes in [0, {n_classes}) or {IGNORE_INDEX} (ignored); {rows}{more}"
        )
    return targets


def _best_ms(fn, repeats: int = 3) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def time_kernels(batch: Batch, temperature: float, eps: float) -> tuple:
    """Best of a few calls of the loss, and of loss + gradient, over the whole batch (ms)."""
    z = scaled(batch, temperature)
    with np.errstate(all="ignore"):
        forward = _best_ms(lambda: pyce.cross_entropy(z, batch.targets, label_smoothing=eps))
        fused = _best_ms(lambda: pyce.cross_entropy_with_grad(z, batch.targets, label_smoothing=eps))
    return forward, fused


def reliability(z: np.ndarray, targets: np.ndarray, bins: int = CALIBRATION_BINS):
    """Per confidence bin: mean confidence, accuracy, count (the top-1 prediction).

    Confidence max_j q_j = exp(max z − logsumexp z), with pyce's logsumexp; correct
    when no class has a larger logit than the target (pyce.evaluate's rank rule).
    """
    if z.shape[0] == 0:
        empty = np.full(bins, math.nan)
        return empty, empty.copy(), np.zeros(bins, np.int64)
    lse = np.asarray(pyce.logsumexp(z, axis=-1), dtype=np.float64)
    top = z.max(axis=1).astype(np.float64)
    confidence = np.exp(top - lse)
    correct = np.sum(z > z[np.arange(z.shape[0]), targets][:, None], axis=1) == 0
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore"):
        conf = np.bincount(which, weights=confidence, minlength=bins) / count
        acc = np.bincount(which, weights=correct.astype(float), minlength=bins) / count
    return conf, acc, count


def batch_statistics(batch: Batch, temperature: float, eps: float) -> BatchStats:
    z = scaled(batch, temperature)
    t = batch.targets
    with np.errstate(all="ignore"):
        rows = np.asarray(
            pyce.cross_entropy(z, t, reduction="none", label_smoothing=eps, ignore_index=IGNORE_INDEX),
            dtype=np.float64,
        )
        mean = float(pyce.cross_entropy(z, t, label_smoothing=eps, ignore_index=IGNORE_INDEX))
    nonfinite = np.flatnonzero(~np.isfinite(batch.logits).all(axis=1))
    ignored = np.flatnonzero(t == IGNORE_INDEX)
    keep = np.ones(len(t), bool)
    keep[nonfinite] = False
    finite_z = z[keep] if nonfinite.size else z
    finite_t = t[keep] if nonfinite.size else t
    scored = finite_t != IGNORE_INDEX
    n_scored = int(scored.sum())
    if nonfinite.size == 0:
        finite_mean = mean
    elif n_scored:
        finite_mean = float(
            pyce.cross_entropy(finite_z, finite_t, label_smoothing=eps, ignore_index=IGNORE_INDEX)
        )
    else:
        finite_mean = math.nan
    evaluation = (
        pyce.evaluate(finite_z, finite_t, ignore_index=IGNORE_INDEX, topk=TOP_K) if n_scored else None
    )
    conf, acc, count = reliability(finite_z[scored], finite_t[scored])
    return BatchStats(
        row_losses=rows,
        mean_loss=mean,
        finite_mean_loss=finite_mean,
        perplexity=exp_of_loss(finite_mean),
        nonfinite_rows=nonfinite,
        ignored_rows=ignored,
        n_scored=n_scored,
        evaluation=evaluation,
        bin_confidence=conf,
        bin_accuracy=acc,
        bin_count=count,
    )
