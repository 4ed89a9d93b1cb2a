"""pyce against ``torch.nn.functional.cross_entropy`` (forward, and backward via autograd).

Skipped as a whole when PyTorch is not installed.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
# Tiny problems: torch's own thread pool would only compete with pyce's OpenMP threads.
torch.set_num_threads(1)

import pyce  # noqa: E402

from _helpers import EPS32, assert_close, loss_shape_of, make_problem, torch_cross_entropy  # noqa: E402

# Run once per forced ISA by .ci/run (pytest -m kernels).
pytestmark = pytest.mark.kernels

LAYOUTS = {
    "nc": ((8, 11), -1),
    "btv": ((2, 3, 37), -1),
    "nchw-axis1": ((2, 5, 3, 4), 1),
    "unbatched": ((17,), -1),
    "big-vocab": ((2, 4099), -1),
}


def _tol(dtype, scale):
    """Both sides round: twice the reference tolerance (float32 losses are reduced by
    torch in float32, so 'sum' over rows carries its rounding too)."""
    if np.dtype(dtype) == np.float64:
        return {"rtol": 1e-12, "atol": 1e-14 * scale}, {"rtol": 1e-12, "atol": 1e-14 * scale}
    return ({"rtol": 4e-6, "atol": 8 * EPS32 * scale}, {"rtol": 2e-5, "atol": 2e-6})


def _cases():
    for layout, weight, ignore, smoothing, soft, dtype in itertools.product(
        LAYOUTS, [False, True], [False, True], [0.0, 0.15], [False, True], [np.float32, np.float64]
    ):
        if soft and ignore:
            continue  # ignore_index does not apply to probability targets
        yield pytest.param(
            layout,
            weight,
            ignore,
            smoothing,
            soft,
            dtype,
            id=f"{layout}-w{int(weight)}-i{int(ignore)}-s{smoothing}-soft{int(soft)}-{np.dtype(dtype).name}",
        )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout,weight,ignore,smoothing,soft,dtype", list(_cases()))
def test_matches_torch(layout, weight, ignore, smoothing, soft, dtype, reduction):
    shape, axis = LAYOUTS[layout]
    rng = np.random.default_rng(zlib.crc32(repr((layout, weight, ignore, smoothing, soft)).encode()))
    logits, target, kw = make_problem(
        rng, shape, axis=axis, dtype=dtype, weight=weight, ignore=ignore, smoothing=smoothing, soft=soft
    )
    g = rng.standard_normal(loss_shape_of(logits, axis)) if reduction == "none" else 1.0
    loss_t, grad_t = torch_cross_entropy(torch, logits, target, g, reduction=reduction, **kw)
    ltol, gtol = _tol(dtype, 1 + np.abs(logits).max())

    loss = pyce.cross_entropy(logits, target, reduction=reduction, **kw)
    assert_close(loss, loss_t, **ltol)
    assert np.shape(loss) == np.shape(loss_t)
    assert np.asarray(loss).dtype == loss_t.dtype

    grad = pyce.cross_entropy_backward(logits, target, g, reduction=reduction, **kw)
    assert_close(grad, grad_t, **gtol)
    assert grad.dtype == grad_t.dtype

    fused_loss, fused_grad = pyce.cross_entropy_with_grad(logits, target, reduction=reduction, **kw)
    _, grad_t1 = torch_cross_entropy(torch, logits, target, reduction=reduction, **kw)
    assert_close(fused_loss, loss_t, **ltol)
    assert_close(fused_grad, grad_t1, **gtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_extremes_match_torch(reduction, smoothing, dtype):
    """+-inf, nan (in rows that are not ignored), huge magnitudes, as PyTorch."""
    x = np.array(
        [
            [0.0, 1.0, 2.0, 3.0, -1.0],
            [np.nan, 1.0, 2.0, 3.0, 0.0],
            [1.0, 2.0, np.inf, 3.0, 0.0],
            [-np.inf, 1.0, 2.0, 3.0, 0.0],
            [1.0, -np.inf, 2.0, 3.0, 0.0],
            [1e4, 1e4 - 2, 1e4 + 1, 1e4, 1e4 - 5],
            [85.0, 88.0, 89.5, 80.0, 86.0],
            [-np.inf, -np.inf, 0.0, -np.inf, -np.inf],
        ]
    ).astype(dtype)
    target = np.array([1, 2, 0, 2, 1, 3, 2, 2])
    weight = np.array([1.0, 0.5, 2.0, 1.5, 1.0], dtype=dtype)
    g = np.linspace(0.5, 2.0, len(target)) if reduction == "none" else 1.0
    for w in (None, weight):
        loss_t, grad_t = torch_cross_entropy(
            torch, x, target, g, reduction=reduction, weight=w, label_smoothing=smoothing
        )
        ltol, gtol = _tol(dtype, 1e4)
        with np.errstate(all="ignore"):
            loss = pyce.cross_entropy(x, target, reduction=reduction, weight=w, label_smoothing=smoothing)
            grad = pyce.cross_entropy_backward(
                x, target, g, reduction=reduction, weight=w, label_smoothing=smoothing
            )
        assert_close(loss, loss_t, **ltol)
        assert_close(grad, grad_t, **gtol)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_ignored_and_empty_match_torch(reduction):
    for logits, target in [
        (np.ones((3, 4), np.float32), np.full(3, -100)),
        (np.zeros((0, 4), np.float32), np.zeros(0, dtype=np.int64)),
        (np.zeros((0, 4), np.float64), np.zeros((0, 4), np.float64)),
    ]:
        loss_t, grad_t = torch_cross_entropy(torch, logits, target, reduction=reduction)
        loss, grad = pyce.cross_entropy_with_grad(logits, target, reduction=reduction)
        assert_close(loss, loss_t, rtol=0, atol=0)
        assert_close(grad, grad_t, rtol=0, atol=0)


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalisers_match_torch(axis, dtype):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((4, 6, 35)) * 4).astype(dtype)
    x[0, 0, 0] = np.nan
    x[1, 1, 1] = np.inf
    x[2, 2, 2] = -np.inf
    xt = torch.tensor(x)
    scale = 1 + np.abs(x[np.isfinite(x)]).max()
    ltol, ptol = _tol(dtype, scale)
    assert_close(pyce.logsumexp(x, axis=axis), torch.logsumexp(xt, dim=axis).numpy(), **ltol)
    assert_close(pyce.softmax(x, axis=axis), torch.softmax(xt, dim=axis).numpy(), **ptol)
    assert_close(pyce.log_softmax(x, axis=axis), torch.log_softmax(xt, dim=axis).numpy(), **ltol)
