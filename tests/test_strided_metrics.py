"""evaluate, entropy, kl_divergence(_with_grad) and focal_loss(_with_grad) with
the class axis not innermost -- PyTorch's (N, C, d1, ...), NumPy's axis=0 --
without a transposing copy of the logits: below 128 classes with one position
per vector lane (evaluate_lanes.hpp, divergence_lanes.hpp, ClassLanes' focal
outputs), otherwise tile by tile on the row kernels
(csrc/kernels/strided_tiles.hpp).

Against the float64 reference, and bitwise against the same call on the array
with its class axis moved last (both layouts take the same lanes, or the
tiles run the row kernels on the same values); float32, float64, bfloat16,
float16; few and many classes (more than one block of the row kernels), odd
positions after the class axis, tiles that cross outer indices; ignore_index,
class alpha, temperatures; every ISA; bitwise the same for any thread count;
non-contiguous views; and no copy of the logits' size (tracemalloc).
"""

from __future__ import annotations

import tracemalloc
import zlib

import numpy as np
import pytest

import pyce
from pyce._validation import tiled_view
from pyce.metrics import evaluate_rows

from _helpers import EPS32, assert_close, bitwise_equal, load_reference, same_for_every_thread_count

pytestmark = pytest.mark.kernels

ref = load_reference()

# (shape, axis): every case takes the tiled path (tiled_view is not None).
CASES = {
    "nchw-21": ((2, 21, 5, 7), 1),  # 35 positions per image: odd
    "nchw-2": ((3, 2, 9, 13), 1),
    "axis0-1000": ((1000, 37), 0),
    "axis0-5000": ((5000, 19), 0),  # more classes than a block (2048) of the row kernels
    "nchw-1000": ((2, 1000, 3, 11), 1),
    "inner-3": ((5, 21, 3), 1),  # tiles spanning several outer indices
    "3d-axis0": ((6, 4, 8), 0),
    "one-class": ((2, 1, 33), 1),
}
ISA_SUBSET = ["nchw-21", "axis0-5000", "inner-3"]


def _half_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return [ml_dtypes.bfloat16, np.float16]


def problem(shape, axis, dtype, seed=0, scale=3.0):
    rng = np.random.default_rng(zlib.crc32(repr((shape, axis, np.dtype(dtype).name, seed)).encode()))
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    teacher = (rng.standard_normal(shape) * scale).astype(dtype)
    t_shape = shape[:axis] + shape[axis + 1 :]
    target = rng.integers(0, shape[axis], size=t_shape)
    mask = rng.random(t_shape) < 0.25
    mask.flat[0] = False
    target[mask] = -100
    alpha = rng.random(shape[axis]) + 0.25
    return x, teacher, target, alpha


def moved(a, axis):
    """The array with its class axis last, contiguous: the row kernels' layout."""
    return np.ascontiguousarray(np.moveaxis(a, axis, -1))


def outputs(x, teacher, target, alpha, axis, grad_dtype=None):
    """Every output of the four functions on x (class axis `axis`), gradients
    with their class axis moved last, as a dict of arrays."""
    g = {} if grad_dtype is None else {"grad_dtype": grad_dtype}
    out = {}
    loss, ent, max_prob, rank = evaluate_rows(x, target, axis=axis)
    out.update(eval_loss=loss, eval_entropy=ent, eval_max_prob=max_prob, eval_rank=rank)
    out["entropy"] = pyce.entropy(x, axis=axis)
    for reduction in ("batchmean", "none"):
        kw = dict(temperature=2.0, axis=axis, reduction=reduction)
        out[f"kl_{reduction}"] = pyce.kl_divergence(x, teacher, **kw)
        loss, grad = pyce.kl_divergence_with_grad(x, teacher, **kw, **g)
        out[f"kl_fused_{reduction}"], out[f"kl_grad_{reduction}"] = loss, moved(grad, axis)
    for reduction in ("mean", "none"):
        kw = dict(gamma=2.0, alpha=alpha, axis=axis, reduction=reduction)
        out[f"focal_{reduction}"] = pyce.focal_loss(x, target, **kw)
        loss, grad = pyce.focal_loss_with_grad(x, target, **kw, **g)
        out[f"focal_fused_{reduction}"], out[f"focal_grad_{reduction}"] = loss, moved(grad, axis)
    return {k: np.asarray(v) for k, v in out.items()}


def check_same_as_moved(x, teacher, target, alpha, axis, grad_dtype=None):
    """Bitwise the outputs of the same calls on the arrays with the class axis last."""
    assert tiled_view(x, axis) is not None
    got = outputs(x, teacher, target, alpha, axis, grad_dtype)
    want = outputs(moved(x, axis), moved(teacher, axis), target, alpha, -1, grad_dtype)
    for name, value in got.items():
        assert value.dtype == want[name].dtype and value.shape == want[name].shape, name
        assert bitwise_equal(value, want[name]), name
    return got


