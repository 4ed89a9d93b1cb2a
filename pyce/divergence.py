"""Entropy and the distillation loss (KL divergence between softmaxes).

Each function validates its inputs here and calls one C++ kernel that reads
every logit once (``pyce._core.entropy`` / ``pyce._core.kl_divergence``).
"""

from __future__ import annotations

import math

import numpy as np

from . import _core
from ._cache import empty_output
from ._validation import (
    as_float_array,
    check_real,
    class_layout,
    compute_dtype,
    float_range,
    grad_dtype_for,
    like_logits,
    rows_view,
)

__all__ = ["entropy", "kl_divergence", "kl_divergence_with_grad"]

# The kernel's reduction codes (runtime/reduce.hpp: none, mean, sum, batchmean).
KL_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2, "batchmean": 3}


def entropy(logits, axis=-1):
    """Entropy of the softmax distribution along an axis, in nats.

    ``H(q) = -sum_c q_c log q_c`` with ``q = softmax(logits)`` (and
    ``0 log 0 = 0``), from one pass over the logits.

    Parameters
    ----------
    logits : array_like of float32, float64, float16 or bfloat16
        The logits of the distributions.
    axis : int, optional
        The class axis (default: the last).

    Returns
    -------
    numpy.ndarray or numpy scalar
        The logits' shape without ``axis``; float64 for float64 logits,
        float32 otherwise. Between 0 (one-hot) and ``log C`` (uniform); nan for
        a slice holding nan or +inf, or made only of -inf.

    Examples
    --------
    >>> import numpy as np, pyce
    >>> round(float(pyce.entropy(np.zeros(4))), 6)  # uniform over 4 classes: log 4
    1.386294
    """
    x, axis, rows = class_layout(logits, "logits", axis)
    h = _core.entropy(rows).astype(compute_dtype(x.dtype), copy=False)
    h = h.reshape(x.shape[:axis] + x.shape[axis + 1 :])
    return h if h.ndim else h[()]


class _KLProblem:
    def __init__(self, student, teacher, temperature, axis, reduction):
        s, self.axis, self.rows = class_layout(student, "student_logits", axis)
        t = np.asarray(teacher)
        if t.shape != s.shape:
            raise ValueError(
                f"student_logits and teacher_logits must have the same shape, got {s.shape} and {t.shape}"
            )
        t = as_float_array(t, "teacher_logits")
        if t.dtype != s.dtype:
            t = t.astype(s.dtype)  # the kernel reads both in the student's dtype
        # The teacher in the student's layout: (outer, C, inner) or (rows, C).
        if self.rows.ndim == 3:
            self.teacher_rows = np.ascontiguousarray(t).reshape(self.rows.shape)
        else:
            self.teacher_rows = rows_view(t, self.axis)
        self.student = s
        self.temperature = check_real(temperature, "temperature", "a positive number")
        # The kernel scales the logits by 1/T (in the compute dtype) and the
        # loss by T**2: both must stay finite.
        largest = float_range(s.dtype)[1]
        lo, hi = 1.0 / largest, math.sqrt(largest)
        if not lo <= self.temperature <= hi:  # also rejects nan, inf and values <= 0
            raise ValueError(
                f"temperature must be a positive number in [{lo:.4g}, {hi:.4g}] for {s.dtype} "
                f"logits (computed in {compute_dtype(s.dtype)}), got {temperature!r}"
            )
        if not isinstance(reduction, str) or reduction not in KL_REDUCTIONS:
            raise ValueError(
                f"reduction must be one of {', '.join(map(repr, KL_REDUCTIONS))}; got {reduction!r}"
            )
        self.reduction = KL_REDUCTIONS[reduction]
        self.per_row = reduction == "none"
        self.loss_shape = s.shape[: self.axis] + s.shape[self.axis + 1 :]

    def run(self, grad_rows=None):
        g_out = (
            None
            if grad_rows is None
            else np.ones(math.prod(self.loss_shape) if self.per_row else 1, dtype=np.float64)
        )
        raw = _core.kl_divergence(
            self.rows, self.teacher_rows, self.temperature, self.reduction, g_out, grad_rows
        )
        if self.per_row:
            return raw.reshape(self.loss_shape)
        with np.errstate(invalid="ignore"):
            return compute_dtype(self.student.dtype).type(raw)


