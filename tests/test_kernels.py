"""Every public function of pyce against the plain-NumPy reference.

Shapes cover 1 class, 1 row, class counts that are not a multiple of the SIMD
width, vocabularies up to 256k with few rows, (B, T, V) batches and PyTorch's
(N, C, d1, d2) layout; options cover weights, ignore_index, label smoothing,
probability targets and the three reductions; inputs include non-contiguous
views and the extreme values of DESIGN.md section 4.

Tolerances (see _helpers): float64 rtol 1e-12 (atol 1e-14 x the logits'
magnitude); float32 losses rtol 2e-6 against the reference evaluated on the
same float32 numbers, gradients and probabilities atol 1e-6 rtol 1e-5.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import pyce
from _helpers import (
    DTYPES,
    HALF_DTYPES,
    OPTIONS,
    REDUCTIONS,
    assert_close,
    bitwise_equal,
    central_difference,
    check_cross_entropy,
    check_loss_output,
    loss_shape_of,
    loss_tol,
    make_problem,
    option_problem,
    prob_tol,
    value_scale,
)

ref = pyce.reference

SHAPES = {
    "1x1": (1, 1),
    "5x1": (5, 1),
    "1x3": (1, 3),
    "7x3": (7, 3),
    "3x16": (3, 16),
    "4x17": (4, 17),
    "3x1000": (3, 1000),
    "2x2049": (2, 2049),
    "2x4097": (2, 4097),
    "1d-37": (37,),
    "btv-2x3x17": (2, 3, 17),
    "btv-2x5x1000": (2, 5, 1000),
    "many-rows-300x33": (300, 33),
}

# Few rows, huge vocabularies (the split-vocabulary path): (shape, options).
BIG_CASES = {
    "2x256000-plain": ((2, 256000), "plain"),
    "2x256000-weight-ignore-smooth": ((2, 256000), "weight-ignore-smooth"),
    "2x256000-soft-weight-smooth": ((2, 256000), "soft-weight-smooth"),
    "1x256000-plain": ((1, 256000), "plain"),
    "3x100003-smooth": ((3, 100003), "smooth"),
}

AXIS_LAYOUTS = {
    "nchw": ((2, 5, 3, 4), 1),
    "nc1-axis1": ((3, 17, 1), 1),
    "n1000hw": ((2, 1000, 2, 3), 1),
    "cn-axis0": ((5, 6), 0),
    "ncd-axis-2": ((3, 7, 4), -2),
    "nc-axis1-of-2d": ((6, 33), 1),
}
AXIS_OPTIONS = ["plain", "weight-ignore-smooth", "ignore-class0", "soft", "soft-weight-smooth"]


def _seed(*parts):
    """A stable seed per test case (hash() of str is salted per process)."""
    return zlib.crc32(repr(parts).encode())


def _grad_output(rng, logits, reduction, axis):
    if reduction == "none":
        return rng.standard_normal(loss_shape_of(logits, axis))
    return 1.0


# ---------------------------------------------------------------- normalisers


def _check_normalisers(x, axis=-1):
    dtype = x.dtype
    scale = value_scale(x)
    ltol, ptol = loss_tol(dtype, scale), prob_tol(dtype, scale)
    for keepdims in (False, True):
        got = pyce.logsumexp(x, axis=axis, keepdims=keepdims)
        expected = ref.logsumexp(x, axis=axis, keepdims=keepdims)
        assert np.asarray(got).dtype == dtype
        assert np.shape(got) == np.shape(expected)
        if np.ndim(expected) == 0:
            assert type(got) is dtype.type, type(got)
        assert_close(got, expected, **ltol, err_msg=f"logsumexp keepdims={keepdims}")
    sm = pyce.softmax(x, axis=axis)
    assert sm.dtype == dtype and sm.shape == x.shape
    assert_close(sm, ref.softmax(x, axis=axis), **ptol, err_msg="softmax")
    lsm = pyce.log_softmax(x, axis=axis)
    assert lsm.dtype == dtype and lsm.shape == x.shape
    assert_close(lsm, ref.log_softmax(x, axis=axis), **ltol, err_msg="log_softmax")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", list(SHAPES.values()) + [(2, 256000)], ids=list(SHAPES) + ["2x256000"])
def test_normalisers_match_reference(shape, dtype):
    rng = np.random.default_rng(len(shape) * 1000 + shape[-1])
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    _check_normalisers(x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [((5, 7), 0), ((3, 17, 4), 1), ((2, 3, 1000), -2),
                                        ((4, 5, 6), 0), ((33,), 0)])
def test_normalisers_other_axes(shape, axis, dtype):
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    _check_normalisers(x, axis)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("view", ["row-step", "col-step", "transposed", "reversed", "fortran"])
def test_normalisers_non_contiguous(view, dtype):
    rng = np.random.default_rng(5)
    x = _non_contiguous(rng.standard_normal((14, 74)).astype(dtype), view)
    assert not x.flags.c_contiguous
    _check_normalisers(x)
    c = np.ascontiguousarray(x)
    assert bitwise_equal(pyce.softmax(x), pyce.softmax(c))
    assert bitwise_equal(pyce.log_softmax(x), pyce.log_softmax(c))
    assert bitwise_equal(pyce.logsumexp(x), pyce.logsumexp(c))


def _extreme_rows(n_classes, dtype):
    """Rows exercising +-inf, nan and huge magnitudes at the head, middle and tail of a row."""
    rng = np.random.default_rng(n_classes)
    rows = []
    for pos in sorted({0, n_classes // 2, n_classes - 1}):
        for special in (np.inf, -np.inf, np.nan):
            r = rng.standard_normal(n_classes)
            r[pos] = special
            rows.append(r)
    rows.append(np.full(n_classes, -np.inf))                  # all -inf
    rows.append(1e4 + rng.standard_normal(n_classes))          # large, shift is exact
    rows.append(-1e4 + rng.standard_normal(n_classes))
    rows.append(rng.standard_normal(n_classes) * 1e4)          # huge spread: one-hot softmax
    rows.append(rng.uniform(80, 90, n_classes))                # float32 exp overflows naively
    rows.append(np.full(n_classes, 88.7))                      # all equal, near exp overflow
    r = rng.standard_normal(n_classes)
    r[:: max(1, n_classes // 3)] = -np.inf                     # some -inf, rest finite
    r[-1] = 0.5
    rows.append(r)
    return np.array(rows).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [1, 3, 17, 37, 1000, 4097])
def test_normalisers_extremes(n_classes, dtype):
    x = _extreme_rows(n_classes, dtype)
    with np.errstate(all="ignore"):
        _check_normalisers(x)
    sm = pyce.softmax(x)
    lse = pyce.logsumexp(x)
    bad = np.isnan(x).any(1) | np.isposinf(x).any(1) | np.isneginf(x).all(1)
    assert np.all(np.isnan(sm[bad]))
    assert np.all(np.isfinite(sm[~bad]))
    assert np.all(lse[np.isneginf(x).all(1)] == -np.inf)
    assert np.all(np.isposinf(lse[np.isposinf(x).any(1) & ~np.isnan(x).any(1)]))
    assert np.all(np.isnan(lse[np.isnan(x).any(1)]))


def test_normalisers_zero_classes_and_empty_batch():
    for dtype in DTYPES:
        x = np.zeros((3, 0), dtype=dtype)
        lse = pyce.logsumexp(x)
        assert lse.dtype == dtype and lse.shape == (3,) and np.all(lse == -np.inf)
        assert pyce.softmax(x).shape == (3, 0)
        assert pyce.log_softmax(x).shape == (3, 0)
        e = np.zeros((0, 5), dtype=dtype)
        assert pyce.logsumexp(e).shape == (0,) and pyce.logsumexp(e).dtype == dtype
        assert pyce.logsumexp(e, keepdims=True).shape == (0, 1)
        assert pyce.softmax(e).shape == (0, 5) and pyce.softmax(e).dtype == dtype
        assert pyce.log_softmax(np.zeros((2, 0, 5), dtype=dtype)).shape == (2, 0, 5)


def test_normalisers_accept_lists():
    got = pyce.softmax([[1.0, 2.0, 3.0]])
    assert got.dtype == np.float64
    assert_close(got, ref.softmax([[1.0, 2.0, 3.0]]), rtol=1e-12, atol=1e-15)
    assert type(pyce.logsumexp([1000.0, 1000.0])) is np.float64
    assert pyce.logsumexp([1000.0, 1000.0]) == pytest.approx(1000 + np.log(2), rel=1e-15)


# ----------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_cross_entropy_matches_reference(shape, dtype, option, reduction):
    rng = np.random.default_rng(_seed(shape, option))
    logits, target, kw = option_problem(rng, shape, option, dtype)
    g = _grad_output(rng, logits, reduction, -1)
    check_cross_entropy(pyce, ref, logits, target, reduction, g, **kw)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(BIG_CASES))
def test_cross_entropy_huge_vocabulary(case, dtype, reduction):
    shape, option = BIG_CASES[case]
    rng = np.random.default_rng(_seed(case, reduction))
    logits, target, kw = option_problem(rng, shape, option, dtype)
    g = _grad_output(rng, logits, reduction, -1)
    check_cross_entropy(pyce, ref, logits, target, reduction, g, **kw)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", AXIS_OPTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(AXIS_LAYOUTS))
def test_cross_entropy_class_axis_layouts(layout, dtype, option, reduction):
    shape, axis = AXIS_LAYOUTS[layout]
    rng = np.random.default_rng(_seed(layout, option))
    logits, target, kw = option_problem(rng, shape, option, dtype, axis=axis)
    g = _grad_output(rng, logits, reduction, axis)
    check_cross_entropy(pyce, ref, logits, target, reduction, g, **kw)


def test_axis1_matches_moved_axis_last():
    """axis=1 on (N, C, d1, d2) equals axis=-1 on the same data with classes moved last."""
    rng = np.random.default_rng(1)
    logits, target, kw = make_problem(rng, (3, 6, 2, 5), axis=1, weight=True, smoothing=0.1)
    moved = np.ascontiguousarray(np.moveaxis(logits, 1, -1))
    kw_last = dict(kw, axis=-1)
    for reduction in REDUCTIONS:
        a = pyce.cross_entropy(logits, target, reduction=reduction, **kw)
        b = pyce.cross_entropy(moved, target, reduction=reduction, **kw_last)
        assert_close(a, b, rtol=1e-14, atol=1e-15)
        ga = pyce.cross_entropy_backward(logits, target, reduction=reduction, **kw)
        gb = pyce.cross_entropy_backward(moved, target, reduction=reduction, **kw_last)
        assert_close(ga, np.moveaxis(gb, -1, 1), rtol=1e-14, atol=1e-15)


# ----------------------------------------------------------- non-contiguous


def _non_contiguous(base, view):
    """A non-C-contiguous view of a 2-D array (the rows' classes along the last axis)."""
    if view == "row-step":
        return base[::2]
    if view == "col-step":
        return base[:, ::2]
    if view == "transposed":
        return np.ascontiguousarray(base.T).T          # F-ordered, same values
    if view == "reversed":
        return base[::-1, ::-1]
    if view == "fortran":
        return np.asfortranarray(base)[1:, 1:]
    raise ValueError(view)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", ["plain", "weight-ignore-smooth", "soft-weight-smooth"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("view", ["row-step", "col-step", "transposed", "reversed", "fortran"])
def test_cross_entropy_non_contiguous(view, dtype, option, reduction):
    rng = np.random.default_rng(_seed(view, option))
    base, _, kw = option_problem(rng, (14, 74), option, dtype)
    logits = _non_contiguous(base, view)
    assert not logits.flags.c_contiguous
    n, c = logits.shape
    # Targets and weights as non-contiguous views too.
    if "soft" in option:
        big = rng.random((2 * n, 2 * c)).astype(dtype) + 0.01
        target = big[::2, ::2]
        target /= target.sum(-1, keepdims=True)
    else:
        big_t = rng.integers(0, c, size=3 * n)
        if "ignore" in option:
            big_t[::4] = -100
        target = big_t[::3]
    if "weight" in kw:
        kw["weight"] = (rng.random(2 * c) + 0.5).astype(dtype)[::2]
    g = rng.standard_normal(2 * n)[::2] if reduction == "none" else 1.0
    loss, grad = check_cross_entropy(pyce, ref, logits, target, reduction, g,
                                     check_inplace=False, **kw)
    # Identical to the same call on contiguous copies.
    c_loss, c_grad = pyce.cross_entropy_with_grad(np.ascontiguousarray(logits), np.array(target),
                                                  reduction=reduction, **kw)
    assert bitwise_equal(loss, c_loss)
    assert bitwise_equal(grad, c_grad)


def test_cross_entropy_transposed_with_axis0():
    """A (C, N) array with axis=0 -- e.g. logits.T of a (N, C) array -- as (N, C) with axis=-1."""
    rng = np.random.default_rng(2)
    logits, target, kw = make_problem(rng, (9, 37), weight=True, ignore=True)
    for reduction in REDUCTIONS:
        a, ga = pyce.cross_entropy_with_grad(logits.T, target, reduction=reduction, **dict(kw, axis=0))
        b, gb = pyce.cross_entropy_with_grad(logits, target, reduction=reduction, **kw)
        assert_close(a, b, rtol=1e-14, atol=1e-15)
        assert_close(ga, gb.T, rtol=1e-14, atol=1e-15)
        assert ga.shape == (37, 9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_strided_3d(dtype):
    """(B, T, V) views: leading axes transposed, and a class axis that is strided in memory."""
    rng = np.random.default_rng(6)
    base = (rng.standard_normal((5, 3, 37)) * 2).astype(dtype)
    views = {
        "bt-swapped": base.transpose(1, 0, 2),                                 # (3, 5, 37)
        "classes-strided": np.moveaxis((rng.standard_normal((37, 3, 5)) * 2).astype(dtype), 0, -1),
        "step-in-time": base[:, ::2, :],                                        # (5, 2, 37)
    }
    for name, logits in views.items():
        assert not logits.flags.c_contiguous
        target = rng.integers(0, 37, size=logits.shape[:-1])
        target.flat[1] = -100
        kw = {"weight": (rng.random(37) + 0.5).astype(dtype), "label_smoothing": 0.1}
        for reduction in REDUCTIONS:
            g = _grad_output(rng, logits, reduction, -1)
            loss, grad = check_cross_entropy(pyce, ref, logits, target, reduction, g,
                                             check_inplace=False, **kw)
            c_loss, c_grad = pyce.cross_entropy_with_grad(np.ascontiguousarray(logits), target,
                                                          reduction=reduction, **kw)
            assert bitwise_equal(loss, c_loss) and bitwise_equal(grad, c_grad), name
        _check_normalisers(logits)
        _check_normalisers(logits, axis=1)


# ----------------------------------------------------------- grad_output


@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_output_forms(dtype):
    rng = np.random.default_rng(4)
    logits, target, kw = make_problem(rng, (4, 3, 11), dtype=dtype, weight=True, ignore=True,
                                      smoothing=0.1)
    tol = prob_tol(dtype)
    base = pyce.cross_entropy_backward(logits, target, reduction="none", **kw)
    # A scalar for 'none' broadcasts to every row.
    assert_close(pyce.cross_entropy_backward(logits, target, 2.5, reduction="none", **kw),
                 ref.cross_entropy_backward(logits, target, 2.5, reduction="none", **kw), **tol)
    # An array broadcastable to the target's shape.
    g = rng.standard_normal((1, 3))
    assert_close(pyce.cross_entropy_backward(logits, target, g, reduction="none", **kw),
                 ref.cross_entropy_backward(logits, target, g, reduction="none", **kw), **tol)
    # float32 arrays, and zero.
    g32 = rng.standard_normal((4, 3)).astype(np.float32)
    assert_close(pyce.cross_entropy_backward(logits, target, g32, reduction="none", **kw),
                 ref.cross_entropy_backward(logits, target, g32, reduction="none", **kw), **tol)
    zero = pyce.cross_entropy_backward(logits, target, np.zeros((4, 3)), reduction="none", **kw)
    assert np.array_equal(zero, np.zeros_like(logits))
    # Reduced losses: scalar forms.
    for reduction in ("mean", "sum"):
        one = pyce.cross_entropy_backward(logits, target, reduction=reduction, **kw)
        for g in (3.0, np.float32(3.0), np.array(3.0), -0.5):
            got = pyce.cross_entropy_backward(logits, target, g, reduction=reduction, **kw)
            assert_close(got, ref.cross_entropy_backward(logits, target, g, reduction=reduction, **kw),
                         **tol)
            assert_close(got, one * float(g), **tol)
    assert base.shape == logits.shape


# ----------------------------------------------------------- inplace


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [((6, 17), -1), ((2, 3, 1000), -1), ((4, 9, 1), 1),
                                        ((1, 1), -1), ((0, 5), -1), ((2, 256000), -1)])
def test_inplace_returns_the_same_array(shape, axis, dtype):
    rng = np.random.default_rng(shape[-1])
    logits, target, kw = make_problem(rng, shape, axis=axis, dtype=dtype, weight=True,
                                      ignore=True, smoothing=0.05)
    for reduction in REDUCTIONS:
        expected_loss, expected_grad = pyce.cross_entropy_with_grad(logits, target,
                                                                    reduction=reduction, **kw)
        buf = logits.copy()
        loss, grad = pyce.cross_entropy_with_grad(buf, target, reduction=reduction, inplace=True, **kw)
        assert grad is buf
        assert grad.dtype == dtype and grad.shape == shape
        assert bitwise_equal(loss, expected_loss)
        assert bitwise_equal(buf, expected_grad)
        if logits.size:
            ref_loss, ref_grad = ref.cross_entropy_with_grad(logits, target, reduction=reduction, **kw)
            assert_close(buf, ref_grad, **prob_tol(dtype, value_scale(logits)))


def test_inplace_soft_target_and_ignored_rows():
    rng = np.random.default_rng(9)
    logits, target, kw = make_problem(rng, (5, 33), soft=True, smoothing=0.2)
    buf = logits.copy()
    loss, grad = pyce.cross_entropy_with_grad(buf, target, inplace=True, **kw)
    assert grad is buf
    assert_close(buf, ref.cross_entropy_backward(logits, target, **kw), rtol=1e-12, atol=1e-14)
    # A fully ignored row's logits are overwritten with zeros.
    logits = rng.standard_normal((3, 8))
    buf = logits.copy()
    pyce.cross_entropy_with_grad(buf, np.array([1, -100, 2]), reduction="sum", inplace=True)
    assert np.array_equal(buf[1], np.zeros(8))


# ----------------------------------------------------------- outputs


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_types(dtype):
    rng = np.random.default_rng(0)
    logits, target, _ = make_problem(rng, (2, 3, 5), dtype=dtype)
    for reduction in REDUCTIONS:
        loss = pyce.cross_entropy(logits, target, reduction=reduction)
        check_loss_output(loss, logits, reduction)
        loss, grad = pyce.cross_entropy_with_grad(logits, target, reduction=reduction)
        check_loss_output(loss, logits, reduction)
        assert grad.dtype == dtype and grad.shape == logits.shape
    none = pyce.cross_entropy(logits, target, reduction="none")
    assert none.shape == (2, 3)
    # 1-D logits with a scalar target: one unbatched row.
    loss = pyce.cross_entropy(logits[0, 0], target[0, 0], reduction="none")
    assert isinstance(loss, np.ndarray) and loss.shape == () and loss.dtype == dtype
    assert type(pyce.cross_entropy(logits[0, 0], int(target[0, 0]))) is np.dtype(dtype).type
    assert pyce.cross_entropy_backward(logits[0, 0], target[0, 0]).shape == (5,)


@pytest.mark.parametrize("target_dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8,
                                          np.uint16, np.uint32, np.uint64, np.intp])
