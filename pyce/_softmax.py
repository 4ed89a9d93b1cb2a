"""logsumexp, softmax and log_softmax: validate, lay out as (rows, classes), call the kernels.

Data flows one way: NumPy arrays in -> checks and a (rows, classes) view here ->
``pyce._core`` (which releases the GIL and runs the SIMD/OpenMP kernels) ->
NumPy arrays or scalars out. Nothing here computes a result itself.
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._cache import empty_output
from ._validation import (
    as_float_array,
    check_flag,
    compute_dtype,
    normalize_axes,
    reduced_rows,
    restore_axes,
    strided_view,
)

__all__ = ["logsumexp", "softmax", "log_softmax"]


def logsumexp(x, axis=-1, keepdims=False):
    """Log of the sum of exponentials along an axis, computed stably.

    Parameters
    ----------
    x : array_like of float32, float64, float16 or bfloat16
        Input values (a 0-d array is one value).
    axis : int, tuple of ints or None, optional
        Axis or axes to reduce over (default: the last; None: all of them), as
        ``scipy.special.logsumexp``.
    keepdims : bool, optional
        Keep the reduced axes with length 1, so the result broadcasts against ``x``.

    Returns
    -------
    numpy.ndarray or numpy scalar
        ``log(sum(exp(x), axis))`` in the dtype of ``x`` (float32 for float16 and
        bfloat16 input, which is computed in float32). A slice of all ``-inf``
        gives ``-inf``; one with ``+inf`` gives ``+inf``; one with ``nan`` gives ``nan``.

    Examples
    --------
    >>> import numpy as np, pyce
    >>> float(pyce.logsumexp(np.array([1000.0, 1000.0])))  # no overflow
    1000.6931471805599
    """
    x = as_float_array(x, "x")
    axes = normalize_axes(axis, x.ndim)
    keepdims = check_flag(keepdims, "keepdims")
    out_shape = tuple(n for i, n in enumerate(x.shape) if i not in axes)
    # One class axis, not innermost: taken where it is (no transposing copy).
    strided = strided_view(x, axes[0]) if len(axes) == 1 and x.size else None
    rows = strided if strided is not None else reduced_rows(x, axes)[0]
    if rows.shape[1] == 0:
        out = np.full(out_shape, -np.inf, dtype=compute_dtype(x.dtype))  # log(0)
    elif rows.shape[0] == 0:
        out = np.empty(out_shape, dtype=compute_dtype(x.dtype))
    else:
        out = _core.logsumexp(rows).reshape(out_shape)
    if keepdims:
        out = np.expand_dims(out, axes)
    return out if out.ndim else out[()]


def _normalize_rows(x, axis, kernel):
    x = as_float_array(x, "x")
    axes = normalize_axes(axis, x.ndim)
    strided = strided_view(x, axes[0]) if len(axes) == 1 and x.size else None
    if strided is not None:
        # The class axis where it is: the output has x's own layout.
        out = empty_output(strided.shape, strided.dtype)
        kernel(strided, out)
        return out.reshape(x.shape)
    rows, moved_shape = reduced_rows(x, axes)
    out = empty_output(rows.shape, rows.dtype)
    if rows.size:
        kernel(rows, out)
    return restore_axes(out, moved_shape, axes)


def softmax(x, axis=-1):
    """Softmax along an axis: ``exp(x - logsumexp(x))``.

    Parameters
    ----------
    x : array_like of float32, float64, float16 or bfloat16
        The logits.
    axis : int, tuple of ints or None, optional
        The class axis (default: the last), or several (the softmax is taken
        over all their elements together), or None for all: as ``scipy.special.softmax``.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``x``; each slice along ``axis`` sums to 1 (the
        softmax of a 0-d array is 1.0).
        A slice holding ``+inf`` or ``nan``, or made only of ``-inf``, is all ``nan``
        (as in PyTorch).

    Examples
    --------
    >>> import numpy as np, pyce
    >>> pyce.softmax(np.array([2.0, 1.0, 3.0], dtype=np.float32))
    array([0.244728..., 0.090030..., 0.665240...], dtype=float32)
    """
    return _normalize_rows(x, axis, _core.softmax)


def log_softmax(x, axis=-1):
    """Log-softmax along an axis: ``x - logsumexp(x)``.

    Parameters
    ----------
    x : array_like of float32, float64, float16 or bfloat16
        The logits.
    axis : int, tuple of ints or None, optional
        As for :func:`softmax`.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``x``.

    Examples
    --------
    >>> import numpy as np, pyce
    >>> # (rounded: the last float32 digit depends on the ISA's log)
    >>> np.round(pyce.log_softmax(np.array([2.0, 1.0, 3.0], dtype=np.float32)), 6)
    array([-1.407606, -2.407606, -0.407606], dtype=float32)
    """
    return _normalize_rows(x, axis, _core.log_softmax)
