"""The explorer's model, without Qt: the current :class:`State`, what is derived from it,
the edits a user can make, and who to tell.

The pieces live in their own modules: :mod:`.state` (the immutable state, its
validator and its deltas), :mod:`.derive` (every number of one row, through
pyce), :mod:`.batchstats` (a loaded batch's statistics). This module only turns
edits into new states, recomputes what they invalidate, and notifies.

Every edit goes through :meth:`ExplorerModel.restore` with a new State; the kinds
of change (:class:`Change`) come from the fields that differ, so subscribers hear
exactly what changed, in a fixed order (structure before values).

For reading, ``model.q`` is ``model.derived.q`` and ``model.logits`` is
``model.state.logits`` (see :meth:`ExplorerModel.__getattr__`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Callable, Optional

import numpy as np

import pyce

from . import batchstats
from .batchstats import BatchStats
from .derive import Derived, derive
from .state import (
    IGNORE_INDEX,
    MAX_EDIT_CLASSES,
    MIN_CLASSES,
    T_MAX,
    T_MIN,
    Batch,
    Change,
    State,
    _onehot,
    changes_between,
    from_dict,
    initial,
    replace,
    to_dict,
)

# The kinds of change, by their old names (views and tests import these).
STRUCTURE, VALUES, SELECTION = Change.STRUCTURE, Change.VALUES, Change.SELECTION
DESCENT, BATCH, OPTIONS = Change.DESCENT, Change.BATCH, Change.OPTIONS

TOP_K = 40  # bars shown when the vocabulary is too large to edit by hand
# A dragged probability is kept strictly inside (0, 1): its logit must be finite.
PROB_CLIP = 1e-6

__all__ = [
    "ExplorerModel",
    "Change",
    "STRUCTURE",
    "VALUES",
    "SELECTION",
    "DESCENT",
    "BATCH",
    "OPTIONS",
    "TOP_K",
    "T_MIN",
    "T_MAX",
    "MIN_CLASSES",
    "MAX_EDIT_CLASSES",
    "IGNORE_INDEX",
    "BatchStats",
    "Batch",
    "State",
    "Derived",
]


def _finite(value, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value}")
    return value


def _classes_list(indices) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:6])
    return shown + (f" and {len(indices) - 6} more" if len(indices) > 6 else "")


class ExplorerModel:
    """State of the cross-entropy explorer and its derived quantities."""

    def __init__(self):
        self._listeners: list[Callable[[Change], None]] = []
        self._pending: Optional[set] = None  # kinds collected inside batch_update()
        self.state: State = initial()
        self.derived: Derived = derive(self.state)
        self.batch_stats: Optional[BatchStats] = None
        self._batch_key: tuple = (None, None, None)
        self._visible, self._visible_key = None, None  # visible_classes(), cached

    def __getattr__(self, name):
        # Only called when normal lookup fails: read-only shortcuts into the derived
        # numbers and the state (model.q, model.loss, model.logits, model.target, ...).
        if name.startswith("_") or name in ("state", "derived"):
            raise AttributeError(name)
        for source in (self.__dict__.get("derived"), self.__dict__.get("state")):
            if source is not None and hasattr(source, name):
                return getattr(source, name)
        raise AttributeError(f"ExplorerModel has no attribute {name!r}")

    # ------------------------------------------------------------------ observers
    def subscribe(self, callback: Callable[[Change], None]) -> None:
        """Call ``callback(kind)`` after every change (kind: a :class:`Change`)."""
        self._listeners.append(callback)

    def unsubscribe(self, callback: Callable[[Change], None]) -> None:
        self._listeners.remove(callback)

    def is_subscribed(self, callback: Callable[[Change], None]) -> bool:
        return callback in self._listeners

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

    def _notify(self, *kinds: Change) -> None:
        if self._pending is not None:
            self._pending.update(kinds)
            return
        for kind in sorted(set(kinds)):  # Change's values are the order
            for callback in list(self._listeners):
                callback(kind)

    # ------------------------------------------------------------------ the one way to change
    def restore(self, new: State) -> set:
        """Make ``new`` the state: recompute what it invalidates and notify. Returns the kinds."""
        kinds = changes_between(self.state, new)
        old, self.state = self.state, new
        if not kinds:
            return kinds
        if (
            Change.VALUES in kinds or Change.STRUCTURE in kinds or old.naive_softmax != new.naive_softmax
        ):  # the naive q is derived too
            self.derived = derive(new)
        key = (new.batch, new.temperature, new.label_smoothing)
        if new.batch is None:
            self.batch_stats, self._batch_key = None, (None, None, None)
        elif key[0] is not self._batch_key[0] or key[1:] != self._batch_key[1:]:
            self.batch_stats = batchstats.batch_statistics(new.batch, *key[1:])
            self._batch_key = key
            kinds.add(Change.BATCH)
        self._notify(*kinds)
        return kinds

    def _update(self, **changes) -> None:
        self.restore(replace(self.state, **changes))

    def _edit(self, **changes) -> None:
        """A change of the numbers: the preset's note no longer describes them."""
        changes.setdefault("note", "")
        self._update(**changes)

    # ------------------------------------------------------------------ derived values
    def summary(self) -> dict:
        """The readout values by name (for the readouts panel and CSV export)."""
        d = self.derived
        return {
            "loss": d.loss,
            "perplexity": d.perplexity,
            "q_target": d.q_target,
            "target_rank": d.target_rank,
            "entropy_q": d.entropy_q,
            "entropy_p": d.entropy_p,
            "kl_pq": d.kl_pq,
            "kl_qp": d.kl_qp,
            "distillation_t2_kl": d.distillation,
            "focal_gamma": self.state.focal_gamma,
            "focal_loss": d.focal_loss,
            "cross_entropy_pq": d.cross_entropy_pq,
            "logsumexp": d.lse,
            "temperature": self.state.temperature,
            "label_smoothing": self.state.label_smoothing,
            "n_classes": self.state.n_classes,
            "target": d.target_class,
        }

    def visible_classes(self, k: int = TOP_K) -> np.ndarray:
        """Class indices to draw: all that can be edited by hand, or the top-k by q.

        A large vocabulary shows its k most probable classes (highest first), and
        always the target and the selected class, so that they stay editable.
        """
        C = self.state.n_classes
        if C <= max(k, MAX_EDIT_CLASSES):
            return np.arange(C)
        key = (self.derived, self.state.selected, k)
        if (
            self._visible_key is not None
            and key[0] is self._visible_key[0]
            and key[1:] == self._visible_key[1:]
        ):
            return self._visible
        self._visible, self._visible_key = self._top_classes(k), key
        return self._visible

    def _top_classes(self, k: int) -> np.ndarray:
        q = self.derived.q
        if np.isnan(q).any():
            q = np.nan_to_num(q, nan=-1.0)
        C = q.size
        top = np.argpartition(q, C - k)[C - k :]
        # Highest first; equal q in class order, so the bars do not shuffle.
        order = top[np.lexsort((top, -q[top]))]
        extra = [c for c in dict.fromkeys((self.derived.target_class, self.state.selected)) if c not in order]
        if extra:
            order = np.concatenate([order[: k - len(extra)], np.array(extra, dtype=order.dtype)])
        return order

    # ------------------------------------------------------------------ edits
    def set_logit(self, index: int, value: float) -> None:
        logits = self.state.logits.copy()
        logits[index] = _finite(value, "a logit")
        self._edit(logits=logits)

    def set_logits(self, values) -> None:
        values = np.array(values, dtype=np.float64).reshape(-1)
        if values.shape != self.state.logits.shape:
            raise ValueError(f"expected {self.state.n_classes} logits, got {values.size}")
        if not np.all(np.isfinite(values)):
            raise ValueError("logits must be finite numbers")
        self._edit(logits=values)

    def logit_of_probability(self, index: int) -> float:
        """log(q_i / (1 - q_i)), computed from pyce's log q so that it stays finite
        even when q_i rounds to 0 or 1."""
        others = np.delete(self.derived.log_q, index)
        return float(self.derived.log_q[index] - pyce.logsumexp(others))

    def set_probability(self, index: int, prob: float) -> None:
        """Make q_i = prob while the other classes keep their ratios.

        Softmax is invariant to a common shift, and changing only z_i multiplies
        every other q_j by the same factor, so the ratios among them are kept;
        solving for z_i gives  Δ(z_i / T) = logit(q_i') - logit(q_i).
        """
        if self.state.n_classes < 2:
            return
        if self.derived.nonfinite.size:
            raise ValueError("this row holds nan or inf: give its logits finite values first")
        prob = min(max(float(prob), PROB_CLIP), 1.0 - PROB_CLIP)
        new_logit = math.log(prob) - math.log1p(-prob)
        delta = new_logit - self.logit_of_probability(index)
        self.set_logit(index, self.state.logits[index] + self.state.temperature * delta)

    def set_target(self, index: int) -> None:
        index = int(index)
        C = self.state.n_classes
        if not 0 <= index < C:
            raise IndexError(f"target {index} is not a class in [0, {C})")
        if self.state.soft_mode:
            # Making a class the target in soft mode makes p one-hot on it (a fresh start).
            self._edit(target=index, soft_target=_onehot(index, C))
        else:
            self._edit(target=index)

    def set_soft_probability(self, index: int, prob: float) -> None:
        """Set p_i in soft-target mode; the other p_j keep their ratios and sum 1 - p_i."""
        prob = min(max(float(prob), 0.0), 1.0)
        p = self.state.soft_target.copy()
        rest = 1.0 - p[index]
        others = np.arange(self.state.n_classes) != index
        if rest > 1e-12:
            p[others] *= (1.0 - prob) / rest
        else:
            # All the mass was on this class: share the remainder equally.
            p[others] = (1.0 - prob) / max(self.state.n_classes - 1, 1)
        p[index] = prob
        self._edit(soft_target=p / p.sum())

    def set_soft_target(self, values) -> None:
        p = np.array(values, dtype=np.float64).reshape(-1)
        if p.shape != self.state.logits.shape or np.any(p < 0) or not np.isfinite(p).all() or p.sum() <= 0:
            raise ValueError("a soft target needs one non-negative weight per class, not all zero")
        self._edit(soft_target=p / p.sum())

    def set_soft_mode(self, on: bool) -> None:
        on = bool(on)
        s = self.state
        if on == s.soft_mode:
            return
        if on:
            # Start from the one-hot target, so switching on changes no number.
            self._edit(soft_mode=True, soft_target=_onehot(s.target, s.n_classes))
        else:
            self._edit(soft_mode=False, target=int(np.argmax(s.soft_target)))

    def set_temperature(self, value: float) -> None:
        value = float(value)
        if not T_MIN <= value <= T_MAX:
            raise ValueError(f"temperature must be in [{T_MIN:g}, {T_MAX:g}], got {value:g}")
        self._edit(temperature=value)

    def set_label_smoothing(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"label smoothing must be in [0, 1], got {value:g}")
        self._edit(label_smoothing=value)

    def select(self, index: int) -> None:
        self._update(selected=int(np.clip(index, 0, self.state.n_classes - 1)))

    def set_option(self, name: str, on: bool) -> None:
        """A display option: naive_softmax, log_q or log_loss."""
        if name not in ("naive_softmax", "log_q", "log_loss"):
            raise ValueError(f"unknown option {name!r}")
        self._update(**{name: bool(on)})

    def set_label(self, index: int, text: str) -> None:
        labels = list(self.state.labels)
        labels[index] = str(text)
        self.set_labels(labels)

    def set_labels(self, labels) -> None:
        labels = [str(s) for s in labels]
        s = self.state
        if len(labels) != s.n_classes:
            raise ValueError(f"expected {s.n_classes} labels, got {len(labels)}")
        changes = {"labels": labels}
        if s.batch is not None and s.batch.shape[1] == len(labels):
            # The batch's rows share the labels: the next row keeps them.
            changes["batch"] = dataclasses.replace(s.batch, labels=labels)
        self._update(**changes)

    def set_num_classes(self, n: int) -> None:
        """Grow (new classes get logit 0) or shrink the vocabulary, in the editable range."""
        n = int(n)
        s = self.state
        C = s.n_classes
        if not MIN_CLASSES <= n <= max(MAX_EDIT_CLASSES, C):
            raise ValueError(f"the number of classes must be in [{MIN_CLASSES}, {MAX_EDIT_CLASSES}], got {n}")
        if n == C:
            return
        if n > C:
            logits = np.concatenate([s.logits, np.zeros(n - C)])
            labels = list(s.labels) + [f"class {i}" for i in range(C, n)]
            soft = np.concatenate([s.soft_target, np.zeros(n - C)])
        else:
            logits, labels, soft = s.logits[:n].copy(), list(s.labels[:n]), s.soft_target[:n]
            if soft.sum() <= 0:
                soft = _onehot(0, n)
        teacher = None
        if s.teacher is not None:  # the teacher grows or shrinks with the vocabulary
            teacher = np.concatenate([s.teacher, np.zeros(n - C)]) if n > C else s.teacher[:n].copy()
        weights = None
        if s.class_weights is not None:
            weights = (
                np.concatenate([s.class_weights, np.ones(n - C)]) if n > C else s.class_weights[:n].copy()
            )
        self._edit(
            logits=logits,
            labels=labels,
            soft_target=soft / soft.sum(),
            target=min(s.target, n - 1),
            selected=min(s.selected, n - 1),
            trajectory=[],
            descent_start=None,
            batch=None,
            batch_row=0,
            teacher=teacher,
            class_weights=weights,
        )

    def load_logits(self, logits, labels=None, target: int = 0) -> None:
        """Replace the vocabulary with one row of logits (any size, e.g. from a .npy).

        nan and inf are loaded as they are and shown as such (the note says where).
        """
        z = np.array(logits, dtype=np.float64).reshape(-1)
        if z.size < 1:
            raise ValueError("logits must be a non-empty row of numbers")
        if labels is None:
            labels = [str(i) for i in range(z.size)]
        if len(labels) != z.size:
            raise ValueError(f"{z.size} logits but {len(labels)} labels")
        if not 0 <= int(target) < z.size:
            raise IndexError(f"target {target} is not a class in [0, {z.size})")
        self._update(**self._row_fields(z, labels, int(target)), batch=None, batch_row=0)

    def _row_fields(self, z: np.ndarray, labels, target: int, note: str = "") -> dict:
        bad = np.flatnonzero(~np.isfinite(z))
        if bad.size:
            note = (note + " " if note else "") + (
                f"Logits of classes {_classes_list(bad)} are not finite (nan or inf): "
                "pyce's softmax, loss and gradient of this row are nan, shown as they are."
            )
        return dict(
            logits=z,
            labels=[str(s) for s in labels],
            target=target,
            soft_mode=False,
            soft_target=_onehot(target, z.size),
            selected=target,
            trajectory=[],
            descent_start=None,
            note=note,
            teacher=None,
            class_weights=None,
        )

    # ------------------------------------------------------------------ distillation
    def set_teacher(self, logits) -> None:
        """Distil from a teacher with these logits (None: no teacher)."""
        if logits is None:
            self._update(teacher=None)
            return
        t = np.array(logits, dtype=np.float64).reshape(-1)
        if t.shape != self.state.logits.shape or not np.isfinite(t).all():
            raise ValueError(f"a teacher needs {self.state.n_classes} finite logits")
        self._edit(teacher=t)

    def use_teacher_targets(self) -> None:
        """Make softmax(teacher / T) the student's soft target p."""
        q = self.derived.teacher_q
        if q is None:
            raise ValueError("there is no teacher: set one first")
        self._edit(soft_mode=True, soft_target=q.copy(), label_smoothing=0.0)

    # ------------------------------------------------------------------ focal loss, class weights
    def set_focal_gamma(self, gamma: float) -> None:
        gamma = _finite(gamma, "the focal γ")
        if not 0.0 <= gamma <= 10.0:
            raise ValueError(f"the focal γ must be in [0, 10], got {gamma:g}")
        self._edit(focal_gamma=gamma)

    def set_class_weight(self, index: int, weight: float) -> None:
        weight = _finite(weight, "a class weight")
        if weight < 0:
            raise ValueError(f"a class weight must be >= 0, got {weight:g}")
        w = (
            np.ones(self.state.n_classes)
            if self.state.class_weights is None
            else self.state.class_weights.copy()
        )
        w[index] = weight
        self._edit(class_weights=None if np.all(w == 1.0) else w)

    def clear_class_weights(self) -> None:
        self._edit(class_weights=None)

    # ------------------------------------------------------------------ gradient descent
    def set_learning_rate(self, lr: float) -> None:
        lr = _finite(lr, "the learning rate")
        if lr <= 0:
            raise ValueError(f"the learning rate must be > 0, got {lr:g}")
        self._update(learning_rate=lr)

    def descent_step(self) -> None:
        """One step of gradient descent on the logits: z <- z - lr * dL/dz.

        The loss sees z / T, so dL/dz = (q - p) / T.
        """
        s, d = self.state, self.derived
        if d.nonfinite.size:
            raise ValueError("this row holds nan or inf: gradient descent would only spread it")
        start = s.logits if s.descent_start is None else s.descent_start
        before = [d.loss] if s.descent_start is None else list(s.trajectory)
        logits = s.logits - s.learning_rate * d.grad / s.temperature
        with self.batch_update():
            self._edit(logits=logits, descent_start=start)
            self._update(trajectory=before + [self.derived.loss])

    def descent_reset(self) -> None:
        """Put the logits back where the descent started and forget the trajectory."""
        s = self.state
        logits = s.logits if s.descent_start is None else s.descent_start
        self._update(logits=logits, descent_start=None, trajectory=[])

    # ------------------------------------------------------------------ batches
    def load_batch(self, logits, targets, labels=None, example: str = "") -> None:
        """Load an (N, V) batch with (N,) targets (-100: ignored); show row 0.

        Rows holding nan or inf load too: their losses are nan, and the batch
        statistics name them. The batch has its own labels (0 … V-1 unless given).
        """
        logits = np.asarray(logits)
        if logits.ndim != 2 or logits.shape[0] < 1 or logits.shape[1] < 1:
            raise ValueError(f"a batch of logits must be 2-d (N, V), got shape {logits.shape}")
        if logits.dtype not in (np.float32, np.float64):
            logits = logits.astype(np.float32)
        n, v = logits.shape
        targets = batchstats.check_targets(targets, n, v)
        labels = [str(i) for i in range(v)] if labels is None else [str(s) for s in labels]
        if len(labels) != v:
            raise ValueError(f"a batch of {v} classes needs {v} labels, got {len(labels)}")
        logits = np.ascontiguousarray(logits)
        logits.flags.writeable = False
        batch = Batch(logits, targets, labels)
        forward, fused = batchstats.time_kernels(batch, self.state.temperature, self.state.label_smoothing)
        batch = Batch(logits, targets, labels, forward, fused, example)
        self._update(**self._batch_row_fields(batch, 0), batch=batch, batch_row=0)

    def load_sentence(self, row: int = 1) -> None:
        """The built-in sentence: a language model reading "The cat sat on the mat .",
        one batch row per position (see :mod:`pyce_gui.sentence`)."""
        from . import sentence

        logits, targets = sentence.batch()
        self.load_batch(logits, targets, sentence.VOCABULARY, example="sentence")
        self.set_batch_row(row)

    def _batch_row_fields(self, batch: Batch, row: int) -> dict:
        z = np.asarray(batch.logits[row], dtype=np.float64)
        target = int(batch.targets[row])
        note = ""
        if target == IGNORE_INDEX:
            finite = np.where(np.isfinite(z), z, -np.inf)
            target = int(np.argmax(finite)) if np.isfinite(finite).any() else 0
            note = (
                f"Row {row} is ignored (target {IGNORE_INDEX}): it adds nothing to the "
                "batch's loss. The plots take its top class as the target."
            )
        return self._row_fields(z, batch.labels, target, note)

    def set_batch_row(self, row: int) -> None:
        """Show one row of the loaded batch in the explorer's views."""
        batch = self.state.batch
        if batch is None:
            return
        row = int(np.clip(row, 0, batch.shape[0] - 1))
        self._update(**self._batch_row_fields(batch, row), batch_row=row)

    def clear_batch(self) -> None:
        self._update(batch=None, batch_row=0)

    # ------------------------------------------------------------------ whole state
    def get_state(self) -> dict:
        """Everything needed to restore the explorer (JSON-friendly; no batch data,
        but the name of a built-in example batch, which is rebuilt on load)."""
        d = to_dict(self.state)
        b = self.state.batch
        if b is not None and b.example:
            d["example"] = {"name": b.example, "row": self.state.batch_row}
        return d

    def set_state(self, d: dict) -> None:
        """Restore a state from :meth:`get_state`, a file or a preset (which may omit keys).

        A batch does not belong to another state: it is dropped (a built-in example
        batch named in the state is rebuilt, on the row it was on).
        """
        state = from_dict(d, base=self.state)
        example = d.get("example")
        if isinstance(example, dict) and example.get("name") == "sentence":
            with self.batch_update():
                self.load_sentence(int(example.get("row", 1)))
                self._update(
                    **{
                        k: getattr(state, k)
                        for k in (
                            "temperature",
                            "label_smoothing",
                            "naive_softmax",
                            "log_q",
                            "log_loss",
                            "learning_rate",
                        )
                    }
                )
            return
        self.restore(state)