def test_any_integer_target_dtype(target_dtype):
    rng = np.random.default_rng(3)
    logits, target, kw = make_problem(rng, (6, 7), weight=True, smoothing=0.1)
    for reduction in REDUCTIONS:
        a = pyce.cross_entropy_with_grad(logits, target, reduction=reduction, **kw)
        b = pyce.cross_entropy_with_grad(logits, target.astype(target_dtype), reduction=reduction, **kw)
        assert bitwise_equal(a[0], b[0]) and bitwise_equal(a[1], b[1])
    signed = np.dtype(target_dtype).kind == "i"
    if signed and np.dtype(target_dtype).itemsize > 1:
        t = target.astype(target_dtype)
        t[2] = -100
        assert_close(pyce.cross_entropy(logits, t, **kw), ref.cross_entropy(logits, t, **kw),
                     rtol=1e-12, atol=1e-14)


def test_lists_and_python_scalars():
    loss = pyce.cross_entropy([[2.0, 1.0, 3.0], [0.0, 0.5, -1.0]], [2, 0])
    assert type(loss) is np.float64
    assert loss == pytest.approx(float(ref.cross_entropy([[2.0, 1.0, 3.0], [0.0, 0.5, -1.0]], [2, 0])),
                                 rel=1e-12)
    grad = pyce.cross_entropy_backward([[2.0, 1.0, 3.0]], [1], weight=[1, 2, 3])
    assert_close(grad, ref.cross_entropy_backward([[2.0, 1.0, 3.0]], [1], weight=[1.0, 2.0, 3.0]),
                 rtol=1e-12, atol=1e-15)


