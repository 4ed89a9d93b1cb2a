"""Options that used to crash, lie or give unhelpful messages (issue 14, items 3, 5, 6, 9, 11, 15).

Each test names the item it guards; all of them failed on the tree before the fix.
"""

import tempfile
import warnings

import numpy as np
import pytest

import pyce
from pyce import reference

pytestmark = pytest.mark.kernels

ml_dtypes = pytest.importorskip("ml_dtypes")


def _problem(dtype=np.float32, rows=6, c=5):
    rng = np.random.default_rng(3)
    return rng.standard_normal((rows, c)).astype(dtype), rng.integers(0, c, rows)


# --- item 3: grad_output=None ------------------------------------------------


@pytest.mark.parametrize("big", [False, True])
def test_backward_refuses_none_grad_output(big):
    # Was uninitialised memory (for >= 1 MiB outputs a previous call's softmax).
    x, t = _problem(np.float64, rows=512 if big else 6, c=300 if big else 5)
    with pytest.raises(TypeError, match="grad_output must be a number"):
        pyce.cross_entropy_backward(x, t, None)
    out = np.full(x.shape, 7.0)
    with pytest.raises(TypeError, match="grad_output"):
        pyce.cross_entropy_backward(x, t, None, out=out)
    assert (out == 7.0).all()


# --- item 5: thread counts ------------------------------------------------------


@pytest.mark.parametrize("n", [10**6, 2**31, 2**64])
def test_set_num_threads_refuses_absurd_counts(n):
    before = pyce.get_num_threads()
    with pytest.raises(ValueError, match=r"between 1 and \d+"):
        pyce.set_num_threads(n)
    assert pyce.get_num_threads() == before


def test_set_num_threads_accepts_up_to_the_cap():
    before = pyce.get_num_threads()
    try:
        cap = pyce.max_threads()
        assert cap >= 64
        pyce.set_num_threads(cap)
        # A build without OpenMP accepts the count and computes on one thread.
        assert pyce.get_num_threads() == (cap if pyce.cpu_info()["openmp"] else 1)
    finally:
        pyce.set_num_threads(before)


# --- item 6: options a float32 kernel narrows --------------------------------------


@pytest.mark.parametrize("softcap", [1e39, 1e-39, 1e-300])
def test_softcap_out_of_float32_range(softcap):
    x, t = _problem(np.float32)
    with pytest.raises(ValueError, match="softcap must be None or a number in"):
        pyce.cross_entropy(x, t, softcap=softcap)
    # float64 logits compute in float64, where these caps are fine.
    got = pyce.cross_entropy(x.astype(np.float64), t, softcap=softcap)
    assert np.isfinite(got)


def test_softcap_at_float32_limits_is_finite():
    x, t = _problem(np.float32)
    for cap in (float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)):
        loss, grad = pyce.cross_entropy_with_grad(x, t, softcap=cap)
        assert np.isfinite(loss) and np.isfinite(grad).all(), cap


def test_weight_beyond_float32():
    x, t = _problem(np.float32)
    w = np.ones(5)
    w[3] = 1e39
    with pytest.raises(ValueError, match=r"weight\[3\] = 1e\+39 does not fit in float32"):
        pyce.cross_entropy(x, t, weight=w)
    assert np.isfinite(pyce.cross_entropy(x.astype(np.float64), t, weight=w))


def test_z_loss_beyond_float32():
    x, t = _problem(np.float32)
    with pytest.raises(
        ValueError, match=r"z_loss must be a finite number >= 0, got 1e\+39 \(at most 3.403e\+38 for float32"
    ):
        pyce.cross_entropy_with_grad(x, t, z_loss=1e39)


@pytest.mark.parametrize("temperature", [1e-39, 1e20])
def test_kl_temperature_whose_reciprocal_or_square_overflows(temperature):
    s, _ = _problem(np.float32)
    with pytest.raises(ValueError, match="temperature must be a positive number in"):
        pyce.kl_divergence(s, s[::-1].copy(), temperature=temperature)


def test_kl_temperature_near_the_limits_is_finite():
    s, _ = _problem(np.float32)
    t = s[::-1].copy()
    for temperature in (1e-37, 1e18):
        loss, grad = pyce.kl_divergence_with_grad(s, t, temperature=temperature)
        assert np.isfinite(loss) and np.isfinite(grad).all(), temperature


# --- item 9 (NumPy side): bfloat16 class weights ---------------------------------------


def test_bfloat16_weight_is_accepted():
    x, t = _problem(np.float32)
    xb = x.astype(ml_dtypes.bfloat16)
    w = np.linspace(0.5, 2.0, 5).astype(ml_dtypes.bfloat16)
    got = pyce.cross_entropy(xb, t, weight=w)
    want = reference.cross_entropy(xb.astype(np.float64), t, weight=w.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_weight_of_strings_is_a_type_error():
    x, t = _problem(np.float32)
    with pytest.raises(TypeError, match="weight must be a real array"):
        pyce.cross_entropy(x, t, weight=np.array(["a"] * 5))


# --- item 11 (NumPy side): ignore_index with probability targets -----------------------


def test_ignore_index_with_probability_target_raises():
    x, _ = _problem(np.float64)
    p = np.full(x.shape, 0.2)
    with pytest.raises(ValueError, match="ignore_index is not supported for floating point"):
        pyce.cross_entropy(x, p, ignore_index=1)
    with pytest.raises(ValueError, match="ignore_index is not supported"):
        pyce.cross_entropy_with_grad(x, p, ignore_index=0)
    # Negative values (the default -100 included) are accepted, as in PyTorch.
    assert pyce.cross_entropy(x, p, ignore_index=-1) == pyce.cross_entropy(x, p)


# --- item 15: messages that name the problem -------------------------------------


def test_ignore_index_beyond_int64():
    x, t = _problem()
    with pytest.raises(ValueError, match="ignore_index must be an int64"):
        pyce.cross_entropy(x, t, ignore_index=2**63)


@pytest.mark.parametrize("value", [np.array([1, 2]), "yes", 0.5])
def test_return_lse_must_be_a_bool(value):
    x, t = _problem()
    with pytest.raises(TypeError, match="return_lse must be True or False"):
        pyce.cross_entropy(x, t, return_lse=value)


def test_inplace_must_be_a_bool():
    x, t = _problem()
    with pytest.raises(TypeError, match="inplace must be True or False"):
        pyce.cross_entropy_with_grad(x, t, inplace=np.array([1, 0]))


def test_float32_overflow_gives_inf_without_a_warning():
    x = np.array([[3e38, -3e38]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = pyce.cross_entropy(x, np.array([1]), reduction="sum")
        general = pyce.cross_entropy(
            x, np.array([1]), reduction="sum", label_smoothing=0.0, z_loss=0.0, weight=np.ones(2)
        )
    assert got == np.inf and got.dtype == np.float32
    assert general == np.inf


def test_unsupported_forced_isa_has_no_checkout_hint():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "import pyce"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYCE_CPU_CAPABILITY": "sse9"},
        cwd=tempfile.gettempdir(),
    )
    assert proc.returncode != 0
    assert "PYCE_CPU_CAPABILITY=sse9 is not supported here" in proc.stderr
    assert "source checkout" not in proc.stderr
