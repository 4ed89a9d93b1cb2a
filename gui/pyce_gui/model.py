"""The explorer's state and everything derived from it, without Qt.

One row of logits ``z`` over ``C`` labelled classes, a target (a class index,
optionally label-smoothed, or an edited soft distribution ``p``), a temperature
``T`` and a label-smoothing ``eps``. Every derived number the explorer shows is
computed here, through pyce's kernels:

    q       = pyce.softmax(z / T)                  the model's distribution
    log q   = pyce.log_softmax(z / T)
    loss    = pyce.cross_entropy(z / T, target, label_smoothing=eps)
    grad    = q - p, from pyce.cross_entropy_with_grad (the gradient w.r.t. z / T)
    H(p, q) = pyce.cross_entropy(z / T, p)         (soft targets)

Only trivial quantities are derived in NumPy from what pyce returned: exp(loss),
the rank of the target, H(q) = -sum q log q, H(p) and KL(p||q) = sum p (log p - log q).

Views subscribe with :meth:`ExplorerModel.subscribe`; every mutation recomputes
the derived values and then calls the subscribers with what kind of thing
changed, so a view never has to ask "is this up to date?".
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

import pyce

# What changed, passed to subscribers. A view redraws its bars on VALUES, its
# axes and labels on STRUCTURE, its highlight on SELECTION.
VALUES = "values"            # logits, target, T, eps: every derived number
STRUCTURE = "structure"      # number of classes or class labels
SELECTION = "selection"      # the keyboard-selected class
DESCENT = "descent"          # the gradient-descent trajectory
BATCH = "batch"              # a loaded batch or its statistics

T_MIN, T_MAX = 0.05, 10.0    # the temperature range the controls offer
MIN_CLASSES, MAX_EDIT_CLASSES = 2, 64   # editable class counts; more come from files
TOP_K = 40                   # bars shown when the vocabulary is larger than that
# A dragged probability is kept strictly inside (0, 1): its logit must be finite.
PROB_CLIP = 1e-6


def _onehot(index: int, n: int) -> np.ndarray:
    y = np.zeros(n)
    y[index] = 1.0
    return y


def _entropy(p: np.ndarray, log_p: Optional[np.ndarray] = None) -> float:
    """-sum p log p, with 0 log 0 = 0 (a class with no mass contributes nothing)."""
    mask = p > 0
    if log_p is None:
        log_p = np.log(np.where(mask, p, 1.0))
    # 0.0 - sum, not -sum: a one-hot p has entropy 0.0, not -0.0.
    return float(0.0 - np.sum(p[mask] * log_p[mask]))


@dataclass
class BatchStats:
    """A batch of N rows of logits with N integer targets, summarised by pyce."""

    logits: np.ndarray            # (N, V) float32 or float64, as loaded
    targets: np.ndarray           # (N,) int64
    row_losses: Optional[np.ndarray] = None   # (N,), from reduction='none'
    mean_loss: float = math.nan
    perplexity: float = math.nan
    accuracy: float = math.nan
    forward_ms: float = math.nan   # pyce.cross_entropy, mean reduction
    fused_ms: float = math.nan     # pyce.cross_entropy_with_grad (loss + gradient)

    @property
    def shape(self):
        return self.logits.shape


class ExplorerModel:
    """State of the cross-entropy explorer and its derived quantities."""

    def __init__(self):
        self._listeners: list[Callable[[str], None]] = []
        self._pending: Optional[set] = None   # kinds collected inside batch_update()
        self.logits = np.zeros(3)
        self.labels = ["a", "b", "c"]
        self.target = 0
        self.soft_mode = False
        self.soft_target = _onehot(0, 3)
        self.temperature = 1.0
        self.label_smoothing = 0.0
        self.selected = 0
        self.learning_rate = 1.0
        self.trajectory: list[float] = []     # loss before each gradient step, then now
        self.descent_start: Optional[np.ndarray] = None
        self.batch: Optional[BatchStats] = None
        self.batch_row = 0
        self.note = ""                         # a sentence about the current preset
        self._recompute()

    # ------------------------------------------------------------------ observers
    def subscribe(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(kind)`` after every change (kind: VALUES, STRUCTURE, ...)."""
        self._listeners.append(callback)

    def unsubscribe(self, callback: Callable[[str], None]) -> None:
        self._listeners.remove(callback)

    @contextlib.contextmanager
    def batch_update(self):
        """Group several mutations so that subscribers hear once, after all of them."""
        outer = self._pending is None
        if outer:
            self._pending = set()
        try:
            yield
        finally:
            if outer:
                kinds, self._pending = self._pending, None
                self._notify(*kinds)

    def _notify(self, *kinds: str) -> None:
        if self._pending is not None:
            self._pending.update(kinds)
            return
        # STRUCTURE first: a view must re-create its axes before drawing values on them.
        order = [STRUCTURE, VALUES, SELECTION, DESCENT, BATCH]
        for kind in sorted(set(kinds), key=order.index):
            for callback in list(self._listeners):
                callback(kind)

    def _changed(self, *kinds: str) -> None:
        if VALUES in kinds or STRUCTURE in kinds:
            self._recompute()
        self._notify(*kinds)

    # ------------------------------------------------------------------ derived values
    @property
    def n_classes(self) -> int:
        return len(self.logits)

    @property
    def scaled_logits(self) -> np.ndarray:
        """z / T: what the softmax sees. Dividing first keeps it stable for any T,
        because pyce's softmax subtracts the row maximum before exponentiating."""
        return self.logits / self.temperature

    @property
    def target_class(self) -> int:
        """The class the readouts call "the target": argmax p in soft-target mode."""
        if self.soft_mode:
            return int(np.argmax(self.soft_target))
        return self.target

    def _recompute(self) -> None:
        z = self.scaled_logits
        row = z[None, :]
        eps = self.label_smoothing
        self.lse = float(pyce.logsumexp(z))
        self.q = np.asarray(pyce.softmax(z), dtype=np.float64)
        self.log_q = np.asarray(pyce.log_softmax(z), dtype=np.float64)
        C = self.n_classes
        # p: the distribution the loss compares q with. PyTorch (and pyce) smooth
        # soft targets too: (1 - eps) * p + eps / C.
        base = self.soft_target if self.soft_mode else _onehot(self.target, C)
        self.p = (1.0 - eps) * base + eps / C
        if self.soft_mode:
            loss, grad = pyce.cross_entropy_with_grad(row, base[None, :], label_smoothing=eps)
        else:
            loss, grad = pyce.cross_entropy_with_grad(
                row, np.array([self.target]), label_smoothing=eps)
        self.loss = float(loss)
        # The kernel's gradient is w.r.t. its input z / T; with one row and the mean
        # reduction that is exactly q - p.
        self.grad = np.asarray(grad, dtype=np.float64)[0]
        # H(p, q) through the soft-target path, whatever the mode: it equals the loss,
        # which is the point the readout makes.
        self.cross_entropy_pq = float(pyce.cross_entropy(row, self.p[None, :]))
        self.perplexity = math.exp(self.loss) if self.loss < 709 else math.inf
        self.entropy_q = _entropy(self.q, self.log_q)
        self.entropy_p = _entropy(self.p)
        mask = self.p > 0
        self.kl_pq = float(np.sum(self.p[mask] * (np.log(self.p[mask]) - self.log_q[mask])))
        t = self.target_class
        self.q_target = float(self.q[t])
        # Rank 1 = the model's top guess; ties count in the target's favour.
        self.target_rank = 1 + int(np.sum(self.q > self.q[t]))

    def summary(self) -> dict:
        """The readout values by name (for the readouts panel and CSV export)."""
        return {
            "loss": self.loss,
            "perplexity": self.perplexity,
            "q_target": self.q_target,
            "target_rank": self.target_rank,
            "entropy_q": self.entropy_q,
            "entropy_p": self.entropy_p,
            "kl_pq": self.kl_pq,
            "cross_entropy_pq": self.cross_entropy_pq,
            "logsumexp": self.lse,
            "temperature": self.temperature,
            "label_smoothing": self.label_smoothing,
            "n_classes": self.n_classes,
            "target": self.target_class,
        }

    def visible_classes(self, k: int = TOP_K) -> np.ndarray:
        """Class indices to draw: all of them, or the top-k by q plus the target.

        Large vocabularies show the k most probable classes (highest first), and
        always the target and the selected class, so that they stay editable.
        """
        C = self.n_classes
        if C <= k:
            return np.arange(C)
        # Top k by probability; the stable sort keeps ties in class order, so the
        # bars do not shuffle while nothing changes.
        order = np.argsort(-self.q, kind="stable")[:k]
        extra = [c for c in dict.fromkeys((self.target_class, self.selected)) if c not in order]
        if extra:
            order = np.concatenate([order[: k - len(extra)], np.array(extra, dtype=order.dtype)])
        return order

    # ------------------------------------------------------------------ edits
    def set_logit(self, index: int, value: float) -> None:
        self.logits = self.logits.copy()
        self.logits[index] = float(value)
        self._changed(VALUES)

    def set_logits(self, values) -> None:
        values = np.array(values, dtype=np.float64).reshape(-1)
        if values.shape != self.logits.shape:
            raise ValueError(f"expected {self.n_classes} logits, got {values.size}")
        if not np.all(np.isfinite(values)):
            raise ValueError("logits must be finite numbers")
        self.logits = values
        self._changed(VALUES)

    def logit_of_probability(self, index: int) -> float:
        """log(q_i / (1 - q_i)), computed from pyce's log q so that it stays finite
        even when q_i rounds to 0 or 1."""
        others = np.delete(self.log_q, index)
        return float(self.log_q[index] - pyce.logsumexp(others))

    def set_probability(self, index: int, prob: float) -> None:
        """Make q_i = prob while the other classes keep their ratios.

        Softmax is invariant to a common shift, and changing only z_i multiplies
        every other q_j by the same factor, so the ratios among them are kept;
        solving for z_i gives  Δ(z_i / T) = logit(q_i') - logit(q_i).
        """
        if self.n_classes < 2:
            return
        prob = min(max(float(prob), PROB_CLIP), 1.0 - PROB_CLIP)
        new_logit = math.log(prob) - math.log1p(-prob)
        delta = new_logit - self.logit_of_probability(index)
        self.set_logit(index, self.logits[index] + self.temperature * delta)

    def set_target(self, index: int) -> None:
        index = int(index)
        if not 0 <= index < self.n_classes:
            raise IndexError(f"target {index} is not a class in [0, {self.n_classes})")
        self.target = index
        if self.soft_mode:
            # Clicking a class in soft mode makes p one-hot on it (a fresh start).
            self.soft_target = _onehot(index, self.n_classes)
        self._changed(VALUES)

    def set_soft_probability(self, index: int, prob: float) -> None:
        """Set p_i in soft-target mode; the other p_j keep their ratios and sum 1 - p_i."""
        prob = min(max(float(prob), 0.0), 1.0)
        p = self.soft_target.copy()
        rest = 1.0 - p[index]
        others = np.arange(self.n_classes) != index
        if rest > 1e-12:
            p[others] *= (1.0 - prob) / rest
        else:
            # All the mass was on this class: share the remainder equally.
            p[others] = (1.0 - prob) / max(self.n_classes - 1, 1)
        p[index] = prob
        self.soft_target = p / p.sum()
        self._changed(VALUES)

    def set_soft_target(self, values) -> None:
        p = np.array(values, dtype=np.float64).reshape(-1)
        if p.shape != self.logits.shape or np.any(p < 0) or not np.isfinite(p).all() or p.sum() <= 0:
            raise ValueError("a soft target needs one non-negative weight per class, not all zero")
        self.soft_target = p / p.sum()
        self._changed(VALUES)

    def set_soft_mode(self, on: bool) -> None:
        on = bool(on)
        if on == self.soft_mode:
            return
        if on:
            # Start from the one-hot target, so switching on changes no number.
            self.soft_target = _onehot(self.target, self.n_classes)
        else:
            self.target = int(np.argmax(self.soft_target))
        self.soft_mode = on
        self._changed(VALUES)

    def set_temperature(self, value: float) -> None:
        value = float(value)
        if not T_MIN <= value <= T_MAX:
            raise ValueError(f"temperature must be in [{T_MIN}, {T_MAX}], got {value}")
        self.temperature = value
        self._batch_changed()
        self._changed(VALUES)

    def set_label_smoothing(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"label smoothing must be in [0, 1], got {value}")
        self.label_smoothing = value
        self._batch_changed()
        self._changed(VALUES)

    def select(self, index: int) -> None:
        self.selected = int(np.clip(index, 0, self.n_classes - 1))
        self._notify(SELECTION)

    def set_label(self, index: int, text: str) -> None:
        self.labels = list(self.labels)
        self.labels[index] = str(text)
        self._changed(STRUCTURE)

    def set_labels(self, labels) -> None:
        labels = [str(s) for s in labels]
        if len(labels) != self.n_classes:
            raise ValueError(f"expected {self.n_classes} labels, got {len(labels)}")
        self.labels = labels
        self._changed(STRUCTURE)

    def set_num_classes(self, n: int) -> None:
        """Grow (new classes get logit 0) or shrink the vocabulary, in the editable range."""
        n = int(n)
        if not MIN_CLASSES <= n <= max(MAX_EDIT_CLASSES, self.n_classes):
            raise ValueError(f"the number of classes must be in [{MIN_CLASSES}, {MAX_EDIT_CLASSES}]")
        C = self.n_classes
        if n == C:
            return
        if n > C:
            logits = np.concatenate([self.logits, np.zeros(n - C)])
            labels = list(self.labels) + [f"class {i}" for i in range(C, n)]
            soft = np.concatenate([self.soft_target, np.zeros(n - C)])
        else:
            logits, labels, soft = self.logits[:n].copy(), list(self.labels[:n]), self.soft_target[:n]
            if soft.sum() <= 0:
                soft = _onehot(0, n)
        self.logits, self.labels = logits, labels
        self.soft_target = soft / soft.sum()
        self.target = min(self.target, n - 1)
        self.selected = min(self.selected, n - 1)
        self._changed(STRUCTURE, VALUES, SELECTION)

    def load_logits(self, logits, labels=None, target: int = 0) -> None:
        """Replace the vocabulary with one row of logits (any size, e.g. from a .npy)."""
        z = np.array(logits, dtype=np.float64).reshape(-1)
        if z.size < 1 or not np.isfinite(z).all():
            raise ValueError("logits must be a non-empty row of finite numbers")
        if labels is None:
            labels = [str(i) for i in range(z.size)]
        if len(labels) != z.size:
            raise ValueError(f"{z.size} logits but {len(labels)} labels")
        if not 0 <= int(target) < z.size:
            raise IndexError(f"target {target} is not a class in [0, {z.size})")
        self.logits = z
        self.labels = [str(s) for s in labels]
        self.target = int(target)
        self.soft_mode = False
        self.soft_target = _onehot(self.target, z.size)
        self.selected = self.target
        self.trajectory, self.descent_start = [], None
        self.note = ""
        self._changed(STRUCTURE, VALUES, SELECTION, DESCENT)

    # ------------------------------------------------------------------ gradient descent
    def set_learning_rate(self, lr: float) -> None:
        self.learning_rate = float(lr)

    def descent_step(self) -> None:
        """One step of gradient descent on the logits: z <- z - lr * dL/dz.

        The loss sees z / T, so dL/dz = (q - p) / T.
        """
        if self.descent_start is None:
            self.descent_start = self.logits.copy()
            self.trajectory = [self.loss]
        self.logits = self.logits - self.learning_rate * self.grad / self.temperature
        self._recompute()
        self.trajectory = self.trajectory + [self.loss]
        self._notify(VALUES, DESCENT)

    def descent_reset(self) -> None:
        """Put the logits back where the descent started and forget the trajectory."""
        if self.descent_start is not None:
            self.logits = self.descent_start
        self.descent_start, self.trajectory = None, []
        self._changed(VALUES, DESCENT)

    # ------------------------------------------------------------------ batches
    def load_batch(self, logits, targets) -> None:
        """Load an (N, V) batch with (N,) integer targets; show row 0 in the explorer."""
        logits = np.asarray(logits)
        if logits.ndim != 2:
            raise ValueError(f"a batch of logits must be 2-d (N, V), got shape {logits.shape}")
        if logits.dtype not in (np.float32, np.float64):
            logits = logits.astype(np.float32)
        targets = np.asarray(targets)
        if targets.dtype.kind not in "iu" or targets.shape != (logits.shape[0],):
            raise ValueError(
                f"targets must be {logits.shape[0]} integer class indices, got "
                f"dtype {targets.dtype} and shape {targets.shape}")
        if targets.size and (targets.min() < 0 or targets.max() >= logits.shape[1]):
            raise IndexError(f"targets must lie in [0, {logits.shape[1]})")
        self.batch = BatchStats(np.ascontiguousarray(logits), targets.astype(np.int64))
        self._batch_statistics(time_kernels=True)
        with self.batch_update():
            self.set_batch_row(0)
            self._notify(BATCH)

    def set_batch_row(self, row: int) -> None:
        """Show one row of the loaded batch in the explorer's views."""
        if self.batch is None:
            return
        row = int(np.clip(row, 0, self.batch.shape[0] - 1))
        self.batch_row = row
        keep_labels = self.labels if len(self.labels) == self.batch.shape[1] else None
        self.load_logits(self.batch.logits[row], keep_labels, int(self.batch.targets[row]))
        self._notify(BATCH)

    def clear_batch(self) -> None:
        self.batch = None
        self._notify(BATCH)

    def _batch_statistics(self, time_kernels: bool = False) -> None:
        """Per-row losses, mean loss, perplexity, accuracy (and kernel times), from pyce.

        Temperature and label smoothing apply to the batch as to the single row.
        The kernels are timed when a batch is loaded, not on every slider move.
        """
        b = self.batch
        z = b.logits if self.temperature == 1.0 else (b.logits / b.logits.dtype.type(self.temperature))
        eps = self.label_smoothing
        b.row_losses = np.asarray(pyce.cross_entropy(z, b.targets, reduction="none",
                                                     label_smoothing=eps), dtype=np.float64)
        # Time the kernels on the whole batch: best of a few calls, as a benchmark
        # would, so the figure is the kernel's and not a cold cache's.
        if time_kernels:
            b.forward_ms = _best_ms(lambda: pyce.cross_entropy(z, b.targets, label_smoothing=eps))
            b.fused_ms = _best_ms(
                lambda: pyce.cross_entropy_with_grad(z, b.targets, label_smoothing=eps))
        b.mean_loss = float(pyce.cross_entropy(z, b.targets, label_smoothing=eps))
        b.perplexity = math.exp(b.mean_loss) if b.mean_loss < 709 else math.inf
        # The top-1 prediction is the argmax of the logits (softmax is monotonic).
        b.accuracy = float(np.mean(np.argmax(b.logits, axis=1) == b.targets))

    def _batch_changed(self) -> None:
        """T or eps changed: the batch's losses change with them."""
        if self.batch is not None:
            self._batch_statistics()
            self._notify(BATCH)

    # ------------------------------------------------------------------ whole state
    def get_state(self) -> dict:
        """Everything needed to restore the explorer (JSON-friendly; no batch data)."""
        return {
            "logits": self.logits.tolist(),
            "labels": list(self.labels),
            "target": int(self.target),
            "soft_mode": bool(self.soft_mode),
            "soft_target": self.soft_target.tolist(),
            "temperature": float(self.temperature),
            "label_smoothing": float(self.label_smoothing),
            "selected": int(self.selected),
            "learning_rate": float(self.learning_rate),
            "trajectory": [float(v) for v in self.trajectory],
            "descent_start": None if self.descent_start is None else self.descent_start.tolist(),
            "note": self.note,
        }

    def set_state(self, state: dict) -> None:
        """Restore a state from :meth:`get_state` (or a preset, which may omit keys)."""
        logits = np.array(state["logits"], dtype=np.float64).reshape(-1)
        C = logits.size
        if C < 1 or not np.isfinite(logits).all():
            raise ValueError("state: logits must be a non-empty list of finite numbers")
        labels = [str(s) for s in state.get("labels") or [str(i) for i in range(C)]]
        if len(labels) != C:
            raise ValueError(f"state: {C} logits but {len(labels)} labels")
        target = int(state.get("target", 0))
        if not 0 <= target < C:
            raise ValueError(f"state: target {target} is not a class in [0, {C})")
        soft = state.get("soft_target")
        soft = _onehot(target, C) if soft is None else np.array(soft, dtype=np.float64).reshape(-1)
        if soft.shape != (C,) or np.any(soft < 0) or soft.sum() <= 0:
            raise ValueError("state: soft_target must be one non-negative weight per class")
        T = float(state.get("temperature", 1.0))
        eps = float(state.get("label_smoothing", 0.0))
        if not T_MIN <= T <= T_MAX or not 0.0 <= eps <= 1.0:
            raise ValueError(f"state: temperature {T} or label smoothing {eps} out of range")
        start = state.get("descent_start")
        old_t_eps = (self.temperature, self.label_smoothing)
        self.logits, self.labels, self.target = logits, labels, target
        self.soft_target = soft / soft.sum()
        self.soft_mode = bool(state.get("soft_mode", False))
        self.temperature, self.label_smoothing = T, eps
        self.selected = int(np.clip(state.get("selected", target), 0, C - 1))
        self.learning_rate = float(state.get("learning_rate", self.learning_rate))
        self.trajectory = [float(v) for v in state.get("trajectory", [])]
        self.descent_start = None if start is None else np.array(start, dtype=np.float64)
        self.note = str(state.get("note", ""))
        if (T, eps) != old_t_eps:
            self._batch_changed()
        # STRUCTURE too: the labels may differ even at the same size.
        self._changed(STRUCTURE, VALUES, SELECTION, DESCENT)


def _best_ms(fn, repeats: int = 3) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3
