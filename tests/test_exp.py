"""The kernels' vectorised exps: accuracy in ulp, and their special values, per ISA.

The kernels only ever call exp on x - shift <= 0 (and, rarely, up to 64 above
a block's shift), so the documented range is [-87.3, 0] for float32 and
[-708, 0] for float64; the checks also cover the subnormal range and overflow.
The row sweeps use their own exp (``vector_exp(x, sweep=True)``; on AVX-512 and
AVX2 a table-driven one), defined for x <= 88 only, which may give 0 for
results below 2**-126.
"""

import numpy as np
import pytest

from pyce import _core

# Run once per forced ISA by .ci/run (pytest -m kernels).
pytestmark = pytest.mark.kernels


@pytest.fixture
def isa(each_isa):
    """The ISA whose exp is measured (conftest's each_isa dispatches it)."""
    return each_isa


def ulp_error(got, exact, dtype):
    """|got - exact| in units of the last place of the (rounded) exact value."""
    rounded = exact.astype(dtype)
    return np.abs(got.astype(np.longdouble) - exact) / np.spacing(np.abs(rounded)).astype(np.longdouble)


# With FMA (avx2, avx512) the polynomial is evaluated with one rounding per
# step; the portable baseline rounds the product and the sum separately.
MAX_ULP = {"avx512": 1.0, "avx2": 1.0, "baseline": 1.5}


def test_float32_ulp(isa):
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [rng.uniform(-87.3, 0.0, 400_000), rng.uniform(-1.0, 0.0, 100_000), rng.uniform(0.0, 64.0, 50_000)]
    ).astype(np.float32)
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


def test_sweep_exp_float32_ulp(isa):
    rng = np.random.default_rng(2)
    x = np.concatenate(
        [
            rng.uniform(-87.3, 0.0, 400_000),
            rng.uniform(-1.0, 0.0, 100_000),
            rng.uniform(0.0, 88.0, 50_000),
            # the table's nodes k ln2/16, and the points halfway between (largest |r|)
            -np.arange(0, 4030) * np.log(2) / 32,
            np.arange(0, 4062) * np.log(2) / 32,
            np.float32([-87.3, 0.0, 64.0, 88.0]),
        ]
    ).astype(np.float32)
    exact = np.exp(x.astype(np.longdouble))
    err = ulp_error(_core.vector_exp(x, sweep=True), exact, np.float32)
    assert err.max() <= MAX_ULP[isa], f"{isa}: max error {float(err.max()):.3f} ulp"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sweep_exp_special_values(isa, dtype):
    x = np.array([-np.inf, 0.0, -0.0, np.nan, -1e4, -1e30, 1.0, -1.0], dtype=dtype)
    y = _core.vector_exp(x, sweep=True)
    assert y[0] == 0.0 and y[4] == 0.0 and y[5] == 0.0  # exactly 0 far below, and at -inf
    assert y[1] == 1.0 and y[2] == 1.0
    assert np.isnan(y[3])  # nan propagates
    np.testing.assert_allclose(y[6:], np.exp(x[6:].astype(np.float64)), rtol=2 * np.finfo(dtype).eps)


def test_sweep_exp_below_the_normal_range(isa):
    # Below 2**-126 (the smallest normal float) the sweep exp may give 0
    # instead of a subnormal (AVX-512, AVX2): never further from the exact value
    # than 2**-126 (and a whisker: its cut-off, exp(-87.3365), sits just above).
    x = np.concatenate([np.linspace(-110.0, -87.3, 2001), np.float32(-87.3365) + np.arange(-20, 20) * 7.6e-6])
    x = x.astype(np.float32)
    exact = np.exp(x.astype(np.longdouble))
    got = _core.vector_exp(x, sweep=True).astype(np.longdouble)
    assert np.all(got >= 0)
    assert np.all(np.abs(got - exact) <= np.longdouble(np.finfo(np.float32).tiny) * (1 + 1e-4))
    # In the normal range it keeps its ulp bound (test_sweep_exp_float32_ulp).
    normal = x >= -87.3
    assert np.all(ulp_error(got[normal].astype(np.float32), exact[normal], np.float32) <= MAX_ULP[isa])