def test_docstring_example():
    logits = np.array([[2.0, 1.0, 3.0]], dtype=np.float32)
    assert round(float(pyce.cross_entropy(logits, np.array([2]))), 4) == 0.4076


# ----------------------------------------------------------- extreme inputs


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", ["plain", "weight", "smooth", "weight-ignore-smooth"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [3, 17, 37, 1000, 4097])
def test_cross_entropy_extremes(n_classes, dtype, option, reduction):
    x = _extreme_rows(n_classes, dtype)
    rng = np.random.default_rng(n_classes)
    _, _, kw = option_problem(rng, (x.shape[0], n_classes), option, dtype)
    target = rng.integers(0, n_classes, size=x.shape[0])
    # Targets that hit the special values: a -inf target (loss +inf), an inf/nan target.
    target[1] = 0  # row 1: -inf at position 0
    target[2] = 0  # row 2: nan at position 0
    target[0] = 0  # row 0: +inf at position 0
    if kw.get("ignore_index") == -100:
        # Ignored rows have zero gradient (and loss), whatever their logits.
        target[3::4] = -100
    g = _grad_output(rng, x, reduction, -1)
    with np.errstate(all="ignore"):
        loss, grad = check_cross_entropy(pyce, ref, x, target, reduction, g, **kw)
    if reduction == "none":
        hard = np.isnan(x).any(1) | np.isposinf(x).any(1)
        kept = target != -100
        assert np.all(np.isnan(loss[hard & kept]))
        assert np.all(np.isnan(grad[hard & kept]))
        assert np.all(loss[~kept] == 0) and np.all(grad[~kept] == 0)
        assert np.isposinf(loss[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [85.0, 89.0, 1e4, -1e4])
def test_cross_entropy_large_magnitudes(offset, dtype):
    """Logits far from 0 (float32 exp(89) overflows): the max shift must be exact."""
    rng = np.random.default_rng(int(abs(offset)))
    for shape in [(8, 37), (3, 4097), (2, 3, 1000)]:
        logits, target, kw = make_problem(rng, shape, dtype=dtype, offset=offset, scale=3.0,
                                          weight=True, smoothing=0.1)
        for reduction in REDUCTIONS:
            g = _grad_output(rng, logits, reduction, -1)
            check_cross_entropy(pyce, ref, logits, target, reduction, g, **kw)
        _check_normalisers(logits)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_huge_vocabulary_extremes(dtype):
    """Special values deep inside a 256k row (the few-rows, split-vocabulary path)."""
    rng = np.random.default_rng(256)
    x = (rng.standard_normal((6, 256000)) * 2).astype(dtype)
    x[0, 200001] = np.nan
    x[1, 255999] = np.inf
    x[2, 123457] = -np.inf
    x[3, :] = -1e4 + x[3, :]
    x[4, 130000:] = -np.inf
    x[5, 70000] = 95.0
    target = np.array([3, 4, 123457, 5, 200000, 70000])
    for reduction, kw in [("none", {}), ("mean", {}), ("sum", {"label_smoothing": 0.1}),
                          ("none", {"label_smoothing": 0.1})]:
        g = _grad_output(rng, x, reduction, -1)
        with np.errstate(all="ignore"):
            check_cross_entropy(pyce, ref, x, target, reduction, g, **kw)
    with np.errstate(all="ignore"):
        _check_normalisers(x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_rows_ignored(dtype):
    logits = np.random.default_rng(0).standard_normal((4, 3, 9)).astype(dtype)
    target = np.full((4, 3), 7)
    for kw in ({"ignore_index": 7}, {"ignore_index": 7, "weight": np.arange(1.0, 10.0, dtype=dtype),
                                     "label_smoothing": 0.3}):
        loss, grad = pyce.cross_entropy_with_grad(logits, target, **kw)
        assert type(loss) is np.dtype(dtype).type and np.isnan(loss)
        assert np.array_equal(grad, np.zeros_like(logits))
        assert np.isnan(pyce.cross_entropy(logits, target, **kw))
        assert np.array_equal(pyce.cross_entropy_backward(logits, target, **kw), np.zeros_like(logits))
        s = pyce.cross_entropy(logits, target, reduction="sum", **kw)
        assert s == 0 and type(s) is np.dtype(dtype).type
        none = pyce.cross_entropy(logits, target, reduction="none", **kw)
        assert np.array_equal(none, np.zeros((4, 3), dtype=dtype))
        gnone = pyce.cross_entropy_backward(logits, target, np.ones((4, 3)), reduction="none", **kw)
        assert np.array_equal(gnone, np.zeros_like(logits))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 5), (0, 3, 7), (2, 0, 7), (0, 1)])
