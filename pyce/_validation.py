"""Input checks and normalisation shared by the public functions.

Everything here runs before a kernel is called, so that a bad argument becomes a
Python exception that names the bad value and the expected one. The C++ side
re-checks only what protects memory (the indices it reads with).
"""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np

try:
    from numpy.exceptions import AxisError
except ImportError:  # NumPy < 1.25 has it at the top level only
    from numpy import AxisError  # type: ignore[attr-defined,no-redef]

# Logit dtypes the kernels take: float32 and float64 compute in themselves;
# float16 and bfloat16 (ml_dtypes.bfloat16) are read into float32.
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


def is_16bit(dtype: np.dtype) -> bool:
    """float16, or bfloat16 from ml_dtypes (a NumPy dtype named 'bfloat16')."""
    # dtype.type's name, not dtype.name: that one is computed in Python (~1 us a call).
    return dtype == np.float16 or (dtype.itemsize == 2 and dtype.type.__name__ == "bfloat16")


_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype reductions (logsumexp, losses) come out in: float64 for float64, else float32."""
    # A tuple test against dtype objects: identity first, so float32 and
    # float64 cost no conversion or comparison (this runs on every small call).
    return dtype if dtype in (_FLOAT32, _FLOAT64) else _FLOAT32


def normalize_axis(axis, ndim: int, name: str = "axis") -> int:
    """Return ``axis`` as a non-negative int, or raise numpy's AxisError."""
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {axis!r}") from None
    if not -ndim <= axis < ndim:
        raise AxisError(axis, ndim)
    return axis % ndim


def as_float_array(x, name: str) -> np.ndarray:
    """``x`` as an ndarray of a dtype the kernels take (no copy when it already is)."""
    arr = np.asarray(x)
    if arr.dtype in FLOAT_DTYPES or is_16bit(arr.dtype):
        return arr
    if arr.dtype.kind in "biu":
        raise TypeError(
            f"{name} must be a floating-point array (float32, float64, float16 or bfloat16), "
            f"got dtype {arr.dtype}; convert it first, e.g. {name}.astype(np.float32)"
        )
    if arr.dtype.kind == "f":
        raise TypeError(
            f"{name} has dtype {arr.dtype}; pyce computes in float32 or float64 "
            f"(and reads float16/bfloat16): convert with .astype(np.float64)"
        )
    raise TypeError(
        f"{name} must be a floating-point array (float32, float64, float16 or bfloat16), "
        f"got dtype {arr.dtype}"
    )


def rows_view(x: np.ndarray, axis: int) -> np.ndarray:
    """View/copy ``x`` as a C-contiguous (rows, C) array with classes last.

    No copy is made when the class axis is already the innermost contiguous
    one, which is the common (batch, ..., vocab) case.
    """
    # The class axis last is the common case: skip moveaxis, which costs more
    # than a small kernel call.
    moved = x if axis == x.ndim - 1 else np.moveaxis(x, axis, -1)
    if not moved.flags.c_contiguous:
        moved = np.ascontiguousarray(moved)
    return moved.reshape(math.prod(moved.shape[:-1]), moved.shape[-1])


def class_axis(x, name: str, axis=-1):
    """``x`` validated as float logits with at least one dimension and one class.

    Returns ``(x, axis)``: the array and its class axis as a non-negative int.
    """
    x = as_float_array(x, name)
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the classes), got a 0-d array")
    axis = normalize_axis(axis, x.ndim)
    if x.shape[axis] == 0:
        raise ValueError(f"{name} must have at least one class along axis {axis}, got shape {x.shape}")
    return x, axis


def tiled_view(x: np.ndarray, axis: int):
    """``x`` as the C-contiguous (outer, C, inner) array that the row kernels of
    evaluate, entropy, KL and focal loss take tile by tile with the classes in
    the middle (csrc/kernels/strided_tiles.hpp), or None when rows_view's
    (rows, C) view needs no copy (the class axis last, only length-1 axes
    after it, or a view whose moved axes are contiguous).

    A non-contiguous ``x`` is copied in its own order first (no transposition).
    """
    if axis == x.ndim - 1 or math.prod(x.shape[axis + 1 :]) <= 1:
        return None
    if not x.flags.c_contiguous:
        if np.moveaxis(x, axis, -1).flags.c_contiguous:
            return None
        x = np.ascontiguousarray(x)
    return x.reshape(math.prod(x.shape[:axis]), x.shape[axis], math.prod(x.shape[axis + 1 :]))


