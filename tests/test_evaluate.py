"""pyce.evaluate (one-pass evaluation metrics) and pyce.entropy against the NumPy reference."""

from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np
import pytest

import pyce
from pyce import _core
from pyce._validation import AxisError

from _helpers import EPS32, assert_close, load_reference

# Run once per forced ISA by .ci/run (pytest -m kernels).
pytestmark = pytest.mark.kernels

ref = load_reference()

SHAPES = [
    ((1, 1), -1),  # one row, one class
    ((6, 1), -1),  # one class: loss 0, entropy 0, always correct
    ((9, 17), -1),  # C not a multiple of any SIMD width
    ((5, 37), -1),
    ((4, 1000), -1),
    ((3, 4097), -1),  # two full blocks and a 1-element tail
    ((2, 100003), -1),  # few rows, large vocabulary: blocks shared across threads
    ((2, 3, 37), -1),  # (batch, time, vocab)
    ((2, 11, 3, 4), 1),  # PyTorch's (N, C, d1, d2)
]
HALF = {}
try:
    import ml_dtypes

    HALF = {"bfloat16": ml_dtypes.bfloat16}
except ImportError:  # pragma: no cover
    pass
HALF["float16"] = np.float16


def _seed(*key):
    return zlib.crc32(repr(key).encode())


def problem(shape, axis, dtype, *, ignore=0.25, scale=3.0, seed=0):
    rng = np.random.default_rng(_seed(shape, axis, np.dtype(dtype).name, seed))
    logits = (rng.standard_normal(shape) * scale).astype(dtype)
    ax = axis % len(shape)
    tshape = shape[:ax] + shape[ax + 1 :]
    target = rng.integers(0, shape[ax], size=tshape)
    mask = rng.random(tshape) < ignore
    mask.flat[0] = False
    target[mask] = -100
    return logits, target


def tolerances(dtype, scale):
    """Means of float64 per-row values; float32 sums within a block round at ~eps32 * scale."""
    if np.dtype(dtype) == np.float64:
        return dict(rtol=1e-12, atol=1e-13 * scale)
    return dict(rtol=1e-5, atol=8 * EPS32 * scale)


