"""16-bit logits (float16 and ml_dtypes.bfloat16): computed in float32.

The reference is the float64 computation on the same 16-bit values; pyce's
16-bit outputs may differ from it by the rounding to 16 bits (at most one
unit in the last place of the 16-bit result), its float32 outputs (losses,
logsumexp, the float32 gradient option) by float32 rounding only.
"""

import numpy as np
import pytest

import pyce
from pyce import reference as ref

# Run once per forced ISA by .ci/run (pytest -m kernels).
pytestmark = pytest.mark.kernels

ml_dtypes = pytest.importorskip("ml_dtypes")

HALF = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
# One unit in the last place, relative: bfloat16 has 8 significant bits, float16 11.
ULP = {"bfloat16": 2.0**-7, "float16": 2.0**-10}
# Absolute slack for values that come out of a float32 cancellation (a gradient
# q - y near 0, a log-probability near 0): float32 rounding of O(1) terms, plus
# float16's subnormal step.
SLACK = {"bfloat16": 2.0**-21, "float16": 2.0**-21 + 2.0**-24}

SHAPES = [(1, 1), (3, 5), (7, 17), (4, 1000), (3, 4097), (2, 70000)]


def close_to_16bit(got, expected, name):
    """Every element within one 16-bit ulp of the float64 value (nan where it is nan)."""
    got = np.asarray(got, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = np.isfinite(expected)
    err = np.abs(got[finite] - expected[finite])
    bound = ULP[name] * np.abs(expected[finite]) + SLACK[name]
    assert np.all(err <= bound), f"max error {err.max()} beyond one {name} ulp"


def problem(name, shape, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4).astype(HALF[name])
    t = rng.integers(0, shape[-1], size=shape[:-1])
    if t.size > 1:
        t.reshape(-1)[0] = -100
    return x, t, x.astype(np.float64)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(HALF))
def test_normalisers(name, shape):
    x, _, x64 = problem(name, shape)
    lse = pyce.logsumexp(x)
    assert lse.dtype == np.float32
    np.testing.assert_allclose(lse, ref.logsumexp(x64), rtol=2e-6, atol=1e-6)
    sm = pyce.softmax(x)
    assert sm.dtype == x.dtype and sm.shape == x.shape
    close_to_16bit(sm, ref.softmax(x64), name)
    lsm = pyce.log_softmax(x)
    assert lsm.dtype == x.dtype
    close_to_16bit(lsm, ref.log_softmax(x64), name)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"label_smoothing": 0.1},
        {"weight": True},
        {"weight": True, "label_smoothing": 0.2},
        {"soft": True},
    ],
    ids=["plain", "smooth", "weight", "weight-smooth", "soft"],
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(HALF))
def test_cross_entropy(name, shape, reduction, options):
    x, t, x64 = problem(name, shape, seed=1)
    kw = {"reduction": reduction}
    if options.get("label_smoothing"):
        kw["label_smoothing"] = options["label_smoothing"]
    if options.get("weight"):
        kw["weight"] = np.linspace(0.5, 2.0, shape[-1]).astype(np.float32)
    target = t
    if options.get("soft"):
        p = np.random.default_rng(2).random(shape)
        target = (p / p.sum(-1, keepdims=True)).astype(HALF[name])
    ref_target = target.astype(np.float64) if options.get("soft") else target
    ref_loss, ref_grad = ref.cross_entropy_with_grad(x64, ref_target, **kw)

    loss, grad = pyce.cross_entropy_with_grad(x, target, **kw)
    assert np.asarray(loss).dtype == np.float32
    # Loss accuracy: far inside the 1e-3 relative the 16-bit contract asks for.
    np.testing.assert_allclose(loss, ref_loss, rtol=2e-6, atol=1e-6)
    assert grad.dtype == x.dtype
    close_to_16bit(grad, ref_grad, name)

    _, grad32 = pyce.cross_entropy_with_grad(x, target, grad_dtype=np.float32, **kw)
    assert grad32.dtype == np.float32
    np.testing.assert_allclose(grad32, ref_grad, rtol=1e-5, atol=1e-7)
    # The 16-bit gradient is the float32 one rounded to nearest (even).
    np.testing.assert_array_equal(grad.view(np.uint16), grad32.astype(x.dtype).view(np.uint16))

    buf = x.copy()
    in_loss, in_grad = pyce.cross_entropy_with_grad(buf, target, inplace=True, **kw)
    assert in_grad is buf
    np.testing.assert_array_equal(np.asarray(in_loss), np.asarray(loss))
    np.testing.assert_array_equal(in_grad.view(np.uint16), grad.view(np.uint16))

    g_out = np.random.default_rng(3).random(shape[:-1]) if reduction == "none" else 0.5
    back = pyce.cross_entropy_backward(x, target, g_out, **kw)
    assert back.dtype == x.dtype
    _, ref_back = ref.cross_entropy_with_grad(x64, ref_target, grad_output=g_out, **kw)
    close_to_16bit(back, ref_back, name)


