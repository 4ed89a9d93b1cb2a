"""logsumexp / softmax / log_softmax follow scipy.special's axis conventions (issue 14, item 14).

axis=None reduces over everything, a tuple of axes over all of them
together, and a 0-d input is one value (softmax of a scalar is 1.0). The
expected values are plain float64 NumPy.
"""

import numpy as np
import pytest

import pyce
from pyce._validation import AxisError

pytestmark = pytest.mark.kernels


def _lse(x, axis, keepdims=False):
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


AXES = [None, 0, 1, 2, -1, (0, 2), (2, 0), (1, 2), (0, 1, 2), ()]


@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_axes(axis, keepdims):
    x = np.random.default_rng(0).standard_normal((3, 4, 5))
    got = pyce.logsumexp(x, axis=axis, keepdims=keepdims)
    want = _lse(x, axis if axis != () else (), keepdims) if axis != () else x
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    assert np.shape(got) == np.shape(want)


@pytest.mark.parametrize("axis", AXES, ids=str)
def test_softmax_and_log_softmax_axes(axis):
    x = np.random.default_rng(1).standard_normal((3, 4, 5)).astype(np.float32)
    lse = _lse(x, axis, keepdims=True) if axis != () else x.astype(np.float64)
    np.testing.assert_allclose(pyce.log_softmax(x, axis=axis), x - lse, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(pyce.softmax(x, axis=axis), np.exp(x - lse), rtol=2e-6, atol=1e-7)
    assert pyce.softmax(x, axis=axis).shape == x.shape


def test_zero_d_inputs():
    assert pyce.softmax(np.float64(3.0)) == 1.0
    assert pyce.softmax(3.0, axis=None) == 1.0
    assert pyce.log_softmax(np.array(-2.5)) == 0.0
    assert pyce.logsumexp(np.array(2.0)) == 2.0
    assert pyce.logsumexp(2.0, axis=None) == 2.0
    assert np.shape(pyce.softmax(np.float32(1.0))) == ()


def test_bad_axes():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="repeated axis"):
        pyce.logsumexp(x, axis=(1, -1))
    with pytest.raises(AxisError):
        pyce.softmax(x, axis=(0, 2))
    with pytest.raises(AxisError):
        pyce.softmax(np.float64(1.0), axis=1)
    with pytest.raises(TypeError):
        pyce.logsumexp(x, axis=1.5)