def class_layout(x, name: str, axis=-1):
    """As class_axis, plus the array the row kernels take, without a transposing
    copy where it can: ``(x, axis, arr)`` with
    ``arr`` tiled_view's (outer, C, inner) array where it applies, else
    rows_view's (rows, C). Either way the kernels count positions (rows) in
    the C order of the logits' shape without the class axis, as targets and
    per-row results are laid out."""
    x, axis = class_axis(x, name, axis)
    tiled = tiled_view(x, axis)
    return x, axis, tiled if tiled is not None else rows_view(x, axis)


def like_logits(grad_rows: np.ndarray, shape: tuple, axis: int) -> np.ndarray:
    """A (rows, C) result put back in the logits' layout (shape, class axis ``axis``);
    an (outer, C, inner) one (class_layout) is already in it."""
    if grad_rows.ndim == 3:
        return grad_rows.reshape(shape)
    moved = shape[:axis] + shape[axis + 1 :] + (shape[axis],)
    if axis == len(shape) - 1:
        return grad_rows.reshape(moved)
    return np.moveaxis(grad_rows.reshape(moved), -1, axis)


def normalize_axes(axis, ndim: int) -> tuple:
    """``axis`` (an int, a tuple of ints or None for all) as sorted, distinct non-negative axes.

    A 0-d array has one element and no axes: None, (), and the default -1 (or 0)
    all mean "that element", as in ``scipy.special``.
    """
    if axis is None:
        return tuple(range(ndim))
    if ndim == 0:
        if isinstance(axis, tuple) and not axis:
            return ()
        try:
            if operator.index(axis) in (-1, 0):
                return ()
        except TypeError:
            pass
        raise AxisError(f"axis {axis!r} is out of bounds for a 0-d array")
    axes = axis if isinstance(axis, tuple) else (axis,)
    normalized = tuple(normalize_axis(a, ndim) for a in axes)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"repeated axis in {axis!r}")
    return tuple(sorted(normalized))


def reduced_rows(x: np.ndarray, axes: tuple):
    """``x`` as C-contiguous (rows, n) with the ``axes`` (normalize_axes) flattened last.

    Returns ``(rows, moved_shape)``: moved_shape is x's shape with those axes
    moved to the end, for moving a result of x's size back (restore_axes).
    """
    last = tuple(range(x.ndim - len(axes), x.ndim))
    moved = x if axes == last else np.moveaxis(x, axes, last)
    if not moved.flags.c_contiguous:
        moved = np.ascontiguousarray(moved)
    n = math.prod(moved.shape[x.ndim - len(axes) :])
    return moved.reshape(math.prod(moved.shape[: x.ndim - len(axes)]), n), moved.shape


def restore_axes(out_rows: np.ndarray, moved_shape: tuple, axes: tuple) -> np.ndarray:
    """The inverse of reduced_rows for a result of the input's size."""
    ndim = len(moved_shape)
    last = tuple(range(ndim - len(axes), ndim))
    out = out_rows.reshape(moved_shape)
    return out if axes == last else np.moveaxis(out, last, axes)


