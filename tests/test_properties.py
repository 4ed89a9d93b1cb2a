"""Mathematical properties of pyce's functions, checked with hypothesis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pyce

# Run once per forced ISA by .ci/run (pytest -m kernels).
pytestmark = pytest.mark.kernels

SETTINGS = settings(max_examples=40, deadline=None)

dtypes = st.sampled_from([np.float32, np.float64])
shapes = st.tuples(st.integers(1, 6), st.integers(1, 70))


@st.composite
def logits_arrays(draw, lo=-30.0, hi=30.0, exact=False):
    """(rows, C) arrays. ``exact``: multiples of 1/8 in [-64, 64], so shifts by integers are exact."""
    dtype = draw(dtypes)
    shape = draw(shapes)
    if exact:
        ints = draw(hnp.arrays(np.int32, shape, elements=st.integers(-512, 512)))
        return (ints / 8.0).astype(dtype)
    return draw(hnp.arrays(dtype, shape, elements=st.floats(lo, hi, width=32)))


@st.composite
def problems(draw, soft=None, weight=None, smoothing=None, ignore=None):
    """A cross-entropy problem: logits, target and keyword options."""
    x = draw(logits_arrays(-20.0, 20.0))
    n, c = x.shape
    soft = draw(st.booleans()) if soft is None else soft
    kw = {}
    if soft:
        p = draw(hnp.arrays(np.float64, (n, c), elements=st.floats(0.0, 1.0)))
        p = p + 1e-3
        target = (p / p.sum(-1, keepdims=True)).astype(x.dtype)
    else:
        target = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
        if ignore if ignore is not None else draw(st.booleans()):
            mask = draw(hnp.arrays(np.bool_, (n,)))
            target[mask] = -100
    if weight if weight is not None else draw(st.booleans()):
        kw["weight"] = draw(hnp.arrays(np.float64, (c,), elements=st.floats(0.1, 3.0))).astype(x.dtype)
    eps = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])) if smoothing is None else smoothing
    if eps:
        kw["label_smoothing"] = eps
    return x, target, kw


def _eps(dtype):
    return float(np.finfo(dtype).eps)


@SETTINGS
@given(logits_arrays(exact=True), st.integers(-200, 200))
def test_softmax_shift_invariance(x, shift):
    shifted = (x + x.dtype.type(shift)).astype(x.dtype)
    np.testing.assert_array_equal(shifted - x.dtype.type(shift), x)  # the shift is exact
    # x - max(x) is the same exact numbers for both; a kernel may still round through
    # log-sum-exp, whose size grows with the shift: allow a few roundings of it.
    tol = 8 * _eps(x.dtype) * (1 + np.abs(shifted).max())
    a, b = pyce.softmax(x), pyce.softmax(shifted)
    np.testing.assert_allclose(a, b, rtol=tol, atol=8 * _eps(x.dtype))
    la, lb = pyce.log_softmax(x), pyce.log_softmax(shifted)
    np.testing.assert_allclose(la, lb, rtol=8 * _eps(x.dtype), atol=tol)
    np.testing.assert_allclose(pyce.logsumexp(shifted) - shift, pyce.logsumexp(x), atol=tol)


@SETTINGS
@given(logits_arrays(-80.0, 80.0))
def test_softmax_rows_are_distributions(x):
    p = pyce.softmax(x)
    assert np.all(p >= 0) and np.all(p <= 1)
    np.testing.assert_allclose(p.astype(np.float64).sum(-1), 1.0, atol=(x.shape[1] + 2) * _eps(x.dtype))


@SETTINGS
@given(logits_arrays(-80.0, 80.0))
def test_logsumexp_bounds(x):
    lse = pyce.logsumexp(x)
    m = x.max(-1)
    assert np.all(lse >= m)
    c = x.shape[1]
    slack = 4 * _eps(x.dtype) * (np.abs(m) + np.log(c) + 1)
    assert np.all(lse.astype(np.float64) <= m.astype(np.float64) + np.log(c) + slack)
    np.testing.assert_array_equal(pyce.logsumexp(x, keepdims=True)[:, 0], lse)


@SETTINGS
@given(logits_arrays(-30.0, 30.0))
def test_log_softmax_is_log_of_softmax(x):
    p = pyce.softmax(x)
    lp = pyce.log_softmax(x)
    tiny = np.finfo(x.dtype).tiny
    ok = p > 1e3 * tiny  # away from underflow
    with np.errstate(divide="ignore"):
        logp = np.log(p.astype(np.float64))
    scale = 1 + np.abs(lp[ok]).max() if ok.any() else 1
    np.testing.assert_allclose(lp[ok], logp[ok], rtol=8 * _eps(x.dtype), atol=8 * _eps(x.dtype) * scale)
    np.testing.assert_allclose(
        np.exp(lp.astype(np.float64)), p, rtol=64 * _eps(x.dtype) * scale, atol=4 * _eps(x.dtype)
    )


@SETTINGS
@given(problems(soft=False, weight=False), st.sampled_from(["mean", "sum", "none"]))
def test_loss_is_nonnegative_for_class_targets_without_weights(problem, reduction):
    """With hard (and smoothed) targets and no weights every row's loss is >= 0, in floating point too."""
    x, target, kw = problem
    loss = pyce.cross_entropy(x, target, reduction=reduction, **kw)
    if reduction == "mean" and np.all(target == -100):
        assert np.isnan(loss)
    else:
        assert np.all(np.asarray(loss) >= 0)


