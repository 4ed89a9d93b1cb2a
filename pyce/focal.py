"""The softmax focal loss (Lin et al., 2017) and its gradient, in one pass."""

from __future__ import annotations

import math

import numpy as np

from . import _core
from ._cache import empty_output
from ._validation import (
    REDUCTIONS,
    check_grad_output,
    check_ignore_index,
    check_real,
    check_reduction,
    class_layout,
    compute_dtype,
    grad_dtype_for,
    like_logits,
    split_target,
)

__all__ = ["focal_loss", "focal_loss_with_grad"]


class _FocalProblem:
    def __init__(self, logits, target, gamma, alpha, axis, ignore_index, reduction):
        x, self.axis, self.rows = class_layout(logits, "logits", axis)
        c = x.shape[self.axis]
        self.logits = x
        self.reduction = check_reduction(reduction)
        self.ignore_index = check_ignore_index(ignore_index)
        self.gamma = check_real(gamma, "gamma", "a number >= 0")
        if not (self.gamma >= 0 and math.isfinite(self.gamma)):
            raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
        self.alpha, self.alpha_scalar = None, 1.0
        if alpha is not None:
            a = np.asarray(alpha)
            if a.dtype.kind not in "fiu":
                raise TypeError(
                    f"alpha must be a number or a float array of shape ({c},), got dtype {a.dtype}"
                )
            if a.ndim == 0:
                self.alpha_scalar = float(a)
            elif a.shape == (c,):
                self.alpha = np.ascontiguousarray(a, dtype=np.float64)
            else:
                raise ValueError(
                    f"alpha must be a number or have shape ({c},) (one per class), got shape {a.shape}"
                )
        indices, _ = split_target(target, x, self.axis)
        if indices is None:
            raise TypeError("focal_loss needs integer class-index targets, got a float array")
        self.target_shape = x.shape[: self.axis] + x.shape[self.axis + 1 :]
        self.indices = np.ascontiguousarray(indices, dtype=np.int64).reshape(-1)

    def run(self, grad_rows=None):
        g_out = None if grad_rows is None else check_grad_output(1.0, self.reduction, self.target_shape)
        raw = _core.focal_loss(
            self.rows,
            self.indices,
            self.ignore_index,
            self.gamma,
            self.alpha,
            self.alpha_scalar,
            self.reduction,
            g_out,
            grad_rows,
        )
        if self.reduction == REDUCTIONS["none"]:
            return raw.reshape(self.target_shape)
        return compute_dtype(self.logits.dtype).type(raw)


def focal_loss(logits, target, *, gamma=2.0, alpha=None, axis=-1, ignore_index=-100, reduction="mean"):
    """Focal loss over softmax probabilities: ``-alpha_t (1 - q_t)^gamma log q_t``.

    Down-weights the tokens the model already predicts well (``q_t`` near 1)
    so that training concentrates on the hard ones. ``gamma = 0`` with no
    ``alpha`` is the cross-entropy.

    Parameters
    ----------
    logits : array_like of float32, float64, float16 or bfloat16
        Unnormalised scores, classes along ``axis``.
    target : array_like of int
        Class indices, the logits' shape without the class axis.
    gamma : float >= 0, optional
        The focusing parameter (default 2).
    alpha : float or array_like of shape (C,), optional
        A factor for every row (a number) or for each target class (an array).
        Default: 1.
    axis : int, optional
        The class axis (default: the last).
    ignore_index : int, optional
        Rows with this target contribute neither loss nor gradient (default -100).
    reduction : {'mean', 'sum', 'none'}, optional
        'mean' divides by the number of rows that are not ignored (``nan`` if
        there are none), whatever ``alpha``.

    Returns
    -------
    numpy scalar or numpy.ndarray
        float64 for float64 logits, float32 otherwise; an array of the target's
        shape for 'none' (0 for ignored rows).

    Raises
    ------
    IndexError
        A target outside ``[0, C)`` that is not ``ignore_index``.
    ValueError
        Mismatched shapes, a negative gamma, an alpha of the wrong shape, an
        unknown reduction.
    TypeError
        Non-float logits or a non-integer target.

    Examples
    --------
    >>> import numpy as np, pyce
    >>> x = np.array([[2.0, 1.0, 3.0]])
    >>> round(float(pyce.focal_loss(x, np.array([2]), gamma=0.0)), 4)  # = cross-entropy
    0.4076
    >>> round(float(pyce.focal_loss(x, np.array([2]), gamma=2.0)), 4)
    0.0457
    """
    problem = _FocalProblem(logits, target, gamma, alpha, axis, ignore_index, reduction)
    return problem.run()


def focal_loss_with_grad(
    logits, target, *, gamma=2.0, alpha=None, axis=-1, ignore_index=-100, reduction="mean", grad_dtype=None
):
    """The focal loss and its gradient w.r.t. the logits, from one fused pass.

    Parameters
    ----------
    logits, target, gamma, alpha, axis, ignore_index, reduction
        As for :func:`focal_loss`.
    grad_dtype : dtype, optional
        The gradient's dtype: the logits' (default), or float32 for float16 and
        bfloat16 logits.

    Returns
    -------
    loss : numpy scalar or numpy.ndarray
        As :func:`focal_loss`.
    grad : numpy.ndarray
        Same shape as ``logits``: ``G (q - onehot(t))`` per row with
        ``G = alpha_t ((1 - q_t)^gamma + gamma q_t (1 - q_t)^(gamma - 1) (-log q_t))``,
        divided as the reduction divides; 0 for ignored rows.

    Examples
    --------
    >>> import numpy as np, pyce
    >>> logits = np.array([[2.0, 1.0, 3.0]], dtype=np.float32)
    >>> loss, grad = pyce.focal_loss_with_grad(logits, np.array([2]))
    >>> round(float(loss), 5), grad.round(4)
    (0.04568, array([[ 0.0719,  0.0264, -0.0983]], dtype=float32))
    """
    problem = _FocalProblem(logits, target, gamma, alpha, axis, ignore_index, reduction)
    dtype = grad_dtype_for(problem.logits.dtype, grad_dtype)
    grad_rows = empty_output(problem.rows.shape, dtype)
    loss = problem.run(grad_rows)
    return loss, like_logits(grad_rows, problem.logits.shape, problem.axis)
