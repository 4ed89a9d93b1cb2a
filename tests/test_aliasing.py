"""An output may never overwrite an input the kernel still reads (issue 14, items 1-2).

Targets, weights, grad_output and soft targets that live inside ``out=`` (or
inside the logits with ``inplace=True``) are refused with a ValueError on
every path -- the general one and the plain-call shortcut -- and nothing is
written. An input that only *looks* related (a converted copy, or the same
buffer's other half) is fine.
"""

import numpy as np
import pytest

import pyce

pytestmark = pytest.mark.kernels

ROWS, C = 64, 8


def _target_view_of(buffer):
    """int64 class indices stored in the first bytes of ``buffer``."""
    t = buffer.reshape(-1).view(np.int64)[:ROWS]
    t[:] = np.arange(ROWS) % C
    return t


def _logits(dtype=np.float64):
    return np.random.default_rng(0).standard_normal((ROWS, C)).astype(dtype)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_target_inside_out_with_grad(reduction):
    # The reproducer of issue 14 item 1 (a SIGSEGV before the fix).
    out = np.zeros((ROWS, C))
    t = _target_view_of(out)
    before = out.copy()
    with pytest.raises(ValueError, match="target overlaps the gradient"):
        pyce.cross_entropy_with_grad(_logits(), t, out=out, reduction=reduction)
    np.testing.assert_array_equal(out, before)


def test_target_inside_out_backward():
    out = np.zeros((ROWS, C))
    t = _target_view_of(out)
    with pytest.raises(ValueError, match="target overlaps"):
        pyce.cross_entropy_backward(_logits(), t, out=out)
    # The general path too (an option the shortcut does not take).
    with pytest.raises(ValueError, match="target overlaps"):
        pyce.cross_entropy_backward(_logits(), t, out=out, label_smoothing=0.1)


@pytest.mark.parametrize("general", [False, True])
def test_target_inside_logits_inplace(general):
    x = _logits()
    t = _target_view_of(x)
    before = x.copy()
    options = {"label_smoothing": 0.1} if general else {}
    with pytest.raises(ValueError, match="target overlaps"):
        pyce.cross_entropy_with_grad(x, t, inplace=True, **options)
    np.testing.assert_array_equal(x, before)


def test_weight_inside_out():
    # Was silently wrong: loss 0.139 instead of 2.380.
    out = np.zeros((ROWS, C))
    w = out.reshape(-1)[ROWS * C - C :]
    w[:] = np.linspace(0.5, 2.0, C)
    with pytest.raises(ValueError, match="weight overlaps"):
        pyce.cross_entropy_with_grad(_logits(), np.arange(ROWS) % C, weight=w, out=out)


def test_weight_inside_logits_inplace():
    x = _logits()
    w = x[-1]  # the last row of the logits doubles as the weight
    w[:] = 1.0
    with pytest.raises(ValueError, match="weight overlaps"):
        pyce.cross_entropy_with_grad(x, np.arange(ROWS) % C, weight=w, inplace=True)


def test_grad_output_inside_out():
    out = np.zeros((ROWS, C))
    per_row = out.reshape(-1)[:ROWS]  # one value per row for reduction='none'
    per_row[:] = 1.0
    with pytest.raises(ValueError, match="grad_output overlaps"):
        pyce.cross_entropy_backward(_logits(), np.arange(ROWS) % C, per_row, reduction="none", out=out)
    scalar = out.reshape(-1)[:1].reshape(())
    with pytest.raises(ValueError, match="grad_output overlaps"):
        pyce.cross_entropy_backward(_logits(), np.arange(ROWS) % C, scalar, out=out)


def test_soft_target_is_the_logits_inplace():
    # Was silently wrong: 15.1 instead of 2.04.
    p = np.random.default_rng(1).dirichlet(np.ones(C), ROWS)
    with pytest.raises(ValueError, match="soft_target overlaps"):
        pyce.cross_entropy_with_grad(p, p, inplace=True)


def test_soft_target_inside_out():
    x = _logits()
    out = np.random.default_rng(1).dirichlet(np.ones(C), ROWS)
    with pytest.raises(ValueError, match="overlap"):
        pyce.cross_entropy_with_grad(x, out, out=out)


def test_converted_inputs_are_copies_and_fine():
    # An int32 target inside out is converted to a new int64 array first:
    # nothing the kernel reads overlaps the gradient, so the call is right.
    out = np.zeros((ROWS, C))
    t32 = out.reshape(-1).view(np.int32)[:ROWS]
    t32[:] = np.arange(ROWS) % C
    expected_t = t32.astype(np.int64)
    x = _logits()
    loss, grad = pyce.cross_entropy_with_grad(x, t32, out=out)
    ref_loss, ref_grad = pyce.cross_entropy_with_grad(x, expected_t)
    assert loss == ref_loss
    np.testing.assert_array_equal(grad, ref_grad)


def test_neighbouring_buffers_are_fine():
    # The gradient in one half of a buffer, the target in the other: apart.
    buf = np.zeros((2 * ROWS, C))
    out = buf[:ROWS]
    t = buf[ROWS:].reshape(-1).view(np.int64)[:ROWS]
    t[:] = np.arange(ROWS) % C
    x = _logits()
    loss, grad = pyce.cross_entropy_with_grad(x, t, out=out)
    ref_loss, ref_grad = pyce.cross_entropy_with_grad(x, t.copy())
    assert loss == ref_loss
    np.testing.assert_array_equal(out, ref_grad)