def test_empty_batch(shape, dtype):
    logits = np.zeros(shape, dtype=dtype)
    target = np.zeros(shape[:-1], dtype=np.int64)
    soft = np.zeros(shape, dtype=dtype)
    for t in (target, soft):
        mean = pyce.cross_entropy(logits, t)
        assert type(mean) is np.dtype(dtype).type and np.isnan(mean)
        total = pyce.cross_entropy(logits, t, reduction="sum")
        assert type(total) is np.dtype(dtype).type and total == 0
        none = pyce.cross_entropy(logits, t, reduction="none")
        assert none.shape == shape[:-1] and none.dtype == dtype
        for reduction in REDUCTIONS:
            grad = pyce.cross_entropy_backward(logits, t, reduction=reduction)
            assert grad.shape == shape and grad.dtype == dtype
            loss, grad = pyce.cross_entropy_with_grad(logits, t, reduction=reduction)
            assert grad.shape == shape and grad.dtype == dtype
            loss, grad = pyce.cross_entropy_with_grad(logits.copy(), t, reduction=reduction, inplace=True)
            assert grad.shape == shape


def test_single_class_loss_is_zero():
    for dtype in DTYPES:
        logits = np.random.default_rng(1).standard_normal((5, 1)).astype(dtype) * 50
        loss, grad = pyce.cross_entropy_with_grad(logits, np.zeros(5, dtype=np.int64), reduction="none")
        assert np.array_equal(loss, np.zeros(5, dtype=dtype))
        assert np.array_equal(grad, np.zeros((5, 1), dtype=dtype))


