"""The vocabulary-shard kernels (pyce._core.shard_stats / shard_grad) and the
arithmetic of pyce._vocab_shard, with every rank's shard in one process.

Splitting the logits into shards, merging the shards' rows as the ranks do
and writing each shard's gradient must give the single-process cross-entropy
over the whole vocabulary (pyce.reference), for every option. The collectives
themselves are tested with real processes in test_distributed.py.
"""

import numpy as np
import pytest

import pyce
from pyce import _vocab_shard as vs
from pyce import reference as ref

from _helpers import central_difference, same_for_every_thread_count

pytestmark = pytest.mark.kernels

# (rows, V) and the shard boundaries: a 1-class vocabulary, an empty shard,
# shards cut inside a kernel block and at its edge, a long vocabulary.
LAYOUTS = {
    "1x1": ((1, 1), [0, 1]),
    "5x17-empty-shard": ((5, 17), [0, 3, 3, 17]),
    "3x2049-block-edge": ((3, 2049), [0, 2048, 2049]),
    "4x5003-uneven": ((4, 5003), [0, 1000, 1001, 3000, 5003]),
    "2x70001": ((2, 70001), [0, 35000, 70001]),
}
OPTIONS = {
    "plain": {},
    "weight": {"weight": True},
    "ignore": {"ignore": True},
    "smooth": {"label_smoothing": 0.1},
    "smooth-weight": {"label_smoothing": 0.25, "weight": True},
    "z_loss": {"z_loss": 1e-3},
    "softcap": {"softcap": 3.0},
    "everything": {"label_smoothing": 0.2, "weight": True, "ignore": True, "z_loss": 2e-3, "softcap": 5.0},
}


