"""The class axis where it is (not innermost): PyTorch's (N, C, d1, ...) and
NumPy's axis=0, computed by the strided-class kernels without a transposing
copy (csrc/kernels/strided_classes.cpp).

Against the float64 reference in float32 and float64, on every ISA; 16-bit
logits against the reference on the same numbers widened; extremes (nan,
+-inf, all -inf positions); bitwise the same for any thread count; non-
contiguous views; gradients in place and into out=. Shapes cover full and
partial vector groups and more classes than one class block (512).
"""

import numpy as np
import pytest

import pyce
from pyce._validation import STRIDED_MIN_INNER

from _helpers import (
    DTYPES,
    assert_close,
    loss_tol,
    option_problem,
    prob_tol,
    same_for_every_thread_count,
    value_scale,
)
from _kernel_cases import _check_normalisers

pytestmark = pytest.mark.kernels

ref = pyce.reference

# (shape, axis): few classes in NCHW, axis 0 of a matrix, partial groups,
# more classes than one block (two passes for the outputs), one class.
STRIDED = {
    "nchw-21": ((2, 21, 6, 11), 1),
    "axis0": ((37, 70), 0),
    "axis0-partial": ((5, 16), 0),
    "middle-odd": ((3, 9, 131), 1),
    "blocks-700": ((700, 40), 0),
    "one-class": ((2, 1, 33), 1),
    "3d-axis0": ((6, 4, 8), 0),
    # More classes than a tile holds: the online sweep, in class blocks of 64
    # across a chunk's groups; several chunks of 1024 positions, a partial
    # one, a partial group, classes not a multiple of the block.
    "online-axis0": ((1100, 2100), 0),
    "online-nchw": ((2, 1030, 3, 25), 1),
}
ISA_SUBSET = ["nchw-21", "blocks-700", "axis0-partial", "online-nchw"]


def _assert_strided_path(x, axis):
    """The shape really takes the strided kernels (not the transposing path)."""
    axis %= x.ndim
    assert int(np.prod(x.shape[axis + 1 :])) >= STRIDED_MIN_INNER


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(STRIDED))
def test_normalisers_strided_match_reference(name, dtype):
    shape, axis = STRIDED[name]
    rng = np.random.default_rng(len(name))
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    _assert_strided_path(x, axis)
    _check_normalisers(x, axis=axis)


@pytest.mark.parametrize("name", ISA_SUBSET)
def test_normalisers_strided_every_isa(each_isa, name):
    shape, axis = STRIDED[name]
    rng = np.random.default_rng(7)
    for dtype in DTYPES:
        _check_normalisers((rng.standard_normal(shape) * 4).astype(dtype), axis=axis)


def _half_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return [np.float16, ml_dtypes.bfloat16]


@pytest.mark.parametrize("name", ["nchw-21", "blocks-700", "axis0-partial", "online-axis0"])
def test_normalisers_strided_16bit(each_isa, name):
    shape, axis = STRIDED[name]
    rng = np.random.default_rng(3)
    for dtype in _half_dtypes():
        x = (rng.standard_normal(shape) * 3).astype(dtype)
        wide = x.astype(np.float64)
        lse = pyce.logsumexp(x, axis=axis)
        assert lse.dtype == np.float32
        assert_close(lse, ref.logsumexp(wide, axis=axis), **loss_tol(np.float32, value_scale(wide)))
        sm = pyce.softmax(x, axis=axis)
        assert sm.dtype == x.dtype
        # Rounded once to 16 bits from float32.
        expected = ref.softmax(wide, axis=axis).astype(x.dtype).astype(np.float64)
        np.testing.assert_allclose(sm.astype(np.float64), expected, rtol=1e-2, atol=1e-3)
        lsm = pyce.log_softmax(x, axis=axis)
        expected = ref.log_softmax(wide, axis=axis).astype(x.dtype).astype(np.float64)
        np.testing.assert_allclose(lsm.astype(np.float64), expected, rtol=1e-2, atol=2e-2)


