"""z_loss and return_lse on the cross-entropy functions (LLM training options)."""

import numpy as np
import pytest

import pyce
from pyce import reference as ref

from _helpers import central_difference, same_for_every_thread_count

# Run once per forced ISA by .ci/run (pytest -m kernels).
pytestmark = pytest.mark.kernels

SHAPES = [(1, 1), (5, 17), (3, 4, 2049), (2, 70001)]


def _problem(shape, dtype, soft=False, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    if soft:
        p = rng.random(shape)
        return x, (p / p.sum(-1, keepdims=True)).astype(dtype)
    t = rng.integers(0, shape[-1], size=shape[:-1])
    if t.size > 1:
        t.reshape(-1)[0] = -100
    return x, t


@pytest.mark.parametrize("soft", [False, True], ids=["index", "soft"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_z_loss_matches_reference(shape, dtype, reduction, soft):
    x, t = _problem(shape, dtype, soft)
    kw = dict(reduction=reduction, z_loss=1e-3, label_smoothing=0.05, weight=np.linspace(0.5, 1.5, shape[-1]))
    loss, grad, lse = pyce.cross_entropy_with_grad(x, t, return_lse=True, **kw)
    r_loss, r_grad, r_lse = ref.cross_entropy_with_grad(x, t, return_lse=True, **kw)
    rtol, atol = (1e-12, 1e-13) if dtype == np.float64 else (2e-6, 2e-6)
    np.testing.assert_allclose(loss, r_loss, rtol=rtol, atol=atol)
    np.testing.assert_allclose(lse, r_lse, rtol=rtol, atol=atol)
    np.testing.assert_allclose(grad, r_grad, rtol=rtol * 5, atol=atol)
    assert lse.shape == np.shape(t)[: len(shape) - 1] and lse.dtype == dtype
    # The three entry points agree.
    only_loss, only_lse = pyce.cross_entropy(x, t, return_lse=True, **kw)
    np.testing.assert_array_equal(only_loss, loss)
    np.testing.assert_array_equal(only_lse, lse)
    back, back_lse = pyce.cross_entropy_backward(x, t, return_lse=True, **kw)
    np.testing.assert_array_equal(back, grad)
    np.testing.assert_array_equal(back_lse, lse)


def test_z_loss_adds_lse_squared():
    x, t = _problem((6, 300), np.float64, seed=3)
    t[:] = np.abs(t)  # no ignored rows
    plain = pyce.cross_entropy(x, t, reduction="none")
    with_z = pyce.cross_entropy(x, t, reduction="none", z_loss=0.01)
    np.testing.assert_allclose(with_z - plain, 0.01 * ref.logsumexp(x) ** 2, rtol=1e-12)


def test_z_loss_gradient_by_finite_differences():
    x, t = _problem((3, 7), np.float64, seed=4)
    kw = dict(z_loss=0.1, label_smoothing=0.1, reduction="sum")
    _, grad = pyce.cross_entropy_with_grad(x, t, **kw)
    fd = central_difference(lambda z: pyce.cross_entropy(z, t, **kw), x, h=1e-6)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_lse_of_ignored_rows_is_returned_and_their_gradient_is_zero():
    x = np.random.default_rng(5).standard_normal((4, 50))
    t = np.array([-100, 3, -100, 7])
    loss, grad, lse = pyce.cross_entropy_with_grad(x, t, reduction="none", return_lse=True, z_loss=0.5)
    np.testing.assert_allclose(lse, ref.logsumexp(x), rtol=1e-12)
    assert loss[0] == 0 and loss[2] == 0
    assert np.all(grad[[0, 2]] == 0)


def test_lse_for_16bit_logits_is_float32():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.random.default_rng(6).standard_normal((3, 100)).astype(ml_dtypes.bfloat16)
    _, lse = pyce.cross_entropy(x, np.array([1, 2, 3]), return_lse=True)
    assert lse.dtype == np.float32
    np.testing.assert_allclose(lse, ref.logsumexp(x.astype(np.float64)), rtol=2e-6)


def test_inplace_with_z_loss_and_lse():
    x, t = _problem((8, 3000), np.float32, seed=7)
    expected = pyce.cross_entropy_with_grad(x, t, z_loss=1e-4, return_lse=True)
    buf = x.copy()
    loss, grad, lse = pyce.cross_entropy_with_grad(buf, t, z_loss=1e-4, return_lse=True, inplace=True)
    assert grad is buf
    np.testing.assert_array_equal(loss, expected[0])
    np.testing.assert_array_equal(grad, expected[1])
    np.testing.assert_array_equal(lse, expected[2])


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_bad_z_loss(bad):
    with pytest.raises(ValueError, match="z_loss"):
        pyce.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), z_loss=bad)
    with pytest.raises(TypeError, match="z_loss"):
        pyce.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), z_loss="big")