# ------------------------------------------- gradients vs finite differences


FD_CASES = {
    "plain": ((3, 5), {}),
    "weight": ((4, 5), {"weight": True}),
    "ignore": ((5, 4), {"ignore": True}),
    "smooth": ((3, 5), {"smoothing": 0.3}),
    "weight-ignore-smooth": ((5, 4), {"weight": True, "ignore": True, "smoothing": 0.2}),
    "soft": ((3, 5), {"soft": True}),
    "soft-weight-smooth": ((3, 5), {"soft": True, "weight": True, "smoothing": 0.2}),
    "axis1": ((2, 4, 3), {"axis": 1, "weight": True, "smoothing": 0.1}),
    "btv-17": ((2, 2, 17), {"ignore": True}),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(FD_CASES))
def test_kernel_gradient_vs_finite_differences(case, reduction):
    shape, opts = FD_CASES[case]
    rng = np.random.default_rng(_seed(case))
    logits, target, kw = make_problem(rng, shape, **opts)
    g = _grad_output(rng, logits, reduction, kw["axis"])
    if reduction != "none":
        g = 0.7

    def f(z):
        return np.sum(g * pyce.cross_entropy(z, target, reduction=reduction, **kw))

    fd = central_difference(f, logits, h=1e-5)
    grad = pyce.cross_entropy_backward(logits, target, g, reduction=reduction, **kw)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    _, fused = pyce.cross_entropy_with_grad(logits, target, reduction=reduction, **kw)
    np.testing.assert_allclose(fused * g if reduction != "none" else fused * np.expand_dims(g, kw["axis"]),
                               fd, rtol=1e-6, atol=1e-8)


