"""pyce.linear_cross_entropy(_with_grad) and pyce.linear_evaluate (NumPy) against the
float64 reference (which materialises the logits), finite differences, chunk
boundaries, gradient filtering, memory and errors."""

from __future__ import annotations

import itertools
import textwrap
import zlib

import numpy as np
import pytest

import pyce
from pyce import _linear_filter
from pyce._linear_call import LinearCall

from _helpers import EPS32, load_reference, run_installed_python

ref = load_reference()

REDUCTIONS = ["mean", "sum", "none"]


def make(rng, lead=(3, 7), D=5, V=13, dtype=np.float64, ignore=True, bias=False, weight=False, scale=1.0):
    h = (rng.standard_normal(lead + (D,)) * scale).astype(dtype)
    W = rng.standard_normal((V, D)).astype(dtype)
    y = rng.integers(0, V, size=lead)
    if ignore:
        y[rng.random(lead) < 0.3] = -100
        y.flat[-1] = 0  # at least one scored row after any shift
    b = rng.standard_normal(V).astype(dtype) if bias else None
    w = rng.random(V) + 0.5 if weight else None
    return h, W, y, b, w


def unpack(out, bias, return_lse):
    out = list(out)
    lse = out.pop() if return_lse else None
    gb = out.pop() if bias else None
    return out[0], out[1], out[2], gb, lse


# -- every option combination, float64, several chunks ------------------------------

