"""The plain-call shortcut of the cross-entropy entry points.

A call that is plainly right (see below) skips the general checks of
``_cross_entropy.CrossEntropyCall``, which at 64 x 1000 cost half as much as the
kernel itself. Anything else returns None here and takes the general path.
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._cache import empty_output
from ._validation import FLOAT_DTYPES, REDUCTIONS, compute_dtype, is_16bit

_FLOAT32 = np.dtype(np.float32)
_INT64_LIMIT = 2**63
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def as_scalar(value, dtype):
    """A reduced result as a NumPy scalar of the output dtype (inf where float32 overflows)."""
    if not -_FLOAT32_MAX <= value <= _FLOAT32_MAX and dtype == _FLOAT32:
        # Out of float32's range (or nan): the cast is meant, its warning is not.
        with np.errstate(over="ignore"):
            return dtype.type(value)
    return dtype.type(value)


def only_defaults(weight, softcap, return_lse, label_smoothing, z_loss):
    """The options a plain call leaves at their defaults (see plain_reduction_code): the
    numbers as plain Python 0s, so that anything else gets the general checks."""
    return (
        weight is None
        and softcap is None
        and return_lse is False
        and type(label_smoothing) in (float, int)
        and label_smoothing == 0
        and type(z_loss) in (float, int)
        and z_loss == 0
    )


# The plain call -- a (rows, C) C-contiguous ndarray of any dtype the kernels
# take, a contiguous int64 vector of class indices, no option but ignore_index
# and the reduction (and, for a gradient, out= or inplace=True) -- goes
# straight to the kernel: at 64 x 1000 the general checks (CrossEntropyCall) cost half
# as much as the kernel itself. Whatever else comes in (other types, shapes or
# options, an out= that is not plainly right) takes the general path, which
# checks it and raises the errors. Class indices are range-checked by the
# kernel either way.
_GRAD_OUTPUT_ONE = np.ones(1)
_GRAD_OUTPUT_ONE.flags.writeable = False


def plain_reduction_code(logits, target, axis, ignore_index, reduction):
    """The reduction's code for a plain call (see above), or None when the call is not one."""
    if not (
        type(logits) is np.ndarray
        and type(target) is np.ndarray
        and logits.ndim == 2
        and target.ndim == 1
        and type(axis) is int
        and axis in (-1, 1)
        and type(ignore_index) is int
        and -_INT64_LIMIT <= ignore_index < _INT64_LIMIT
        and type(reduction) is str
        and target.dtype == np.int64
        and logits.flags.c_contiguous
        and target.flags.c_contiguous
        and target.shape[0] == logits.shape[0]
        and logits.shape[1] > 0
        and (logits.dtype in FLOAT_DTYPES or is_16bit(logits.dtype))
    ):
        return None
    return REDUCTIONS.get(reduction)


def plain_loss(raw, code, logits):
    """The kernel's loss as the general path returns it (see CrossEntropyCall.run)."""
    return raw if code == 0 else as_scalar(raw, compute_dtype(logits.dtype))


def plain_grad_buffer(logits, target, inplace, out):
    """Where a plain call writes its gradient into the given logits (inplace) or
    out, or None when that needs the general checks (which raise the errors)."""
    # Plainly right: apart from the target (and out apart from the logits).
    # np.may_share_memory compares bounds, which for two contiguous arrays is
    # exact, and cheap.
    if inplace:
        if logits.flags.writeable and not np.may_share_memory(logits, target):
            return logits
        return None
    if (
        type(out) is np.ndarray
        and out.dtype == logits.dtype
        and out.shape == logits.shape
        and out.flags.c_contiguous
        and out.flags.writeable
        and not np.may_share_memory(out, logits)
        and not np.may_share_memory(out, target)
    ):
        return out
    return None


def plain_forward(logits, target, axis, ignore_index, reduction):
    """The loss of a plain call, or None when the call is not one (see above)."""
    code = plain_reduction_code(logits, target, axis, ignore_index, reduction)
    if code is None:
        return None
    raw = _core.cross_entropy(
        logits, target, None, None, ignore_index, 0.0, code, None, None, 0.0, False, 0.0
    )
    return plain_loss(raw, code, logits)


def plain_with_grad(logits, target, axis, ignore_index, reduction, grad_output=1.0, inplace=False, out=None):
    """(loss, grad) for a plain call, or None when the call is not one (see above)."""
    code = plain_reduction_code(logits, target, axis, ignore_index, reduction)
    if code is None or type(grad_output) not in (float, int):
        return None
    if inplace or out is not None:
        grad = plain_grad_buffer(logits, target, inplace, out)
        if grad is None:
            return None
    else:
        grad = empty_output(logits.shape, logits.dtype)
    if grad_output == 1:
        g_out = _GRAD_OUTPUT_ONE if code else np.ones(logits.shape[0])  # 'none': one per row
    else:
        g_out = np.full(1 if code else logits.shape[0], float(grad_output))
    raw = _core.cross_entropy(
        logits, target, None, None, ignore_index, 0.0, code, g_out, grad, 0.0, False, 0.0
    )
    return plain_loss(raw, code, logits), grad
