"""The buffer cache of large outputs (pyce/_cache.py, csrc/runtime/buffer_cache.cpp).

Large gradients and softmax outputs reuse the memory of recently freed ones.
What must hold: results are the same with and without the cache, a buffer is
never handed out while any array still views it, the limit is honoured, and
the memory is visible to tracemalloc like NumPy's own.
"""

from __future__ import annotations

import gc
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import pyce
from pyce._cache import CACHE_MIN_BYTES

from _helpers import bitwise_equal, run_installed_python

# 64 x 8192 float32 = 2 MiB: large enough to go through the cache.
SHAPE = (64, 8192)


@pytest.fixture
def problem():
    rng = np.random.default_rng(7)
    x = rng.standard_normal(SHAPE).astype(np.float32) * 3
    t = rng.integers(0, SHAPE[1], SHAPE[0])
    return x, t


@pytest.fixture(autouse=True)
def fresh_cache():
    """Each test starts with an empty cache and the default limit, and leaves it so."""
    limit = pyce.cache_info()["limit_bytes"]
    gc.collect()
    pyce.empty_cache()
    yield
    gc.collect()
    pyce.set_cache_limit(limit)
    pyce.empty_cache()


def test_reused_buffer_gives_the_same_gradient(problem):
    x, t = problem
    pyce.set_cache_limit(0)
    loss0, grad0 = pyce.cross_entropy_with_grad(x, t)
    assert pyce.cache_info()["cached_bytes"] == 0
    pyce.set_cache_limit(1 << 30)
    before = pyce.cache_info()
    for _ in range(3):
        loss, grad = pyce.cross_entropy_with_grad(x, t)
        assert loss == loss0 and bitwise_equal(grad, grad0)
        del grad
    after = pyce.cache_info()
    assert after["misses"] - before["misses"] == 1  # only the first call allocates
    assert after["hits"] - before["hits"] == 2
    assert after["cached_buffers"] == 1 and after["cached_bytes"] >= x.nbytes


def test_a_viewed_buffer_is_not_handed_out_again(problem):
    x, t = problem
    _, grad = pyce.cross_entropy_with_grad(x, t)
    view = grad[3:10, ::2]  # a view keeps the whole buffer alive
    kept = view.copy()
    del grad
    gc.collect()
    _, other = pyce.cross_entropy_with_grad(x * 2, t)
    assert not np.shares_memory(view, other)
    np.testing.assert_array_equal(view, kept)
    assert pyce.cache_info()["cached_buffers"] == 0
    del view
    assert pyce.cache_info()["cached_buffers"] == 1


def test_outputs_are_ordinary_writeable_arrays(problem):
    x, t = problem
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x16 = x.astype(ml_dtypes.bfloat16)
    for grad in (
        pyce.cross_entropy_backward(x, t),
        pyce.softmax(x),
        pyce.cross_entropy_with_grad(x.astype(np.float64), t)[1],
        pyce.cross_entropy_with_grad(x16, t)[1],
        pyce.cross_entropy_with_grad(x16, t, grad_dtype=np.float32)[1],
    ):
        assert grad.flags.c_contiguous and grad.flags.writeable and grad.flags.aligned
        assert grad.shape == x.shape
        grad[0, 0] = 1.0
        np.add(grad, 1, out=grad)
    assert pyce.softmax(x).dtype == np.float32
    assert pyce.cross_entropy_backward(x.astype(np.float64), t).dtype == np.float64
    assert pyce.cross_entropy_backward(x16, t).dtype == ml_dtypes.bfloat16
    assert pyce.cross_entropy_backward(x16, t, grad_dtype=np.float32).dtype == np.float32


def test_every_large_output_goes_through_the_cache(problem):
    x, t = problem
    p = pyce.softmax(x, axis=-1)
    ops = [
        lambda: pyce.softmax(x),
        lambda: pyce.log_softmax(x),
        lambda: pyce.cross_entropy_backward(x, t),
        lambda: pyce.cross_entropy_with_grad(x, t)[1],
        lambda: pyce.kl_divergence_with_grad(x, p)[1],
        lambda: pyce.focal_loss_with_grad(x, t)[1],
    ]
    for op in ops:
        op()  # allocates, then frees into the cache
        before = pyce.cache_info()["hits"]
        op()
        assert pyce.cache_info()["hits"] == before + 1


def test_small_outputs_bypass_the_cache():
    x = np.zeros((4, 100), np.float32)
    assert x.nbytes < CACHE_MIN_BYTES
    before = pyce.cache_info()
    pyce.softmax(x)
    after = pyce.cache_info()
    assert (after["hits"], after["misses"]) == (before["hits"], before["misses"])


def test_limit_and_empty_cache(problem):
    x, t = problem
    grads = [pyce.cross_entropy_backward(x, t) for _ in range(6)]
    del grads
    info = pyce.cache_info()
    assert info["cached_buffers"] == 4  # at most four freed buffers
    pyce.set_cache_limit(info["cached_bytes"] // 2)  # trims the oldest
    info = pyce.cache_info()
    assert info["cached_buffers"] == 2 and info["cached_bytes"] <= info["limit_bytes"]
    pyce.empty_cache()
    assert pyce.cache_info()["cached_bytes"] == 0
    pyce.set_cache_limit(0)
    pyce.cross_entropy_backward(x, t)
    assert pyce.cache_info()["cached_buffers"] == 0


def test_a_much_larger_buffer_is_not_used_for_a_small_request(problem):
    x, t = problem
    big = np.tile(x, (8, 1))
    pyce.cross_entropy_backward(big, np.tile(t, 8))  # 16 MiB buffer now cached
    before = pyce.cache_info()
    pyce.cross_entropy_backward(x, t)  # 2 MiB: would waste 14 MiB
    after = pyce.cache_info()
    assert after["misses"] == before["misses"] + 1
    assert after["cached_buffers"] == 2


def test_tracemalloc_sees_cached_outputs(problem):
    x, t = problem
    pyce.cross_entropy_backward(x, t)  # the buffer is now cached, so the next call takes it
    tracemalloc.start()
    try:
        grad = pyce.cross_entropy_backward(x, t)
        current, _ = tracemalloc.get_traced_memory()
        assert current >= grad.nbytes
        del grad
        current, peak = tracemalloc.get_traced_memory()
        assert current < x.nbytes // 2 and peak >= x.nbytes
    finally:
        tracemalloc.stop()


def test_concurrent_callers_get_distinct_buffers(problem):
    x, t = problem
    expected = pyce.cross_entropy_backward(x, t)

    def work(i):
        out = []
        for _ in range(20):
            g = pyce.cross_entropy_backward(x, t)
            out.append(bitwise_equal(g, expected))
            if i % 2:
                del g
        return all(out)

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(8)))


@pytest.mark.parametrize("value, expected", [("0", 0), ("64", 64 << 20), ("1.5", 3 << 19)])
def test_cache_limit_from_the_environment(value, expected):
    code = "import pyce; print(pyce.cache_info()['limit_bytes'])"
    assert int(run_installed_python(code, PYCE_CACHE_MB=value)) == expected


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1.5, TypeError), ("1", TypeError)])
def test_bad_limits_are_refused(bad, error):
    with pytest.raises(error, match="cache limit|set_cache_limit"):
        pyce.set_cache_limit(bad)