def check_real(value, name: str, what: str) -> float:
    """``value`` as a float if it is a real number (not a string or a bool), else TypeError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    return float(value)


def check_flag(value, name: str) -> bool:
    """``value`` as a bool: True, False (or NumPy's), 0 or 1; anything else is a TypeError."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def float_range(dtype: np.dtype):
    """(smallest normal, largest finite) of the dtype a kernel computes ``dtype`` logits in."""
    info = np.finfo(compute_dtype(dtype))
    return float(info.tiny), float(info.max)


def check_apart(output: np.ndarray, output_name: str, **inputs) -> None:
    """Raise ValueError when ``output``, which a kernel writes, overlaps an input it still reads.

    Every array handed to a kernel is C-contiguous, and for two contiguous
    arrays np.may_share_memory's bounds test is exact (and cheap).
    """
    for name, arr in inputs.items():
        if arr is not None and np.may_share_memory(output, arr):
            raise ValueError(
                f"{name} overlaps {output_name}, which is written while {name} is still read; "
                f"pass a copy ({name}.copy()) or another output buffer"
            )


# The strided-class kernels (csrc/kernels/strided_classes.cpp) take the
# class axis where it is when at least this many positions follow it
# (a vector's width: fewer would leave most lanes empty, and the row kernels
# on a transposed copy do as well there). They compare class indices as
# float32, exact below 2**24.
STRIDED_MIN_INNER = 16
STRIDED_MAX_CLASSES = 1 << 24


def strided_view(x: np.ndarray, axis: int):
    """``x`` as a C-contiguous (outer, C, inner) array with the classes in the
    middle, or None when the row kernels should take it (the class axis last,
    or too few positions after it).

    A non-contiguous ``x`` is copied in its own order first (no transposition).
    """
    if axis == x.ndim - 1:
        return None
    inner = math.prod(x.shape[axis + 1 :])
    if inner < STRIDED_MIN_INNER or x.shape[axis] >= STRIDED_MAX_CLASSES:
        return None
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    return x.reshape(math.prod(x.shape[:axis]), x.shape[axis], inner)


def check_reduction(reduction) -> int:
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of 'none', 'mean', 'sum'; got {reduction!r}")
    return REDUCTIONS[reduction]


def check_label_smoothing(label_smoothing) -> float:
    try:
        eps = float(label_smoothing)
    except (TypeError, ValueError):
        raise TypeError(f"label_smoothing must be a number in [0, 1], got {label_smoothing!r}") from None
    if not 0.0 <= eps <= 1.0:  # also rejects nan
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    return eps


def check_z_loss(z_loss, dtype: np.dtype = _FLOAT64) -> float:
    """z_loss as a float in [0, the largest number of the logits' compute dtype]."""
    try:
        value = float(z_loss)
    except (TypeError, ValueError):
        raise TypeError(f"z_loss must be a number >= 0, got {z_loss!r}") from None
    largest = float_range(dtype)[1]
    if not 0.0 <= value <= largest:  # also rejects nan and inf
        raise ValueError(
            f"z_loss must be a finite number >= 0, got {z_loss!r} (at most {largest:.4g} for "
            f"{dtype} logits, computed in {compute_dtype(dtype)})"
        )
    return value


def check_softcap(softcap, dtype: np.dtype = _FLOAT64) -> float:
    """The soft cap as a positive float, or 0.0 for None (no capping).

    The kernels compute with the cap and its reciprocal in the logits' compute
    dtype, so both must be normal numbers there.
    """
    if softcap is None:
        return 0.0
    try:
        value = float(softcap)
    except (TypeError, ValueError):
        raise TypeError(f"softcap must be None or a number > 0, got {softcap!r}") from None
    smallest, largest = float_range(dtype)
    if not smallest <= value <= largest:  # also rejects nan, inf and values <= 0
        raise ValueError(
            f"softcap must be None or a number in [{smallest:.4g}, {largest:.4g}] for {dtype} "
            f"logits (computed in {compute_dtype(dtype)}), got {softcap!r}"
        )
    return value


_INT64 = np.iinfo(np.int64)


def check_ignore_index(ignore_index) -> int:
    """ignore_index as a Python int that an int64 target can hold."""
    try:
        value = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}") from None
    if not _INT64.min <= value <= _INT64.max:
        raise ValueError(
            f"ignore_index must be an int64 (between {_INT64.min} and {_INT64.max}), got {value}"
        )
    return value


def check_weight(weight, n_classes: int, dtype: np.dtype):
    """Class weights as a contiguous (C,) array of the logits' compute dtype, or None.

    Any real dtype is taken (bfloat16 from ml_dtypes too, as a bfloat16 model
    has bfloat16 weights); values the compute dtype cannot hold are refused.
    """
    if weight is None:
        return None
    w = np.asarray(weight)
    if w.dtype.kind not in "fiu" and not is_16bit(w.dtype):
        raise TypeError(
            f"weight must be a real array of shape ({n_classes},) (float, integer or bfloat16), "
            f"got dtype {w.dtype}"
        )
    if w.shape != (n_classes,):
        raise ValueError(f"weight must have shape ({n_classes},) (one per class), got shape {w.shape}")
    with np.errstate(over="ignore"):  # refused below
        converted = np.ascontiguousarray(w, dtype=dtype)
    if converted.dtype.itemsize < w.dtype.itemsize:
        # A finite weight that the conversion made infinite was out of range.
        wide = w.astype(np.float64)
        overflow = np.isfinite(wide) & ~np.isfinite(converted)
        if overflow.any():
            pos = int(np.flatnonzero(overflow)[0])
            raise ValueError(
                f"weight[{pos}] = {float(wide[pos])!r} does not fit in {dtype} (at most "
                f"{float_range(dtype)[1]:.4g}), the dtype these logits compute in"
            )
    return converted