def _extreme_columns(n_classes, positions, dtype):
    """(C, positions): each position is one column; some hold +-inf, nan, only -inf, huge values."""
    rng = np.random.default_rng(n_classes)
    x = rng.standard_normal((n_classes, positions))
    specials = [np.inf, -np.inf, np.nan]
    for j in range(positions):
        kind = j % 7
        if kind < 3:
            x[(j * 5) % n_classes, j] = specials[kind]
        elif kind == 3:
            x[:, j] = -np.inf
        elif kind == 4:
            x[:, j] += 1e4
        elif kind == 5:
            x[(j * 3) % n_classes, j] = np.inf
            x[(j * 3 + 1) % n_classes, j] = np.nan
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [1, 3, 21, 600, 1100])
def test_normalisers_strided_extremes(each_isa, n_classes, dtype):
    x = _extreme_columns(n_classes, 75, dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        _check_normalisers(x, axis=0)


OPTION_NAMES = ["plain", "weight", "ignore", "ignore-class0", "smooth", "smooth-1", "weight-ignore-smooth"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("option", OPTION_NAMES)
@pytest.mark.parametrize("name", ["nchw-21", "axis0", "blocks-700", "one-class", "online-nchw"])
def test_cross_entropy_strided_match_reference(name, option, dtype):
    shape, axis = STRIDED[name]
    rng = np.random.default_rng(11)
    logits, target, kw = option_problem(rng, shape, option, dtype, axis=axis)
    _assert_strided_path(logits, axis)
    scale = value_scale(logits)
    for reduction in ("mean", "sum", "none"):
        loss = pyce.cross_entropy(logits, target, reduction=reduction, **kw)
        assert_close(
            loss,
            ref.cross_entropy(logits, target, reduction=reduction, **kw),
            **loss_tol(dtype, scale),
            err_msg=f"loss {reduction}",
        )
        got_loss, grad = pyce.cross_entropy_with_grad(logits, target, reduction=reduction, **kw)
        exp_loss, exp_grad = ref.cross_entropy_with_grad(logits, target, reduction=reduction, **kw)
        assert grad.shape == logits.shape and grad.dtype == logits.dtype
        assert_close(got_loss, exp_loss, **loss_tol(dtype, scale), err_msg=f"fused loss {reduction}")
        assert_close(grad, exp_grad, **prob_tol(dtype, scale), err_msg=f"grad {reduction}")


@pytest.mark.parametrize("name", ISA_SUBSET)
def test_cross_entropy_strided_every_isa(each_isa, name):
    shape, axis = STRIDED[name]
    rng = np.random.default_rng(5)
    for dtype in DTYPES:
        for option in ("plain", "weight-ignore-smooth"):
            logits, target, kw = option_problem(rng, shape, option, dtype, axis=axis)
            loss, grad = pyce.cross_entropy_with_grad(logits, target, **kw)
            exp_loss, exp_grad = ref.cross_entropy_with_grad(logits, target, **kw)
            assert_close(loss, exp_loss, **loss_tol(dtype, value_scale(logits)))
            assert_close(grad, exp_grad, **prob_tol(dtype, value_scale(logits)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_strided_z_loss_lse_and_backward(dtype):
    shape, axis = STRIDED["nchw-21"]
    rng = np.random.default_rng(2)
    logits, target, kw = option_problem(rng, shape, "weight-ignore-smooth", dtype, axis=axis)
    scale = value_scale(logits)
    loss, lse = pyce.cross_entropy(logits, target, reduction="none", z_loss=1e-3, return_lse=True, **kw)
    exp = ref.cross_entropy(logits, target, reduction="none", z_loss=1e-3, **kw)
    assert_close(loss, exp, **loss_tol(dtype, scale))
    assert_close(lse, ref.logsumexp(logits, axis=axis), **loss_tol(dtype, scale))
    g_out = rng.standard_normal(target.shape)
    grad = pyce.cross_entropy_backward(logits, target, g_out, reduction="none", z_loss=1e-3, **kw)
    expected = ref.cross_entropy_backward(logits, target, g_out, reduction="none", z_loss=1e-3, **kw)
    assert_close(grad, expected, **prob_tol(dtype, scale * 4))


def test_cross_entropy_strided_extremes(each_isa):
    for dtype in DTYPES:
        x = _extreme_columns(21, 75, dtype)[None]  # (1, 21, 75): axis 1
        target = np.arange(75) % 21
        target[::5] = -100
        with np.errstate(invalid="ignore", over="ignore"):
            for reduction in ("none", "sum"):
                loss, grad = pyce.cross_entropy_with_grad(x, target[None], axis=1, reduction=reduction)
                exp_loss, exp_grad = ref.cross_entropy_with_grad(x, target[None], axis=1, reduction=reduction)
                assert_close(loss, exp_loss, **loss_tol(dtype, 1e4))
                assert_close(grad, exp_grad, **prob_tol(dtype, 1e4))


@pytest.mark.parametrize("name", ["nchw-21", "blocks-700", "online-nchw"])
def test_cross_entropy_strided_16bit(each_isa, name):
    shape, axis = STRIDED[name]
    rng = np.random.default_rng(9)
    for dtype in _half_dtypes():
        logits, target, kw = option_problem(rng, shape, "weight-ignore-smooth", np.float32, axis=axis)
        kw["weight"] = kw["weight"].astype(np.float32)
        x = logits.astype(dtype)
        wide = x.astype(np.float64)
        exp_loss, exp_grad = ref.cross_entropy_with_grad(wide, target, **kw)
        loss, grad = pyce.cross_entropy_with_grad(x, target, **kw)
        assert loss.dtype == np.float32 and grad.dtype == x.dtype
        assert_close(loss, exp_loss, **loss_tol(np.float32, value_scale(wide)))
        np.testing.assert_allclose(
            grad.astype(np.float64), exp_grad.astype(dtype).astype(np.float64), rtol=1e-2, atol=1e-4
        )
        loss32, grad32 = pyce.cross_entropy_with_grad(x, target, grad_dtype=np.float32, **kw)
        assert grad32.dtype == np.float32
        assert loss32 == loss
        assert_close(grad32, exp_grad, **prob_tol(np.float32, value_scale(wide)))
        # The 16-bit gradient is the float32 one rounded once.
        np.testing.assert_array_equal(grad.astype(np.float32), grad32.astype(dtype).astype(np.float32))


def test_strided_bitwise_for_every_thread_count():
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((4, 21, 40, 45)) * 3).astype(np.float32)  # above the threading threshold
    target = rng.integers(0, 21, size=(4, 40, 45))
    target[0, :3] = -100
    y = (rng.standard_normal((700, 300)) * 3).astype(np.float32)
    z = (rng.standard_normal((1100, 2100)) * 3).astype(np.float32)  # the online sweep
    tz = rng.integers(0, 1100, size=2100)

    def call():
        loss, grad = pyce.cross_entropy_with_grad(x, target, axis=1, label_smoothing=0.1, reduction="sum")
        losses = pyce.cross_entropy(x, target, axis=1, reduction="none")
        return (
            np.asarray(loss),
            grad,
            losses,
            pyce.logsumexp(y, axis=0),
            pyce.softmax(y, axis=0),
            pyce.log_softmax(x, axis=1),
            pyce.logsumexp(z, axis=0),
            pyce.softmax(z, axis=0),
            pyce.cross_entropy_with_grad(z, tz, axis=0, label_smoothing=0.1)[1],
        )

    same_for_every_thread_count(call)
    # More threads than chunks of 1024 positions (z has 3): the chunks are
    # split for them (parallel.hpp, positions_per_unit), the results not.
    same_for_every_thread_count(call, counts=(1, 2, 3, 16))


def test_strided_non_contiguous_views():
    rng = np.random.default_rng(6)
    base = (rng.standard_normal((3, 30, 20, 40)) * 2).astype(np.float32)
    view = base[:, ::2, :, 5:37]  # classes and positions strided, (3, 15, 20, 32)
    target = rng.integers(0, 15, size=(3, 20, 32))
    _check_normalisers(view, axis=1)
    loss, grad = pyce.cross_entropy_with_grad(view, target, axis=1)
    exp_loss, exp_grad = ref.cross_entropy_with_grad(view, target, axis=1)
    assert_close(loss, exp_loss, **loss_tol(np.float32, value_scale(view)))
    assert_close(grad, exp_grad, **prob_tol(np.float32, 1.0))
    # The class axis of a transposed matrix: axis 1 of a.T is contiguous rows of a.
    a = (rng.standard_normal((50, 64)) * 2).astype(np.float64)
    _check_normalisers(a.T, axis=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_strided_inplace_and_out(dtype):
    shape, axis = STRIDED["nchw-21"]
    rng = np.random.default_rng(8)
    logits, target, kw = option_problem(rng, shape, "weight-ignore-smooth", dtype, axis=axis)
    exp_loss, exp_grad = ref.cross_entropy_with_grad(logits, target, **kw)
    work = logits.copy()
    loss, grad = pyce.cross_entropy_with_grad(work, target, inplace=True, **kw)
    assert grad is work
    assert_close(loss, exp_loss, **loss_tol(dtype, value_scale(logits)))
    assert_close(work, exp_grad, **prob_tol(dtype, 1.0))
    out = np.empty_like(logits)
    loss2, grad2 = pyce.cross_entropy_with_grad(logits, target, out=out, **kw)
    assert grad2 is out and loss2 == loss
    np.testing.assert_array_equal(out, work)
    # More classes than a block, in place: every logit read before its gradient is written.
    big = (rng.standard_normal((700, 48)) * 2).astype(dtype)
    t = rng.integers(0, 700, size=48)
    exp_loss, exp_grad = ref.cross_entropy_with_grad(big, t, axis=0)
    loss, grad = pyce.cross_entropy_with_grad(big, t, axis=0, inplace=True)
    assert grad is big
    assert_close(loss, exp_loss, **loss_tol(dtype, 10.0))
    assert_close(big, exp_grad, **prob_tol(dtype, 1.0))


def test_inplace_strided_refuses_what_it_cannot_write():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((2, 5, 40)).astype(np.float32)
    soft = rng.random((2, 5, 40)).astype(np.float32)
    soft /= soft.sum(axis=1, keepdims=True)
    with pytest.raises(ValueError, match="class-index targets"):
        pyce.cross_entropy_with_grad(logits, soft, axis=1, inplace=True)
    with pytest.raises(ValueError, match="innermost"):
        pyce.cross_entropy_with_grad(
            rng.standard_normal((2, 5, 3)), np.zeros((2, 3), int), axis=1, inplace=True
        )
    # Probability targets and soft caps still work with the class axis in the middle (a copy).
    loss, grad = pyce.cross_entropy_with_grad(logits, soft, axis=1)
    exp_loss, exp_grad = ref.cross_entropy_with_grad(logits, soft, axis=1)
    assert_close(loss, exp_loss, **loss_tol(np.float32, 4.0))
    assert_close(grad, exp_grad, **prob_tol(np.float32, 1.0))


def test_strided_streamed_outputs_any_alignment():
    # Outputs of 16 MiB or more are streamed; an out= buffer off the line
    # boundary starts with a short group. Bitwise the same as an aligned one.
    rng = np.random.default_rng(12)
    x = (rng.standard_normal((2, 21, 256, 512)) * 2).astype(np.float32)  # 22 MB
    target = rng.integers(0, 21, size=(2, 256, 512))
    target[0, 0, :7] = -100
    loss, grad = pyce.cross_entropy_with_grad(x, target, axis=1)
    for shift in (1, 3, 8):
        buf = np.empty(x.size + 16, dtype=np.float32)
        out = buf[shift : shift + x.size].reshape(x.shape)
        loss2, grad2 = pyce.cross_entropy_with_grad(x, target, axis=1, out=out)
        assert grad2 is out and loss2 == loss
        np.testing.assert_array_equal(out, grad)
    exp_loss, exp_grad = ref.cross_entropy_with_grad(x, target, axis=1)
    assert_close(loss, exp_loss, **loss_tol(np.float32, value_scale(x)))
    assert_close(grad, exp_grad, **prob_tol(np.float32, 1.0))
    sm = pyce.softmax(x, axis=1)
    assert_close(sm[:, :, :3], ref.softmax(x[:, :, :3], axis=1), **prob_tol(np.float32, 1.0))
    # The online sweep (more classes than a tile) streams its blocks the same way.
    y = (rng.standard_normal((1100, 4096)) * 2).astype(np.float32)  # 18 MB, rows on lines
    ty = rng.integers(0, 1100, size=4096)
    loss, grad = pyce.cross_entropy_with_grad(y, ty, axis=0)
    for shift in (1, 5):
        buf = np.empty(y.size + 16, dtype=np.float32)
        out = buf[shift : shift + y.size].reshape(y.shape)
        loss2, grad2 = pyce.cross_entropy_with_grad(y, ty, axis=0, out=out)
        assert grad2 is out and loss2 == loss
        np.testing.assert_array_equal(out, grad)
    cols = slice(4000, 4096)
    exp_loss, exp_grad = ref.cross_entropy_with_grad(y[:, cols], ty[cols], axis=0, reduction="sum")
    assert_close(grad[:, cols] * ty.size, exp_grad, **prob_tol(np.float32, 1.0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 21, 70), (1500, 40)])  # the tile sweep, the online sweep
def test_strided_confident_positions_keep_relative_precision(each_isa, shape, dtype):
    # Small losses of confident positions (one logit far above the others)
    # keep ulp-scale relative error: log(ones) + log1p(rest / ones) per lane,
    # as the row kernels do (test_precision_near_zero.py), on both sweeps.
    rng = np.random.default_rng(13)
    axis = 1 if len(shape) == 3 else 0
    x = rng.standard_normal(shape)
    target = rng.integers(0, shape[axis], size=shape[:axis] + shape[axis + 1 :])
    gap = 20.0 if dtype == np.float32 else 30.0
    np.put_along_axis(
        x, np.expand_dims(target, axis), np.expand_dims(gap + rng.random(target.shape), axis), axis=axis
    )
    x = x.astype(dtype)
    x64 = x.astype(np.float64)
    top = np.take_along_axis(x64, np.expand_dims(target, axis), axis=axis)
    e = np.exp(x64 - top)
    np.put_along_axis(e, np.expand_dims(target, axis), 0.0, axis=axis)
    want = np.log1p(e.sum(axis=axis))
    eps = np.finfo(dtype).eps
    # As test_precision_near_zero: the exps' arguments x - max were rounded.
    ce_rtol = max(2e-6 if dtype == np.float32 else 1e-13, (gap + 1) * eps)
    loss = pyce.cross_entropy(x, target, axis=axis, reduction="none")
    np.testing.assert_allclose(loss, want, rtol=ce_rtol, atol=0)
    loss2, grad = pyce.cross_entropy_with_grad(x, target, axis=axis, reduction="none")
    np.testing.assert_array_equal(loss2, loss)
    np.testing.assert_allclose(grad.sum(axis=axis), 0.0, atol=10 * eps)
    lsm = np.take_along_axis(pyce.log_softmax(x, axis=axis), np.expand_dims(target, axis), axis=axis)
    np.testing.assert_allclose(np.squeeze(lsm, axis), -want, rtol=ce_rtol, atol=0)
