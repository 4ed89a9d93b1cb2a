"""The plain-call shortcut (pyce/_plain_call.py): bitwise the general path, and
every call it must decline left to the general checks.

Tolerances (see _helpers): float64 rtol 1e-12 (atol 1e-14 x the logits'
magnitude); float32 losses rtol 2e-6 against the reference evaluated on the
same float32 numbers, gradients and probabilities atol 1e-6 rtol 1e-5.
"""

import numpy as np
import pytest

import pyce

from _helpers import (
    HALF_DTYPES,
)

# Run once per forced ISA by .ci/run (pytest -m kernels).
pytestmark = pytest.mark.kernels

ref = pyce.reference


PLAIN_DTYPES = {"float32": np.float32, "float64": np.float64, **HALF_DTYPES}


def _general(**kw):
    """Options that force the general path: a default of another type than the
    shortcut takes (see _plain_call.only_defaults)."""
    return dict(kw, label_smoothing=np.float64(0.0))


@pytest.mark.parametrize("dtype", list(PLAIN_DTYPES), ids=list(PLAIN_DTYPES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_plain_call_shortcut_matches_general_path(dtype, reduction):
    """The plain call's shortcut (_plain_call.plain_forward / plain_with_grad) gives
    bitwise what the general path gives, for every entry point: the forward, the
    fused pass into a new array, into out= and in place, and the backward."""
    from pyce import _plain_call as api

    dtype = PLAIN_DTYPES[dtype]
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((64, 1000)) * 3).astype(dtype)
    t = rng.integers(0, 1000, 64)
    t[3] = -100
    assert api.plain_forward(x, t, -1, -100, reduction) is not None
    assert api.plain_with_grad(x, t, -1, -100, reduction) is not None

    def same(fast, general):
        assert type(fast) is type(general) and fast.dtype == general.dtype
        assert fast.shape == general.shape
        np.testing.assert_array_equal(fast, general)

    same(
        pyce.cross_entropy(x, t, reduction=reduction),
        pyce.cross_entropy(x, t, **_general(reduction=reduction)),
    )
    loss, grad = pyce.cross_entropy_with_grad(x, t, **_general(reduction=reduction))
    assert grad.dtype == dtype
    fast_loss, fast_grad = pyce.cross_entropy_with_grad(x, t, reduction=reduction)
    same(fast_loss, loss)
    same(fast_grad, grad)
    out = np.full_like(x, np.nan)
    fast_loss, fast_grad = pyce.cross_entropy_with_grad(x, t, reduction=reduction, out=out)
    assert fast_grad is out
    same(fast_loss, loss)
    same(out, grad)
    buf = x.copy()
    fast_loss, fast_grad = pyce.cross_entropy_with_grad(buf, t, reduction=reduction, inplace=True)
    assert fast_grad is buf
    same(fast_loss, loss)
    same(buf, grad)
    for g in (1.0, 2.5, 3):
        general = pyce.cross_entropy_backward(x, t, g, **_general(reduction=reduction))
        same(pyce.cross_entropy_backward(x, t, g, reduction=reduction), general)
        out = np.full_like(x, np.nan)
        assert pyce.cross_entropy_backward(x, t, g, reduction=reduction, out=out) is out
        same(out, general)
    # And the shortcut is right, not only consistent.
    ref_loss, ref_grad = ref.cross_entropy_with_grad(x.astype(np.float64), t, reduction=reduction)
    half = dtype not in (np.float32, np.float64)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-3 if half else 2e-6)
    np.testing.assert_allclose(
        grad.astype(np.float64), ref_grad, rtol=1e-2 if half else 1e-5, atol=1e-4 if half else 1e-7
    )