def split_target(target, logits: np.ndarray, axis: int):
    """Classify ``target`` as class indices or probabilities and check its shape.

    Returns ``(indices, probabilities)``: exactly one of them is not None.
    ``indices`` is an int64 array of the logits' shape without the class axis;
    ``probabilities`` is a float array of the logits' shape.
    """
    t = np.asarray(target)
    expected = logits.shape[:axis] + logits.shape[axis + 1 :]
    if t.dtype.kind in "iu":
        if t.shape != expected:
            raise ValueError(
                f"target of class indices must have the logits' shape without the class "
                f"axis {axis}: expected {expected}, got {t.shape} (logits {logits.shape})"
            )
        if t.dtype == np.uint64 and t.size:
            # Values >= 2**63 would wrap to negative int64 (possibly ignore_index).
            too_big = np.flatnonzero(t.reshape(-1) > np.iinfo(np.int64).max)
            if too_big.size:
                pos = int(too_big[0])
                raise IndexError(
                    f"target {int(t.reshape(-1)[pos])} at position {pos} (flattened) is out of "
                    f"range for {logits.shape[axis]} classes"
                )
        return t.astype(np.int64, copy=False), None
    if t.dtype.kind == "f" or is_16bit(t.dtype):
        if t.shape == logits.shape:
            return None, t
        raise TypeError(
            f"a float target is read as class probabilities and must have the logits' "
            f"shape {logits.shape}, got {t.shape}; for class indices pass an integer "
            f"array of shape {expected}"
        )
    raise TypeError(
        f"target must be an integer array of class indices (shape {expected}) or a float "
        f"array of probabilities (shape {logits.shape}), got dtype {t.dtype}"
    )


def check_grad_output(grad_output, reduction: int, target_shape: tuple) -> np.ndarray:
    """``grad_output`` as a float64 vector: one per row for 'none', else one value."""
    if grad_output is None:
        raise TypeError(
            "grad_output must be a number or an array of the loss's shape, got None "
            "(pass 1.0 for the gradient of the loss itself)"
        )
    try:
        g = np.asarray(grad_output, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"grad_output must be a number or a float array, got {grad_output!r}") from None
    if reduction == REDUCTIONS["none"]:
        try:
            g = np.broadcast_to(g, target_shape)
        except ValueError:
            raise ValueError(
                f"grad_output must have the loss's shape {target_shape} for reduction='none', "
                f"got shape {g.shape}"
            ) from None
        return np.ascontiguousarray(g).reshape(-1)
    if g.ndim != 0:
        raise ValueError(f"grad_output must be a scalar for a reduced loss, got shape {g.shape}")
    return g.reshape(1)


def grad_dtype_for(logits_dtype: np.dtype, grad_dtype) -> np.dtype:
    """The gradient's dtype: the logits' (default), or float32 for 16-bit logits when asked."""
    if grad_dtype is None:
        return logits_dtype
    wanted = np.dtype(grad_dtype)
    if wanted == logits_dtype or (wanted == np.float32 and is_16bit(logits_dtype)):
        return wanted
    raise ValueError(
        f"grad_dtype must be the logits' dtype {logits_dtype}"
        + (" or float32" if is_16bit(logits_dtype) else "")
        + f", got {wanted}"
    )


# --------------------------------------------------------------------------
# Fused linear cross-entropy (pyce.linear_cross_entropy and friends)
# --------------------------------------------------------------------------