def test_logsumexp_gradient_vs_finite_differences():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 19)) * 2
    fd = central_difference(lambda z: np.sum(pyce.logsumexp(z)), x)
    np.testing.assert_allclose(pyce.softmax(x), fd, rtol=1e-6, atol=1e-9)


PLAIN_DTYPES = {"float32": np.float32, "float64": np.float64, **HALF_DTYPES}


def _general(**kw):
    """Options that force the general path: a default of another type than the
    shortcut takes (see api._only_defaults)."""
    return dict(kw, label_smoothing=np.float64(0.0))


@pytest.mark.parametrize("dtype", list(PLAIN_DTYPES), ids=list(PLAIN_DTYPES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_plain_call_shortcut_matches_general_path(dtype, reduction):
    """The plain call's shortcut (api._plain_forward / _plain_with_grad) gives
    bitwise what the general path gives, for every entry point: the forward, the
    fused pass into a new array, into out= and in place, and the backward."""
    from pyce import api

    dtype = PLAIN_DTYPES[dtype]
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((64, 1000)) * 3).astype(dtype)
    t = rng.integers(0, 1000, 64)
    t[3] = -100
    assert api._plain_forward(x, t, -1, -100, reduction) is not None
    assert api._plain_with_grad(x, t, -1, -100, reduction) is not None

    def same(fast, general):
        assert type(fast) is type(general) and fast.dtype == general.dtype
        assert fast.shape == general.shape
        np.testing.assert_array_equal(fast, general)

    same(pyce.cross_entropy(x, t, reduction=reduction),
         pyce.cross_entropy(x, t, **_general(reduction=reduction)))
    loss, grad = pyce.cross_entropy_with_grad(x, t, **_general(reduction=reduction))
    assert grad.dtype == dtype
    fast_loss, fast_grad = pyce.cross_entropy_with_grad(x, t, reduction=reduction)
    same(fast_loss, loss)
    same(fast_grad, grad)
    out = np.full_like(x, np.nan)
    fast_loss, fast_grad = pyce.cross_entropy_with_grad(x, t, reduction=reduction, out=out)
    assert fast_grad is out
    same(fast_loss, loss)
    same(out, grad)
    buf = x.copy()
    fast_loss, fast_grad = pyce.cross_entropy_with_grad(buf, t, reduction=reduction, inplace=True)
    assert fast_grad is buf
    same(fast_loss, loss)
    same(buf, grad)
    for g in (1.0, 2.5, 3):
        general = pyce.cross_entropy_backward(x, t, g, **_general(reduction=reduction))
        same(pyce.cross_entropy_backward(x, t, g, reduction=reduction), general)
        out = np.full_like(x, np.nan)
        assert pyce.cross_entropy_backward(x, t, g, reduction=reduction, out=out) is out
        same(out, general)
    # And the shortcut is right, not only consistent.
    ref_loss, ref_grad = ref.cross_entropy_with_grad(x.astype(np.float64), t, reduction=reduction)
    half = dtype not in (np.float32, np.float64)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-3 if half else 2e-6)
    np.testing.assert_allclose(grad.astype(np.float64), ref_grad, rtol=1e-2 if half else 1e-5,
                               atol=1e-4 if half else 1e-7)


