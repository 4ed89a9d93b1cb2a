"""pyce.focal_loss / focal_loss_with_grad against the NumPy reference and finite differences."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

import pyce

from _helpers import (
    EPS32,
    HALF_DTYPES,
    KERNEL_SHAPES,
    assert_close,
    central_difference,
    load_reference,
    same_for_every_thread_count,
)

# Run once per forced ISA by .ci/run (pytest -m kernels).
pytestmark = pytest.mark.kernels

ref = load_reference()

SHAPES = KERNEL_SHAPES
GAMMAS = [0.0, 0.5, 2.0, 3.7]
HALF = HALF_DTYPES


def problem(shape, axis, dtype, *, ignore=True, seed=0, scale=2.5):
    rng = np.random.default_rng(zlib.crc32(repr((shape, axis, np.dtype(dtype).name, seed)).encode()))
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    ax = axis % len(shape)
    tshape = shape[:ax] + shape[ax + 1 :]
    t = rng.integers(0, shape[ax], size=tshape)
    if ignore and t.size > 1:
        mask = rng.random(tshape) < 0.3
        mask.flat[0] = False
        t[mask] = -100
    alpha = rng.random(shape[ax]) + 0.25
    return x, t, alpha


def tols(dtype, scale):
    if np.dtype(dtype) == np.float64:
        return dict(rtol=1e-11, atol=1e-13 * scale), dict(rtol=1e-11, atol=1e-14 * scale)
    return dict(rtol=1e-5, atol=8 * EPS32 * scale), dict(rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("alpha", ["none", "scalar", "per-class"])
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", SHAPES, ids=str)
def test_matches_reference(shape, axis, dtype, gamma, alpha, reduction):
    x, t, alpha_c = problem(shape, axis, dtype)
    a = {"none": None, "scalar": 0.25, "per-class": alpha_c}[alpha]
    kw = dict(gamma=gamma, alpha=a, axis=axis, reduction=reduction)
    exp_loss, exp_grad = ref.focal_loss_with_grad(x, t, **kw)
    ltol, gtol = tols(dtype, 1 + np.abs(x).max())
    loss = pyce.focal_loss(x, t, **kw)
    if reduction == "none":
        assert loss.dtype == dtype and loss.shape == t.shape
    else:
        assert type(loss) is np.dtype(dtype).type
    assert_close(loss, exp_loss, **ltol)
    loss2, grad = pyce.focal_loss_with_grad(x, t, **kw)
    np.testing.assert_array_equal(np.asarray(loss2), np.asarray(loss))
    assert grad.dtype == dtype and grad.shape == x.shape
    assert_close(grad, exp_grad, **gtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gamma_zero_is_cross_entropy(dtype):
    x, t, alpha = problem((40, 33), -1, dtype)
    for reduction in ("sum", "none"):
        a = pyce.focal_loss_with_grad(x, t, gamma=0.0, alpha=alpha, reduction=reduction)
        b = pyce.cross_entropy_with_grad(x, t, weight=alpha.astype(dtype), reduction=reduction)
        ltol, gtol = tols(dtype, 10)
        assert_close(a[0], b[0], **ltol)
        assert_close(a[1], b[1], **gtol)
    # Unweighted mean: the same divisor (rows not ignored) as cross-entropy.
    assert_close(pyce.focal_loss(x, t, gamma=0.0), pyce.cross_entropy(x, t), **tols(dtype, 10)[0])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.7])
def test_gradient_finite_differences(gamma, reduction):
    x, t, alpha = problem((4, 6), -1, np.float64, seed=1)
    g_out = np.random.default_rng(6).standard_normal(t.shape)

    def f(z):
        loss = pyce.focal_loss(z, t, gamma=gamma, alpha=alpha, reduction=reduction)
        return np.sum(loss * g_out) if reduction == "none" else loss

    _, grad = pyce.focal_loss_with_grad(x, t, gamma=gamma, alpha=alpha, reduction=reduction)
    if reduction == "none":
        grad = grad * g_out[:, None]
    np.testing.assert_allclose(grad, central_difference(f, x), rtol=1e-6, atol=1e-9)


def test_gradient_finite_differences_axis1():
    x, t, alpha = problem((2, 5, 3), 1, np.float64, seed=2)
    _, grad = pyce.focal_loss_with_grad(x, t, gamma=1.5, axis=1)
    fd = central_difference(lambda z: pyce.focal_loss(z, t, gamma=1.5, axis=1), x)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", list(HALF))
def test_16bit(name):
    x, t, _ = problem((6, 4099), -1, HALF[name])
    exp_loss, exp_grad = ref.focal_loss_with_grad(x.astype(np.float64), t, gamma=2.0)
    loss, grad = pyce.focal_loss_with_grad(x, t, gamma=2.0)
    assert type(loss) is np.float32 and grad.dtype == x.dtype
    assert_close(loss, exp_loss, rtol=1e-5, atol=1e-5)
    ulp = 2.0**-7 if name == "bfloat16" else 2.0**-10
    assert np.all(np.abs(grad.astype(np.float64) - exp_grad) <= ulp * np.abs(exp_grad) + 1e-7)
    _, grad32 = pyce.focal_loss_with_grad(x, t, gamma=2.0, grad_dtype=np.float32)
    assert grad32.dtype == np.float32
    assert_close(grad32, exp_grad, rtol=1e-5, atol=1e-7)


def test_focusing_and_limits():
    # An easy token (q_t near 1) is down-weighted far more than a hard one.
    easy = np.array([[8.0, 0.0, 0.0]])
    hard = np.array([[0.0, 0.0, 0.0]])
    t = np.array([0])
    ce_easy, ce_hard = pyce.cross_entropy(easy, t), pyce.cross_entropy(hard, t)
    fl_easy, fl_hard = pyce.focal_loss(easy, t), pyce.focal_loss(hard, t)
    assert fl_easy / ce_easy < 1e-6 and fl_hard / ce_hard == pytest.approx((2 / 3) ** 2)
    # q_t = 1 exactly (one class, or -inf elsewhere): loss 0, gradient 0, no nan.
    for x in (np.zeros((1, 1)), np.array([[0.0, -np.inf]])):
        for gamma in (0.5, 2.0):
            loss, grad = pyce.focal_loss_with_grad(x, np.array([0]), gamma=gamma)
            assert loss == 0 and np.all(grad == 0)
    # A -inf target: infinite loss; nan or +inf in the row: nan.
    loss = pyce.focal_loss(np.array([[0.0, -np.inf]]), np.array([1]))
    assert loss == np.inf
    for bad in (np.inf, np.nan):
        loss, grad = pyce.focal_loss_with_grad(np.array([[0.0, bad, 1.0]]), np.array([0]), reduction="none")
        assert np.isnan(loss).all() and np.isnan(grad).all()


def test_ignored_rows():
    x, t, _ = problem((10, 7), -1, np.float64)
    loss, grad = pyce.focal_loss_with_grad(x, t, reduction="none")
    assert np.all(loss[t == -100] == 0) and np.all(grad[t == -100] == 0)
    x[t == -100] = np.nan  # ignored rows are not read
    assert np.isfinite(pyce.focal_loss(x, t))
    loss, grad = pyce.focal_loss_with_grad(x, np.full(10, -100))
    assert math.isnan(loss) and np.all(grad == 0)  # mean over no rows, as cross-entropy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_same_for_every_thread_count(dtype):
    for shape in [(200, 301), (3, 70001)]:
        x, t, alpha = problem(shape, -1, dtype, seed=7)
        same_for_every_thread_count(lambda: pyce.focal_loss_with_grad(x, t, alpha=alpha, reduction="none"))


def test_every_isa(each_isa):
    for dtype in (np.float32, np.float64):
        x, t, alpha = problem((5, 4099), -1, dtype, seed=8)
        exp_loss, exp_grad = ref.focal_loss_with_grad(x, t, alpha=alpha, reduction="none")
        loss, grad = pyce.focal_loss_with_grad(x, t, alpha=alpha, reduction="none")
        ltol, gtol = tols(dtype, 10)
        assert_close(loss, exp_loss, **ltol)
        assert_close(grad, exp_grad, **gtol)


def test_errors():
    x = np.zeros((4, 5))
    t = np.array([0, 1, 2, 3])
    with pytest.raises(IndexError, match="target 7 at position 1"):
        pyce.focal_loss(x, np.array([0, 7, 2, 3]))
    with pytest.raises(ValueError, match=r"expected \(4,\), got \(3,\)"):
        pyce.focal_loss(x, t[:3])
    with pytest.raises(TypeError, match="integer class-index"):
        pyce.focal_loss(x, np.full((4, 5), 0.2))
    with pytest.raises(TypeError, match="floating-point"):
        pyce.focal_loss(x.astype(int), t)
    for bad in (-0.5, np.inf, np.nan):
        with pytest.raises(ValueError, match="gamma"):
            pyce.focal_loss(x, t, gamma=bad)
    with pytest.raises(TypeError, match="gamma"):
        pyce.focal_loss(x, t, gamma="2")
    with pytest.raises(ValueError, match=r"alpha .* shape \(5,\)"):
        pyce.focal_loss(x, t, alpha=np.ones(4))
    with pytest.raises(TypeError, match="alpha"):
        pyce.focal_loss(x, t, alpha=np.array(["a"] * 5))
    with pytest.raises(ValueError, match="reduction"):
        pyce.focal_loss(x, t, reduction="batchmean")
    with pytest.raises(ValueError, match="grad_dtype"):
        pyce.focal_loss_with_grad(x, t, grad_dtype=np.float16)


def test_properties_hypothesis():
    pytest.importorskip("hypothesis")
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    rows = st.integers(1, 6)
    cols = st.integers(1, 40)
    values = st.floats(-30, 30, allow_nan=False, width=64)

    @settings(max_examples=60, deadline=None)
    @given(st.data(), rows, cols, st.floats(0, 5))
    def check(data, n, c, gamma):
        x = data.draw(hnp.arrays(np.float64, (n, c), elements=values))
        t = data.draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
        fl = pyce.focal_loss(x, t, gamma=gamma, reduction="none")
        ce = pyce.cross_entropy(x, t, reduction="none")
        assert np.all(fl >= 0) and np.all(fl <= ce * (1 + 1e-12) + 1e-300)  # (1 - q)^gamma <= 1
        h = pyce.entropy(x)
        assert np.all(h >= 0) and np.all(h <= np.log(c) * (1 + 1e-12) + 1e-15)
        np.testing.assert_allclose(pyce.entropy(x + 7.25), h, rtol=1e-9, atol=1e-12)
        y = data.draw(hnp.arrays(np.float64, (n, c), elements=values))
        kl = pyce.kl_divergence(x, y, reduction="none")
        assert np.all(kl >= 0)
        _, g = pyce.kl_divergence_with_grad(x, y, temperature=1.5)
        np.testing.assert_allclose(g.sum(axis=-1), 0, atol=1e-12)

    check()


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_confident_rows_keep_the_precision_of_their_small_loss(gamma):
    # A row whose target dominates has nll = log1p(rest) near 0: from log of a
    # sum near 1 it lost ~1e-11 relative (CI's hypothesis run found x = [0, -12]:
    # the focal loss with gamma = 0 came out above the cross-entropy).
    d = np.array([12.0, 20.0, 30.0, 3.0])
    x = np.stack([np.zeros_like(d), -d], axis=1)
    t = np.zeros(len(d), np.int64)
    nll = np.log1p(np.exp(-d))
    one_minus_p = -np.expm1(-nll)
    exact = one_minus_p**gamma * nll
    got = pyce.focal_loss(x, t, gamma=gamma, reduction="none")
    np.testing.assert_allclose(got, exact, rtol=1e-14, atol=0)
    if gamma == 0.0:
        np.testing.assert_allclose(got, pyce.cross_entropy(x, t, reduction="none"), rtol=1e-15, atol=0)
    got32 = pyce.focal_loss(x.astype(np.float32), t, gamma=gamma, reduction="none")
    np.testing.assert_allclose(got32, exact, rtol=1e-6, atol=0)
