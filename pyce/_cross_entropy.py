"""cross_entropy, cross_entropy_backward and cross_entropy_with_grad.

Validate and lay out the call once (CrossEntropyCall), then one kernel call
(``_core.cross_entropy``) gives the loss and, when asked, the gradient. Plain
calls go straight to the kernel (``_plain_call``).
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._cache import empty_output
from ._plain_call import as_scalar, only_defaults, plain_forward, plain_with_grad
from ._validation import (
    REDUCTIONS,
    STRIDED_MIN_INNER,
    as_float_array,
    check_apart,
    check_flag,
    check_grad_output,
    check_ignore_index,
    check_label_smoothing,
    check_reduction,
    check_softcap,
    check_weight,
    check_z_loss,
    class_axis,
    compute_dtype,
    grad_dtype_for,
    like_logits,
    normalize_axis,
    rows_view,
    split_target,
    strided_view,
)

__all__ = ["cross_entropy", "cross_entropy_backward", "cross_entropy_with_grad"]


class CrossEntropyCall:
    """A validated cross-entropy call, laid out as (rows, classes) for the kernel."""

    def __init__(
        self,
        logits,
        target,
        *,
        axis,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        z_loss=0.0,
        softcap=None,
        return_lse=False,
    ):
        logits, self.axis = class_axis(logits, "logits", axis)
        self.logits = logits
        self.n_classes = logits.shape[self.axis]
        self.reduction = check_reduction(reduction)
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.ignore_index = check_ignore_index(ignore_index)
        self.weight = check_weight(weight, self.n_classes, compute_dtype(logits.dtype))
        self.z_loss = check_z_loss(z_loss, logits.dtype)
        self.softcap = check_softcap(softcap, logits.dtype)
        self.return_lse = check_flag(return_lse, "return_lse")
        indices, probabilities = split_target(target, logits, self.axis)
        self.target_shape = logits.shape[: self.axis] + logits.shape[self.axis + 1 :]
        # Class indices without a soft cap take the class axis where it is
        # (an (outer, C, inner) view, no transposing copy); the rest a
        # (rows, C) view or copy.
        strided = None
        if indices is not None and not self.softcap and logits.size:
            strided = strided_view(logits, self.axis)
        self.strided = strided is not None
        self.rows = strided if self.strided else rows_view(logits, self.axis)
        if indices is not None:
            self.indices = np.ascontiguousarray(indices).reshape(-1)
            self.probabilities = None
        else:
            # As PyTorch: class probabilities have no ignored rows; only the
            # default (any negative ignore_index) is accepted with them.
            if self.ignore_index >= 0:
                raise ValueError(
                    f"ignore_index is not supported for floating point (probability) targets, "
                    f"got ignore_index={self.ignore_index}"
                )
            self.indices = None
            self.probabilities = rows_view(probabilities.astype(logits.dtype, copy=False), self.axis)

    def run(self, grad_output=None, grad_rows=None):
        """Call the kernel; write the gradient into ``grad_rows`` when given.

        The gradient may not overwrite an input the kernel still reads (the
        logits themselves excepted: in place, each row is read before it is
        written).
        """
        g_out = None
        if grad_rows is not None:
            g_out = check_grad_output(grad_output, self.reduction, self.target_shape)
            check_apart(
                grad_rows,
                "the gradient",
                target=self.indices,
                weight=self.weight,
                grad_output=g_out,
                soft_target=self.probabilities,
            )
        raw = _core.cross_entropy(
            self.rows,
            self.indices,
            self.probabilities,
            self.weight,
            self.ignore_index,
            self.label_smoothing,
            self.reduction,
            g_out,
            grad_rows,
            self.z_loss,
            self.return_lse,
            self.softcap,
        )
        raw_loss, raw_lse = raw if self.return_lse else (raw, None)
        if self.reduction == REDUCTIONS["none"]:
            self.loss = raw_loss.reshape(self.target_shape)
        else:
            self.loss = as_scalar(raw_loss, compute_dtype(self.logits.dtype))
        self.lse = None if raw_lse is None else raw_lse.reshape(self.target_shape)

    def returned(self, *values):
        """``values``, plus the per-row log-sum-exp when it was asked for."""
        values = values + ((self.lse,) if self.return_lse else ())
        return values if len(values) > 1 else values[0]

    def grad_buffer(self, grad_dtype, out):
        """The (rows, C) array the kernel writes the gradient into."""
        dtype = grad_dtype_for(self.logits.dtype, grad_dtype)
        if out is None:
            return empty_output(self.rows.shape, dtype)
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a NumPy array, got {type(out).__name__}")
        if out.shape != self.logits.shape:
            raise ValueError(f"out must have the logits' shape {self.logits.shape}, got {out.shape}")
        if grad_dtype is not None and out.dtype != dtype:
            raise ValueError(f"out has dtype {out.dtype} but grad_dtype is {dtype}")
        grad_dtype_for(self.logits.dtype, out.dtype)  # raises for a dtype the gradient cannot have
        if not out.flags.writeable:
            raise ValueError("out is read-only")
        innermost = self.strided or all(n == 1 for n in out.shape[self.axis + 1 :])
        if not out.flags.c_contiguous or not innermost:
            raise ValueError(
                "out must be C-contiguous"
                + ("" if innermost else " with the class axis innermost")
                + f" (shape {out.shape}, axis {self.axis}, strides {out.strides})"
            )
        if np.shares_memory(out, self.logits) or (
            self.probabilities is not None and np.shares_memory(out, self.probabilities)
        ):
            raise ValueError("out must not overlap the inputs (use inplace=True to overwrite the logits)")
        return out.reshape(self.rows.shape)

    def grad_like_logits(self, grad_rows):
        if self.strided:
            return grad_rows.reshape(self.logits.shape)
        return like_logits(grad_rows, self.logits.shape, self.axis)


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
    """Cross-entropy loss between logits and targets, as ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    logits : array_like of float32, float64, float16 or bfloat16
        Unnormalised scores; the classes lie along ``axis``. (bfloat16 arrays are
        ``ml_dtypes.bfloat16``; 16-bit logits are computed in float32.)
    target : array_like
        Either integer class indices with the logits' shape minus the class axis,
        or float class probabilities with the logits' shape.
    axis : int, optional
        The class axis. ``-1`` (default) for ``(..., C)`` such as a (batch, time,
        vocab) language-model batch; ``1`` for PyTorch's ``(N, C, d1, ...)``.
    weight : array_like of shape (C,), optional
        A rescaling weight for each class.
    ignore_index : int, optional
        Rows whose target equals this contribute neither loss nor gradient
        (class-index targets only). Default -100.
    reduction : {'mean', 'sum', 'none'}, optional
        ``'mean'`` divides by the sum of ``weight[target]`` over the rows that are
        not ignored (their count without weights; the number of rows for
        probability targets). All rows ignored gives ``nan``, as in PyTorch.
    label_smoothing : float in [0, 1], optional
        Mixes the target with the uniform distribution: ``(1 - eps) * y + eps / C``.
    z_loss : float, optional
        PaLM's auxiliary loss: adds ``z_loss * logsumexp(logits)**2`` to the loss of
        every row that is not ignored (before the reduction). Default 0.
    softcap : float, optional
        Soft-cap the logits first (Gemma 2): ``softcap * tanh(logits / softcap)``;
        everything, the gradient included (through the cap), then applies to
        the capped logits. Default None (no cap).
    return_lse : bool, optional
        Also return every row's log-sum-exp (ignored rows included), an array of
        the target's shape in the compute dtype: what a later backward or a
        vocabulary-parallel merge needs.

    Returns
    -------
    loss : numpy scalar or numpy.ndarray
        For 'mean' and 'sum', a scalar; for 'none', an array of the target's
        shape. float64 for float64 logits, float32 otherwise (float16 and
        bfloat16 logits are computed in float32).
    lse : numpy.ndarray
        Only with ``return_lse=True``.

    Raises
    ------
    IndexError
        A class index outside ``[0, C)`` that is not ``ignore_index``.
    ValueError
        Mismatched shapes, an unknown reduction, label smoothing outside [0, 1].
    TypeError
        Non-float logits, or a float target that does not have the logits' shape.

    Examples
    --------
    >>> import numpy as np, pyce
    >>> logits = np.array([[2.0, 1.0, 3.0]], dtype=np.float32)
    >>> round(float(pyce.cross_entropy(logits, np.array([2]))), 4)
    0.4076
    """
    if only_defaults(weight, softcap, return_lse, label_smoothing, z_loss):
        loss = plain_forward(logits, target, axis, ignore_index, reduction)
        if loss is not None:
            return loss
    problem = CrossEntropyCall(
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
    problem.run()
    return problem.returned(problem.loss)


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
    grad_dtype=None,
    out=None,
):
    """Gradient of :func:`cross_entropy` with respect to the logits.

    Parameters
    ----------
    logits, target, axis, weight, ignore_index, reduction, label_smoothing, z_loss, softcap
        As for :func:`cross_entropy`.
    grad_output : float or array_like, optional
        The upstream gradient: a scalar for 'mean'/'sum', an array of the target's
        shape (or broadcastable to it) for 'none'. Default 1.
    return_lse : bool, optional
        Also return every row's log-sum-exp (see :func:`cross_entropy`).
    grad_dtype : dtype, optional
        The gradient's dtype: the logits' (default), or float32 for float16 and
        bfloat16 logits (no rounding to 16 bits).
    out : numpy.ndarray, optional
        Write the gradient here instead of a new array (the logits' shape, the
        gradient's dtype, C-contiguous with the class axis innermost). Reusing
        a buffer across calls saves the page faults of fresh memory.

    Returns
    -------
    grad : numpy.ndarray
        ``d loss / d logits * grad_output``, same shape as ``logits``.
        Rows whose target is ``ignore_index`` are zero.
    lse : numpy.ndarray
        Only with ``return_lse=True``.

    Examples
    --------
    >>> import numpy as np, pyce
    >>> x = np.array([[2.0, 1.0, 3.0]], dtype=np.float32)
    >>> pyce.cross_entropy_backward(x, np.array([2]))  # softmax(x) - onehot(2); last digits vary by CPU
    array([[ 0.244728...,  0.090030..., -0.334759...]], dtype=float32)
    """
    if grad_dtype is None and only_defaults(weight, softcap, return_lse, label_smoothing, z_loss):
        plain = plain_with_grad(
            logits, target, axis, ignore_index, reduction, grad_output=grad_output, out=out
        )
        if plain is not None:
            return plain[1]
    if grad_output is None:
        check_grad_output(None, REDUCTIONS["mean"], ())  # raises the TypeError
    problem = CrossEntropyCall(
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
    grad_rows = problem.grad_buffer(grad_dtype, out)
    problem.run(grad_output, grad_rows)
    return problem.returned(out if out is not None else problem.grad_like_logits(grad_rows))


def cross_entropy_with_grad(
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
    inplace=False,
    grad_dtype=None,
    out=None,
):
    """Loss and gradient from one fused pass that reads each logit once.

    Parameters
    ----------
    logits, target, axis, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, return_lse
        As for :func:`cross_entropy`.
    inplace : bool, optional
        Write the gradient over ``logits`` (which must be a writeable ndarray
        whose class axis is its innermost, contiguous one) and return it as
        ``grad``: no array of the logits' size is allocated.
    grad_dtype, out : optional
        As for :func:`cross_entropy_backward` (not with ``inplace=True``).

    Returns
    -------
    loss : numpy scalar or numpy.ndarray
        As :func:`cross_entropy`.
    grad : numpy.ndarray
        The gradient of the loss w.r.t. the logits (with ``grad_output = 1``),
        same shape as ``logits``.
    lse : numpy.ndarray
        Only with ``return_lse=True``.

    Examples
    --------
    >>> import numpy as np, pyce
    >>> loss, grad = pyce.cross_entropy_with_grad(np.array([[2.0, 1.0, 3.0]]), np.array([2]))
    >>> np.round(grad, 4)   # softmax minus one-hot
    array([[ 0.2447,  0.09  , -0.3348]])
    """
    if (
        grad_dtype is None
        and (inplace is False or (inplace is True and out is None))
        and only_defaults(weight, softcap, return_lse, label_smoothing, z_loss)
    ):
        plain = plain_with_grad(logits, target, axis, ignore_index, reduction, inplace=inplace, out=out)
        if plain is not None:
            return plain
    inplace = check_flag(inplace, "inplace")
    if inplace:
        _check_inplace(logits, axis)
        if grad_dtype is not None and np.dtype(grad_dtype) != logits.dtype:
            raise ValueError(
                f"inplace=True writes the gradient over the logits, so it has their dtype "
                f"{logits.dtype}; got grad_dtype={np.dtype(grad_dtype)}"
            )
        if out is not None:
            raise ValueError("pass either inplace=True or out=, not both")
    problem = CrossEntropyCall(
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
    if inplace and not (problem.strided or all(n == 1 for n in logits.shape[problem.axis + 1 :])):
        # Class axis in the middle, but probability targets or a soft cap:
        # those kernels read a transposed copy, which the gradient cannot overwrite.
        raise ValueError(
            f"inplace=True with the class axis not innermost (axis={axis} of shape {logits.shape}) "
            "takes class-index targets without softcap; move the class axis last, or use inplace=False"
        )
    grad_rows = problem.rows if inplace else problem.grad_buffer(grad_dtype, out)
    problem.run(1.0, grad_rows)
    if inplace:
        grad = logits
    else:
        grad = out if out is not None else problem.grad_like_logits(grad_rows)
    return problem.returned(problem.loss, grad)


def _check_inplace(logits, axis):
    if not isinstance(logits, np.ndarray):
        raise ValueError(f"inplace=True needs a NumPy array to write into, got {type(logits).__name__}")
    if not logits.flags.writeable:
        raise ValueError("inplace=True needs a writeable array, but logits is read-only")
    as_float_array(logits, "logits")  # raises the TypeError for a bad dtype
    if logits.ndim == 0:
        return  # CrossEntropyCall raises the error
    if not logits.flags.c_contiguous:
        raise ValueError(
            "inplace=True needs a C-contiguous array, but logits is not contiguous "
            f"(strides {logits.strides}); pass np.ascontiguousarray(logits) or inplace=False"
        )
    if normalize_axis(axis, logits.ndim) != logits.ndim - 1 and logits.size > 0:
        rest = logits.shape[normalize_axis(axis, logits.ndim) + 1 :]
        if any(n != 1 for n in rest) and strided_view(logits, normalize_axis(axis, logits.ndim)) is None:
            raise ValueError(
                f"inplace=True needs the class axis to be the innermost one, or at least "
                f"{STRIDED_MIN_INNER} positions after it; axis={axis} of shape {logits.shape} "
                f"has neither (move it last, or use inplace=False)"
            )
