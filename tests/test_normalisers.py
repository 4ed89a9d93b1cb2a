"""logsumexp, softmax and log_softmax against the plain-NumPy reference: shapes,
other axes, non-contiguous views, extremes, empty inputs.

Tolerances (see _helpers): float64 rtol 1e-12 (atol 1e-14 x the logits'
magnitude); float32 losses rtol 2e-6 against the reference evaluated on the
same float32 numbers, gradients and probabilities atol 1e-6 rtol 1e-5.
"""

import numpy as np
import pytest

import pyce

from _helpers import (
    DTYPES,
    assert_close,
    bitwise_equal,
)
from _kernel_cases import SHAPES, _check_normalisers, _extreme_rows, _non_contiguous  # noqa: I001

# Run once per forced ISA by .ci/run (pytest -m kernels).
pytestmark = pytest.mark.kernels

ref = pyce.reference


# ---------------------------------------------------------------- normalisers


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", list(SHAPES.values()) + [(2, 256000)], ids=list(SHAPES) + ["2x256000"])
def test_normalisers_match_reference(shape, dtype):
    rng = np.random.default_rng(len(shape) * 1000 + shape[-1])
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    _check_normalisers(x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape,axis", [((5, 7), 0), ((3, 17, 4), 1), ((2, 3, 1000), -2), ((4, 5, 6), 0), ((33,), 0)]
)
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
