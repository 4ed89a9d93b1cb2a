"""Bad input gives a clear Python exception that names the facts; nothing crashes.

DESIGN.md section 5: IndexError for a target out of range (position and value);
ValueError for shape mismatches (stating the shapes), unknown option values,
inplace=True on a read-only or non-contiguous array; TypeError for non-float
logits and float targets where class indices are required; AxisError for an
axis out of range.
"""

from __future__ import annotations

import numpy as np
import pytest

import pyce
from pyce._validation import AxisError

from _helpers import DTYPES, REDUCTIONS, assert_close, bitwise_equal

ref = pyce.reference

CE_FUNCS = {
    "cross_entropy": lambda *a, **k: pyce.cross_entropy(*a, **k),
    "cross_entropy_backward": lambda *a, **k: pyce.cross_entropy_backward(*a, **k),
    "cross_entropy_with_grad": lambda *a, **k: pyce.cross_entropy_with_grad(*a, **k),
    "cross_entropy_with_grad_inplace": lambda x, *a, **k: pyce.cross_entropy_with_grad(
        np.array(x, copy=True) if isinstance(x, np.ndarray) else x, *a, inplace=True, **k
    ),
}
NORMALISERS = {"logsumexp": pyce.logsumexp, "softmax": pyce.softmax, "log_softmax": pyce.log_softmax}