def test_plain_call_shortcut_declines_other_calls():
    from pyce import api

    x = np.zeros((4, 5), np.float32)
    t = np.zeros(4, np.int64)
    assert api._plain_with_grad(x.tolist(), t, -1, -100, "mean") is None  # not an ndarray
    assert api._plain_with_grad(x, t.astype(np.int32), -1, -100, "mean") is None
    assert api._plain_with_grad(x[None], t[None], -1, -100, "mean") is None  # 3-D
    assert api._plain_with_grad(x[:, ::2], t, -1, -100, "mean") is None  # not contiguous
    assert api._plain_with_grad(x, t, 0, -100, "mean") is None  # classes on axis 0
    assert api._plain_with_grad(x, t, 1.0, -100, "mean") is None  # not an int: the general check
    assert api._plain_with_grad(x, t, np.array([1]), -100, "mean") is None
    for bad_axis in (1.0, np.array([1])):
        with pytest.raises(TypeError, match="axis must be an integer"):
            pyce.cross_entropy_with_grad(x, t, axis=bad_axis)
    assert api._plain_with_grad(x, t[:3], -1, -100, "mean") is None  # wrong target shape
    assert api._plain_with_grad(x, t, -1, -100, "avg") is None  # left to the general check
    with pytest.raises(ValueError, match="reduction must be one of"):
        pyce.cross_entropy_with_grad(x, t, reduction="avg")
    assert api._plain_forward(x.astype(np.int32), t, -1, -100, "mean") is None
    with pytest.raises(TypeError, match="floating-point"):
        pyce.cross_entropy(x.astype(np.int32), t)
    # A grad_output that is not a plain number (an array, a bool) takes the general path.
    assert api._plain_with_grad(x, t, -1, -100, "mean", grad_output=np.float64(2.0)) is None
    assert api._plain_with_grad(x, t, -1, -100, "mean", grad_output=True) is None
    with pytest.raises(ValueError, match="grad_output must be a scalar"):
        pyce.cross_entropy_backward(x, t, np.ones(4))


def test_plain_call_shortcut_leaves_doubtful_outputs_to_the_general_checks():
    """out= and inplace=True go straight to the kernel only when plainly right;
    anything else reaches the general path, which raises its errors (or, for a
    float32 gradient of 16-bit logits, takes the buffer)."""
    from pyce import api

    x = np.random.default_rng(3).standard_normal((4, 6)).astype(np.float32)
    t = np.array([0, 5, 2, -100])

    def declined(**kw):
        return api._plain_with_grad(x, t, -1, -100, "mean", **kw) is None

    read_only = np.zeros_like(x)
    read_only.flags.writeable = False
    assert declined(out=read_only)
    with pytest.raises(ValueError, match="out is read-only"):
        pyce.cross_entropy_with_grad(x, t, out=read_only)
    assert declined(out=np.zeros((4, 7), np.float32))
    with pytest.raises(ValueError, match="out must have the logits' shape"):
        pyce.cross_entropy_with_grad(x, t, out=np.zeros((4, 7), np.float32))
    assert declined(out=np.zeros((6, 4), np.float32).T)
    with pytest.raises(ValueError, match="C-contiguous"):
        pyce.cross_entropy_with_grad(x, t, out=np.zeros((6, 4), np.float32).T)
    assert declined(out=np.zeros_like(x, dtype=np.float64))
    with pytest.raises(ValueError, match="grad_dtype must be"):
        pyce.cross_entropy_with_grad(x, t, out=np.zeros_like(x, dtype=np.float64))
    assert declined(out=x)  # overlaps the logits
    with pytest.raises(ValueError, match="must not overlap"):
        pyce.cross_entropy_with_grad(x, t, out=x)
    assert declined(out=x.tolist())
    with pytest.raises(TypeError, match="out must be a NumPy array"):
        pyce.cross_entropy_with_grad(x, t, out=x.tolist())
    # Two halves of one buffer do not overlap (for contiguous arrays the bounds
    # check is exact): the shortcut takes them.
    both = np.zeros((8, 6), np.float32)
    both[:4] = x
    assert api._plain_with_grad(both[:4], t, -1, -100, "mean", out=both[4:]) is not None
    np.testing.assert_array_equal(both[4:], pyce.cross_entropy_with_grad(x, t)[1])
    np.testing.assert_array_equal(both[:4], x)
    # In place on a read-only array: the general path's error.
    frozen = x.copy()
    frozen.flags.writeable = False
    assert api._plain_with_grad(frozen, t, -1, -100, "mean", inplace=True) is None
    with pytest.raises(ValueError, match="writeable"):
        pyce.cross_entropy_with_grad(frozen, t, inplace=True)
    with pytest.raises(ValueError, match="either inplace=True or out="):
        pyce.cross_entropy_with_grad(x.copy(), t, inplace=True, out=np.zeros_like(x))
    if "bfloat16" in HALF_DTYPES:
        # A float32 gradient for 16-bit logits is the general path's to take.
        h = x.astype(HALF_DTYPES["bfloat16"])
        out = np.zeros_like(x)
        assert api._plain_with_grad(h, t, -1, -100, "mean", out=out) is None
        _, grad = pyce.cross_entropy_with_grad(h, t, out=out)
        assert grad is out and grad.dtype == np.float32