COMBOS = list(
    itertools.product(
        [False, True],  # bias
        [False, True],  # class weights
        [False, True],  # ignored rows
        [0.0, 0.1],  # label smoothing
        [0.0, 1e-3],  # z-loss
        [None, 4.0],  # softcap
    )
)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("lead,shift", [((11,), 0), ((3, 7), 0), ((3, 7), 1), ((2, 6), 3)])
@pytest.mark.parametrize("bias,weight,ignore,smoothing,z_loss,softcap", COMBOS)
def test_matches_reference_float64(bias, weight, ignore, smoothing, z_loss, softcap, lead, shift, reduction):
    rng = np.random.default_rng(
        zlib.crc32(repr((bias, weight, ignore, smoothing, z_loss, softcap, lead, shift, reduction)).encode())
    )
    h, W, y, b, w = make(rng, lead=lead, ignore=ignore, bias=bias, weight=weight, scale=2.0)
    opts = dict(
        linear_bias=b,
        weight=w,
        reduction=reduction,
        label_smoothing=smoothing,
        z_loss=z_loss,
        softcap=softcap,
        shift=shift,
        return_lse=True,
    )
    want = unpack(ref.linear_cross_entropy_with_grad(h, W, y, **opts), bias, True)
    got = unpack(pyce.linear_cross_entropy_with_grad(h, W, y, chunk_size=4, **opts), bias, True)
    for g, r in zip(got, want):
        if r is None:
            assert g is None
            continue
        assert np.shape(g) == np.shape(r)
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-13)
    loss, lse = pyce.linear_cross_entropy(h, W, y, chunk_size=5, **opts)
    np.testing.assert_allclose(loss, want[0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(lse, want[4], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shift", [0, 1])
def test_float32_close_to_reference(reduction, shift):
    rng = np.random.default_rng(7)
    h, W, y, b, w = make(rng, lead=(4, 33), D=24, V=1003, dtype=np.float32, bias=True, weight=True)
    opts = dict(linear_bias=b, weight=w, reduction=reduction, label_smoothing=0.05, z_loss=1e-4, shift=shift)
    got = pyce.linear_cross_entropy_with_grad(h, W, y, chunk_size=50, **opts)
    want = ref.linear_cross_entropy_with_grad(h, W, y, **opts)
    assert got[0].dtype == np.float32 and got[1].dtype == np.float32 and got[2].dtype == np.float32
    # Sums over V (grad_hidden) and over rows (grad_weight) of float32 products.
    for g, r in zip(got, want):
        scale = np.max(np.abs(r)) if np.size(r) else 1.0
        np.testing.assert_allclose(g, r, rtol=0, atol=200 * EPS32 * max(scale, 1e-30))


def test_forward_loss_equals_with_grad_loss():
    rng = np.random.default_rng(3)
    h, W, y, b, _ = make(rng, lead=(5, 9), D=8, V=40, dtype=np.float32, bias=True)
    a = pyce.linear_cross_entropy(h, W, y, linear_bias=b, chunk_size=7)
    g = pyce.linear_cross_entropy_with_grad(h, W, y, linear_bias=b, chunk_size=7)[0]
    assert a == g and a.dtype == np.float32


# -- finite differences ---------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_finite_differences(reduction):
    rng = np.random.default_rng(11)
    h, W, y, b, w = make(rng, lead=(2, 5), D=4, V=9, bias=True, weight=True)
    opts = dict(
        linear_bias=b,
        weight=w,
        reduction=reduction,
        label_smoothing=0.2,
        z_loss=0.01,
        softcap=3.0,
        shift=1,
        chunk_size=3,
    )

    def total(h_, W_, b_):
        loss = pyce.linear_cross_entropy(h_, W_, y, **{**opts, "linear_bias": b_})
        return float(np.sum(loss))

    _, gh, gW, gb = pyce.linear_cross_entropy_with_grad(h, W, y, **opts)
    step = 1e-6
    for array, grad, which in ((h, gh, 0), (W, gW, 1), (b, gb, 2)):
        for flat in range(0, array.size, max(1, array.size // 12)):
            plus, minus = array.copy(), array.copy()
            plus.flat[flat] += step
            minus.flat[flat] -= step
            args_p = [h, W, b]
            args_m = [h, W, b]
            args_p[which], args_m[which] = plus, minus
            fd = (total(*args_p) - total(*args_m)) / (2 * step)
            assert abs(fd - grad.flat[flat]) < 1e-7 * max(1.0, abs(fd)), (which, flat)


# -- chunk boundaries ---------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 2, 6, 7, 20, 21, 22, 1000])
def test_chunk_sizes_agree(chunk_size):
    rng = np.random.default_rng(5)
    h, W, y, b, _ = make(rng, lead=(3, 7), D=6, V=1030, bias=True)  # 21 rows
    want = ref.linear_cross_entropy_with_grad(h, W, y, linear_bias=b, shift=1)
    got = pyce.linear_cross_entropy_with_grad(h, W, y, linear_bias=b, shift=1, chunk_size=chunk_size)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-13)


def _chunk_call(n_rows, V, target=None, chunk_size=None, dtype=np.float32):
    """A LinearCall on zeros: only its chunking is looked at."""
    return LinearCall(
        np.zeros((n_rows, 4), dtype),
        np.zeros((V, 4), dtype),
        np.zeros(n_rows, np.int64) if target is None else target,
        linear_bias=None,
        weight=None,
        ignore_index=-100,
        reduction="mean",
        label_smoothing=0.0,
        z_loss=0.0,
        softcap=None,
        shift=0,
        return_lse=False,
        filter_eps=None,
        chunk_size=chunk_size,
        dtypes=(np.dtype(dtype),),
        compute_dtype=dtype,
    )


def test_default_chunk_is_bounded_and_used():
    call = _chunk_call(10, 128256, dtype=np.float64)
    assert call.chunk_rows == 256  # 48 MiB of float64 logits hold 49 rows; at least 256
    call = _chunk_call(10, 32000)
    assert call.chunk_rows == (48 << 20) // (32000 * 4)


def _sizes(call):
    return [c.stop - c.start if isinstance(c, slice) else c.size for c in call.chunks()]


def test_chunks_share_the_rows_evenly():
    # 2048 rows of 32000 classes: 48 MiB holds 393 rows. Before, the chunks were
    # five of 393 and one of 83, which paid a whole pass over W and grad_W for
    # 4 % of the rows; now six chunks of 341-342.
    call = _chunk_call(2048, 32000)
    assert call.chunk_rows == 393
    assert sorted(_sizes(call)) == [341, 341, 341, 341, 342, 342]
    assert call.largest_chunk() == 342
    # An explicit chunk_size stays the bound: 10 rows in chunks of at most 4.
    assert _sizes(_chunk_call(10, 7, chunk_size=4)) == [3, 3, 4]
    assert _sizes(_chunk_call(8, 7, chunk_size=4)) == [4, 4]
    assert _sizes(_chunk_call(3, 7, chunk_size=4)) == [3]
    # With ignored rows the scored ones are shared out (gathered where not consecutive).
    y = np.zeros(10, np.int64)
    y[[1, 6]] = -100
    call = _chunk_call(10, 7, target=y, chunk_size=3)
    chunks = list(call.chunks())
    assert [len(np.arange(10)[c]) for c in chunks] == [2, 3, 3]
    assert np.concatenate([np.arange(10)[c] for c in chunks]).tolist() == [0, 2, 3, 4, 5, 7, 8, 9]
    # No rows with work: no chunk, and a one-row buffer.
    call = _chunk_call(4, 7, target=np.full(4, -100, np.int64))
    assert _sizes(call) == [] and call.largest_chunk() == 1


def test_returned_gradients_reuse_the_buffer_cache():
    # A training loop frees last step's gradients before this step's call: their
    # memory (already mapped) comes back from the cache instead of fresh pages.
    rng = np.random.default_rng(3)
    h = rng.standard_normal((600, 64)).astype(np.float32)  # grad_hidden: 150 KiB, below the cache
    W = rng.standard_normal((8192, 64)).astype(np.float32)  # grad_weight: 2 MiB
    y = rng.integers(0, 8192, 600)
    first = pyce.linear_cross_entropy_with_grad(h, W, y)
    del first
    before = pyce.cache_info()
    loss, gh, gW = pyce.linear_cross_entropy_with_grad(h, W, y)
    after = pyce.cache_info()
    # The chunk's logits (19 MiB) and grad_weight, both reused; nothing new mapped.
    assert after["hits"] - before["hits"] == 2
    assert after["misses"] == before["misses"]
    want = ref.linear_cross_entropy_with_grad(h.astype(np.float64), W.astype(np.float64), y)
    np.testing.assert_allclose(gW, want[2], rtol=2e-4, atol=1e-6)


def test_non_contiguous_inputs():
    rng = np.random.default_rng(8)
    h = rng.standard_normal((4, 6, 10))[:, :, ::2]  # strided features
    W = np.asfortranarray(rng.standard_normal((17, 5)))  # column-major weight
    y = rng.integers(0, 17, (4, 6))
    want = ref.linear_cross_entropy_with_grad(h, W, y, shift=2)
    got = pyce.linear_cross_entropy_with_grad(h, W, y, shift=2, chunk_size=5)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-13)


# -- ignored rows ----------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_all_rows_ignored(reduction):
    rng = np.random.default_rng(2)
    h, W, _, b, _ = make(rng, lead=(2, 5), bias=True)
    y = np.full((2, 5), -100)
    loss, gh, gW, gb = pyce.linear_cross_entropy_with_grad(h, W, y, linear_bias=b, reduction=reduction)
    want = ref.linear_cross_entropy_with_grad(h, W, y, linear_bias=b, reduction=reduction)
    if reduction == "mean":
        assert np.isnan(loss) and np.isnan(want[0])
    else:
        np.testing.assert_array_equal(loss, want[0])
    for g in (gh, gW, gb):
        assert not np.any(g)
    assert np.isnan(pyce.linear_cross_entropy(h, W, y)) if reduction == "mean" else True


def test_ignored_rows_with_lse_still_get_their_lse():
    rng = np.random.default_rng(4)
    h, W, y, _, _ = make(rng, lead=(3, 8))
    y[1] = -100
    loss, lse = pyce.linear_cross_entropy(h, W, y, return_lse=True, shift=1, chunk_size=3)
    np.testing.assert_allclose(lse, ref.logsumexp(h[:, :-1] @ W.T), rtol=1e-13)


# -- gradient filtering --------------------------------------------------------------------


def peaked(rng, N=96, D=32, V=2500, confidence=60.0):
    """Hidden states aligned with their target's row of W: a confident model."""
    W = rng.standard_normal((V, D))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    # Targets from the first 600 classes (the frequent ones): the rest of the
    # vocabulary gets negligible probability everywhere.
    y = rng.integers(0, 600, N)
    h = confidence * W[y] + 0.05 * rng.standard_normal((N, D))
    return h, W, y


def filtered_error_bound(h, W, y, eps, chunk, reduction="mean"):
    """The documented bound, per element, from the reference gradient G."""
    G = ref.cross_entropy_with_grad(h @ W.T, y, reduction=reduction)[1]
    s = 1.0 / np.count_nonzero(y != -100) if reduction == "mean" else 1.0
    bh = np.zeros_like(h)
    bW = np.zeros_like(W)
    B = _linear_filter.FILTER_BLOCK
    for r0 in range(0, len(h), chunk):
        rows = slice(r0, r0 + chunk)
        for v0 in range(0, W.shape[0], B):
            cols = slice(v0, v0 + B)
            if np.all(np.abs(G[rows, cols]) < eps * s):
                bh[rows] += eps * s * np.sum(np.abs(W[cols]), axis=0)
                bW[cols] += eps * s * np.sum(np.abs(h[rows]), axis=0)
    return bh, bW


@pytest.mark.parametrize("eps", [1e-6, 2.0**-12, 1e-2])
def test_filter_keeps_the_loss_and_the_bound(eps):
    rng = np.random.default_rng(9)
    h, W, y = peaked(rng)
    y[::7] = -100
    exact = pyce.linear_cross_entropy_with_grad(h, W, y, chunk_size=32)
    got = pyce.linear_cross_entropy_with_grad(h, W, y, chunk_size=32, filter_eps=eps)
    assert got[0] == exact[0]
    bh, bW = filtered_error_bound(h, W, y, eps, 32)
    assert np.any(bW > 0)  # something was skipped
    assert np.all(np.abs(got[1] - exact[1]) <= bh + 1e-15)
    assert np.all(np.abs(got[2] - exact[2]) <= bW + 1e-15)


def test_filter_skips_on_peaked_and_nothing_on_flat():
    rng = np.random.default_rng(1)
    h, W, y = peaked(rng, V=3000)  # 3000 = 5 full blocks of 512 and a tail of 440
    args = dict(
        linear_bias=None,
        weight=None,
        ignore_index=-100,
        reduction="mean",
        label_smoothing=0.0,
        z_loss=0.0,
        softcap=None,
        shift=0,
        return_lse=False,
        chunk_size=32,
        dtypes=(np.dtype(np.float64),),
        compute_dtype=np.float64,
    )
    from pyce._blas import NumpyOps

    call = LinearCall(h, W, y, filter_eps=2.0**-12, **args)
    call.with_grad(NumpyOps)
    assert call.kept_blocks < call.total_blocks / 2
    flat = LinearCall(0.01 * h, W, y, filter_eps=2.0**-12, **args)  # nearly uniform: 1/3000 > eps
    flat.with_grad(NumpyOps)
    assert flat.kept_blocks == flat.total_blocks


def test_filter_keeps_blocks_holding_nan_or_a_large_target_entry():
    from pyce._blas import NumpyOps

    runs = _linear_filter.kept_vocab_runs
    big = NumpyOps.column_max_abs
    G = np.zeros((4, 1100))
    none = np.full(4, -100)
    G[2, 700] = np.nan
    assert runs(G, none, 1e-3, big, 512) == [(512, 1024)]
    G[0, 1099] = -1.0
    assert runs(G, none, 1e-3, big, 512) == [(512, 1100)]
    # A target entry above the threshold keeps its block (found without a scan).
    G[1, 3] = -0.5
    assert runs(G, np.array([-100, 3, -100, -100]), 1e-3, big, 512) is None
    # A target entry below it does not, by itself.
    G[1, 3] = 1e-4
    assert runs(G, np.array([-100, 3, -100, -100]), 1e-3, big, 512) == [(512, 1100)]
    G[2, 700] = np.nan
    assert runs(G, np.array([700, 3, -100, 1099]), 1e-3, big, 512) == [(512, 1100)]
    G[:] = 1.0
    assert runs(G, none, 1e-3, big, 512) is None
    assert runs(np.zeros((3, 10)), np.zeros(3, np.int64), 1e-3, big, 512) == []


def test_filter_computes_whole_chunks_when_little_can_go():
    from pyce._blas import NumpyOps

    runs = _linear_filter.kept_vocab_runs
    big = NumpyOps.column_max_abs
    G = np.zeros((2, 512 * 8))
    G[0, 512 * np.arange(7)] = 1.0  # 7 of 8 blocks hold a large entry: whole
    assert runs(G, np.full(2, -100), 1e-3, big, 512) is None
    G[0, 512 * np.arange(7)] = 0.0
    G[0, [0, 1024, 3 * 512]] = 1.0  # blocks 0, 2, 3 kept; block 1 alone between kept ones
    assert runs(G, np.full(2, -100), 1e-3, big, 512) == [(0, 4 * 512)]
    assert np.array_equal(big(np.array([[1.0, -3.0, np.nan], [-2.0, 1.0, 0.0]]))[:2], [2.0, 3.0])
    assert np.isnan(big(np.array([[1.0, -3.0, np.nan], [-2.0, 1.0, 0.0]]))[2])
    assert np.array_equal(big(np.arange(-30.0, 30.0).reshape(20, 3), tile_bytes=16), [30, 29, 29])


def test_filter_auto_is_cce_rule():
    call_args = dict(
        linear_bias=None,
        weight=None,
        ignore_index=-100,
        reduction="mean",
        label_smoothing=0.0,
        z_loss=0.0,
        softcap=None,
        shift=0,
        return_lse=False,
        chunk_size=None,
    )
    for dtype in (np.float32, np.float64):
        call = LinearCall(
            np.zeros((2, 3), dtype),
            np.zeros((4, 3), dtype),
            np.zeros(2, np.int64),
            filter_eps="auto",
            dtypes=(np.dtype(dtype),),
            compute_dtype=dtype,
            **call_args,
        )
        assert call.filter_eps == np.finfo(dtype).eps / 32


# -- evaluation ----------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [0, 1])
def test_linear_evaluate_matches_evaluate(shift):
    rng = np.random.default_rng(6)
    h, W, y, b, _ = make(rng, lead=(3, 20), D=8, V=300, bias=True, scale=3.0)
    got = pyce.linear_evaluate(h, W, y, linear_bias=b, shift=shift, topk=(1, 3, 10), chunk_size=7)
    z = h @ W.T + b
    if shift:
        z, y2 = z[:, :-shift], y[:, shift:]
    else:
        y2 = y
    want = pyce.evaluate(z, y2, topk=(1, 3, 10))
    want_ref = ref.linear_evaluate(h, W, y, linear_bias=b, shift=shift, topk=(1, 3, 10))
    assert got.n_tokens == want.n_tokens == want_ref["n_tokens"]
    assert got.accuracy == want.accuracy
    for field in ("loss", "perplexity", "entropy", "ece"):
        assert getattr(got, field) == pytest.approx(getattr(want, field), rel=1e-12)
        assert getattr(got, field) == pytest.approx(want_ref[field], rel=1e-10)


def test_linear_evaluate_all_ignored():
    rng = np.random.default_rng(6)
    h, W, _, _, _ = make(rng)
    r = pyce.linear_evaluate(h, W, np.full((3, 7), -100))
    assert r.n_tokens == 0 and np.isnan(r.loss)


# -- memory: nothing of the logits' size (RSS in a fresh process) ---------------------------


def test_peak_memory_stays_below_the_logits():
    code = textwrap.dedent("""
        import resource, numpy as np, pyce
        N, D, V = 4096, 64, 8192          # logits: 128 MiB in float32
        rng = np.random.default_rng(0)
        h = rng.standard_normal((N, D), dtype=np.float32)
        W = rng.standard_normal((V, D), dtype=np.float32)
        y = rng.integers(0, V, N)
        pyce.linear_cross_entropy_with_grad(h[:64], W, y[:64])   # warm up: libraries, pools
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = pyce.linear_cross_entropy_with_grad(h, W, y)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) / 1024)
    """)
    grown = float(run_installed_python(code))
    # The bound: at most 64 MiB beyond the inputs and the returned
    # gradients (3 MiB here), where the logits alone are 128 MiB: one 48 MiB
    # chunk of logits and the BLAS's work buffers.
    assert grown < 64 + 3, f"peak RSS grew by {grown:.1f} MiB (the logits are 128 MiB)"


# -- errors ----------------------------------------------------------------------------------


def test_shape_errors_name_the_shapes():
    h, W, y = np.zeros((4, 5)), np.zeros((10, 5)), np.zeros(4, np.int64)
    with pytest.raises(ValueError, match=r"hidden's last dimension 6 .*\(4, 6\).* D = 5 .*\(10, 5\)"):
        pyce.linear_cross_entropy(np.zeros((4, 6)), W, y)
    with pytest.raises(ValueError, match=r"expected \(4,\), got \(5,\)"):
        pyce.linear_cross_entropy(h, W, np.zeros(5, np.int64))
    with pytest.raises(ValueError, match=r"linear_bias must have shape \(10,\).*got \(9,\)"):
        pyce.linear_cross_entropy(h, W, y, linear_bias=np.zeros(9))
    with pytest.raises(ValueError, match=r"linear_weight must be 2-D"):
        pyce.linear_cross_entropy(h, np.zeros(5), y)
    with pytest.raises(ValueError, match=r"weight must have shape \(10,\)"):
        pyce.linear_cross_entropy(h, W, y, weight=np.ones(3))
    with pytest.raises(ValueError, match=r"shift=1 needs a time axis"):
        pyce.linear_cross_entropy(np.zeros(5), W, np.zeros((), np.int64), shift=1)
    with pytest.raises(ValueError, match=r"shift must be smaller than the sequence length T = 4"):
        pyce.linear_cross_entropy(h, W, y, shift=4)


def test_type_and_value_errors():
    h, W, y = np.zeros((4, 5)), np.zeros((10, 5)), np.zeros(4, np.int64)
    with pytest.raises(TypeError, match="linear_weight has dtype float32 but hidden has float64"):
        pyce.linear_cross_entropy(h, W.astype(np.float32), y)
    with pytest.raises(TypeError, match="hidden must be a float32 or float64 array, got dtype int64"):
        pyce.linear_cross_entropy(h.astype(np.int64), W, y)
    with pytest.raises(TypeError, match="integer array of class indices"):
        pyce.linear_cross_entropy(h, W, y.astype(np.float64))
    with pytest.raises(IndexError, match="target 10 at position 2"):
        pyce.linear_cross_entropy(h, W, np.array([0, 1, 10, 3]))
    with pytest.raises(IndexError, match=r"target -3 at position 3 \(flattened\)"):
        pyce.linear_cross_entropy(h.reshape(2, 2, 5), W, np.array([[0, 9], [1, -3]]), shift=1)
    with pytest.raises(ValueError, match="filter_eps"):
        pyce.linear_cross_entropy_with_grad(h, W, y, filter_eps=2.0)
    with pytest.raises(ValueError, match="filter_eps"):
        pyce.linear_cross_entropy_with_grad(h, W, y, filter_eps="fast")
    with pytest.raises(ValueError, match="chunk_size"):
        pyce.linear_cross_entropy(h, W, y, chunk_size=0)
    with pytest.raises(ValueError, match="reduction"):
        pyce.linear_cross_entropy(h, W, y, reduction="avg")