@pytest.mark.parametrize("name", list(HALF))
def test_every_isa_and_thread_count(name):
    x, t, _ = problem(name, (6, 50000), seed=4)
    results = []
    for isa in pyce.cpu_info()["supported"]:
        previous = pyce._core.set_capability(isa)
        try:
            per_threads = []
            for n in (1, 2, 3):
                pyce.set_num_threads(n)
                per_threads.append(pyce.cross_entropy_with_grad(x, t, reduction="none"))
            for loss, grad in per_threads[1:]:
                np.testing.assert_array_equal(loss, per_threads[0][0])
                np.testing.assert_array_equal(grad.view(np.uint16), per_threads[0][1].view(np.uint16))
            results.append(per_threads[0])
        finally:
            pyce._core.set_capability(previous)
            pyce.set_num_threads(pyce.cpu_info()["threads"])
    for loss, grad in results[1:]:
        np.testing.assert_allclose(loss, results[0][0], rtol=2e-6)
        close_to_16bit(grad, results[0][1].astype(np.float64), name)


@pytest.mark.parametrize("name", list(HALF))
def test_extremes(name):
    inf = np.inf
    x64 = np.array(
        [
            [0.0, -inf, 1.0, 2.0],
            [inf, 0.0, 0.0, 0.0],
            [np.nan, 0.0, 1.0, 0.0],
            [-inf, -inf, -inf, -inf],
            [-inf, 3.0, 0.0, 1.0],
        ]
    )
    x = x64.astype(HALF[name])
    t = np.array([2, 1, 1, 0, 0])
    loss, grad = pyce.cross_entropy_with_grad(x, t, reduction="none")
    ref_loss, ref_grad = ref.cross_entropy_with_grad(x64, t, reduction="none")
    np.testing.assert_allclose(loss, ref_loss, rtol=2e-6)  # nan and inf in the same places
    close_to_16bit(grad, ref_grad, name)


@pytest.mark.parametrize("name", list(HALF))
def test_extremes_in_long_rows(name):
    """Rows long enough for the vectorised paths (pairs of vectors, whole
    blocks, a tail), some of them with no distribution or a nan grad_output:
    their gradient is nan in every place, while a finite row's has no nan."""
    inf = np.inf
    rng = np.random.default_rng(11)
    x64 = rng.standard_normal((6, 3000)) * 4
    x64[1, 1500] = np.nan
    x64[2, 2500] = inf
    x64[3] = -inf
    x64[4, ::2] = -inf
    x64 = x64.astype(HALF[name]).astype(np.float64)
    x = x64.astype(HALF[name])
    t = np.array([5, 1499, 2500, 7, 1, 2999])
    g_out = np.array([np.nan, 1.0, 2.0, 1.0, 1e4, 0.5])
    loss, grad = pyce.cross_entropy_with_grad(x, t, reduction="none")
    ref_loss, ref_grad = ref.cross_entropy_with_grad(x64, t, reduction="none")
    np.testing.assert_allclose(loss, ref_loss, rtol=2e-6)  # nan and inf in the same places
    close_to_16bit(grad, ref_grad, name)
    assert not np.isnan(np.asarray(grad[[0, 4, 5]], dtype=np.float64)).any()
    _, grad32 = pyce.cross_entropy_with_grad(x, t, reduction="none", grad_dtype=np.float32)
    rounded = grad32.astype(x.dtype)
    np.testing.assert_array_equal(np.isnan(grad32), np.isnan(np.asarray(grad, dtype=np.float32)))
    finite = ~np.isnan(grad32)
    np.testing.assert_array_equal(grad.view(np.uint16)[finite], rounded.view(np.uint16)[finite])
    back = pyce.cross_entropy_backward(x, t, g_out, reduction="none")
    _, ref_back = ref.cross_entropy_with_grad(x64, t, grad_output=g_out, reduction="none")
    close_to_16bit(back, ref_back, name)
    assert np.isnan(np.asarray(back[0], dtype=np.float64)).all()
    buf = x.copy()
    _, in_grad = pyce.cross_entropy_with_grad(buf, t, reduction="none", inplace=True)
    np.testing.assert_array_equal(in_grad.view(np.uint16), grad.view(np.uint16))
    # A nan whose bits are all ones (here a class weight) must not round to
    # 0 or an infinity on its way to 16 bits: the gradient of row 5 is nan.
    weight = np.ones(3000, dtype=np.float32)
    weight[t[5]] = np.array([0xFFFFFFFF], dtype=np.uint32).view(np.float32)[0]
    loss, grad = pyce.cross_entropy_with_grad(x, t, weight=weight, reduction="none")
    ref_loss, ref_grad = ref.cross_entropy_with_grad(x64, t, weight=weight, reduction="none")
    np.testing.assert_allclose(loss, ref_loss, rtol=2e-6)
    close_to_16bit(grad, ref_grad, name)
    assert np.isnan(np.asarray(grad[5], dtype=np.float64)).all()