# ----------------------------------------------------------------- softcap


@pytest.mark.parametrize("soft", [False, True], ids=["index", "soft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cap", [2.0, 30.0])
def test_softcap_matches_reference(cap, shape, dtype, soft):
    x, t = _problem(shape, dtype, soft, seed=8)
    x = x * 10  # reach the cap's saturated range too
    kw = dict(softcap=cap, label_smoothing=0.1, weight=np.linspace(0.5, 1.5, shape[-1]), z_loss=1e-3)
    for reduction in ("mean", "none"):
        loss, grad, lse = pyce.cross_entropy_with_grad(x, t, reduction=reduction, return_lse=True, **kw)
        r_loss, r_grad, r_lse = ref.cross_entropy_with_grad(x, t, reduction=reduction, return_lse=True, **kw)
        rtol, atol = (1e-12, 1e-13) if dtype == np.float64 else (4e-6, 4e-6)
        np.testing.assert_allclose(loss, r_loss, rtol=rtol, atol=atol)
        np.testing.assert_allclose(lse, r_lse, rtol=rtol, atol=atol)
        np.testing.assert_allclose(grad, r_grad, rtol=rtol * 5, atol=atol)


def test_softcap_bounds_the_logits():
    # With a cap c the capped logits lie in (-c, c): one huge logit cannot take
    # all the probability mass.
    x = np.array([[1e4, 0.0, 0.0]])
    loss = pyce.cross_entropy(x, np.array([1]), softcap=1.0)
    expected = np.log(np.exp(np.tanh(1e4)) + 2) - 0.0
    np.testing.assert_allclose(loss, expected, rtol=1e-12)


def test_softcap_gradient_by_finite_differences():
    x, t = _problem((3, 9), np.float64, seed=9)
    kw = dict(softcap=3.0, reduction="sum", label_smoothing=0.2)
    _, grad = pyce.cross_entropy_with_grad(x, t, **kw)
    fd = central_difference(lambda z: pyce.cross_entropy(z, t, **kw), x, h=1e-6)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_softcap_inplace_16bit_and_threads():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(10)
    x = (rng.standard_normal((3, 50001)) * 20).astype(ml_dtypes.bfloat16)
    t = rng.integers(0, 50001, 3)
    loss, grad = same_for_every_thread_count(
        lambda: pyce.cross_entropy_with_grad(x, t, softcap=15.0, reduction="none")
    )
    r_loss, r_grad = ref.cross_entropy_with_grad(x.astype(np.float64), t, softcap=15.0, reduction="none")
    np.testing.assert_allclose(loss, r_loss, rtol=2e-6)
    np.testing.assert_allclose(grad.astype(np.float64), r_grad, rtol=2.0**-7, atol=2.0**-21)
    buf = x.copy()
    in_loss, in_grad = pyce.cross_entropy_with_grad(buf, t, softcap=15.0, reduction="none", inplace=True)
    assert in_grad is buf
    np.testing.assert_array_equal(in_loss, loss)
    np.testing.assert_array_equal(in_grad.view(np.uint16), grad.view(np.uint16))


@pytest.mark.parametrize(
    "bad, error",
    [
        (0.0, ValueError),
        (-1.0, ValueError),
        (float("inf"), ValueError),
        (float("nan"), ValueError),
        ("x", TypeError),
    ],
)
def test_bad_softcap(bad, error):
    with pytest.raises(error, match="softcap"):
        pyce.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), softcap=bad)