def split_cross_entropy(
    x,
    t,
    bounds,
    *,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    grad_output=1.0,
    out_dtype=None,
):
    """What the ranks compute together, each shard x[:, a:b] on its own: (loss, full gradient)."""
    N, V = x.shape
    smoothing, weighted = label_smoothing > 0, weight is not None
    shards = [
        (a, np.ascontiguousarray(x[:, a:b]), None if weight is None else np.ascontiguousarray(weight[a:b]))
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
    stats = [
        vs.shard_stats(
            xs, t, a, weight=w, ignore_index=ignore_index, label_smoothing=label_smoothing, softcap=softcap
        )
        for a, xs, w in shards
    ]
    rows = vs.combine(np.stack([s.packed(weighted, smoothing) for s in stats]), weighted, smoothing)
    scored = t != ignore_index
    K = float(V) if weight is None else float(np.sum(weight, dtype=np.float64))
    losses = vs.row_losses(
        rows, scored, n_classes=V, coef_total=K, label_smoothing=label_smoothing, z_loss=z_loss
    )
    divisor = vs.divisor(rows, scored)
    loss = vs.reduce_losses(losses, reduction, divisor)
    g = np.broadcast_to(np.asarray(grad_output, dtype=np.float64), (N,)).copy()
    scale = g / divisor if reduction == "mean" else g
    grads = []
    for (a, xs, w), s in zip(shards, stats):
        out = np.empty_like(xs)
        vs.shard_grad(
            xs,
            t,
            a,
            s,
            rows,
            scale,
            out,
            weight=w,
            ignore_index=ignore_index,
            n_classes=V,
            coef_total=K,
            label_smoothing=label_smoothing,
            z_loss=z_loss,
            softcap=softcap,
        )
        grads.append(out)
    return loss, np.concatenate(grads, axis=1)


def _problem(shape, dtype, options, seed=0):
    rng = np.random.default_rng(seed)
    N, V = shape
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    t = rng.integers(0, V, N)
    if options.get("ignore") and N > 1:
        t[::3] = -100
    kw = {k: v for k, v in options.items() if k not in ("weight", "ignore")}
    if options.get("weight"):
        kw["weight"] = (rng.random(V) + 0.5).astype(pyce._validation.compute_dtype(np.dtype(dtype)))
    return x, t, kw


def _reference(x, t, kw, reduction, grad_output=1.0):
    kw64 = dict(kw)
    if "weight" in kw64:
        kw64["weight"] = kw64["weight"].astype(np.float64)
    return ref.cross_entropy_with_grad(
        x.astype(np.float64), t, reduction=reduction, grad_output=grad_output, **kw64
    )


def _rel(a, b):
    """max |a - b| relative to max |b| (absolute where b is all zero: one class)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not b.size:
        return 0.0
    scale = float(np.max(np.abs(b)))
    return float(np.max(np.abs(a - b)) / (scale if scale > 0 else 1.0))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_shards_give_the_whole_vocabulary_result(dtype, layout, option, reduction):
    shape, bounds = LAYOUTS[layout]
    x, t, kw = _problem(shape, dtype, OPTIONS[option])
    g = np.random.default_rng(1).random(shape[0]) if reduction == "none" else 0.5
    loss, grad = split_cross_entropy(x, t, bounds, reduction=reduction, grad_output=g, **kw)
    ref_loss, ref_grad = _reference(x, t, kw, reduction, g)
    # float32: the tolerances of the single-process tests (test_training_options.py).
    rtol, atol = (1e-12, 1e-13) if dtype == np.float64 else (2e-6, 2e-6)
    np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=atol)
    assert _rel(grad, ref_grad) <= (1e-13 if dtype == np.float64 else 1e-6)
    assert grad.dtype == dtype


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_16bit_shards(dtype):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    d = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float16
    x, t, kw = _problem((6, 3001), np.float32, OPTIONS["everything"])
    x = x.astype(d)
    kw["weight"] = kw["weight"].astype(np.float32)
    loss, grad = split_cross_entropy(x, t, [0, 1500, 3001], **kw)
    ref_loss, ref_grad = _reference(x.astype(np.float32), t, kw, "mean")
    assert grad.dtype == x.dtype
    assert _rel(loss, ref_loss) <= 1e-6  # computed in float32 throughout
    # The gradient is rounded to 16 bits: half an ulp of its largest entry.
    assert _rel(grad.astype(np.float64), ref_grad) <= (2**-8 if dtype == "bfloat16" else 2**-11)


def test_every_isa(each_isa):
    x, t, kw = _problem((7, 4099), np.float32, OPTIONS["everything"])
    loss, grad = split_cross_entropy(x, t, [0, 17, 2048, 4099], **kw)
    ref_loss, ref_grad = _reference(x, t, kw, "mean")
    assert _rel(loss, ref_loss) <= 1e-6
    assert _rel(grad, ref_grad) <= 1e-6


@pytest.mark.parametrize("shape", [(64, 4096), (3, 70001)], ids=["many-rows", "few-long-rows"])
def test_bitwise_the_same_for_every_thread_count(shape):
    x, t, kw = _problem(shape, np.float32, OPTIONS["everything"])
    w = kw.pop("weight")

    def run():
        s = vs.shard_stats(x, t, 0, weight=w, ignore_index=-100, label_smoothing=0.2, softcap=5.0)
        rows = vs.combine(s.packed(True, True)[None], True, True)
        out = np.empty_like(x)
        vs.shard_grad(
            x,
            t,
            0,
            s,
            rows,
            np.full(shape[0], 0.3),
            out,
            weight=w,
            ignore_index=-100,
            n_classes=shape[1],
            coef_total=float(w.sum()),
            label_smoothing=0.2,
            z_loss=2e-3,
            softcap=5.0,
        )
        return s.lse, s.shift, s.dot, s.target_logit, out

    same_for_every_thread_count(run)


def test_gradient_against_finite_differences():
    x, t, kw = _problem((3, 11), np.float64, OPTIONS["everything"])
    bounds = [0, 4, 4, 11]
    _, grad = split_cross_entropy(x, t, bounds, **kw)
    numeric = central_difference(lambda z: split_cross_entropy(z, t, bounds, **kw)[0], x)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_gradient_in_place():
    x, t, kw = _problem((5, 300), np.float64, OPTIONS["smooth-weight"])
    w = kw.pop("weight")
    s = vs.shard_stats(x, t, 0, weight=w, ignore_index=-100, label_smoothing=0.25, softcap=None)
    rows = vs.combine(s.packed(True, True)[None], True, True)
    args = dict(
        weight=w,
        ignore_index=-100,
        n_classes=300,
        coef_total=float(w.sum()),
        label_smoothing=0.25,
        z_loss=0.0,
        softcap=None,
    )
    out = np.empty_like(x)
    vs.shard_grad(x, t, 0, s, rows, np.ones(5), out, **args)
    vs.shard_grad(x, t, 0, s, rows, np.ones(5), x, **args)
    np.testing.assert_array_equal(x, out)


def test_non_finite_logits_as_pytorch():
    x = np.zeros((4, 8))
    t = np.array([1, 6, 2, 7])
    x[0, 5] = np.inf  # +inf in the second shard: the row has no distribution (nan)
    x[1, :4] = -np.inf  # the first shard's row is all -inf: it holds no probability
    x[2, 2] = -np.inf  # the target's logit is -inf: infinite loss
    x[3, 0] = np.nan  # nan: nan loss and gradient
    loss, grad = split_cross_entropy(x, t, [0, 4, 8], reduction="none")
    ref_loss, ref_grad = _reference(x, t, {}, "none")
    np.testing.assert_array_equal(np.isnan(loss), np.isnan(ref_loss))
    np.testing.assert_allclose(loss[1:3], ref_loss[1:3], rtol=1e-15)
    assert np.isnan(loss[0]) and np.isnan(loss[3]) and loss[2] == np.inf
    np.testing.assert_allclose(grad[1], ref_grad[1], rtol=1e-15, atol=0)
    assert np.all(grad[1, :4] == 0.0)
    assert np.isnan(grad[0]).all() and np.isnan(grad[3]).all()


def test_ignored_rows_are_not_read():
    x, t, _ = _problem((3, 50), np.float64, {})
    x[1] = np.nan
    t[1] = -100
    loss, grad = split_cross_entropy(x, t, [0, 20, 50])
    assert np.isfinite(loss)
    assert np.all(grad[1] == 0.0)