def tols(dtype, scale):
    if np.dtype(dtype) == np.float64:
        return dict(rtol=1e-11, atol=1e-13 * scale), dict(rtol=1e-11, atol=1e-14 * scale)
    return dict(rtol=2e-5, atol=16 * EPS32 * scale), dict(rtol=1e-5, atol=2e-6)


def check_reference(got, x, teacher, target, alpha, axis):
    wide, twide = x.astype(np.float64), teacher.astype(np.float64)
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float32
    scale = 1 + max(np.abs(wide).max(), np.abs(twide).max())
    ltol, gtol = tols(dtype, scale)
    # The fused passes' losses are the forward ones, bit for bit, for float32
    # and float64 logits (16-bit: within rounding, classes last as here).
    same_bits = x.dtype in (np.float32, np.float64)
    # evaluate's per-row numbers of the scored rows; the means against reference.evaluate.
    scored = target.reshape(-1) != -100
    result = pyce.evaluate(x, target, axis=axis, topk=(1, 2, 5))
    expected = ref.evaluate(wide, target, axis=axis, topk=(1, 2, 5))
    assert result.n_tokens == expected["n_tokens"] == np.count_nonzero(scored)
    assert result.accuracy == expected["accuracy"]
    for name in ("loss", "entropy"):
        assert_close(getattr(result, name), expected[name], **ltol, err_msg=name)
    assert_close(result.ece, expected["ece"], rtol=0, atol=1e-12 if dtype == np.float64 else 2e-6)
    assert_close(got["entropy"], ref.entropy(wide, axis=axis), **ltol, err_msg="entropy")
    for reduction in ("batchmean", "none"):
        kw = dict(temperature=2.0, axis=axis, reduction=reduction)
        exp_loss, exp_grad = ref.kl_divergence_with_grad(wide, twide, **kw)
        assert_close(got[f"kl_{reduction}"], exp_loss, **ltol, err_msg=f"kl {reduction}")
        if same_bits:
            assert bitwise_equal(got[f"kl_fused_{reduction}"], got[f"kl_{reduction}"])
        assert_close(got[f"kl_fused_{reduction}"], exp_loss, **ltol)
        assert_close(
            got[f"kl_grad_{reduction}"], moved(exp_grad, axis), **gtol, err_msg=f"kl grad {reduction}"
        )
    for reduction in ("mean", "none"):
        kw = dict(gamma=2.0, alpha=alpha, axis=axis, reduction=reduction)
        exp_loss, exp_grad = ref.focal_loss_with_grad(wide, target, **kw)
        assert_close(got[f"focal_{reduction}"], exp_loss, **ltol, err_msg=f"focal {reduction}")
        if same_bits:
            assert bitwise_equal(got[f"focal_fused_{reduction}"], got[f"focal_{reduction}"])
        assert_close(got[f"focal_fused_{reduction}"], exp_loss, **ltol)
        assert_close(
            got[f"focal_grad_{reduction}"], moved(exp_grad, axis), **gtol, err_msg=f"focal grad {reduction}"
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_reference_and_the_moved_layout(name, dtype):
    shape, axis = CASES[name]
    x, teacher, target, alpha = problem(shape, axis, dtype)
    got = check_same_as_moved(x, teacher, target, alpha, axis)
    check_reference(got, x, teacher, target, alpha, axis)


@pytest.mark.parametrize("name", ["nchw-21", "axis0-5000", "inner-3", "nchw-1000"])
def test_16bit_logits(name):
    shape, axis = CASES[name]
    for dtype in _half_dtypes():
        x, teacher, target, alpha = problem(shape, axis, dtype)
        got = check_same_as_moved(x, teacher, target, alpha, axis)
        assert got["entropy"].dtype == np.float32 and got["kl_grad_none"].dtype == x.dtype
        got32 = check_same_as_moved(x, teacher, target, alpha, axis, grad_dtype=np.float32)
        assert got32["focal_grad_mean"].dtype == np.float32
        # Against the reference on the same numbers widened: float32 gradients.
        check_reference(got32, x, teacher, target, alpha, axis)
        # The 16-bit gradient is the float32 one rounded once.
        for g in ("kl_grad_none", "focal_grad_mean"):
            rounded = got32[g].astype(x.dtype).astype(np.float32)
            np.testing.assert_array_equal(got[g].astype(np.float32), rounded)


@pytest.mark.parametrize("name", ISA_SUBSET)
def test_every_isa(each_isa, name):
    shape, axis = CASES[name]
    for dtype in [np.float32, np.float64] + _half_dtypes():
        x, teacher, target, alpha = problem(shape, axis, dtype, seed=1)
        got = check_same_as_moved(x, teacher, target, alpha, axis)
        if dtype in (np.float32, np.float64):
            check_reference(got, x, teacher, target, alpha, axis)


def test_special_values():
    # nan, +inf and all -inf positions give what the row kernels give.
    x, teacher, target, alpha = problem((2, 21, 40), 1, np.float32)
    x[0, 3, 0] = np.nan
    x[0, 5, 1] = np.inf
    x[0, :, 2] = -np.inf
    x[1, :, 3] += 1e4
    teacher[1, 2, 4] = np.nan
    with np.errstate(invalid="ignore", over="ignore"):
        check_same_as_moved(x, teacher, target, alpha, 1)


def test_bitwise_for_every_thread_count():
    # Above the threading threshold (2**17 elements), several tiles per image.
    x, teacher, target, alpha = problem((4, 21, 40, 45), 1, np.float32)
    y, ty, ttarget, talpha = problem((3000, 60), 0, np.float32)

    def call():
        a = outputs(x, teacher, target, alpha, 1)
        b = outputs(y, ty, ttarget, talpha, 0)
        return tuple(a.values()) + tuple(b.values())

    same_for_every_thread_count(call)


def test_non_contiguous_views():
    x, teacher, target, alpha = problem((3, 30, 20, 40), 1, np.float32)
    view, tview = x[:, ::2, :, 5:37], teacher[:, ::2, :, 5:37]  # (3, 15, 20, 32)
    t = np.clip(target[:, :, 5:37], -100, 14)
    assert not view.flags.c_contiguous
    got = check_same_as_moved(view, tview, t, alpha[::2], 1)
    check_reference(got, view, tview, t, alpha[::2], 1)
    # axis 0 of a transposed matrix: its classes are contiguous rows of the
    # matrix, taken as they are (no copy, no tiles).
    a, ta, tgt, al = problem((50, 64), 1, np.float64)
    assert tiled_view(a.T, 0) is None
    got = outputs(a.T, ta.T, tgt, al, 0)
    check_reference(got, a.T, ta.T, tgt, al, 0)
    want = outputs(a, ta, tgt, al, -1)
    assert all(bitwise_equal(got[k], want[k]) for k in got)


def _peak_bytes(call):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_no_copy_of_the_logits():
    # NumPy's allocations are traced: a transposing copy of the logits (or of
    # the teacher) would make the peak at least x.nbytes. The results are
    # per position (a few float64 each, C = 100 classes), the gradients x.nbytes.
    x, teacher, target, alpha = problem((2, 100, 32, 32), 1, np.float32)  # 800 KiB, under the output cache
    small, grad = x.nbytes // 4, x.nbytes + x.nbytes // 4
    calls = {
        "evaluate": (lambda: pyce.evaluate(x, target, axis=1), small),
        "entropy": (lambda: pyce.entropy(x, axis=1), small),
        "kl_divergence": (lambda: pyce.kl_divergence(x, teacher, axis=1), small),
        "focal_loss": (lambda: pyce.focal_loss(x, target, alpha=alpha, axis=1), small),
        "kl_divergence_with_grad": (lambda: pyce.kl_divergence_with_grad(x, teacher, axis=1), grad),
        "focal_loss_with_grad": (lambda: pyce.focal_loss_with_grad(x, target, axis=1), grad),
    }
    peaks = {name: _peak_bytes(call) for name, (call, _) in calls.items()}
    over = {name: peaks[name] for name, (_, limit) in calls.items() if peaks[name] > limit}
    assert not over, f"peak bytes {over} for logits of {x.nbytes} bytes"


@pytest.mark.parametrize(
    "shape, dtype",
    [
        ((2, 21, 256, 512), np.float32),  # class rows on line boundaries: streamed
        ((4, 21, 256, 512), "bfloat16"),  # 22 MB of bfloat16: streamed
        ((2, 21, 100003), np.float32),  # class rows off line boundaries: ordinary stores
    ],
)
def test_large_gradients_are_the_moved_layouts(each_isa, shape, dtype):
    # A strided gradient of at least 16 MiB is written with non-temporal
    # stores where its class rows start on cache lines (KL and focal lanes):
    # the same values as the moved layout's rows, which are never streamed.
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape, dtype=np.float32) * 3).astype(dtype)
    teacher = (rng.standard_normal(shape, dtype=np.float32) * 3).astype(dtype)
    target = rng.integers(0, shape[1], size=shape[:1] + shape[2:])
    target[..., ::9] = -100
    for fn, other in ((pyce.kl_divergence_with_grad, teacher), (pyce.focal_loss_with_grad, target)):
        loss, grad = fn(x, other, axis=1, reduction="none")
        moved_other = moved(other, 1) if other is teacher else other
        want_loss, want_grad = fn(moved(x, 1), moved_other, axis=-1, reduction="none")
        assert bitwise_equal(loss, want_loss), fn.__name__
        assert bitwise_equal(moved(grad, 1), want_grad), fn.__name__
