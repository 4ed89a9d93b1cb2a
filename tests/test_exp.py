"""The kernels' vectorised exp: accuracy in ulp, and its special values, per ISA.

The kernels only ever call exp on x - shift <= 0 (and, rarely, up to 64 above
a block's shift), so the documented range is [-87.3, 0] for float32 and
[-708, 0] for float64; the checks also cover the subnormal range and overflow.
"""

import numpy as np
import pytest

import pyce
from pyce import _core

ISAS = pyce.cpu_info()["supported"]


@pytest.fixture(params=ISAS)
def isa(request):
    previous = _core.set_capability(request.param)
    yield request.param
    _core.set_capability(previous)


def ulp_error(got, exact, dtype):
    """|got - exact| in units of the last place of the (rounded) exact value."""
    rounded = exact.astype(dtype)
    return np.abs(got.astype(np.longdouble) - exact) / np.spacing(np.abs(rounded)).astype(np.longdouble)


# With FMA (avx2, avx512) the polynomial is evaluated with one rounding per
# step; the portable baseline rounds the product and the sum separately.
MAX_ULP = {"avx512": 1.0, "avx2": 1.0, "baseline": 1.5}


def test_float32_ulp(isa):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-87.3, 0.0, 400_000), rng.uniform(-1.0, 0.0, 100_000),
                        rng.uniform(0.0, 64.0, 50_000)]).astype(np.float32)
    exact = np.exp(x.astype(np.longdouble))
    err = ulp_error(_core.vector_exp(x), exact, np.float32)
    assert err.max() <= MAX_ULP[isa], f"{isa}: max error {float(err.max()):.3f} ulp"


def test_float64_ulp(isa):
    if np.finfo(np.longdouble).nmant < 60:
        pytest.skip("needs an extended-precision long double as the exact reference")
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-708.0, 0.0, 200_000), rng.uniform(-1.0, 0.0, 50_000)])
    exact = np.exp(x.astype(np.longdouble))
    err = ulp_error(_core.vector_exp(x), exact, np.float64)
    assert err.max() <= MAX_ULP[isa], f"{isa}: max error {float(err.max()):.3f} ulp"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(isa, dtype):
    x = np.array([-np.inf, 0.0, -0.0, np.nan, np.inf, 1e4, -1e4, 1.0, -1.0], dtype=dtype)
    y = _core.vector_exp(x)
    assert y[0] == 0.0  # exactly 0 at -inf
    assert y[1] == 1.0 and y[2] == 1.0
    assert np.isnan(y[3])  # nan propagates
    assert y[4] == np.inf and y[5] == np.inf
    assert y[6] == 0.0
    np.testing.assert_allclose(y[7:], np.exp(x[7:].astype(np.float64)), rtol=2 * np.finfo(dtype).eps)


def test_float32_subnormal_results(isa):
    # exp(x) for x in (-103.9, -87.3) is subnormal in float32: gradual underflow,
    # within one subnormal step.
    x = np.linspace(-103.5, -87.5, 1001).astype(np.float32)
    exact = np.exp(x.astype(np.longdouble))
    got = _core.vector_exp(x).astype(np.longdouble)
    step = np.longdouble(np.finfo(np.float32).smallest_subnormal)
    assert np.all(np.abs(got - exact) <= step)


# The exp of the sweeps over 16-bit logits (Exp2F32 in exp_constants.hpp):
# relative error at most 2.5e-7 plus |x| * 1.45e-8 (log2e rounded to float);
# the portable build uses the accurate exp for it.
def fast_exp_bound(x):
    return 2.5e-7 + 1.45e-8 * np.abs(x.astype(np.longdouble))


def test_fast_exp_relative_error(isa):
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(-87.3, 0.0, 400_000), rng.uniform(-1.0, 0.0, 100_000),
                        rng.uniform(0.0, 64.0, 50_000)]).astype(np.float32)
    exact = np.exp(x.astype(np.longdouble))
    rel = np.abs(_core.vector_exp(x, fast=True).astype(np.longdouble) / exact - 1)
    assert np.all(rel <= fast_exp_bound(x)), f"{isa}: max relative error {float(rel.max()):.3g}"
    near_max = (x >= -1.0) & (x <= 0.0)  # the terms that dominate a row's sum: a few ulp
    assert rel[near_max].max() <= 2.5e-7


def test_fast_exp_special_values_and_underflow(isa):
    x = np.array([-np.inf, 0.0, -0.0, np.nan, -1e4, 1.0, -1.0], dtype=np.float32)
    y = _core.vector_exp(x, fast=True)
    assert y[0] == 0.0 and y[4] == 0.0  # exactly 0 far below the range
    assert y[1] == 1.0 and y[2] == 1.0  # exactly 1 at 0: a row's largest term
    assert np.isnan(y[3])
    np.testing.assert_allclose(y[5:], np.exp(x[5:].astype(np.float64)), rtol=3e-7)
    sub = np.linspace(-103.5, -87.5, 1001).astype(np.float32)
    exact = np.exp(sub.astype(np.longdouble))
    got = _core.vector_exp(sub, fast=True).astype(np.longdouble)
    step = np.longdouble(np.finfo(np.float32).smallest_subnormal)
    assert np.all(np.abs(got - exact) <= fast_exp_bound(sub) * exact + step)


def test_fast_exp_takes_float32_only():
    with pytest.raises(TypeError, match="float32"):
        _core.vector_exp(np.zeros(4), fast=True)
