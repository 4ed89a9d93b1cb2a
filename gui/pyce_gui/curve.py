"""The loss as a function of one logit, L(z_i), with everything else held fixed.

Each point is a row of logits with z_i replaced; pyce.cross_entropy scores all
of them in one call (reduction='none'). Its slope at the current z_i is the
gradient bar of class i divided by T, which is the point of the picture.

Beyond ``FULL_ROWS_UP_TO`` classes the rows would be large, so the classes other
than i and the target are folded into one column holding their logsumexp (from
pyce.logsumexp): softmax only sees them through that sum, so for a one-hot target
the loss is exactly the same. Soft or smoothed targets give every class a weight,
and then only full rows are exact: the curve is offered up to that size only.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

import pyce

from .derive import one_thread, target_distribution
from .state import State

POINTS = 161
HALF_WIDTH = 8.0  # the sweep spans z_i ± HALF_WIDTH·T (z/T changes by ± 8)
FULL_ROWS_UP_TO = 4096


def loss_curve(state: State, cls: int) -> Optional[tuple]:
    """(z values, losses) of the sweep over z_cls, or None where it is not defined."""
    z = state.logits
    if not np.isfinite(z).all():
        return None
    T = state.temperature
    xs = z[cls] + np.linspace(-HALF_WIDTH, HALF_WIDTH, POINTS) * T
    C = z.size
    onehot = not state.soft_mode and state.label_smoothing == 0.0
    with one_thread():
        if C <= FULL_ROWS_UP_TO:
            rows = np.tile(z / T, (POINTS, 1))
            rows[:, cls] = xs / T
            if onehot:
                target = np.full(POINTS, state.target)
                losses = pyce.cross_entropy(rows, target, reduction="none")
            else:
                base = state.soft_target if state.soft_mode else np.eye(C)[state.target]
                losses = pyce.cross_entropy(
                    rows, np.tile(base, (POINTS, 1)), reduction="none", label_smoothing=state.label_smoothing
                )
        elif onehot:
            y = state.target
            keep = [cls] if y == cls else [cls, y]
            rest = float(pyce.logsumexp(np.delete(z / T, keep)))
            rows = np.empty((POINTS, len(keep) + 1))
            rows[:, 0] = xs / T
            if y != cls:
                rows[:, 1] = z[y] / T
            rows[:, -1] = rest
            target = np.full(POINTS, 0 if y == cls else 1)
            losses = pyce.cross_entropy(rows, target, reduction="none")
        else:
            return None
    return xs, np.asarray(losses, dtype=np.float64)


def slope(state: State, grad: np.ndarray, cls: int) -> float:
    """dL/dz_i = (q_i − p_i) / T: the gradient bar of class i, per unit of z."""
    return float(grad[cls] / state.temperature)


__all__ = ["loss_curve", "slope", "target_distribution"]
