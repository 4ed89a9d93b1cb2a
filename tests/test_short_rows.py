"""Few classes (1 to 1024): the short-row kernels (csrc/kernels/short_rows.hpp),
which finish a group of rows together, one row per vector lane: below 128
classes ClassLanes with rows as lanes (strided_lanes.hpp, a transposing copy
into its tile), from 128 on strided_classes.cpp's Layout::rows.

Against the float64 reference in float32 and float64 on every ISA, 16-bit
logits, extremes, every option of class-index targets, in place and out=,
bitwise the same for any thread count. Row counts cover whole and partial
groups; class counts whole and partial vectors, and the largest short row.
"""

import numpy as np
import pytest

import pyce

from _helpers import (
    DTYPES,
    assert_close,
    loss_tol,
    option_problem,
    prob_tol,
    same_for_every_thread_count,
    value_scale,
)
from _kernel_cases import _check_normalisers, _extreme_rows

pytestmark = pytest.mark.kernels

ref = pyce.reference

CLASSES = [1, 2, 3, 5, 10, 15, 16, 17, 33, 63, 64, 88, 127, 128, 256, 1000, 1024]
ROWS = [1, 7, 64, 130]


@pytest.mark.parametrize("n_classes", CLASSES)
def test_short_rows_normalisers_every_isa(each_isa, n_classes):
    rng = np.random.default_rng(n_classes)
    for dtype in DTYPES:
        for n_rows in ROWS:
            _check_normalisers((rng.standard_normal((n_rows, n_classes)) * 3).astype(dtype))