def _logits(shape=(50, 7), dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------ IndexError


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("func", list(CE_FUNCS))
@pytest.mark.parametrize("bad", [7, 12345, -1, -101, 2**40])
def test_target_out_of_range_names_position_and_value(func, bad, reduction):
    logits = _logits((50, 7))
    target = np.random.default_rng(1).integers(0, 7, size=50)
    target[37] = bad
    with pytest.raises(IndexError) as info:
        CE_FUNCS[func](logits, target, reduction=reduction)
    msg = str(info.value)
    assert "37" in msg, msg
    assert str(bad) in msg, msg


@pytest.mark.parametrize("threads", [1, 2, 8])
def test_many_targets_checked_on_every_thread_name_the_first_bad_one(threads):
    """From 65536 targets the bounds check and the count of a 'mean' run on the
    kernels' threads: the error still names the first bad target, wherever the
    threads' ranges fall, and the mean divides by the exact count of kept rows."""
    rows = 200_003
    logits = _logits((rows, 2))
    target = np.random.default_rng(2).integers(0, 2, size=rows)
    target[::3] = -100
    before = pyce.get_num_threads()
    pyce.set_num_threads(threads)
    try:
        loss = pyce.cross_entropy(logits, target)
        kept = target != -100
        want = ref.cross_entropy(logits[kept], target[kept])
        assert_close(loss, want, rtol=1e-5, atol=0)
        for first, later in ((150_001, 170_000), (5, 199_999), (rows - 1, rows - 1)):
            bad = target.copy()
            bad[later] = 7
            bad[first] = -5
            with pytest.raises(IndexError) as info:
                pyce.cross_entropy_with_grad(logits, bad)
            assert f"target -5 at position {first} " in str(info.value), str(info.value)
    finally:
        pyce.set_num_threads(before)


@pytest.mark.parametrize("func", list(CE_FUNCS))
def test_target_out_of_range_3d_flat_position(func):
    logits = _logits((4, 5, 9), np.float64)
    target = np.zeros((4, 5), dtype=np.int32)
    target[2, 3] = 99  # flat row index 2 * 5 + 3 = 13
    with pytest.raises(IndexError) as info:
        CE_FUNCS[func](logits, target)
    assert "13" in str(info.value) and "99" in str(info.value), str(info.value)


def test_target_out_of_range_axis1_layout():
    logits = _logits((2, 6, 3, 4), np.float64)  # (N, C, d1, d2)
    target = np.zeros((2, 3, 4), dtype=np.int64)
    target[1, 2, 3] = 6  # flat position 1*12 + 2*4 + 3 = 23
    with pytest.raises(IndexError) as info:
        pyce.cross_entropy(logits, target, axis=1)
    assert "23" in str(info.value) and "6" in str(info.value)


def test_default_ignore_index_is_an_error_once_ignore_index_changes():
    logits = _logits((4, 5))
    target = np.array([0, -100, 1, 2])
    pyce.cross_entropy(logits, target)  # fine: -100 is ignored by default
    with pytest.raises(IndexError) as info:
        pyce.cross_entropy(logits, target, ignore_index=3)
    assert "-100" in str(info.value)


def test_out_of_range_with_weights_smoothing_and_huge_vocab():
    logits = _logits((3, 100003))
    target = np.array([5, 100003, 7])
    for kw in ({}, {"weight": np.ones(100003, np.float32)}, {"label_smoothing": 0.1}):
        with pytest.raises(IndexError, match="100003"):
            pyce.cross_entropy_with_grad(logits, target, **kw)


def test_uint64_target_that_wraps_to_ignore_index_is_an_error():
    """2**64 - 1 is not class -1: a uint64 target must not alias ignore_index=-1."""
    logits = _logits((3, 4), np.float64)
    target = np.array([0, 2**64 - 1, 1], dtype=np.uint64)
    with pytest.raises(IndexError):
        pyce.cross_entropy(logits, target, ignore_index=-1)


def test_inplace_error_leaves_no_partial_result_in_the_loss():
    """After an IndexError the caller gets no loss; the next correct call is unaffected."""
    logits = _logits((6, 5), np.float64)
    bad = np.array([0, 1, 2, 9, 3, 4])
    with pytest.raises(IndexError):
        pyce.cross_entropy_with_grad(logits.copy(), bad, inplace=True)
    good = np.array([0, 1, 2, 3, 3, 4])
    assert_close(pyce.cross_entropy(logits, good), ref.cross_entropy(logits, good), rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------ ValueError


@pytest.mark.parametrize("func", list(CE_FUNCS))
@pytest.mark.parametrize("target_shape", [(6,), (5, 1), (4, 6), ()])
def test_target_shape_mismatch(func, target_shape):
    logits = _logits((5, 6))
    target = np.zeros(target_shape, dtype=np.int64)
    with pytest.raises(ValueError) as info:
        CE_FUNCS[func](logits, target)
    msg = str(info.value)
    assert "(5,)" in msg and str(target_shape) in msg, msg


def test_target_shape_mismatch_axis1():
    logits = _logits((2, 5, 3))
    with pytest.raises(ValueError) as info:
        pyce.cross_entropy(logits, np.zeros((2, 5), dtype=np.int64), axis=1)
    assert "(2, 3)" in str(info.value) and "(2, 5)" in str(info.value)


@pytest.mark.parametrize("func", list(CE_FUNCS))
@pytest.mark.parametrize("weight_shape", [(6,), (4,), (5, 1), ()])
def test_weight_shape_mismatch(func, weight_shape):
    logits = _logits((3, 5))
    with pytest.raises(ValueError) as info:
        CE_FUNCS[func](logits, np.array([0, 1, 2]), weight=np.ones(weight_shape))
    msg = str(info.value)
    assert "(5,)" in msg and str(weight_shape) in msg, msg


def test_grad_output_shape_mismatch():
    logits = _logits((4, 5))
    target = np.array([0, 1, 2, 3])
    with pytest.raises(ValueError) as info:
        pyce.cross_entropy_backward(logits, target, np.ones(3), reduction="none")
    assert "(4,)" in str(info.value) and "(3,)" in str(info.value)
    with pytest.raises(ValueError) as info:
        pyce.cross_entropy_backward(logits, target, np.ones(4), reduction="mean")
    assert "(4,)" in str(info.value)


@pytest.mark.parametrize("func", list(CE_FUNCS))
@pytest.mark.parametrize("reduction", ["avg", "MEAN", "", None, "elementwise_mean"])
def test_unknown_reduction(func, reduction):
    with pytest.raises(ValueError) as info:
        CE_FUNCS[func](_logits((3, 4)), np.array([0, 1, 2]), reduction=reduction)
    assert repr(reduction) in str(info.value) or str(reduction) in str(info.value)
    assert "mean" in str(info.value)


@pytest.mark.parametrize("func", list(CE_FUNCS))
@pytest.mark.parametrize("eps", [-0.1, 1.5, float("nan"), float("inf"), -1e-12])
def test_label_smoothing_out_of_range(func, eps):
    with pytest.raises(ValueError) as info:
        CE_FUNCS[func](_logits((3, 4)), np.array([0, 1, 2]), label_smoothing=eps)
    assert str(eps) in str(info.value)


def test_label_smoothing_bounds_are_allowed():
    logits = _logits((3, 4), np.float64)
    for eps in (0, 0.0, 1, 1.0, np.float32(0.5)):
        assert_close(
            pyce.cross_entropy(logits, np.array([0, 1, 2]), label_smoothing=eps),
            ref.cross_entropy(logits, np.array([0, 1, 2]), label_smoothing=float(eps)),
            rtol=1e-12,
            atol=1e-14,
        )


def test_inplace_read_only():
    logits = _logits((3, 4))
    logits.flags.writeable = False
    with pytest.raises(ValueError, match="read-only|writeable"):
        pyce.cross_entropy_with_grad(logits, np.array([0, 1, 2]), inplace=True)
    broadcast = np.broadcast_to(_logits((1, 4)), (3, 4))
    with pytest.raises(ValueError):
        pyce.cross_entropy_with_grad(broadcast, np.array([0, 1, 2]), inplace=True)


@pytest.mark.parametrize("view", ["col-step", "row-step", "fortran", "reversed"])
def test_inplace_non_contiguous(view):
    base = _logits((8, 10))
    logits = {
        "col-step": base[:, ::2],
        "row-step": base[::2],
        "fortran": np.asfortranarray(base),
        "reversed": base[::-1],
    }[view]
    before = logits.copy()
    with pytest.raises(ValueError, match="contiguous"):
        pyce.cross_entropy_with_grad(logits, np.zeros(logits.shape[0], dtype=np.int64), inplace=True)
    assert np.array_equal(logits, before)


@pytest.mark.parametrize("shape,axis", [((4, 5), 0), ((2, 5, 3), 1), ((2, 5, 3), -2)])
def test_inplace_class_axis_not_innermost(shape, axis):
    logits = _logits(shape)
    target_shape = shape[: axis % len(shape)] + shape[axis % len(shape) + 1 :]
    before = logits.copy()
    with pytest.raises(ValueError, match="innermost"):
        pyce.cross_entropy_with_grad(logits, np.zeros(target_shape, dtype=np.int64), axis=axis, inplace=True)
    assert np.array_equal(logits, before)


def test_inplace_on_a_list():
    with pytest.raises(ValueError):
        pyce.cross_entropy_with_grad([[1.0, 2.0]], [0], inplace=True)


@pytest.mark.parametrize("func", list(CE_FUNCS))
def test_zero_classes(func):
    with pytest.raises(ValueError):
        CE_FUNCS[func](np.zeros((3, 0), np.float32), np.zeros(3, dtype=np.int64))


@pytest.mark.parametrize("name", list(CE_FUNCS))
def test_zero_dimensional_logits(name):
    # (The normalisers take a 0-d input as one value, as scipy.special does:
    # tests/test_scipy_conventions.py.)
    with pytest.raises(ValueError):
        CE_FUNCS[name](np.array(1.0), np.array(0))


# ------------------------------------------------------------------ TypeError

BAD_DTYPES = [np.int32, np.int64, np.uint8, np.bool_, np.complex64, np.complex128, object, "U3"]


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=str)
@pytest.mark.parametrize("func", list(CE_FUNCS))
def test_non_float_logits(func, dtype):
    logits = np.ones((3, 4)).astype(dtype)
    with pytest.raises(TypeError) as info:
        CE_FUNCS[func](logits, np.array([0, 1, 2]))
    assert str(np.dtype(dtype)) in str(info.value), str(info.value)


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=str)
@pytest.mark.parametrize("name", list(NORMALISERS))
def test_non_float_input_to_normalisers(name, dtype):
    with pytest.raises(TypeError) as info:
        NORMALISERS[name](np.ones((3, 4)).astype(dtype))
    assert str(np.dtype(dtype)) in str(info.value)


