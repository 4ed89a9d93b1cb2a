"""cross_entropy and its gradient forms against the plain-NumPy reference: every
option and reduction, class-axis layouts, non-contiguous views, grad_output
forms, in place, output types, extreme inputs, empty and all-ignored batches.

Tolerances (see _helpers): float64 rtol 1e-12 (atol 1e-14 x the logits'
magnitude); float32 losses rtol 2e-6 against the reference evaluated on the
same float32 numbers, gradients and probabilities atol 1e-6 rtol 1e-5.
"""

import numpy as np
import pytest

import pyce

from _helpers import (
    DTYPES,
    OPTIONS,
    REDUCTIONS,
    assert_close,
    bitwise_equal,
    check_cross_entropy,
    check_loss_output,
    make_problem,
    option_problem,
    prob_tol,
    value_scale,
)
from _kernel_cases import (  # noqa: I001
    AXIS_LAYOUTS,
    AXIS_OPTIONS,
    BIG_CASES,
    SHAPES,
    _check_normalisers,
    _extreme_rows,
    _grad_output,
    _non_contiguous,
    _seed,
)

# Run once per forced ISA by .ci/run (pytest -m kernels).
pytestmark = pytest.mark.kernels

ref = pyce.reference


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
    loss, grad = check_cross_entropy(pyce, ref, logits, target, reduction, g, check_inplace=False, **kw)
    # Identical to the same call on contiguous copies.
    c_loss, c_grad = pyce.cross_entropy_with_grad(
        np.ascontiguousarray(logits), np.array(target), reduction=reduction, **kw
    )
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
        "bt-swapped": base.transpose(1, 0, 2),  # (3, 5, 37)
        "classes-strided": np.moveaxis((rng.standard_normal((37, 3, 5)) * 2).astype(dtype), 0, -1),
        "step-in-time": base[:, ::2, :],  # (5, 2, 37)
    }
    for name, logits in views.items():
        assert not logits.flags.c_contiguous
        target = rng.integers(0, 37, size=logits.shape[:-1])
        target.flat[1] = -100
        kw = {"weight": (rng.random(37) + 0.5).astype(dtype), "label_smoothing": 0.1}
        for reduction in REDUCTIONS:
            g = _grad_output(rng, logits, reduction, -1)
            loss, grad = check_cross_entropy(
                pyce, ref, logits, target, reduction, g, check_inplace=False, **kw
            )
            c_loss, c_grad = pyce.cross_entropy_with_grad(
                np.ascontiguousarray(logits), target, reduction=reduction, **kw
            )
            assert bitwise_equal(loss, c_loss) and bitwise_equal(grad, c_grad), name
        _check_normalisers(logits)
        _check_normalisers(logits, axis=1)


# ----------------------------------------------------------- grad_output


@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_output_forms(dtype):
    rng = np.random.default_rng(4)
    logits, target, kw = make_problem(rng, (4, 3, 11), dtype=dtype, weight=True, ignore=True, smoothing=0.1)
    tol = prob_tol(dtype)
    base = pyce.cross_entropy_backward(logits, target, reduction="none", **kw)
    # A scalar for 'none' broadcasts to every row.
    assert_close(
        pyce.cross_entropy_backward(logits, target, 2.5, reduction="none", **kw),
        ref.cross_entropy_backward(logits, target, 2.5, reduction="none", **kw),
        **tol,
    )
    # An array broadcastable to the target's shape.
    g = rng.standard_normal((1, 3))
    assert_close(
        pyce.cross_entropy_backward(logits, target, g, reduction="none", **kw),
        ref.cross_entropy_backward(logits, target, g, reduction="none", **kw),
        **tol,
    )
    # float32 arrays, and zero.
    g32 = rng.standard_normal((4, 3)).astype(np.float32)
    assert_close(
        pyce.cross_entropy_backward(logits, target, g32, reduction="none", **kw),
        ref.cross_entropy_backward(logits, target, g32, reduction="none", **kw),
        **tol,
    )
    zero = pyce.cross_entropy_backward(logits, target, np.zeros((4, 3)), reduction="none", **kw)
    assert np.array_equal(zero, np.zeros_like(logits))
    # Reduced losses: scalar forms.
    for reduction in ("mean", "sum"):
        one = pyce.cross_entropy_backward(logits, target, reduction=reduction, **kw)
        for g in (3.0, np.float32(3.0), np.array(3.0), -0.5):
            got = pyce.cross_entropy_backward(logits, target, g, reduction=reduction, **kw)
            assert_close(got, ref.cross_entropy_backward(logits, target, g, reduction=reduction, **kw), **tol)
            assert_close(got, one * float(g), **tol)
    assert base.shape == logits.shape


# ----------------------------------------------------------- inplace


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape,axis",
    [((6, 17), -1), ((2, 3, 1000), -1), ((4, 9, 1), 1), ((1, 1), -1), ((0, 5), -1), ((2, 256000), -1)],
)
def test_inplace_returns_the_same_array(shape, axis, dtype):
    rng = np.random.default_rng(shape[-1])
    logits, target, kw = make_problem(
        rng, shape, axis=axis, dtype=dtype, weight=True, ignore=True, smoothing=0.05
    )
    for reduction in REDUCTIONS:
        expected_loss, expected_grad = pyce.cross_entropy_with_grad(logits, target, reduction=reduction, **kw)
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


@pytest.mark.parametrize(
    "target_dtype",
    [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.intp],
)
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
        assert_close(
            pyce.cross_entropy(logits, t, **kw), ref.cross_entropy(logits, t, **kw), rtol=1e-12, atol=1e-14
        )


def test_lists_and_python_scalars():
    loss = pyce.cross_entropy([[2.0, 1.0, 3.0], [0.0, 0.5, -1.0]], [2, 0])
    assert type(loss) is np.float64
    assert loss == pytest.approx(
        float(ref.cross_entropy([[2.0, 1.0, 3.0], [0.0, 0.5, -1.0]], [2, 0])), rel=1e-12
    )
    grad = pyce.cross_entropy_backward([[2.0, 1.0, 3.0]], [1], weight=[1, 2, 3])
    assert_close(
        grad,
        ref.cross_entropy_backward([[2.0, 1.0, 3.0]], [1], weight=[1.0, 2.0, 3.0]),
        rtol=1e-12,
        atol=1e-15,
    )


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
        logits, target, kw = make_problem(
            rng, shape, dtype=dtype, offset=offset, scale=3.0, weight=True, smoothing=0.1
        )
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
    for reduction, kw in [
        ("none", {}),
        ("mean", {}),
        ("sum", {"label_smoothing": 0.1}),
        ("none", {"label_smoothing": 0.1}),
    ]:
        g = _grad_output(rng, x, reduction, -1)
        with np.errstate(all="ignore"):
            check_cross_entropy(pyce, ref, x, target, reduction, g, **kw)
    with np.errstate(all="ignore"):
        _check_normalisers(x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_rows_ignored(dtype):
    logits = np.random.default_rng(0).standard_normal((4, 3, 9)).astype(dtype)
    target = np.full((4, 3), 7)
    for kw in (
        {"ignore_index": 7},
        {"ignore_index": 7, "weight": np.arange(1.0, 10.0, dtype=dtype), "label_smoothing": 0.3},
    ):
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