def test_plain_call_shortcut_declines_other_calls():
    from pyce import _plain_call as api

    x = np.zeros((4, 5), np.float32)
    t = np.zeros(4, np.int64)
    assert api.plain_with_grad(x.tolist(), t, -1, -100, "mean") is None  # not an ndarray
    assert api.plain_with_grad(x, t.astype(np.int32), -1, -100, "mean") is None
    assert api.plain_with_grad(x[None], t[None], -1, -100, "mean") is None  # 3-D
    assert api.plain_with_grad(x[:, ::2], t, -1, -100, "mean") is None  # not contiguous
    assert api.plain_with_grad(x, t, 0, -100, "mean") is None  # classes on axis 0
    assert api.plain_with_grad(x, t, 1.0, -100, "mean") is None  # not an int: the general check
    assert api.plain_with_grad(x, t, np.array([1]), -100, "mean") is None
    for bad_axis in (1.0, np.array([1])):
        with pytest.raises(TypeError, match="axis must be an integer"):
            pyce.cross_entropy_with_grad(x, t, axis=bad_axis)
    assert api.plain_with_grad(x, t[:3], -1, -100, "mean") is None  # wrong target shape
    assert api.plain_with_grad(x, t, -1, -100, "avg") is None  # left to the general check
    with pytest.raises(ValueError, match="reduction must be one of"):
        pyce.cross_entropy_with_grad(x, t, reduction="avg")
    assert api.plain_forward(x.astype(np.int32), t, -1, -100, "mean") is None
    with pytest.raises(TypeError, match="floating-point"):
        pyce.cross_entropy(x.astype(np.int32), t)
    # A grad_output that is not a plain number (an array, a bool) takes the general path.
    assert api.plain_with_grad(x, t, -1, -100, "mean", grad_output=np.float64(2.0)) is None
    assert api.plain_with_grad(x, t, -1, -100, "mean", grad_output=True) is None
    with pytest.raises(ValueError, match="grad_output must be a scalar"):
        pyce.cross_entropy_backward(x, t, np.ones(4))


def test_plain_call_shortcut_leaves_doubtful_outputs_to_the_general_checks():
    """out= and inplace=True go straight to the kernel only when plainly right;
    anything else reaches the general path, which raises its errors (or, for a
    float32 gradient of 16-bit logits, takes the buffer)."""
    from pyce import _plain_call as api

    x = np.random.default_rng(3).standard_normal((4, 6)).astype(np.float32)
    t = np.array([0, 5, 2, -100])

    def declined(**kw):
        return api.plain_with_grad(x, t, -1, -100, "mean", **kw) is None

    read_only = np.zeros_like(x)
    read_only.flags.writeable = False
    assert declined(out=read_only)
    with pytest.raises(ValueError, match="out is read-only"):
        pyce.cross_entropy_with_grad(x, t, out=read_only)
    assert declined(out=np.zeros((4, 7), np.float32))
    with pytest.raises(ValueError, match="out must have the logits' shape"):
        pyce.cross_entropy_with_grad(x, t, out=np.zeros((4, 7), np.float32))
    assert declined(out=np.zeros((6, 4), np.float32).T)
    with pytest.raises(ValueError, match="C-contiguous"):
        pyce.cross_entropy_with_grad(x, t, out=np.zeros((6, 4), np.float32).T)
    assert declined(out=np.zeros_like(x, dtype=np.float64))
    with pytest.raises(ValueError, match="grad_dtype must be"):
        pyce.cross_entropy_with_grad(x, t, out=np.zeros_like(x, dtype=np.float64))
    assert declined(out=x)  # overlaps the logits
    with pytest.raises(ValueError, match="must not overlap"):
        pyce.cross_entropy_with_grad(x, t, out=x)
    assert declined(out=x.tolist())
    with pytest.raises(TypeError, match="out must be a NumPy array"):
        pyce.cross_entropy_with_grad(x, t, out=x.tolist())
    # Two halves of one buffer do not overlap (for contiguous arrays the bounds
    # check is exact): the shortcut takes them.
    both = np.zeros((8, 6), np.float32)
    both[:4] = x
    assert api.plain_with_grad(both[:4], t, -1, -100, "mean", out=both[4:]) is not None
    np.testing.assert_array_equal(both[4:], pyce.cross_entropy_with_grad(x, t)[1])
    np.testing.assert_array_equal(both[:4], x)
    # In place on a read-only array: the general path's error.
    frozen = x.copy()
    frozen.flags.writeable = False
    assert api.plain_with_grad(frozen, t, -1, -100, "mean", inplace=True) is None
    with pytest.raises(ValueError, match="writeable"):
        pyce.cross_entropy_with_grad(frozen, t, inplace=True)
    with pytest.raises(ValueError, match="either inplace=True or out="):
        pyce.cross_entropy_with_grad(x.copy(), t, inplace=True, out=np.zeros_like(x))
    if "bfloat16" in HALF_DTYPES:
        # A float32 gradient for 16-bit logits is the general path's to take.
        h = x.astype(HALF_DTYPES["bfloat16"])
        out = np.zeros_like(x)
        assert api.plain_with_grad(h, t, -1, -100, "mean", out=out) is None
        _, grad = pyce.cross_entropy_with_grad(h, t, out=out)
        assert grad is out and grad.dtype == np.float32