def test_bad_grad_dtype():
    x = np.zeros((2, 3), dtype=np.float16)
    t = np.array([0, 1])
    with pytest.raises(ValueError, match="grad_dtype"):
        pyce.cross_entropy_with_grad(x, t, grad_dtype=np.float64)
    with pytest.raises(ValueError, match="grad_dtype"):
        pyce.cross_entropy_backward(np.zeros((2, 3)), t, grad_dtype=np.float32)
    with pytest.raises(ValueError, match="inplace"):
        pyce.cross_entropy_with_grad(x, t, inplace=True, grad_dtype=np.float32)


@pytest.mark.parametrize(
    "options",
    [{}, {"label_smoothing": 0.1}, {"label_smoothing": 0.1, "weight": True}],
    ids=["plain", "smooth", "weight-smooth"],
)
@pytest.mark.parametrize("name", list(HALF))
def test_large_gradient_streamed(name, options):
    """A 16-bit gradient of 16 MiB or more is written with non-temporal stores.

    Rows are independent, so the whole call must give bitwise the gradient of
    small calls on slices of rows (which are written with ordinary stores),
    also into an out= buffer that starts off a 64-byte boundary. An odd row
    length puts every row's start at a different offset within a line.
    """
    rows, cols = 1100, 7919  # 17.4 MB of 16-bit gradient
    x, t, x64 = problem(name, (rows, cols), seed=5)
    options = dict(options)
    if options.pop("weight", False):
        options["weight"] = np.linspace(0.5, 2.0, cols).astype(np.float32)
    loss, grad = pyce.cross_entropy_with_grad(x, t, reduction="none", **options)
    for r0 in range(0, rows, 250):
        part_loss, part_grad = pyce.cross_entropy_with_grad(
            x[r0 : r0 + 250], t[r0 : r0 + 250], reduction="none", **options
        )
        np.testing.assert_array_equal(loss[r0 : r0 + 250], part_loss)
        np.testing.assert_array_equal(grad[r0 : r0 + 250].view(np.uint16), part_grad.view(np.uint16))
    buffer = np.empty(rows * cols + 1, dtype=x.dtype)
    out = buffer[1:].reshape(rows, cols)  # 2 bytes past the allocation's alignment
    _, out_grad = pyce.cross_entropy_with_grad(x, t, reduction="none", out=out, **options)
    assert out_grad is out
    np.testing.assert_array_equal(out.view(np.uint16), grad.view(np.uint16))
    inplace = x.copy()
    _, in_grad = pyce.cross_entropy_with_grad(inplace, t, reduction="none", inplace=True, **options)
    assert in_grad is inplace
    np.testing.assert_array_equal(in_grad.view(np.uint16), grad.view(np.uint16))
    _, ref_grad = ref.cross_entropy_with_grad(x64[:40], t[:40], reduction="none", **options)
    close_to_16bit(grad[:40], ref_grad, name)


