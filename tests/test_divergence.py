"""pyce.kl_divergence / kl_divergence_with_grad (distillation) against the NumPy
reference, finite differences and torch.nn.functional.kl_div."""

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
REDUCTIONS = ["batchmean", "sum", "mean", "none"]
HALF = HALF_DTYPES


def pair(shape, dtype, seed=0, scale=2.5):
    rng = np.random.default_rng(zlib.crc32(repr((shape, np.dtype(dtype).name, seed)).encode()))
    s = (rng.standard_normal(shape) * scale).astype(dtype)
    t = (rng.standard_normal(shape) * scale).astype(dtype)
    return s, t


def tols(dtype, scale):
    if np.dtype(dtype) == np.float64:
        return dict(rtol=1e-11, atol=1e-13 * scale), dict(rtol=1e-11, atol=1e-14 * scale)
    return dict(rtol=2e-5, atol=16 * EPS32 * scale), dict(rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", SHAPES, ids=str)
def test_matches_reference(shape, axis, dtype, temperature, reduction):
    s, t = pair(shape, dtype)
    kw = dict(temperature=temperature, axis=axis, reduction=reduction)
    exp_loss, exp_grad = ref.kl_divergence_with_grad(s, t, **kw)
    ltol, gtol = tols(dtype, (1 + max(np.abs(s).max(), np.abs(t).max())) / temperature * temperature**2)
    loss = pyce.kl_divergence(s, t, **kw)
    if reduction == "none":
        assert loss.dtype == dtype and loss.shape == exp_loss.shape
    else:
        assert type(loss) is np.dtype(dtype).type
    assert_close(loss, exp_loss, **ltol)
    loss2, grad = pyce.kl_divergence_with_grad(s, t, **kw)
    assert grad.dtype == dtype and grad.shape == s.shape
    np.testing.assert_array_equal(np.asarray(loss2), np.asarray(loss))  # same kernel, same bits
    assert_close(grad, exp_grad, **gtol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("temperature", [1.0, 3.0])
@pytest.mark.parametrize("shape,axis", [((3, 5), -1), ((2, 4, 3), 1)], ids=str)
def test_gradient_finite_differences(shape, axis, temperature, reduction):
    s, t = pair(shape, np.float64, seed=1)
    g_out = np.random.default_rng(5).standard_normal(
        ref.kl_divergence(s, t, axis=axis, reduction="none").shape
    )

    def f(x):
        loss = pyce.kl_divergence(x, t, temperature=temperature, axis=axis, reduction=reduction)
        return np.sum(loss * g_out) if reduction == "none" else loss

    _, grad = pyce.kl_divergence_with_grad(s, t, temperature=temperature, axis=axis, reduction=reduction)
    if reduction == "none":
        grad = grad * np.expand_dims(g_out, axis % s.ndim)
    np.testing.assert_allclose(grad, central_difference(f, s), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", list(HALF))
@pytest.mark.parametrize("shape", [(5, 37), (3, 4097)], ids=str)
def test_16bit(name, shape):
    s, t = pair(shape, HALF[name])
    s64, t64 = s.astype(np.float64), t.astype(np.float64)
    exp_loss, exp_grad = ref.kl_divergence_with_grad(s64, t64, temperature=2.0)
    loss, grad = pyce.kl_divergence_with_grad(s, t, temperature=2.0)
    assert type(loss) is np.float32 and grad.dtype == s.dtype
    assert_close(loss, exp_loss, rtol=2e-5, atol=1e-5)
    # One 16-bit rounding of the gradient.
    ulp = 2.0**-7 if name == "bfloat16" else 2.0**-10
    err = np.abs(grad.astype(np.float64) - exp_grad)
    assert np.all(err <= ulp * np.abs(exp_grad) + 1e-7)
    loss32, grad32 = pyce.kl_divergence_with_grad(s, t, temperature=2.0, grad_dtype=np.float32)
    assert grad32.dtype == np.float32 and loss32 == loss
    assert_close(grad32, exp_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.filterwarnings("ignore:reduction. .mean. divides:UserWarning")
def test_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for dtype in (np.float32, np.float64):
        for T in (1.0, 2.0):
            s, t = pair((16, 300), dtype, seed=3)
            xs = torch.tensor(s, requires_grad=True)
            loss_t = (
                F.kl_div(
                    F.log_softmax(xs / T, dim=1),
                    F.log_softmax(torch.tensor(t) / T, dim=1),
                    reduction="batchmean",
                    log_target=True,
                )
                * T
                * T
            )
            loss_t.backward()
            loss, grad = pyce.kl_divergence_with_grad(s, t, temperature=T)
            ltol, gtol = tols(dtype, 10)
            assert_close(loss, loss_t.item(), **ltol)
            assert_close(grad, xs.grad.numpy(), **gtol)
            # 'sum' and 'mean' are kl_div's too.
            for red in ("sum", "mean"):
                expect = (
                    F.kl_div(
                        F.log_softmax(torch.tensor(s) / T, dim=1),
                        F.log_softmax(torch.tensor(t) / T, dim=1),
                        reduction=red,
                        log_target=True,
                    ).item()
                    * T
                    * T
                )
                assert_close(pyce.kl_divergence(s, t, temperature=T, reduction=red), expect, **ltol)


def test_properties():
    s, t = pair((20, 50), np.float64, seed=2)
    # KL(p || p) = 0 exactly (clamped at 0), and its gradient vanishes.
    loss, grad = pyce.kl_divergence_with_grad(s, s)
    assert loss == 0.0 and np.abs(grad).max() < 1e-16
    # Shift invariance of both sides, even far outside exp's range.
    a = pyce.kl_divergence(s, t, reduction="none")
    b = pyce.kl_divergence(s + 1e4, t - 3e3, reduction="none")
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    assert np.all(a >= 0)
    # Gradient rows sum to 0 (q and p are both distributions).
    _, grad = pyce.kl_divergence_with_grad(s, t, temperature=1.7)
    np.testing.assert_allclose(grad.sum(axis=-1), 0, atol=1e-15)


def test_special_values():
    inf, nan = np.inf, np.nan
    # Teacher -inf: p = 0 there, the class contributes nothing, whatever the student says.
    s = np.array([[0.0, 5.0, -inf]])
    t = np.array([[0.0, -inf, -inf]])
    loss, grad = pyce.kl_divergence_with_grad(s, t, reduction="sum")
    expected = -math.log(1 / (1 + math.exp(5)))
    assert loss == pytest.approx(expected, rel=1e-14)
    assert_close(loss, ref.kl_divergence(s, t, reduction="sum"), rtol=1e-14, atol=0)
    assert np.isfinite(grad).all()
    # Student -inf where the teacher has mass: +inf.
    assert pyce.kl_divergence(np.array([[0.0, -inf]]), np.array([[0.0, 0.0]])) == inf
    # nan or +inf on either side: nan loss and gradient row.
    for bad in (nan, inf):
        for s, t in (
            (np.array([[0.0, bad, 1.0]]), np.zeros((1, 3))),
            (np.zeros((1, 3)), np.array([[0.0, bad, 1.0]])),
        ):
            loss, grad = pyce.kl_divergence_with_grad(s, t, reduction="none")
            assert np.isnan(loss).all() and np.isnan(grad).all()
            assert np.isnan(ref.kl_divergence(s, t, reduction="none")).all()


def test_large_logits_raise_the_shift():
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        s = rng.standard_normal((3, 5000)).astype(dtype)
        t = rng.standard_normal((3, 5000)).astype(dtype)
        s[0, 4100], t[0, 4100] = 200, 180  # a later block
        t[1, 2047] = 150  # last element of the first block (teacher only)
        s[2, 17] = 95  # mid-vector (student only)
        t[2, 3000] = 90
        for T in (1.0, 0.5):
            exp_loss, exp_grad = ref.kl_divergence_with_grad(s, t, temperature=T, reduction="none")
            loss, grad = pyce.kl_divergence_with_grad(s, t, temperature=T, reduction="none")
            ltol, gtol = tols(dtype, 400 / T)
            assert_close(loss, exp_loss, **ltol)
            assert_close(grad, exp_grad, **gtol)


def test_teacher_dtype_is_converted():
    s, t = pair((4, 9), np.float32)
    a = pyce.kl_divergence(s, t.astype(np.float64))
    assert a == pyce.kl_divergence(s, t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_same_for_every_thread_count(dtype):
    for shape in [(200, 301), (3, 70001)]:
        s, t = pair(shape, dtype, seed=7)
        same_for_every_thread_count(
            lambda: pyce.kl_divergence_with_grad(s, t, temperature=1.5, reduction="none")
        )


def test_every_isa(each_isa):
    for dtype in (np.float32, np.float64):
        s, t = pair((5, 4099), dtype, seed=8)
        exp_loss, exp_grad = ref.kl_divergence_with_grad(s, t, temperature=2.0, reduction="none")
        loss, grad = pyce.kl_divergence_with_grad(s, t, temperature=2.0, reduction="none")
        ltol, gtol = tols(dtype, 10)
        assert_close(loss, exp_loss, **ltol)
        assert_close(grad, exp_grad, **gtol)


def test_errors():
    s = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"same shape.*\(3, 4\) and \(3, 5\)"):
        pyce.kl_divergence(s, np.zeros((3, 5)))
    for bad in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="temperature"):
            pyce.kl_divergence(s, s, temperature=bad)
    with pytest.raises(TypeError, match="temperature"):
        pyce.kl_divergence(s, s, temperature="hot")
    with pytest.raises(ValueError, match="reduction"):
        pyce.kl_divergence(s, s, reduction="avg")
    with pytest.raises(TypeError, match="floating-point"):
        pyce.kl_divergence(np.zeros((3, 4), dtype=int), s)
    with pytest.raises(TypeError, match="floating-point"):
        pyce.kl_divergence(s, np.zeros((3, 4), dtype=int))
    with pytest.raises(ValueError, match="at least one class"):
        pyce.kl_divergence(np.zeros((3, 0)), np.zeros((3, 0)))
    with pytest.raises(ValueError, match="grad_dtype"):
        pyce.kl_divergence_with_grad(s, s, grad_dtype=np.float32)


@pytest.mark.parametrize("name", list(HALF))
def test_16bit_gradient_recomputed_after_a_shift_raise(name):
    # A 16-bit gradient cannot hold the student's exps, so the rescale recomputes
    # them against each block's final shift: it must agree with the float32 path.
    rng = np.random.default_rng(11)
    s = rng.standard_normal((3, 5000)).astype(HALF[name])
    t = rng.standard_normal((3, 5000)).astype(HALF[name])
    s[0, 4100], s[1, 2047], s[2, 17] = 200, 150, 95
    t[0, 10] = 120
    loss16, g16 = pyce.kl_divergence_with_grad(s, t, reduction="none")
    loss32, g32 = pyce.kl_divergence_with_grad(s, t, reduction="none", grad_dtype=np.float32)
    np.testing.assert_array_equal(loss16, loss32)
    np.testing.assert_array_equal(g16, g32.astype(HALF[name]))  # the same values, rounded once
    exp_loss, exp_grad = ref.kl_divergence_with_grad(
        s.astype(np.float64), t.astype(np.float64), reduction="none"
    )
    assert_close(loss32, exp_loss, rtol=2e-5, atol=16 * EPS32 * 400)
    assert_close(g32, exp_grad, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_masked_student_class_with_underflowing_teacher_is_zero(each_isa, dtype):
    # Issue 14 item 7: the teacher's probability of class 0 underflows to 0,
    # the student masks it with -inf: 0 * log(0 / 0) contributes 0 (it was nan).
    s = np.array([[-np.inf, 0.0], [-np.inf, 1.0]], dtype=dtype)
    t = np.array([[-1000.0, 0.0], [-2000.0, 3.0]], dtype=dtype)
    assert pyce.kl_divergence(s, t, reduction="sum") == 0.0
    loss, grad = pyce.kl_divergence_with_grad(s, t, reduction="none")
    np.testing.assert_array_equal(loss, [0.0, 0.0])
    np.testing.assert_array_equal(grad, np.zeros_like(s))
    np.testing.assert_array_equal(
        ref.kl_divergence(s.astype(np.float64), t.astype(np.float64), reduction="none"), [0.0, 0.0]
    )
    # A teacher probability that does not underflow still makes it +inf.
    assert pyce.kl_divergence(s, np.array([[-1.0, 0.0], [0.0, 0.0]], dtype=dtype), reduction="sum") == np.inf
