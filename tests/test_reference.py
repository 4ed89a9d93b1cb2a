"""The oracle itself: ``pyce.reference`` against PyTorch and against finite differences.

Everything else in the suite trusts the reference, so it is checked here on its
own terms (float64 throughout). It is plain NumPy: these tests also run from a
source checkout whose C++ core is not built.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

from _helpers import (
    assert_close,
    central_difference,
    load_reference,
    make_problem,
    torch_cross_entropy,
)

ref = load_reference()

TIGHT = {"rtol": 1e-12, "atol": 1e-13}


@pytest.fixture(scope="module")
def torch():
    module = pytest.importorskip("torch")
    module.set_num_threads(1)  # tiny problems: a thread pool only adds overhead
    return module


# ------------------------------------------------------------------ vs PyTorch

LAYOUTS = {
    "2d": ((6, 5), -1),
    "3d-btv": ((2, 3, 7), -1),
    "axis1-nchw": ((3, 4, 2, 3), 1),
    "axis0": ((5, 4), 0),
    "1d": ((6,), -1),
}


def _ref_case_ids():
    for layout, weight, ignore, smoothing, soft in itertools.product(
        LAYOUTS, [False, True], [False, True], [0.0, 0.2], [False, True]
    ):
        if soft and ignore:
            continue  # ignore_index does not apply to probability targets
        yield pytest.param(
            layout,
            weight,
            ignore,
            smoothing,
            soft,
            id=f"{layout}-w{int(weight)}-i{int(ignore)}-s{smoothing}-soft{int(soft)}",
        )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout,weight,ignore,smoothing,soft", list(_ref_case_ids()))
def test_reference_matches_torch(torch, layout, weight, ignore, smoothing, soft, reduction):
    shape, axis = LAYOUTS[layout]
    rng = np.random.default_rng(zlib.crc32(repr((layout, weight, ignore, smoothing, soft)).encode()))
    logits, target, kw = make_problem(
        rng, shape, axis=axis, weight=weight, ignore=ignore, smoothing=smoothing, soft=soft
    )
    ax = axis % logits.ndim
    loss_shape = logits.shape[:ax] + logits.shape[ax + 1 :]
    g = rng.standard_normal(loss_shape) if reduction == "none" else 1.7
    loss_t, grad_t = torch_cross_entropy(torch, logits, target, g, reduction=reduction, **kw)
    loss_r, grad_r = ref.cross_entropy_with_grad(logits, target, reduction=reduction, grad_output=g, **kw)
    assert_close(loss_r, loss_t, **TIGHT)
    assert_close(grad_r, grad_t, **TIGHT)
    # The three entry points of the reference agree with each other.
    assert_close(ref.cross_entropy(logits, target, reduction=reduction, **kw), loss_t, **TIGHT)
    assert_close(ref.cross_entropy_backward(logits, target, g, reduction=reduction, **kw), grad_t, **TIGHT)
    assert np.shape(loss_r) == np.shape(loss_t)


def test_reference_weighted_mean_divisor(torch):
    """Mean with weights divides by the sum of w[target] over the rows kept."""
    logits = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0], [0.0, 0.0, 0.0]])
    target = np.array([0, 2, -100])
    weight = np.array([0.5, 2.0, 3.0])
    per_row = ref.cross_entropy(logits, target, weight=weight, reduction="none")
    mean = ref.cross_entropy(logits, target, weight=weight)
    assert mean == pytest.approx(per_row.sum() / (0.5 + 3.0), rel=1e-14)
    loss_t, _ = torch_cross_entropy(torch, logits, target, weight=weight)
    assert mean == pytest.approx(float(loss_t), rel=1e-13)


def test_reference_extremes_match_torch(torch):
    """+-inf and nan rows (none of them ignored) as PyTorch."""
    logits = np.array(
        [
            [0.0, 1.0, 2.0, 3.0],
            [np.nan, 1.0, 2.0, 3.0],  # nan -> nan loss, nan gradient
            [np.inf, 1.0, 2.0, 3.0],  # +inf -> nan
            [-np.inf, 1.0, 2.0, 3.0],  # -inf non-target contributes 0
            [1.0, -np.inf, 2.0, 3.0],  # -inf target -> +inf loss
            [1e4, -1e4, 3e3, 1e4 - 1],  # large magnitudes
            [85.0, 88.0, 89.5, 80.0],  # float32 exp would overflow naively
        ]
    )
    target = np.array([1, 2, 0, 2, 1, 3, 2])
    for reduction, smoothing, weight in itertools.product(
        ["none", "sum", "mean"], [0.0, 0.1], [None, np.array([1.0, 0.5, 2.0, 1.5])]
    ):
        g = np.linspace(0.5, 2.0, len(target)) if reduction == "none" else 1.0
        loss_t, grad_t = torch_cross_entropy(
            torch, logits, target, g, reduction=reduction, weight=weight, label_smoothing=smoothing
        )
        loss_r, grad_r = ref.cross_entropy_with_grad(
            logits, target, reduction=reduction, weight=weight, label_smoothing=smoothing, grad_output=g
        )
        assert_close(loss_r, loss_t, **TIGHT, err_msg=f"{reduction} {smoothing} {weight}")
        assert_close(grad_r, grad_t, **TIGHT, err_msg=f"{reduction} {smoothing} {weight}")


def test_reference_extreme_rows_semantics():
    logits = np.array([[np.nan, 1.0, 2.0], [np.inf, 1.0, 2.0], [-np.inf, 1.0, 2.0], [1.0, -np.inf, 2.0]])
    target = np.array([1, 1, 1, 1])
    loss, grad = ref.cross_entropy_with_grad(logits, target, reduction="none")
    assert np.isnan(loss[0]) and np.isnan(loss[1])
    assert np.all(np.isnan(grad[:2]))
    assert np.isfinite(loss[2]) and loss[2] == pytest.approx(np.log1p(np.e), rel=1e-14)
    assert grad[2, 0] == 0.0 and np.all(np.isfinite(grad[2]))
    assert loss[3] == np.inf and np.all(np.isfinite(grad[3]))


def test_reference_ignored_rows_have_zero_gradient():
    """pyce's documented choice: an ignored row has no loss and a zero gradient, even
    when its logits are nan or +inf (PyTorch's autograd gives nan there)."""
    logits = np.array([[np.nan, 1.0, 2.0], [np.inf, 0.0, 0.0], [1.0, 2.0, 3.0]])
    target = np.array([-100, -100, 0])
    loss, grad = ref.cross_entropy_with_grad(logits, target, reduction="none")
    assert np.array_equal(loss[:2], [0.0, 0.0])
    assert np.array_equal(grad[:2], np.zeros((2, 3)))
    assert np.all(np.isfinite(grad[2]))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reference_all_ignored_and_empty(torch, reduction):
    for logits, target in [
        (np.ones((3, 4)), np.full(3, -100)),
        (np.zeros((0, 4)), np.zeros(0, dtype=np.int64)),
    ]:
        loss_t, grad_t = torch_cross_entropy(torch, logits, target, reduction=reduction)
        loss_r, grad_r = ref.cross_entropy_with_grad(logits, target, reduction=reduction)
        assert_close(loss_r, loss_t, **TIGHT)
        assert_close(grad_r, grad_t, **TIGHT)
        assert np.array_equal(grad_r, np.zeros_like(logits))


def test_reference_all_ignored_mean_is_nan_grad_zero():
    loss, grad = ref.cross_entropy_with_grad(np.ones((3, 4)), np.full(3, -100))
    assert np.isnan(loss)
    assert np.array_equal(grad, np.zeros((3, 4)))
    assert ref.cross_entropy(np.ones((3, 4)), np.full(3, -100), reduction="sum") == 0.0


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_reference_normalisers_match_torch(torch, axis):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 5, 6)) * 3
    x[0, 0, 0] = -np.inf
    x[1, 1, 1] = np.inf
    x[2, 2, 2] = np.nan
    x[3, :, :] = -np.inf if axis != 0 else x[3, :, :]
    xt = torch.tensor(x)
    assert_close(ref.logsumexp(x, axis=axis), torch.logsumexp(xt, dim=axis).numpy(), **TIGHT)
    assert_close(
        ref.logsumexp(x, axis=axis, keepdims=True),
        torch.logsumexp(xt, dim=axis, keepdim=True).numpy(),
        **TIGHT,
    )
    assert_close(ref.softmax(x, axis=axis), torch.softmax(xt, dim=axis).numpy(), **TIGHT)
    assert_close(ref.log_softmax(x, axis=axis), torch.log_softmax(xt, dim=axis).numpy(), **TIGHT)


