"""Large gradients streamed with non-temporal stores: bitwise against row slices,
few long rows on one thread, logits far above the sweep's shift.

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
    check_cross_entropy,
    loss_tol,
    option_problem,
    prob_tol,
    value_scale,
)
from _kernel_cases import _check_normalisers, _far_above_the_shift_rows  # noqa: I001

# Run once per forced ISA by .ci/run (pytest -m kernels).
pytestmark = pytest.mark.kernels

ref = pyce.reference


def _sliced_calls_match(x, t, kw, step, grad_output=None):
    """The whole call against calls on slices of ``step`` rows: bitwise the same
    losses and gradients, through cross_entropy_with_grad (new array, and out=
    one element past the allocation's alignment) and cross_entropy_backward."""
    rows = x.shape[0]
    loss, grad = pyce.cross_entropy_with_grad(x, t, reduction="none", **kw)
    for r0 in range(0, rows, step):
        tr = t[r0 : r0 + step]
        part_loss, part_grad = pyce.cross_entropy_with_grad(x[r0 : r0 + step], tr, reduction="none", **kw)
        np.testing.assert_array_equal(loss[r0 : r0 + step], part_loss)
        assert bitwise_equal(grad[r0 : r0 + step], part_grad)
    buffer = np.empty(x.size + 1, dtype=x.dtype)
    out = buffer[1:].reshape(x.shape)
    _, out_grad = pyce.cross_entropy_with_grad(x, t, reduction="none", out=out, **kw)
    assert out_grad is out and bitwise_equal(out, grad)
    if grad_output is not None:
        back = pyce.cross_entropy_backward(x, t, grad_output, reduction="none", **kw)
        for r0 in range(0, rows, step):
            part = pyce.cross_entropy_backward(
                x[r0 : r0 + step], t[r0 : r0 + step], grad_output[r0 : r0 + step], reduction="none", **kw
            )
            assert bitwise_equal(back[r0 : r0 + step], part)
    return loss, grad


@pytest.mark.parametrize("option", ["plain", "weight-ignore-smooth", "soft-weight-smooth"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wide_gradient_streamed(dtype, option):
    """A float32/float64 gradient of 16 MiB or more (not in place) is written
    with non-temporal stores, its exps kept in a scratch row meanwhile. Rows are
    independent, so it must give bitwise what calls on slices of rows give
    (written with ordinary stores), also into out= off the line boundary. An
    odd row length puts every row's start at a different offset within a line."""
    rng = np.random.default_rng(41)
    rows = (18 << 20) // (7919 * np.dtype(dtype).itemsize)  # just over 16 MiB of gradient
    x, t, kw = option_problem(rng, (rows, 7919), option, dtype)
    g = rng.random(rows) + 0.5
    loss, grad = _sliced_calls_match(x, t, kw, 128, grad_output=g)
    inplace = x.copy()
    _, in_grad = pyce.cross_entropy_with_grad(inplace, t, reduction="none", inplace=True, **kw)
    assert bitwise_equal(in_grad, grad)
    ref_loss, ref_grad = ref.cross_entropy_with_grad(
        x[:40].astype(np.float64), t[:40], reduction="none", **kw
    )
    assert_close(loss[:40], ref_loss, **loss_tol(dtype, value_scale(x)))
    assert_close(grad[:40], ref_grad, **prob_tol(dtype, 2.0))


def test_wide_gradient_streamed_few_rows_one_thread():
    """On one thread even a few long rows stream their float32 gradient (a
    scratch row per thread; with more threads few rows share their blocks
    out and are not streamed): bitwise the rows' own calls, into out= too."""
    rng = np.random.default_rng(42)
    x, t, kw = option_problem(rng, (3, 1_500_001), "plain", np.float32)  # 18 MB of gradient
    before = pyce.get_num_threads()
    try:
        for threads in (1, before):
            pyce.set_num_threads(threads)
            _sliced_calls_match(x, t, kw, 1)
    finally:
        pyce.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logits_far_above_the_shift(dtype):
    x, target = _far_above_the_shift_rows(dtype)
    for reduction, kw in [("none", {}), ("sum", {"label_smoothing": 0.1})]:
        with np.errstate(all="ignore"):
            check_cross_entropy(pyce, ref, x, target, reduction, **kw)
    with np.errstate(all="ignore"):
        _check_normalisers(x)