@pytest.mark.parametrize("func", list(CE_FUNCS))
@pytest.mark.parametrize("target_shape", [(5,), (5, 1), (5, 6, 1), (6, 5)])
def test_float_target_needs_the_logits_shape(func, target_shape):
    logits = _logits((5, 6))
    with pytest.raises(TypeError) as info:
        CE_FUNCS[func](logits, np.zeros(target_shape, dtype=np.float32))
    msg = str(info.value)
    assert "(5, 6)" in msg and str(target_shape) in msg, msg


@pytest.mark.parametrize("dtype", [np.bool_, np.complex128, object, "U2"], ids=str)
def test_target_of_other_dtypes(dtype):
    with pytest.raises(TypeError):
        pyce.cross_entropy(_logits((3, 4)), np.zeros(3).astype(dtype))


def test_option_types():
    logits = _logits((3, 4))
    target = np.array([0, 1, 2])
    with pytest.raises(TypeError):
        pyce.cross_entropy(logits, target, ignore_index=1.5)
    with pytest.raises(TypeError):
        pyce.cross_entropy(logits, target, label_smoothing="lots")
    with pytest.raises(TypeError):
        pyce.cross_entropy(logits, target, weight=np.ones(4, dtype=np.complex64))
    with pytest.raises(TypeError):
        pyce.cross_entropy(logits, target, axis=1.0)
    with pytest.raises(TypeError):
        pyce.cross_entropy(logits, target, -1)  # the options are keyword-only