def check_against_reference(result, expected, dtype, scale):
    tol = tolerances(dtype, scale)
    assert isinstance(result, pyce.EvalResult)
    assert result.n_tokens == expected["n_tokens"]
    assert isinstance(result.n_tokens, int)
    for name in ("loss", "perplexity", "entropy"):
        value = getattr(result, name)
        assert isinstance(value, float), (name, type(value))
        r = tol if name != "perplexity" else dict(rtol=tol["rtol"] + tol["atol"], atol=0)
        assert_close(value, expected[name], **r, err_msg=name)
    # Ranks compare the same stored values in both: the accuracies are exact.
    assert result.accuracy == expected["accuracy"]
    # ECE is continuous in the probabilities away from the bin edges.
    assert_close(result.ece, expected["ece"], rtol=0, atol=1e-12 if np.dtype(dtype) == np.float64 else 2e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", SHAPES, ids=lambda v: str(v))
def test_matches_reference(shape, axis, dtype):
    logits, target = problem(shape, axis, dtype)
    result = pyce.evaluate(logits, target, axis=axis, topk=(1, 2, 5))
    expected = ref.evaluate(logits, target, axis=axis, topk=(1, 2, 5))
    check_against_reference(result, expected, dtype, 1 + np.abs(logits).max())


@pytest.mark.parametrize("name", list(HALF))
@pytest.mark.parametrize("shape", [(5, 37), (3, 4097)], ids=str)
def test_16bit_logits(name, shape):
    logits, target = problem(shape, -1, HALF[name])
    result = pyce.evaluate(logits, target)
    expected = ref.evaluate(logits.astype(np.float64), target)
    check_against_reference(result, expected, np.float32, 1 + float(np.abs(logits.astype(np.float64)).max()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_agrees_with_cross_entropy_and_entropy(dtype):
    logits, target = problem((64, 515), -1, dtype)
    result = pyce.evaluate(logits, target)
    tol = tolerances(dtype, 1 + np.abs(logits).max())
    assert_close(result.loss, pyce.cross_entropy(logits, target), **tol)
    keep = target != -100
    assert_close(result.entropy, np.mean(pyce.entropy(logits)[keep], dtype=np.float64), **tol)
    assert result.perplexity == pytest.approx(math.exp(result.loss), rel=1e-15)


def test_rank_definition_with_ties():
    # Target 1 ties with class 0 for the max: rank #{z_j > z_t} = 0, so top-1 correct.
    logits = np.array(
        [
            [3.0, 3.0, 1.0, 0.0],
            [3.0, 2.0, 2.0, 2.0],  # target 3: one logit above -> rank 1
            [0.0, 1.0, 1.0, 2.0],
        ]
    )  # target 0: rank 3
    target = np.array([1, 3, 0])
    r = pyce.evaluate(logits, target, topk=(1, 2, 3, 4, 10))
    assert r.accuracy == {1: 1 / 3, 2: 2 / 3, 3: 2 / 3, 4: 1.0, 10: 1.0}
    _, _, _, rank = _core.evaluate(logits, target.astype(np.int64), -100)
    np.testing.assert_array_equal(rank, [0, 1, 3])


def test_topk_forms():
    logits, target = problem((20, 9), -1, np.float64)
    assert list(pyce.evaluate(logits, target, topk=3).accuracy) == [3]
    assert list(pyce.evaluate(logits, target, topk=[5, 1, 5]).accuracy) == [5, 1]
    assert pyce.evaluate(logits, target, topk=(9,)).accuracy == {9: 1.0}  # k >= C: always


def test_one_class_and_uniform():
    r = pyce.evaluate(np.zeros((4, 1)), np.zeros(4, dtype=int))
    assert (r.loss, r.perplexity, r.entropy, r.ece, r.n_tokens) == (0.0, 1.0, 0.0, 0.0, 4)
    assert r.accuracy == {1: 1.0, 5: 1.0}
    C = 1000
    r = pyce.evaluate(np.full((3, C), 7.5), np.array([0, 10, 999]))
    assert r.loss == pytest.approx(math.log(C), rel=1e-14)
    assert r.perplexity == pytest.approx(C, rel=1e-12)  # the effective vocabulary size
    assert r.entropy == pytest.approx(math.log(C), rel=1e-14)
    assert r.accuracy[1] == 1.0  # all tied: rank 0
    assert r.ece == pytest.approx(1 - 1 / C, rel=1e-12)  # confidence 1/C, always "right"


def test_ece_by_hand():
    # Two rows with confidence 0.9 (one right, one wrong), one with 0.5 that is right.
    def row(p, C=3):
        rest = (1 - p) / (C - 1)
        return np.log([p, rest, rest])

    logits = np.stack([row(0.9), row(0.9), row(0.5)])
    target = np.array([0, 1, 0])
    r = pyce.evaluate(logits, target)
    # bin of 0.9: accuracy 0.5, confidence 0.9; bin of 0.5: accuracy 1, confidence 0.5.
    assert r.ece == pytest.approx(2 / 3 * 0.4 + 1 / 3 * 0.5, rel=1e-12)
    assert ref.evaluate(logits, target)["ece"] == pytest.approx(r.ece, rel=1e-12)


def test_calibration_bins_are_searchsorted_bins_at_and_beside_every_edge():
    # pyce.metrics._bin_index places each confidence in its bin (lo, hi] by
    # arithmetic; it must agree with the definition (searchsorted on the
    # linspace edges) everywhere, the edges themselves and their neighbours
    # one ulp away included.
    from pyce.metrics import ECE_BINS, _bin_index

    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    near = np.concatenate([edges, np.nextafter(edges, -1.0), np.nextafter(edges, 2.0), edges / 3.0])
    rng = np.random.default_rng(3)
    confidence = np.clip(np.concatenate([near, rng.random(100000), [0.0, 1.0, 1e-300, 0.5]]), 0.0, 1.0)
    want = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, ECE_BINS - 1)
    np.testing.assert_array_equal(_bin_index(confidence), want)


def test_ignored_rows_and_all_ignored():
    logits, target = problem((30, 13), -1, np.float64)
    full = pyce.evaluate(logits, target)
    keep = target != -100
    sub = pyce.evaluate(logits[keep], target[keep])
    assert full == sub
    # ignore_index that is a class: those rows are not scored.
    r = pyce.evaluate(logits, np.where(keep, target, 0), ignore_index=0)
    assert r.n_tokens == int(np.count_nonzero(np.where(keep, target, 0) != 0))
    none = pyce.evaluate(logits, np.full(30, -100))
    assert none.n_tokens == 0
    assert all(math.isnan(v) for v in (none.loss, none.perplexity, none.entropy, none.ece))
    assert all(math.isnan(v) for v in none.accuracy.values())


def test_ignored_rows_are_not_read():
    # A nan in an ignored row must not leak into the metrics.
    logits, target = problem((8, 11), -1, np.float32)
    target[3] = -100
    logits[3] = np.nan
    r = pyce.evaluate(logits, target)
    assert np.isfinite([r.loss, r.entropy, r.ece]).all()


def test_special_values():
    inf = np.inf
    # -inf non-target logits contribute nothing; their entropy term is 0 log 0 = 0.
    x = np.array([[0.0, -inf, 0.0, -inf]])
    r = pyce.evaluate(x, np.array([0]))
    assert r.loss == pytest.approx(math.log(2)) and r.entropy == pytest.approx(math.log(2))
    # A -inf target: infinite loss, rank = number of finite logits.
    r = pyce.evaluate(x, np.array([1]), topk=(1, 2, 3))
    assert r.loss == inf and r.accuracy == {1: 0.0, 2: 0.0, 3: 1.0}
    # +inf or nan in a row: nan loss and entropy, as cross-entropy.
    for bad in (inf, np.nan):
        y = np.array([[0.0, bad, 1.0]])
        r = pyce.evaluate(y, np.array([0]))
        assert math.isnan(r.loss) and math.isnan(r.entropy) and math.isnan(r.ece)
    # Huge logits (far above exp's range) stay exact: shift invariance.
    z = np.random.default_rng(1).standard_normal((5, 300))
    t = np.arange(5)
    a, b = pyce.evaluate(z, t), pyce.evaluate(z + 1e4, t)
    assert a.loss == pytest.approx(b.loss, abs=1e-9) and a.entropy == pytest.approx(b.entropy, abs=1e-9)


def test_large_logit_mid_row_raises_the_shift():
    # A logit far above the first block's max appears in a later block (and
    # mid-vector): the sweep must move its shift without losing the sums.
    rng = np.random.default_rng(2)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((3, 5000)).astype(dtype)
        x[0, 4100] = 300
        x[1, 2047] = 150
        x[2, 17] = 90
        t = np.array([4100, 5, 17])
        got = pyce.evaluate(x, t)
        expected = ref.evaluate(x, t)
        check_against_reference(got, expected, dtype, 300)
        assert_close(pyce.entropy(x), ref.entropy(x), **tolerances(dtype, 300))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape,axis",
    [((7, 17), -1), ((3, 4097), -1), ((2, 100003), -1), ((2, 6, 5), 1), ((1,), -1), ((9,), 0)],
    ids=str,
)
def test_entropy(shape, axis, dtype):
    rng = np.random.default_rng(_seed(shape, "entropy"))
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    h = pyce.entropy(x, axis=axis)
    expected = ref.entropy(x, axis=axis)
    if len(shape) == 1:
        assert type(h) is np.dtype(dtype).type
    else:
        assert h.dtype == dtype and h.shape == expected.shape
    assert_close(h, expected, **tolerances(dtype, 1 + np.abs(x).max()))


@pytest.mark.parametrize("name", list(HALF))
def test_entropy_16bit(name):
    x = (np.random.default_rng(3).standard_normal((4, 3000)) * 2).astype(HALF[name])
    h = pyce.entropy(x)
    assert h.dtype == np.float32
    assert_close(h, ref.entropy(x.astype(np.float64)), **tolerances(np.float32, 8))


def test_entropy_bounds_and_special_rows():
    x = np.array(
        [
            [0.0, 0.0, 0.0, 0.0],  # uniform: log 4
            [50.0, -50.0, -50.0, -50.0],  # near one-hot: ~0
            [0.0, -np.inf, -np.inf, 0.0],  # -inf: 0 log 0 = 0
            [-np.inf] * 4,  # no distribution
            [0.0, np.nan, 0.0, 0.0],
        ]
    )
    h = pyce.entropy(x)
    assert h[0] == pytest.approx(math.log(4), rel=1e-15)
    assert 0 <= h[1] < 1e-40
    assert h[2] == pytest.approx(math.log(2), rel=1e-15)
    assert math.isnan(h[3]) and math.isnan(h[4])
    assert_close(h, ref.entropy(x), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_same_for_every_thread_count(dtype):
    threads = pyce.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3, 4):
            pyce.set_num_threads(n)
            for shape in [(300, 257), (3, 70001)]:
                x, t = problem(shape, -1, dtype, seed=9)
                results.append((n, shape, _core.evaluate(x, t.astype(np.int64), -100), _core.entropy(x)))
    finally:
        pyce.set_num_threads(threads)
    first = {shape: (ev, h) for n, shape, ev, h in results if n == 1}
    for n, shape, ev, h in results:
        ev1, h1 = first[shape]
        for a, b in zip(ev, ev1):
            np.testing.assert_array_equal(a, b, err_msg=f"{n} threads {shape}")
        np.testing.assert_array_equal(h, h1)


def test_every_isa(each_isa):
    for dtype in (np.float32, np.float64):
        x, t = problem((6, 4099), -1, dtype, seed=4)
        check_against_reference(pyce.evaluate(x, t), ref.evaluate(x, t), dtype, 1 + np.abs(x).max())
        assert_close(pyce.entropy(x), ref.entropy(x), **tolerances(dtype, 1 + np.abs(x).max()))


def test_result_is_a_small_typed_record():
    r = pyce.evaluate(np.zeros((2, 3)), np.array([0, 1]))
    assert r.n_tokens == 2 and "perplexity 3.000" in str(r)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.loss = 1.0  # frozen


def test_errors():
    x = np.zeros((4, 5))
    with pytest.raises(IndexError, match="target 5 at position 2"):
        pyce.evaluate(x, np.array([0, 1, 5, 2]))
    with pytest.raises(IndexError, match="-3"):
        pyce.evaluate(x, np.array([0, 1, -3, 2]))
    with pytest.raises(ValueError, match=r"expected \(4,\), got \(3,\)"):
        pyce.evaluate(x, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="floating-point"):
        pyce.evaluate(np.zeros((4, 5), dtype=int), np.zeros(4, dtype=int))
    with pytest.raises(TypeError):
        pyce.evaluate(x, np.zeros((4, 5)) + 0.2)  # probabilities are not evaluated
    with pytest.raises(ValueError, match=">= 1"):
        pyce.evaluate(x, np.zeros(4, dtype=int), topk=(0, 1))
    with pytest.raises(TypeError, match="topk"):
        pyce.evaluate(x, np.zeros(4, dtype=int), topk="a")
    with pytest.raises(ValueError, match="at least one class"):
        pyce.evaluate(np.zeros((4, 0)), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="0-d"):
        pyce.evaluate(np.float64(1.0), np.zeros((), dtype=int))
    with pytest.raises(AxisError):
        pyce.evaluate(x, np.zeros(4, dtype=int), axis=2)
    with pytest.raises(TypeError, match="floating-point"):
        pyce.entropy(np.zeros(3, dtype=np.int32))
    with pytest.raises(ValueError, match="at least one class"):
        pyce.entropy(np.zeros((2, 0)))


def test_concurrent_python_threads():
    # The GIL is released in the kernels: concurrent calls must not interfere.
    from concurrent.futures import ThreadPoolExecutor

    problems = [problem((40, 3001), -1, np.float32, seed=s) for s in range(6)]
    serial = [
        (pyce.evaluate(x, t), pyce.kl_divergence_with_grad(x, x[::-1]), pyce.focal_loss(x, t))
        for x, t in problems
    ]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(
            pool.map(
                lambda p: (
                    pyce.evaluate(*p),
                    pyce.kl_divergence_with_grad(p[0], p[0][::-1]),
                    pyce.focal_loss(*p),
                ),
                problems * 3,
            )
        )
    for i, got in enumerate(parallel):
        ev, (kl, grad), fl = serial[i % len(problems)]
        assert got[0] == ev and got[1][0] == kl and got[2] == fl
        np.testing.assert_array_equal(got[1][1], grad)
