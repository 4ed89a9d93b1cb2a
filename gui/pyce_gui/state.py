"""The explorer's state: one immutable value, its one validator, and its deltas.

A :class:`State` is never changed in place. An edit makes a new State with
:func:`dataclasses.replace`; arrays and lists inside it are replaced, never
written to, so two States may share them safely. That makes an undo step cheap:
:func:`delta` keeps only the fields that differ, and of an array of the same
shape only the elements that differ (a nudge of one logit among 128 000 costs a
few bytes, not a copy of the vocabulary).

:func:`from_dict` is the only place a state from outside (a JSON file, a preset)
is checked; :func:`to_dict` writes the JSON-friendly form it reads.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


class Change(enum.IntEnum):
    """What changed, told to subscribers in this order (axes before the bars on them)."""

    STRUCTURE = 1  # number of classes or class labels
    VALUES = 2  # logits, target, T, eps, ...: every derived number
    SELECTION = 3  # the keyboard-selected class
    DESCENT = 4  # the gradient-descent trajectory
    BATCH = 5  # a loaded batch, its row, or its statistics
    OPTIONS = 6  # how things are shown (log scales, the naive softmax beside the stable one)


T_MIN, T_MAX = 0.01, 100.0  # the temperatures the controls accept
MIN_CLASSES, MAX_EDIT_CLASSES = 2, 64  # class counts edited by hand; more come from files
IGNORE_INDEX = -100  # a batch row with this target is not scored (PyTorch's default)


@dataclass(frozen=True)
class Batch:
    """An (N, V) batch of logits with its N targets, as loaded (never modified)."""

    logits: np.ndarray  # (N, V) float32 or float64
    targets: np.ndarray  # (N,) int64; IGNORE_INDEX marks an unscored row
    labels: list  # V class labels (the batch's own, not a preset's)
    forward_ms: float = math.nan  # pyce.cross_entropy over the batch, timed at load
    fused_ms: float = math.nan  # pyce.cross_entropy_with_grad
    example: str = ""  # the built-in example it is ("sentence"), or "" if loaded

    @property
    def shape(self):
        return self.logits.shape


def _onehot(index: int, n: int) -> np.ndarray:
    y = np.zeros(n)
    y[index] = 1.0
    return y


@dataclass(frozen=True)
class State:
    """Everything the user set. Derived numbers live in :mod:`pyce_gui.derive`."""

    logits: np.ndarray = field(default_factory=lambda: np.zeros(3))
    labels: list = field(default_factory=lambda: ["a", "b", "c"])
    target: int = 0
    soft_mode: bool = False
    soft_target: np.ndarray = field(default_factory=lambda: _onehot(0, 3))
    temperature: float = 1.0
    label_smoothing: float = 0.0
    selected: int = 0
    learning_rate: float = 1.0
    trajectory: list = field(default_factory=list)  # loss before each step, then now
    descent_start: Optional[np.ndarray] = None
    note: str = ""  # a sentence about the preset
    naive_softmax: bool = False  # show exp() without the max shift too
    log_q: bool = False  # log-scale axis for q
    log_loss: bool = False  # log-scale axis for the loss curve
    teacher: Optional[np.ndarray] = None  # a teacher's logits to distil from
    focal_gamma: float = 0.0  # focal loss γ (0: cross-entropy)
    class_weights: Optional[np.ndarray] = None  # α per class (None: all 1)
    # Not saved in the state file (it is data, loaded from .npy), but undoable.
    batch: Optional[Batch] = None
    batch_row: int = 0

    @property
    def n_classes(self) -> int:
        return len(self.logits)


# Which kind of change each field is; a new field needs an entry here and nothing else.
FIELD_CHANGES = {
    "logits": Change.VALUES,
    "labels": Change.STRUCTURE,
    "target": Change.VALUES,
    "soft_mode": Change.VALUES,
    "soft_target": Change.VALUES,
    "temperature": Change.VALUES,
    "label_smoothing": Change.VALUES,
    "selected": Change.SELECTION,
    "learning_rate": Change.DESCENT,
    "trajectory": Change.DESCENT,
    "descent_start": Change.DESCENT,
    "note": Change.VALUES,
    "naive_softmax": Change.OPTIONS,
    "log_q": Change.OPTIONS,
    "log_loss": Change.OPTIONS,
    "teacher": Change.VALUES,
    "focal_gamma": Change.VALUES,
    "class_weights": Change.VALUES,
    "batch": Change.BATCH,
    "batch_row": Change.BATCH,
}
FIELDS = tuple(f.name for f in dataclasses.fields(State))
assert set(FIELD_CHANGES) == set(FIELDS), "every State field needs its kind of change"
NOT_SAVED = ("batch", "batch_row")


def _same(a, b) -> bool:
    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))
    return a == b


def changes_between(before: State, after: State) -> set:
    """The kinds of change (:class:`Change`) that turn ``before`` into ``after``."""
    kinds = set()
    for name in FIELDS:
        a, b = getattr(before, name), getattr(after, name)
        if not _same(a, b):
            kinds.add(FIELD_CHANGES[name])
            if name == "logits" and a.shape != b.shape:
                kinds.add(Change.STRUCTURE)
    return kinds


# ---------------------------------------------------------------------------- deltas
@dataclass(frozen=True)
class _Elements:
    """The elements of an array that an edit changed (same shape before and after)."""

    index: np.ndarray
    before: np.ndarray
    after: np.ndarray

    def apply(self, base: np.ndarray, forward: bool) -> np.ndarray:
        out = base.copy()
        out[self.index] = self.after if forward else self.before
        return out

    @property
    def nbytes(self) -> int:
        return self.index.nbytes + self.before.nbytes + self.after.nbytes


def _array_change(a: np.ndarray, b: np.ndarray):
    if a.shape != b.shape or a.dtype != b.dtype or a.ndim != 1:
        return (a, b)
    differ = np.flatnonzero(~((a == b) | (np.isnan(a) & np.isnan(b))))
    if differ.size * 3 > a.size:  # most of it changed: keep both whole (shared)
        return (a, b)
    return _Elements(differ, a[differ], b[differ])


@dataclass(frozen=True)
class Delta:
    """The fields an edit changed: (before, after) pairs, arrays as changed elements."""

    fields: dict

    def apply(self, state: State, forward: bool) -> State:
        """``after`` from ``before`` (forward) or ``before`` from ``after``."""
        changes = {}
        for name, change in self.fields.items():
            if isinstance(change, _Elements):
                changes[name] = _read_only(change.apply(getattr(state, name), forward))
            else:
                changes[name] = change[1] if forward else change[0]
        return dataclasses.replace(state, **changes)

    @property
    def nbytes(self) -> int:
        """The bytes this delta keeps alive of its own (not counting shared whole values)."""
        return sum(c.nbytes for c in self.fields.values() if isinstance(c, _Elements))

    def __bool__(self) -> bool:
        return bool(self.fields)


def delta(before: State, after: State) -> Delta:
    out = {}
    for name in FIELDS:
        a, b = getattr(before, name), getattr(after, name)
        if _same(a, b):
            continue
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            out[name] = _array_change(a, b)
        else:
            out[name] = (a, b)
    return Delta(out)


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False  # a State's arrays are shared: nobody writes to them
    return arr


def replace(state: State, **changes) -> State:
    """A new State with ``changes``; arrays are made read-only (they may be shared)."""
    for value in changes.values():
        if isinstance(value, np.ndarray):
            _read_only(value)
    return dataclasses.replace(state, **changes)


# ---------------------------------------------------------------------------- JSON form
def to_dict(state: State) -> dict:
    """The JSON-friendly form of a state (without the batch, which is data)."""
    out: dict[str, Any] = {}
    for name in FIELDS:
        if name in NOT_SAVED:
            continue
        value = getattr(state, name)
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, list):
            value = list(value)
        out[name] = value
    return out


def _numbers(value, name: str, n: Optional[int] = None, finite: bool = True) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"state: {name} must be a list of numbers, got {value!r:.60}") from None
    if n is not None and arr.size != n:
        raise ValueError(f"state: {name} needs {n} numbers (one per class), got {arr.size}")
    if finite and not np.isfinite(arr).all():
        raise ValueError(f"state: {name} must be finite numbers")
    return arr


def _number(d: dict, name: str, default: float, lo: float, hi: float) -> float:
    try:
        v = float(d.get(name, default))
    except (TypeError, ValueError):
        raise ValueError(f"state: {name} must be a number, got {d.get(name)!r}") from None
    if not lo <= v <= hi:
        raise ValueError(f"state: {name} must be in [{lo:g}, {hi:g}], got {v:g}")
    return v


def from_dict(d: dict, base: Optional[State] = None) -> State:
    """Check a state from outside (file, preset) and build it; missing keys keep ``base``'s.

    The one validator of the explorer: every value is checked here, with an error
    that names it and what was expected.
    """
    base = base or State()
    if not isinstance(d, dict):
        raise ValueError(f"state: expected a JSON object, got {type(d).__name__}")
    if "logits" not in d:
        raise ValueError("state: 'logits' is missing")
    # Non-finite logits are allowed: a batch row may hold them, and they are shown as such.
    logits = _numbers(d["logits"], "logits", finite=False)
    C = logits.size
    if C < 1:
        raise ValueError("state: logits must hold at least one number")
    labels = d.get("labels") or [str(i) for i in range(C)]
    if not isinstance(labels, list) or len(labels) != C:
        raise ValueError(f"state: {C} logits need {C} labels, got {len(labels)}")
    labels = [str(s) for s in labels]
    target = d.get("target", 0)
    if not isinstance(target, int) or isinstance(target, bool) or not 0 <= target < C:
        raise ValueError(f"state: target must be a class in [0, {C}), got {target!r}")
    soft = d.get("soft_target")
    soft = _onehot(target, C) if soft is None else _numbers(soft, "soft_target", C)
    if np.any(soft < 0) or soft.sum() <= 0:
        raise ValueError("state: soft_target must be non-negative weights, not all zero")
    start = d.get("descent_start")
    teacher = d.get("teacher")
    weights = d.get("class_weights")
    if weights is not None:
        weights = _numbers(weights, "class_weights", C)
        if np.any(weights < 0):
            raise ValueError("state: class_weights must be >= 0")
    state = replace(
        base,
        logits=logits,
        labels=labels,
        target=target,
        soft_mode=bool(d.get("soft_mode", False)),
        soft_target=soft / soft.sum(),
        temperature=_number(d, "temperature", 1.0, T_MIN, T_MAX),
        label_smoothing=_number(d, "label_smoothing", 0.0, 0.0, 1.0),
        selected=int(np.clip(int(d.get("selected", target)), 0, C - 1)),
        learning_rate=_number(d, "learning_rate", base.learning_rate, 1e-6, 1e6),
        trajectory=[float(v) for v in _numbers(d.get("trajectory", []), "trajectory", finite=False)],
        descent_start=None if start is None else _numbers(start, "descent_start", C, False),
        note=str(d.get("note", "")),
        naive_softmax=bool(d.get("naive_softmax", False)),
        log_q=bool(d.get("log_q", False)),
        log_loss=bool(d.get("log_loss", False)),
        teacher=None if teacher is None else _numbers(teacher, "teacher", C),
        focal_gamma=_number(d, "focal_gamma", 0.0, 0.0, 10.0),
        class_weights=weights,
        batch=None,
        batch_row=0,
    )
    return state


def initial() -> State:
    return replace(State())