@SETTINGS
@given(problems(soft=True), st.sampled_from(["mean", "sum", "none"]))
def test_soft_target_loss_is_at_least_the_target_entropy(problem, reduction):
    """CE(p, q) = H(p) + KL(p || q) >= H(p) (no weights, no smoothing)."""
    x, p, _ = problem
    loss = pyce.cross_entropy(x, p, reduction="none")
    p64 = p.astype(np.float64)
    entropy = -np.sum(p64 * np.log(p64), axis=-1)
    slack = 16 * _eps(x.dtype) * (1 + np.abs(x).max()) * (1 + x.shape[1] ** 0.5)
    assert np.all(loss >= entropy - slack)


def _coefficient_sums(x, target, kw, reduction):
    """Per row, sum_c coef_c times the reduction's scale: the size of the row's gradient terms
    (grad = sum(coef) * q - coef)."""
    n, c = x.shape
    w = np.asarray(kw.get("weight", np.ones(c)), dtype=np.float64)
    eps = kw.get("label_smoothing", 0.0)
    if target.ndim == 2:
        p = (1 - eps) * target.astype(np.float64) + eps / c
        sums = (p * w).sum(-1)
        divisor = n
    else:
        kept = target != -100
        safe = np.where(kept, target, 0)
        sums = np.where(kept, (1 - eps) * w[safe] + eps / c * w.sum(), 0.0)
        divisor = w[safe][kept].sum()
    if reduction == "mean":
        sums = sums / divisor if divisor else np.zeros_like(sums)
    return sums


@SETTINGS
@given(problems(), st.sampled_from(["mean", "sum", "none"]))
def test_gradient_rows_sum_to_zero(problem, reduction):
    """grad = sum(coef) * q - coef for every option (weights, smoothing, soft targets),
    so each row's gradient sums to zero (up to rounding of sum(coef) * sum(q));
    ignored rows are exactly zero."""
    x, target, kw = problem
    grad = pyce.cross_entropy_backward(x, target, reduction=reduction, **kw).astype(np.float64)
    c = x.shape[1]
    bound = _coefficient_sums(x, target, kw, reduction) * (c + 4) * 4 * _eps(x.dtype)
    assert np.all(np.abs(grad.sum(-1)) <= bound)
    if target.ndim == 1:
        assert np.all(grad[target == -100] == 0)