@pytest.mark.parametrize("n_classes", [2, 7, 15, 17, 88, 1000])
def test_short_rows_extremes(each_isa, n_classes):
    for dtype in DTYPES:
        x = _extreme_rows(n_classes, dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            _check_normalisers(x)
            target = np.arange(len(x)) % n_classes
            target[::4] = -100
            loss, grad = pyce.cross_entropy_with_grad(x, target, reduction="none")
            exp_loss, exp_grad = ref.cross_entropy_with_grad(x, target, reduction="none")
        assert_close(loss, exp_loss, **loss_tol(dtype, value_scale(x)))
        assert_close(grad, exp_grad, **prob_tol(dtype, value_scale(x)))


OPTION_NAMES = ["plain", "weight", "ignore", "ignore-class0", "smooth", "smooth-1", "weight-ignore-smooth"]


@pytest.mark.parametrize("option", OPTION_NAMES)
@pytest.mark.parametrize("n_classes", [2, 5, 10, 15, 40, 63, 88, 1000])
def test_short_rows_cross_entropy_every_isa(each_isa, n_classes, option):
    rng = np.random.default_rng(n_classes)
    for dtype in DTYPES:
        logits, target, kw = option_problem(rng, (130, n_classes), option, dtype)
        scale = value_scale(logits)
        for reduction in ("mean", "none"):
            loss = pyce.cross_entropy(logits, target, reduction=reduction, z_loss=1e-3, **kw)
            exp = ref.cross_entropy(logits, target, reduction=reduction, z_loss=1e-3, **kw)
            assert_close(loss, exp, **loss_tol(dtype, scale))
            got_loss, grad = pyce.cross_entropy_with_grad(logits, target, reduction=reduction, **kw)
            exp_loss, exp_grad = ref.cross_entropy_with_grad(logits, target, reduction=reduction, **kw)
            assert_close(got_loss, exp_loss, **loss_tol(dtype, scale))
            assert_close(grad, exp_grad, **prob_tol(dtype, scale))
        g_out = rng.standard_normal(len(target))
        grad = pyce.cross_entropy_backward(logits, target, g_out, reduction="none", **kw)
        expected = ref.cross_entropy_backward(logits, target, g_out, reduction="none", **kw)
        assert_close(grad, expected, **prob_tol(dtype, scale * 4))


@pytest.mark.parametrize("n_classes", [2, 3, 13, 88, 1000])
def test_short_rows_16bit(each_isa, n_classes):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(2)
    for dtype in (np.float16, ml_dtypes.bfloat16):
        logits, target, kw = option_problem(rng, (70, n_classes), "weight-ignore-smooth", np.float32)
        x = logits.astype(dtype)
        wide = x.astype(np.float64)
        exp_loss, exp_grad = ref.cross_entropy_with_grad(wide, target, **kw)
        loss, grad = pyce.cross_entropy_with_grad(x, target, **kw)
        assert loss.dtype == np.float32 and grad.dtype == x.dtype
        assert_close(loss, exp_loss, **loss_tol(np.float32, value_scale(wide)))
        loss32, grad32 = pyce.cross_entropy_with_grad(x, target, grad_dtype=np.float32, **kw)
        assert loss32 == loss
        assert_close(grad32, exp_grad, **prob_tol(np.float32, value_scale(wide)))
        np.testing.assert_array_equal(grad.astype(np.float32), grad32.astype(dtype).astype(np.float32))
        lse = pyce.logsumexp(x)
        assert_close(lse, ref.logsumexp(wide), **loss_tol(np.float32, value_scale(wide)))
        np.testing.assert_allclose(
            pyce.softmax(x).astype(np.float64),
            ref.softmax(wide).astype(dtype).astype(np.float64),
            rtol=1e-2,
            atol=1e-3,
        )


def _check_inplace_and_out(rng, shape):
    """In place (every row read before it is written) and out=, against the
    reference and against each other bitwise."""
    logits, target, kw = option_problem(rng, shape, "weight-ignore-smooth", np.float32)
    exp_loss, exp_grad = ref.cross_entropy_with_grad(logits, target, **kw)
    work = logits.copy()
    loss, grad = pyce.cross_entropy_with_grad(work, target, inplace=True, **kw)
    assert grad is work
    assert_close(loss, exp_loss, **loss_tol(np.float32, value_scale(logits)))
    assert_close(work, exp_grad, **prob_tol(np.float32, 1.0))
    out = np.empty_like(logits)
    assert pyce.cross_entropy_with_grad(logits, target, out=out, **kw)[0] == loss
    np.testing.assert_array_equal(out, work)


def test_short_rows_inplace_out_and_views():
    rng = np.random.default_rng(3)
    _check_inplace_and_out(rng, (200, 21))
    view = (rng.standard_normal((300, 40)) * 2).astype(np.float32)[::3, 5:26]
    _check_normalisers(view)
    _check_inplace_and_out(rng, (333, 6))  # rows as lanes (fewer than 128 classes)


def test_short_rows_bitwise_for_every_thread_count():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((20000, 88)) * 3).astype(np.float32)  # above the threading threshold
    target = rng.integers(0, 88, size=20000)
    target[::9] = -100
    y = (rng.standard_normal((300000, 3)) * 3).astype(np.float32)  # rows as lanes
    ty = rng.integers(0, 3, size=300000)

    def call():
        loss, grad = pyce.cross_entropy_with_grad(x, target, label_smoothing=0.1)
        return (
            np.asarray(loss),
            grad,
            pyce.cross_entropy(x, target, reduction="none"),
            pyce.logsumexp(x),
            pyce.softmax(x),
            pyce.log_softmax(x),
            pyce.cross_entropy_with_grad(y, ty, label_smoothing=0.1)[1],
            pyce.cross_entropy(y, ty, reduction="none"),
            pyce.logsumexp(y),
            pyce.log_softmax(y),
        )

    same_for_every_thread_count(call)


def test_short_rows_few_rows_share_the_threads_bitwise():
    # 1024 rows of 1000 classes were one unit of work, so one thread did it
    # all; now the rows are split for the threads (parallel.hpp,
    # positions_per_unit), and each row's result is the same for any count.
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((1024, 1000)) * 3).astype(np.float32)
    target = rng.integers(0, 1000, size=1024)
    y = (rng.standard_normal((700, 40)) * 3).astype(np.float32)  # rows as lanes
    ty = rng.integers(0, 40, size=700)

    def call():
        loss, grad = pyce.cross_entropy_with_grad(x, target, reduction="none")
        return (
            loss,
            grad,
            pyce.logsumexp(x),
            pyce.softmax(x),
            pyce.log_softmax(x),
            pyce.cross_entropy_with_grad(y, ty, reduction="none")[1],
            pyce.softmax(y),
        )

    same_for_every_thread_count(call, counts=(1, 2, 3, 16))
