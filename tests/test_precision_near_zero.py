"""Precision near zero: small losses keep their relative precision (issue 14, item 13).

When one logit dominates a row, lse - max = log(1 + rest) with rest far
below 1; computed as the log of a sum near 1 it loses rest's relative
precision (logsumexp([0, -40]) was exactly 0.0, the answer is 4.248e-18;
SciPy gh-18295). The oracle here is float64 log1p of the other terms'
exponentials, accurate to a few ulp wherever the answer is a normal number.
"""

import numpy as np
import pytest

import pyce

pytestmark = pytest.mark.kernels

ml_dtypes = pytest.importorskip("ml_dtypes")

# Relative error allowed: a few ulp of the compute dtype.
RTOL = {np.float64: 1e-13, np.float32: 2e-6}


def _rest(x64, top_index):
    """sum_{j != top} exp(x_j - x_top) per row, in float64 (the oracle's input)."""
    rows = np.arange(x64.shape[0])
    top = x64[rows, top_index][:, None]
    e = np.exp(x64 - top)
    e[rows, top_index] = 0.0
    return e.sum(axis=1)


def test_scipy_gh18295_values(each_isa):
    assert pyce.logsumexp(np.array([0.0, -40.0])) == pytest.approx(4.248354255291589e-18, rel=1e-14)
    got32 = pyce.logsumexp(np.array([0.0, -20.0], dtype=np.float32))
    assert got32 == pytest.approx(np.log1p(np.exp(-20.0)), rel=2e-6)
    assert pyce.log_softmax(np.array([0.0, -40.0]))[0] == pytest.approx(-4.248354255291589e-18, rel=1e-14)


def _confident_rows(dtype, rows, classes, gap, target_at):
    """Rows of small logits with the target's logit `gap` above them."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((rows, classes))
    t = np.full(rows, target_at) if target_at is not None else rng.integers(0, classes, rows)
    x[np.arange(rows), t] = gap + rng.random(rows)
    return x.astype(dtype), t


CASES = [
    # (dtype, classes, gap, where the target is): one block, several blocks
    # with the target in the first, and in a later one (above the first
    # block's max), tails shorter than a vector.
    (np.float64, 1000, 40.0, None),
    (np.float64, 5003, 30.0, 4500),
    (np.float64, 37, 700.0, 3),  # losses ~ 1e-302: near the smallest normal number
    (np.float32, 1000, 20.0, None),
    (np.float32, 5003, 25.0, 4500),
    (np.float32, 9, 80.0, 2),  # losses ~ 1e-35
]


@pytest.mark.parametrize("dtype,classes,gap,target_at", CASES)
def test_cross_entropy_of_confident_rows(each_isa, dtype, classes, gap, target_at):
    x, t = _confident_rows(dtype, 16, classes, gap, target_at)
    x64 = x.astype(np.float64)
    want = np.log1p(_rest(x64, t))
    assert want.min() > np.finfo(dtype).tiny  # normal numbers, as the issue asks
    rtol = RTOL[dtype]
    # The cross-entropy sums the sweep's own exps exp(x_j - shift) (stored in
    # a float32/float64 gradient, over the logits in place), whose arguments
    # were rounded: its relative error may reach gap * 2^-24 in float32 (1e-6
    # at a gap of 20), and it is bitwise the same on every path.
    # logsumexp and evaluate recover that rounding (see dominant.hpp).
    ce_rtol = max(rtol, (gap + 1) * np.finfo(dtype).eps)
    forward = pyce.cross_entropy(x, t, reduction="none")
    np.testing.assert_allclose(forward, want, rtol=ce_rtol, atol=0)
    loss, grad = pyce.cross_entropy_with_grad(x, t, reduction="none")
    np.testing.assert_array_equal(loss, forward)
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=10 * np.finfo(dtype).eps)
    inplace = x.copy()
    loss_in_place, _ = pyce.cross_entropy_with_grad(inplace, t, reduction="none", inplace=True)
    np.testing.assert_array_equal(loss_in_place, forward)
    lse = pyce.logsumexp(x)
    np.testing.assert_allclose(lse, x64[np.arange(16), t] + want, rtol=rtol, atol=0)
    r = pyce.evaluate(x, t, topk=(1,))
    assert r.loss == pytest.approx(want.mean(), rel=rtol)


@pytest.mark.parametrize("dtype,classes,gap,target_at", [c for c in CASES if c[3] != 4500])
def test_log_softmax_of_the_dominant_class(each_isa, dtype, classes, gap, target_at):
    x, t = _confident_rows(dtype, 16, classes, gap, target_at)
    want = -np.log1p(_rest(x.astype(np.float64), t))
    got = pyce.log_softmax(x)[np.arange(16), t]
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=0)


def test_bfloat16_confident_rows(each_isa):
    x, t = _confident_rows(np.float32, 8, 3000, 12.0, None)
    xb = x.astype(ml_dtypes.bfloat16)
    x64 = xb.astype(np.float64)
    want = np.log1p(_rest(x64, t))
    forward = pyce.cross_entropy(xb, t, reduction="none")
    np.testing.assert_allclose(forward, want, rtol=13 * np.finfo(np.float32).eps)
    np.testing.assert_array_equal(pyce.cross_entropy_with_grad(xb, t, reduction="none")[0], forward)
