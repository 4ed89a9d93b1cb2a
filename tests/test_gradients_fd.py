"""Kernel gradients against central finite differences in float64.

Tolerances (see _helpers): float64 rtol 1e-12 (atol 1e-14 x the logits'
magnitude); float32 losses rtol 2e-6 against the reference evaluated on the
same float32 numbers, gradients and probabilities atol 1e-6 rtol 1e-5.
"""

import numpy as np
import pytest

import pyce

from _helpers import (
    REDUCTIONS,
    central_difference,
    make_problem,
)
from _kernel_cases import _grad_output, _seed

# Run once per forced ISA by .ci/run (pytest -m kernels).
pytestmark = pytest.mark.kernels

ref = pyce.reference


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
    np.testing.assert_allclose(
        fused * g if reduction != "none" else fused * np.expand_dims(g, kw["axis"]), fd, rtol=1e-6, atol=1e-8
    )


def test_logsumexp_gradient_vs_finite_differences():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 19)) * 2
    fd = central_difference(lambda z: np.sum(pyce.logsumexp(z)), x)
    np.testing.assert_allclose(pyce.softmax(x), fd, rtol=1e-6, atol=1e-9)