def check_linear_operands(hidden, linear_weight, target, linear_bias, dtypes, names):
    """Shapes and dtypes of ``hidden (..., D)``, ``linear_weight (V, D)``, ``target (...)``
    and ``linear_bias (V,)`` (each given with the ``.shape``/``.dtype`` of its library).

    ``names`` are the argument names as the caller spells them; ``dtypes`` the
    floating dtypes allowed. Raises an error naming the shapes that disagree.
    """
    h_name, w_name, t_name, b_name = names
    if hidden.dtype not in dtypes:
        raise TypeError(f"{h_name} must have dtype {' or '.join(map(str, dtypes))}, got {hidden.dtype}")
    if len(hidden.shape) < 1:
        raise ValueError(f"{h_name} must have at least one dimension (the features D), got a 0-d array")
    if len(linear_weight.shape) != 2:
        raise ValueError(
            f"{w_name} must be 2-D (V, D) like torch.nn.Linear's weight, "
            f"got shape {tuple(linear_weight.shape)}"
        )
    if linear_weight.dtype != hidden.dtype:
        raise TypeError(
            f"{w_name} has dtype {linear_weight.dtype} but {h_name} has {hidden.dtype}; they must match"
        )
    V, D = linear_weight.shape
    if hidden.shape[-1] != D:
        raise ValueError(
            f"{h_name}'s last dimension {hidden.shape[-1]} (shape {tuple(hidden.shape)}) must equal "
            f"{w_name}'s second dimension D = {D} (shape {tuple(linear_weight.shape)})"
        )
    if V == 0:
        raise ValueError(
            f"{w_name} must have at least one row (class), got shape {tuple(linear_weight.shape)}"
        )
    if tuple(target.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(
            f"{t_name} must have {h_name}'s shape without its last dimension: expected "
            f"{tuple(hidden.shape[:-1])}, got {tuple(target.shape)} ({h_name} {tuple(hidden.shape)})"
        )
    if linear_bias is not None:
        if tuple(linear_bias.shape) != (V,):
            raise ValueError(
                f"{b_name} must have shape ({V},) (one per row of {w_name}, shape "
                f"{tuple(linear_weight.shape)}), got {tuple(linear_bias.shape)}"
            )
        if linear_bias.dtype != hidden.dtype:
            raise TypeError(
                f"{b_name} has dtype {linear_bias.dtype} but {h_name} has {hidden.dtype}; they must match"
            )
    return V, D


def check_class_targets(target, name="target"):
    """An integer target of class indices (float probabilities are not taken here)."""
    if target.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must be an integer array of class indices, got dtype {target.dtype} "
            "(probability targets need the logits; use pyce.cross_entropy)"
        )


def check_shift(shift, hidden_shape) -> int:
    """``shift`` as an int in [0, T), T the length of the time axis (hidden's second-to-last)."""
    try:
        k = operator.index(shift)
    except TypeError:
        raise TypeError(f"shift must be a non-negative integer, got {shift!r}") from None
    if k < 0:
        raise ValueError(f"shift must be >= 0, got {k}")
    if k == 0:
        return 0
    if len(hidden_shape) < 2:
        raise ValueError(
            f"shift={k} needs a time axis: hidden of shape (..., T, D), got shape {tuple(hidden_shape)}"
        )
    T = hidden_shape[-2]
    if k >= T:
        raise ValueError(
            f"shift must be smaller than the sequence length T = {T} (hidden "
            f"shape {tuple(hidden_shape)}), got {k}"
        )
    return k


def check_filter_eps(filter_eps, machine_eps: float) -> float:
    """The gradient-filtering threshold: 0.0 for None (no filtering); for ``'auto'``,
    Cut Cross-Entropy's rule, the inputs' machine epsilon / 32 (``machine_eps``
    from ``np.finfo`` or ``torch.finfo``)."""
    if filter_eps is None:
        return 0.0
    if isinstance(filter_eps, str):
        if filter_eps != "auto":
            raise ValueError(f"filter_eps must be None, 'auto' or a number in (0, 1), got {filter_eps!r}")
        return float(machine_eps) / 32.0
    try:
        value = float(filter_eps)
    except (TypeError, ValueError):
        raise TypeError(
            f"filter_eps must be None, 'auto' or a number in (0, 1), got {filter_eps!r}"
        ) from None
    if not 0.0 < value < 1.0:
        raise ValueError(f"filter_eps must be None, 'auto' or a number in (0, 1), got {filter_eps!r}")
    return value


def check_chunk_size(chunk_size):
    """Rows per chunk: None (chosen from a memory budget) or a positive int."""
    if chunk_size is None:
        return None
    try:
        n = operator.index(chunk_size)
    except TypeError:
        raise TypeError(f"chunk_size must be None or a positive integer, got {chunk_size!r}") from None
    if n < 1:
        raise ValueError(f"chunk_size must be None or a positive integer, got {n}")
    return n