def _sliced_calls_match(x, t, kw, step, grad_output=None):
    """The whole call against calls on slices of ``step`` rows: bitwise the same
    losses and gradients, through cross_entropy_with_grad (new array, and out=
    one element past the allocation's alignment) and cross_entropy_backward."""
    rows = x.shape[0]
    loss, grad = pyce.cross_entropy_with_grad(x, t, reduction="none", **kw)
    for r0 in range(0, rows, step):
        tr = t[r0:r0 + step]
        part_loss, part_grad = pyce.cross_entropy_with_grad(x[r0:r0 + step], tr, reduction="none", **kw)
        np.testing.assert_array_equal(loss[r0:r0 + step], part_loss)
        assert bitwise_equal(grad[r0:r0 + step], part_grad)
    buffer = np.empty(x.size + 1, dtype=x.dtype)
    out = buffer[1:].reshape(x.shape)
    _, out_grad = pyce.cross_entropy_with_grad(x, t, reduction="none", out=out, **kw)
    assert out_grad is out and bitwise_equal(out, grad)
    if grad_output is not None:
        back = pyce.cross_entropy_backward(x, t, grad_output, reduction="none", **kw)
        for r0 in range(0, rows, step):
            part = pyce.cross_entropy_backward(x[r0:r0 + step], t[r0:r0 + step], grad_output[r0:r0 + step],
                                               reduction="none", **kw)
            assert bitwise_equal(back[r0:r0 + step], part)
    return loss, grad


@pytest.mark.parametrize("option", ["plain", "weight-ignore-smooth", "soft-weight-smooth"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wide_gradient_streamed(dtype, option):
    """A float32/float64 gradient of 16 MiB or more (not in place) is written
    with non-temporal stores, its exps kept in a scratch row meanwhile. Rows are
    independent, so it must give bitwise what calls on slices of rows give
    (written with ordinary stores), also into out= off the line boundary. An
    odd row length puts every row's start at a different offset within a line."""
    rng = np.random.default_rng(41)
    rows = (18 << 20) // (7919 * np.dtype(dtype).itemsize)  # just over 16 MiB of gradient
    x, t, kw = option_problem(rng, (rows, 7919), option, dtype)
    g = rng.random(rows) + 0.5
    loss, grad = _sliced_calls_match(x, t, kw, 128, grad_output=g)
    inplace = x.copy()
    _, in_grad = pyce.cross_entropy_with_grad(inplace, t, reduction="none", inplace=True, **kw)
    assert bitwise_equal(in_grad, grad)
    ref_loss, ref_grad = ref.cross_entropy_with_grad(x[:40].astype(np.float64), t[:40], reduction="none", **kw)
    assert_close(loss[:40], ref_loss, **loss_tol(dtype, value_scale(x)))
    assert_close(grad[:40], ref_grad, **prob_tol(dtype, 2.0))


def test_wide_gradient_streamed_few_rows_one_thread():
    """On one thread even a few long rows stream their float32 gradient (a
    scratch row per thread; with more threads few rows share their blocks
    out and are not streamed): bitwise the rows' own calls, into out= too."""
    rng = np.random.default_rng(42)
    x, t, kw = option_problem(rng, (3, 1_500_001), "plain", np.float32)  # 18 MB of gradient
    before = pyce.get_num_threads()
    try:
        for threads in (1, before):
            pyce.set_num_threads(threads)
            _sliced_calls_match(x, t, kw, 1)
    finally:
        pyce.set_num_threads(before)


def _far_above_the_shift_rows(dtype):
    """Rows whose later blocks hold logits far above the first block's max.

    A row's exps are taken against its first block's max (the shift). A block
    is first swept without checking each logit against it, and kept if its
    largest logit is at most 64 above the shift and its exps sum to at most
    2**100; otherwise it is swept again with the checks, which move it to a
    larger shift. These rows hit both sides of that line (62 and 66 above),
    logits beyond the exp's range (94 and 134 above) and far beyond it (1e4,
    2e4: the AVX-512 sweep exp gives garbage there, which must never be
    kept), +inf, nan and an all -inf block, in the middle and last blocks of
    a 5000-class row (blocks of 2048).
    """
    rng = np.random.default_rng(70)
    x = rng.standard_normal((10, 5000)) * 2
    x[:, 0] = 6.0                       # the shift of every row
    x[0, 3000] = 68.0                   # 62 above: kept from the unchecked sweep
    x[1, 3000] = 100.0                  # 94 above: swept again
    x[2, 4999] = np.inf
    x[3, 2500] = np.nan
    x[4, 2048:4096] = -np.inf
    x[5, 4100], x[5, 4101] = 72.0, 100.0  # 66 above: swept again
    x[6, 2049], x[6, 4500] = 140.0, 68.0  # the middle block raised, the last kept
    x[7, 3000] = 100.0                  # ... and the target
    x[8, 3000], x[8, 4500] = 1e4, 2e4
    x[9, 2100], x[9, 4999] = 1e4, 50.0  # a huge logit, not the target
    target = np.array([3000, 3000, 1, 2, 5, 4101, 4500, 3000, 3000, 4999])
    return x.astype(dtype), target


@pytest.mark.parametrize("dtype", DTYPES)
def test_logits_far_above_the_shift(dtype):
    x, target = _far_above_the_shift_rows(dtype)
    for reduction, kw in [("none", {}), ("sum", {"label_smoothing": 0.1})]:
        with np.errstate(all="ignore"):
            check_cross_entropy(pyce, ref, x, target, reduction, **kw)
    with np.errstate(all="ignore"):
        _check_normalisers(x)
