"""`out=`: writing the gradient into a caller's buffer (reused across calls)."""

import numpy as np
import pytest

import pyce
from pyce import reference as ref

# Run once per forced ISA by .ci/run (pytest -m kernels).
pytestmark = pytest.mark.kernels


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_out_receives_the_gradient(dtype, reduction):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 2, 3001)).astype(dtype)
    t = rng.integers(0, 3001, size=(6, 2))
    out = np.full_like(x, np.nan)
    loss, grad = pyce.cross_entropy_with_grad(x, t, reduction=reduction, label_smoothing=0.1, out=out)
    assert grad is out
    fresh_loss, fresh_grad = pyce.cross_entropy_with_grad(x, t, reduction=reduction, label_smoothing=0.1)
    np.testing.assert_array_equal(out, fresh_grad)
    np.testing.assert_array_equal(loss, fresh_loss)
    g_out = rng.random((6, 2)) if reduction == "none" else 0.25
    back = pyce.cross_entropy_backward(x, t, g_out, reduction=reduction, out=out)
    assert back is out
    _, expected = ref.cross_entropy_with_grad(x, t, reduction=reduction, grad_output=g_out)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)


def test_out_class_axis_1_with_unit_trailing_dims():
    x = np.random.default_rng(1).standard_normal((4, 7, 1))
    t = np.array([[0], [1], [6], [3]])
    out = np.empty_like(x)
    _, grad = pyce.cross_entropy_with_grad(x, t, axis=1, out=out)
    assert grad is out
    np.testing.assert_allclose(out, ref.cross_entropy_backward(x, t, axis=1), rtol=1e-12, atol=1e-15)


def test_out_float32_gradient_for_16bit_logits():
    x = np.random.default_rng(2).standard_normal((3, 50)).astype(np.float16)
    t = np.array([1, 2, 3])
    out = np.empty(x.shape, dtype=np.float32)
    _, grad = pyce.cross_entropy_with_grad(x, t, out=out)
    assert grad is out and grad.dtype == np.float32
    np.testing.assert_allclose(out, ref.cross_entropy_backward(x.astype(np.float64), t), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "make_out, message",
    [
        (lambda x: np.empty((3, 4)), "shape"),
        (lambda x: np.empty((3, 5), dtype=np.float64), "dtype"),
        (lambda x: np.empty((5, 3), dtype=np.float32).T, "C-contiguous"),
        (lambda x: x, "overlap"),
        (lambda x: x[:, :], "overlap"),
        (lambda x: np.broadcast_to(np.empty(5, np.float32), (3, 5)), "read-only|C-contiguous"),
    ],
)
def test_bad_out(make_out, message):
    x = np.zeros((3, 5), dtype=np.float32)
    t = np.array([0, 1, 2])
    with pytest.raises(ValueError, match=message):
        pyce.cross_entropy_with_grad(x, t, out=make_out(x))


def test_out_and_inplace_together_is_an_error():
    x = np.zeros((3, 5), dtype=np.float32)
    with pytest.raises(ValueError, match="inplace"):
        pyce.cross_entropy_with_grad(x, np.array([0, 1, 2]), inplace=True, out=np.empty_like(x))


def test_out_must_be_an_array():
    with pytest.raises(TypeError, match="NumPy array"):
        pyce.cross_entropy_backward(np.zeros((2, 3)), np.array([0, 1]), out=[[0.0] * 3] * 2)