@SETTINGS
@given(problems(), st.sampled_from(["mean", "sum", "none"]))
def test_fused_equals_separate_calls(problem, reduction):
    x, target, kw = problem
    loss, grad = pyce.cross_entropy_with_grad(x, target, reduction=reduction, **kw)
    loss2 = pyce.cross_entropy(x, target, reduction=reduction, **kw)
    grad2 = pyce.cross_entropy_backward(x, target, reduction=reduction, **kw)
    tol = 4 * _eps(x.dtype)
    np.testing.assert_allclose(loss, loss2, rtol=tol, atol=tol * (1 + np.abs(x).max()))
    size = max(1.0, float(np.max(kw.get("weight", 1.0))))
    np.testing.assert_allclose(grad, grad2, rtol=tol, atol=4 * tol * size)
    assert type(loss) is type(loss2)


@SETTINGS
@given(problems(soft=False), st.sampled_from(["mean", "sum"]))
def test_reductions_are_consistent(problem, reduction):
    x, target, kw = problem
    rows = pyce.cross_entropy(x, target, reduction="none", **kw).astype(np.float64)
    total = pyce.cross_entropy(x, target, reduction=reduction, **kw)
    w = kw.get("weight", np.ones(x.shape[1], x.dtype)).astype(np.float64)
    kept = target != -100
    divisor = w[target[kept]].sum() if reduction == "mean" else 1.0
    if divisor == 0:
        assert np.isnan(total)
        return
    tol = 4 * _eps(x.dtype)
    np.testing.assert_allclose(total, rows.sum() / divisor, rtol=tol * x.shape[0] + tol, atol=tol)
    g = pyce.cross_entropy_backward(x, target, 1.0 / divisor, reduction="sum", **kw)
    np.testing.assert_allclose(
        pyce.cross_entropy_backward(x, target, reduction=reduction, **kw),
        g,
        rtol=tol * 4,
        atol=4 * tol * np.abs(g).max(),
    )


@SETTINGS
@given(problems(soft=False, ignore=False, smoothing=0.0))
def test_one_hot_soft_target_equals_class_target(problem):
    x, target, kw = problem
    kw.pop("weight", None)  # soft targets' mean divides by the row count, class targets' by sum w
    onehot = np.eye(x.shape[1], dtype=x.dtype)[target]
    tol = 8 * _eps(x.dtype)
    for reduction in ("mean", "sum", "none"):
        a, ga = pyce.cross_entropy_with_grad(x, target, reduction=reduction)
        b, gb = pyce.cross_entropy_with_grad(x, onehot, reduction=reduction)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * (1 + np.abs(x).max()))
        np.testing.assert_allclose(ga, gb, rtol=tol, atol=tol)


@SETTINGS
@given(problems(soft=False, ignore=False, weight=False, smoothing=0.0), st.floats(0.0, 1.0))
def test_label_smoothing_is_a_mixture(problem, eps):
    """loss_eps = (1 - eps) * CE(onehot) + eps * CE(uniform)."""
    x, target, _ = problem
    c = x.shape[1]
    smoothed = pyce.cross_entropy(x, target, reduction="none", label_smoothing=eps).astype(np.float64)
    hard = pyce.cross_entropy(x, target, reduction="none").astype(np.float64)
    uniform = pyce.cross_entropy(x, np.full(x.shape, 1.0 / c, x.dtype), reduction="none").astype(np.float64)
    tol = 16 * _eps(x.dtype) * (1 + np.abs(x).max())
    np.testing.assert_allclose(smoothed, (1 - eps) * hard + eps * uniform, rtol=tol, atol=tol)


@SETTINGS
@given(logits_arrays(-20.0, 20.0))
def test_softmax_gradient_identity(x):
    """The gradient for soft target p is softmax(x) - p (rows of p sum to 1, 'sum' reduction)."""
    p = pyce.softmax(x[::-1].copy())
    grad = pyce.cross_entropy_backward(x, p, reduction="sum")
    expected = pyce.softmax(x).astype(np.float64) - p
    np.testing.assert_allclose(grad, expected, rtol=16 * _eps(x.dtype), atol=(x.shape[1] + 8) * _eps(x.dtype))