def test_reference_normaliser_special_rows():
    x = np.array([[-np.inf, -np.inf], [np.inf, 1.0], [np.nan, 1.0], [1000.0, 1000.0]])
    lse = ref.logsumexp(x)
    assert lse[0] == -np.inf and lse[1] == np.inf and np.isnan(lse[2])
    assert lse[3] == pytest.approx(1000 + np.log(2), rel=1e-15)
    assert np.all(np.isnan(ref.softmax(x)[:3]))
    assert np.all(np.isnan(ref.log_softmax(x)[:3]))
    assert_close(ref.softmax(x)[3], [0.5, 0.5], **TIGHT)


# ------------------------------------------------------- vs finite differences

FD_CASES = {
    "plain": ({"shape": (3, 5)}, {}),
    "weight": ({"shape": (4, 5), "weight": True}, {}),
    "ignore": ({"shape": (5, 4), "ignore": True}, {}),
    "ignore-class0": ({"shape": (5, 4), "ignore": "class0"}, {}),
    "smooth": ({"shape": (3, 5), "smoothing": 0.3}, {}),
    "weight-ignore-smooth": ({"shape": (5, 4), "weight": True, "ignore": True, "smoothing": 0.2}, {}),
    "soft": ({"shape": (3, 5), "soft": True}, {}),
    "soft-weight-smooth": ({"shape": (3, 5), "soft": True, "weight": True, "smoothing": 0.2}, {}),
    "axis1": ({"shape": (2, 4, 3), "axis": 1, "weight": True, "smoothing": 0.1}, {}),
    "axis1-soft": ({"shape": (2, 4, 3), "axis": 1, "soft": True}, {}),
    "btv": ({"shape": (2, 2, 5), "ignore": True}, {}),
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", list(FD_CASES))
def test_reference_gradient_vs_finite_differences(case, reduction):
    make_kw, _ = FD_CASES[case]
    make_kw = dict(make_kw)
    shape = make_kw.pop("shape")
    rng = np.random.default_rng(sorted(FD_CASES).index(case))
    logits, target, kw = make_problem(rng, shape, **make_kw)
    if reduction == "none":
        ax = kw["axis"] % logits.ndim
        g = rng.standard_normal(logits.shape[:ax] + logits.shape[ax + 1 :])
    else:
        g = 0.7

    def f(z):
        return np.sum(g * ref.cross_entropy(z, target, reduction=reduction, **kw))

    fd = central_difference(f, logits, h=1e-5)
    grad = ref.cross_entropy_backward(logits, target, g, reduction=reduction, **kw)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    _, grad2 = ref.cross_entropy_with_grad(logits, target, reduction=reduction, grad_output=g, **kw)
    np.testing.assert_array_equal(grad, grad2)


def test_reference_logsumexp_gradient_is_softmax():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 6)) * 2
    fd = central_difference(lambda z: np.sum(ref.logsumexp(z, axis=1)), x)
    np.testing.assert_allclose(ref.softmax(x, axis=1), fd, rtol=1e-6, atol=1e-9)
    fd0 = central_difference(lambda z: np.sum(ref.logsumexp(z, axis=0)), x)
    np.testing.assert_allclose(ref.softmax(x, axis=0), fd0, rtol=1e-6, atol=1e-9)


def test_reference_returns_float64():
    logits = np.ones((2, 3), dtype=np.float32)
    target = np.array([0, 1])
    loss, grad = ref.cross_entropy_with_grad(logits, target)
    assert isinstance(loss, np.float64)
    assert grad.dtype == np.float64
    assert ref.softmax(logits).dtype == np.float64