# ------------------------------------------------------------------ AxisError


@pytest.mark.parametrize("axis", [2, -3, 10])
@pytest.mark.parametrize("name", list(NORMALISERS) + list(CE_FUNCS))
def test_axis_out_of_range(name, axis):
    logits = _logits((3, 4))
    with pytest.raises(AxisError):
        if name in NORMALISERS:
            NORMALISERS[name](logits, axis=axis)
        else:
            CE_FUNCS[name](logits, np.array([0, 1, 2]), axis=axis)


# ------------------------------------------------------- weird but valid input


def test_float16_and_longdouble_are_converted_or_refused_cleanly():
    for dtype in (np.float16, np.longdouble):
        x = np.array([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]], dtype=dtype)
        try:
            got = pyce.cross_entropy(x, np.array([0, 2]))
        except TypeError as exc:
            assert str(np.dtype(dtype)) in str(exc)
        else:
            assert_close(got, ref.cross_entropy(x.astype(np.float64), np.array([0, 2])), rtol=1e-3, atol=1e-3)


def test_non_native_byte_order_is_correct_or_refused():
    for dtype in (">f4", ">f8"):
        x = np.random.default_rng(0).standard_normal((4, 9)).astype(dtype)
        target = np.array([0, 3, 8, 2])
        native = x.astype(np.dtype(dtype).newbyteorder("="))
        for call in (
            lambda a: pyce.cross_entropy(a, target),
            lambda a: pyce.softmax(a),
            lambda a: pyce.cross_entropy_backward(a, target),
        ):
            try:
                got = call(x)
            except TypeError as exc:
                assert dtype in str(exc), str(exc)  # names the dtype it refused
                continue
            assert bitwise_equal(np.asarray(got).astype(native.dtype), np.asarray(call(native)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_unaligned_arrays(dtype):
    """Contiguous but misaligned data (a view at an odd byte offset) gives correct results."""
    itemsize = np.dtype(dtype).itemsize
    n, c = 5, 37
    buf = np.zeros(n * c * itemsize + 1, dtype=np.uint8)
    x = np.ndarray((n, c), dtype=dtype, buffer=buf, offset=1)
    assert not x.flags.aligned
    x[...] = np.random.default_rng(0).standard_normal((n, c))
    aligned = x.copy()
    target = np.array([0, 5, 36, 12, 1])
    kw = {"weight": np.linspace(0.5, 1.5, c), "label_smoothing": 0.1}
    for reduction in REDUCTIONS:
        a = pyce.cross_entropy_with_grad(x, target, reduction=reduction, **kw)
        b = pyce.cross_entropy_with_grad(aligned, target, reduction=reduction, **kw)
        assert bitwise_equal(a[0], b[0]) and bitwise_equal(a[1], b[1])
    assert bitwise_equal(pyce.softmax(x), pyce.softmax(aligned))
    assert bitwise_equal(pyce.logsumexp(x), pyce.logsumexp(aligned))
    expected = pyce.cross_entropy_with_grad(aligned, target, **kw)
    loss, grad = pyce.cross_entropy_with_grad(x, target, inplace=True, **kw)
    assert grad is x and bitwise_equal(grad, expected[1]) and bitwise_equal(loss, expected[0])


def test_extreme_ignore_index_and_targets_do_not_crash():
    logits = _logits((4, 5), np.float64)
    for ignore_index in (2**62, -(2**63), np.int64(-7), np.uint8(3)):
        target = np.array([0, 1, 2, 4])
        target[1] = int(ignore_index) if -(2**63) <= int(ignore_index) < 2**63 else 0
        got = pyce.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
        assert_close(
            got,
            ref.cross_entropy(logits, target, ignore_index=int(ignore_index), reduction="none"),
            rtol=1e-12,
            atol=1e-14,
        )
    for bad in (np.iinfo(np.int64).max, np.iinfo(np.int64).min):
        with pytest.raises(IndexError):
            pyce.cross_entropy(logits, np.array([0, bad, 1, 2]))
    with pytest.raises((OverflowError, TypeError, ValueError)):
        pyce.cross_entropy(logits, np.array([0, 1, 2, 3]), ignore_index=2**70)


def test_nan_and_odd_weights_and_soft_targets_do_not_crash():
    logits = _logits((4, 5), np.float64)
    target = np.array([0, 1, 2, 4])
    w = np.array([1.0, np.nan, 0.0, -1.0, np.inf])
    for reduction in REDUCTIONS:
        with np.errstate(all="ignore"):
            got = pyce.cross_entropy(logits, target, weight=w, reduction=reduction)
            expected = ref.cross_entropy(logits, target, weight=w, reduction=reduction)
        assert np.shape(got) == np.shape(expected)
        assert np.array_equal(np.isnan(got), np.isnan(expected))
    soft = np.full((4, 5), np.nan)
    got = pyce.cross_entropy(logits, soft, reduction="none")
    assert np.all(np.isnan(got))
    unnormalised = np.abs(_logits((4, 5), np.float64, seed=3)) * 3
    assert_close(
        pyce.cross_entropy_backward(logits, unnormalised),
        ref.cross_entropy_backward(logits, unnormalised),
        rtol=1e-12,
        atol=1e-14,
    )


def test_ragged_and_strange_containers_raise_cleanly():
    with pytest.raises((ValueError, TypeError)):
        pyce.cross_entropy([[1.0, 2.0], [1.0]], [0, 0])
    with pytest.raises((ValueError, TypeError)):
        pyce.softmax("not an array")
    with pytest.raises((ValueError, TypeError)):
        pyce.cross_entropy(_logits((2, 3)), None)


def test_many_dimensions():
    x = np.random.default_rng(0).standard_normal((2, 1, 2, 1, 2, 1, 3, 5))
    target = np.zeros(x.shape[:-1], dtype=np.int64)
    assert_close(
        pyce.cross_entropy(x, target, reduction="none"),
        ref.cross_entropy(x, target, reduction="none"),
        rtol=1e-12,
        atol=1e-14,
    )
    assert_close(pyce.softmax(x, axis=3), ref.softmax(x, axis=3), rtol=1e-12, atol=1e-15)