@pytest.mark.parametrize("cols", [2068, 2088], ids=["no-whole-pair", "one-pair"])
@pytest.mark.parametrize("name", list(HALF))
def test_streamed_short_last_block(name, cols):
    """A streamed gradient whose rows end in a block too short for two whole
    lines (20 or 40 values past a 2048-value block): the same bits as small
    calls, into a buffer off the line boundary too."""
    rows = (17 << 20) // (2 * cols) + 1  # just over the 16 MiB from which gradients stream
    x, t, _ = problem(name, (rows, cols), seed=6)
    loss, grad = pyce.cross_entropy_with_grad(x, t, reduction="none")
    part_loss, part_grad = pyce.cross_entropy_with_grad(x[:300], t[:300], reduction="none")
    np.testing.assert_array_equal(loss[:300], part_loss)
    np.testing.assert_array_equal(grad[:300].view(np.uint16), part_grad.view(np.uint16))
    buffer = np.empty(rows * cols + 3, dtype=x.dtype)
    out = buffer[3:].reshape(rows, cols)  # 6 bytes past the allocation's alignment
    pyce.cross_entropy_with_grad(x, t, reduction="none", out=out)
    np.testing.assert_array_equal(out.view(np.uint16), grad.view(np.uint16))


def _scratch_calls(name):
    """Calls whose kernels keep float32 scratch rows, in every layout run_blocked has.

    Few long rows share their blocks out (one scratch row per row, on the
    calling thread), many rows take a scratch row per thread, short rows a
    group of them; the soft cap adds a second scratch row. The last problem
    needs more scratch than a thread keeps (pyce's kKeepScratchBytes, 32 MiB).
    """
    calls = []
    for i, shape in enumerate([(8, 40000), (300, 3000), (50, 100), (3, 4097), (4, 2_200_000)]):
        x, t, x64 = problem(name, shape, seed=20 + i)
        for options in [{}, {"label_smoothing": 0.1, "softcap": 20.0}]:
            calls.append((x, t, x64, options))
    return calls


def _scratch_outputs(call):
    x, t, _, options = call
    loss, grad = pyce.cross_entropy_with_grad(x, t, reduction="none", **options)
    return loss, grad.view(np.uint16), pyce.softmax(x).view(np.uint16)


@pytest.mark.parametrize("name", list(HALF))
def test_scratch_reused_between_calls_and_threads(name):
    """The scratch a thread keeps between calls never leaks into results.

    Each call is first made once, in order; then the same calls again in the
    reverse order (the kept buffer holds another call's exps, or is too small
    and grows), at another thread count, and from several Python threads at
    once (each with a scratch buffer of its own): all bitwise the same. The
    first results are right against the float64 reference.
    """
    from concurrent.futures import ThreadPoolExecutor

    calls = _scratch_calls(name)
    first = [_scratch_outputs(c) for c in calls]
    for (x, t, x64, options), (loss, grad, _) in zip(calls, first):
        rows = slice(0, 3)  # the reference is slow on the largest problem
        ref_loss, ref_grad = ref.cross_entropy_with_grad(x64[rows], t[rows], reduction="none", **options)
        np.testing.assert_allclose(loss[rows], ref_loss, rtol=2e-6, atol=1e-6)
        close_to_16bit(grad.view(x.dtype)[rows], ref_grad, name)

    def same(i, outputs):
        for a, b in zip(first[i], outputs):
            np.testing.assert_array_equal(a, b, err_msg=f"call {i}")

    threads = pyce.get_num_threads()
    try:
        for n in [threads, 1]:
            pyce.set_num_threads(n)
            for i in reversed(range(len(calls))):
                same(i, _scratch_outputs(calls[i]))
    finally:
        pyce.set_num_threads(threads)
    order = [i % len(calls) for i in range(3 * len(calls))]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, outputs in zip(order, pool.map(lambda i: _scratch_outputs(calls[i]), order)):
            same(i, outputs)


@pytest.mark.parametrize("name", list(HALF))
def test_logits_far_above_the_shift(name):
    """16-bit rows whose later blocks hold logits far above the shift (see
    _kernel_cases._far_above_the_shift_rows): the unchecked sweep's exps go to
    scratch, so a block swept again overwrites them."""
    from _kernel_cases import _far_above_the_shift_rows

    x, t = _far_above_the_shift_rows(HALF[name])
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        for options in [{}, {"label_smoothing": 0.1}]:
            loss, grad = pyce.cross_entropy_with_grad(x, t, reduction="none", **options)
            ref_loss, ref_grad = ref.cross_entropy_with_grad(x64, t, reduction="none", **options)
            np.testing.assert_allclose(loss, ref_loss, rtol=2e-6, atol=1e-6)
            close_to_16bit(grad, ref_grad, name)
            np.testing.assert_allclose(pyce.cross_entropy(x, t, reduction="none", **options), loss, rtol=2e-6)
        np.testing.assert_allclose(pyce.logsumexp(x), ref.logsumexp(x64), rtol=2e-6, atol=1e-6)
        close_to_16bit(pyce.softmax(x), ref.softmax(x64), name)