def kl_divergence(student_logits, teacher_logits, *, temperature=1.0, axis=-1, reduction="batchmean"):
    """Knowledge-distillation loss ``T^2 KL(softmax(teacher/T) || softmax(student/T))``.

    Hinton et al.'s soft-target loss: the teacher's distribution ``p`` and the
    student's ``q`` are both softened by the temperature ``T``; the ``T^2``
    keeps the gradient's scale independent of ``T``. One pass reads every
    student and teacher logit once.

    Parameters
    ----------
    student_logits : array_like of float32, float64, float16 or bfloat16
        The student's unnormalised scores, classes along ``axis``.
    teacher_logits : array_like
        The teacher's, same shape (converted to the student's dtype).
    temperature : float > 0, optional
        Softening temperature ``T`` (default 1).
    axis : int, optional
        The class axis (default: the last).
    reduction : {'batchmean', 'sum', 'mean', 'none'}, optional
        'batchmean' (default) divides the sum by the number of distributions
        (rows: every position but the class axis), 'mean' by the number of
        elements, 'none' returns one value per row. For 2-D ``(N, C)`` input
        these are ``torch.nn.functional.kl_div``'s reductions (with
        ``log_softmax`` inputs; its 'none' is element-wise, and its
        'batchmean' of an ``(B, T, V)`` input divides by B only). A 1-D
        input is one distribution, so its 'batchmean' divides by 1, where
        ``kl_div``'s divides by ``input.size(0)`` (= C): multiply by ``1 / C``
        for PyTorch's figure.

    Returns
    -------
    numpy scalar or numpy.ndarray
        float64 for float64 logits, float32 otherwise. ``>= 0``; ``+inf`` when
        the student gives probability 0 to a class the teacher does not; nan
        for a row holding nan or +inf.

    Raises
    ------
    ValueError
        Shapes differ, a non-positive temperature, an unknown reduction.
    TypeError
        Non-float logits.

    Examples
    --------
    >>> import numpy as np, pyce
    >>> s = np.array([[1.0, 2.0, 3.0]]); t = np.array([[1.0, 2.0, 3.0]])
    >>> float(pyce.kl_divergence(s, t, temperature=2.0))
    0.0
    """
    problem = _KLProblem(student_logits, teacher_logits, temperature, axis, reduction)
    return problem.run()


def kl_divergence_with_grad(
    student_logits, teacher_logits, *, temperature=1.0, axis=-1, reduction="batchmean", grad_dtype=None
):
    """The distillation loss and its gradient w.r.t. the student, from one fused pass.

    Parameters
    ----------
    student_logits, teacher_logits, temperature, axis, reduction
        As for :func:`kl_divergence`.
    grad_dtype : dtype, optional
        The gradient's dtype: the student logits' (default), or float32 for
        float16 and bfloat16 logits.

    Returns
    -------
    loss : numpy scalar or numpy.ndarray
        As :func:`kl_divergence`.
    grad : numpy.ndarray
        ``d loss / d student_logits = T (q - p)`` divided as the reduction
        divides, same shape as ``student_logits``.

    Examples
    --------
    >>> import numpy as np, pyce
    >>> student = np.array([[2.0, 1.0, 3.0]], dtype=np.float32)
    >>> teacher = np.ones((1, 3), dtype=np.float32)  # uniform
    >>> loss, grad = pyce.kl_divergence_with_grad(student, teacher)
    >>> round(float(loss), 5), grad.round(4)
    (0.30899, array([[-0.0886, -0.2433,  0.3319]], dtype=float32))
    """
    problem = _KLProblem(student_logits, teacher_logits, temperature, axis, reduction)
    dtype = grad_dtype_for(problem.student.dtype, grad_dtype)
    grad_rows = empty_output(problem.rows.shape, dtype)
    loss = problem.run(grad_rows)
    return loss, like_logits(grad_rows, problem.student.shape, problem.axis)
