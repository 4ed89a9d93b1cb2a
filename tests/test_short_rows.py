"""Few classes (1 to 1024): the short-row kernels (csrc/kernels/short_rows.hpp),
which finish a group of rows together, one row per vector lane: below 128
classes ClassLanes with rows as lanes (strided_lanes.hpp, a transposing copy
into its tile), from 128 on strided_classes.cpp's Layout::rows.

Against the float64 reference in float32 and float64 on every ISA, 16-bit
logits, extremes, every option of class-index targets, in place and out=,
bitwise the same for any thread count. Row counts cover whole and partial
groups; class counts whole and partial vectors, and the largest short row.
evaluate/entropy (evaluate_lanes.hpp), the focal loss (ClassLanes' focal
outputs) and the distillation loss (divergence_lanes.hpp) take rows as lanes
below 128 classes too: against float64, special values against the row
kernel, 16-bit, thread counts and views.
"""

import numpy as np
import pytest

import pyce

from _helpers import (
    DTYPES,
    assert_close,
    loss_tol,
    option_problem,
    prob_tol,
    same_for_every_thread_count,
    value_scale,
)
from _kernel_cases import _check_normalisers, _extreme_rows

pytestmark = pytest.mark.kernels

ref = pyce.reference

CLASSES = [1, 2, 3, 5, 10, 15, 16, 17, 33, 63, 64, 88, 127, 128, 256, 1000, 1024]
ROWS = [1, 7, 64, 130]


@pytest.mark.parametrize("n_classes", CLASSES)
def test_short_rows_normalisers_every_isa(each_isa, n_classes):
    rng = np.random.default_rng(n_classes)
    for dtype in DTYPES:
        for n_rows in ROWS:
            _check_normalisers((rng.standard_normal((n_rows, n_classes)) * 3).astype(dtype))


@pytest.mark.parametrize("n_classes", [2, 7, 15, 17, 88, 1000])
def test_short_rows_extremes(each_isa, n_classes):
    for dtype in DTYPES:
        x = _extreme_rows(n_classes, dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            _check_normalisers(x)
            target = np.arange(len(x)) % n_classes
            target[::4] = -100
            loss, grad = pyce.cross_entropy_with_grad(x, target, reduction="none")
            exp_loss, exp_grad = ref.cross_entropy_with_grad(x, target, reduction="none")
        assert_close(loss, exp_loss, **loss_tol(dtype, value_scale(x)))
        assert_close(grad, exp_grad, **prob_tol(dtype, value_scale(x)))


OPTION_NAMES = ["plain", "weight", "ignore", "ignore-class0", "smooth", "smooth-1", "weight-ignore-smooth"]


@pytest.mark.parametrize("option", OPTION_NAMES)
@pytest.mark.parametrize("n_classes", [2, 5, 10, 15, 40, 63, 88, 1000])
def test_short_rows_cross_entropy_every_isa(each_isa, n_classes, option):
    rng = np.random.default_rng(n_classes)
    for dtype in DTYPES:
        logits, target, kw = option_problem(rng, (130, n_classes), option, dtype)
        scale = value_scale(logits)
        for reduction in ("mean", "none"):
            loss = pyce.cross_entropy(logits, target, reduction=reduction, z_loss=1e-3, **kw)
            exp = ref.cross_entropy(logits, target, reduction=reduction, z_loss=1e-3, **kw)
            assert_close(loss, exp, **loss_tol(dtype, scale))
            got_loss, grad = pyce.cross_entropy_with_grad(logits, target, reduction=reduction, **kw)
            exp_loss, exp_grad = ref.cross_entropy_with_grad(logits, target, reduction=reduction, **kw)
            assert_close(got_loss, exp_loss, **loss_tol(dtype, scale))
            assert_close(grad, exp_grad, **prob_tol(dtype, scale))
        g_out = rng.standard_normal(len(target))
        grad = pyce.cross_entropy_backward(logits, target, g_out, reduction="none", **kw)
        expected = ref.cross_entropy_backward(logits, target, g_out, reduction="none", **kw)
        assert_close(grad, expected, **prob_tol(dtype, scale * 4))


@pytest.mark.parametrize("n_classes", [2, 3, 13, 88, 1000])
def test_short_rows_16bit(each_isa, n_classes):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(2)
    for dtype in (np.float16, ml_dtypes.bfloat16):
        logits, target, kw = option_problem(rng, (70, n_classes), "weight-ignore-smooth", np.float32)
        x = logits.astype(dtype)
        wide = x.astype(np.float64)
        exp_loss, exp_grad = ref.cross_entropy_with_grad(wide, target, **kw)
        loss, grad = pyce.cross_entropy_with_grad(x, target, **kw)
        assert loss.dtype == np.float32 and grad.dtype == x.dtype
        assert_close(loss, exp_loss, **loss_tol(np.float32, value_scale(wide)))
        loss32, grad32 = pyce.cross_entropy_with_grad(x, target, grad_dtype=np.float32, **kw)
        assert loss32 == loss
        assert_close(grad32, exp_grad, **prob_tol(np.float32, value_scale(wide)))
        np.testing.assert_array_equal(grad.astype(np.float32), grad32.astype(dtype).astype(np.float32))
        lse = pyce.logsumexp(x)
        assert_close(lse, ref.logsumexp(wide), **loss_tol(np.float32, value_scale(wide)))
        np.testing.assert_allclose(
            pyce.softmax(x).astype(np.float64),
            ref.softmax(wide).astype(dtype).astype(np.float64),
            rtol=1e-2,
            atol=1e-3,
        )


def _check_inplace_and_out(rng, shape):
    """In place (every row read before it is written) and out=, against the
    reference and against each other bitwise."""
    logits, target, kw = option_problem(rng, shape, "weight-ignore-smooth", np.float32)
    exp_loss, exp_grad = ref.cross_entropy_with_grad(logits, target, **kw)
    work = logits.copy()
    loss, grad = pyce.cross_entropy_with_grad(work, target, inplace=True, **kw)
    assert grad is work
    assert_close(loss, exp_loss, **loss_tol(np.float32, value_scale(logits)))
    assert_close(work, exp_grad, **prob_tol(np.float32, 1.0))
    out = np.empty_like(logits)
    assert pyce.cross_entropy_with_grad(logits, target, out=out, **kw)[0] == loss
    np.testing.assert_array_equal(out, work)


def test_short_rows_inplace_out_and_views():
    rng = np.random.default_rng(3)
    _check_inplace_and_out(rng, (200, 21))
    view = (rng.standard_normal((300, 40)) * 2).astype(np.float32)[::3, 5:26]
    _check_normalisers(view)
    _check_inplace_and_out(rng, (333, 6))  # rows as lanes (fewer than 128 classes)


def test_short_rows_bitwise_for_every_thread_count():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((20000, 88)) * 3).astype(np.float32)  # above the threading threshold
    target = rng.integers(0, 88, size=20000)
    target[::9] = -100
    y = (rng.standard_normal((300000, 3)) * 3).astype(np.float32)  # rows as lanes
    ty = rng.integers(0, 3, size=300000)

    def call():
        loss, grad = pyce.cross_entropy_with_grad(x, target, label_smoothing=0.1)
        return (
            np.asarray(loss),
            grad,
            pyce.cross_entropy(x, target, reduction="none"),
            pyce.logsumexp(x),
            pyce.softmax(x),
            pyce.log_softmax(x),
            pyce.cross_entropy_with_grad(y, ty, label_smoothing=0.1)[1],
            pyce.cross_entropy(y, ty, reduction="none"),
            pyce.logsumexp(y),
            pyce.log_softmax(y),
        )

    same_for_every_thread_count(call)


def test_short_rows_few_rows_share_the_threads_bitwise():
    # 1024 rows of 1000 classes were one unit of work, so one thread did it
    # all; now the rows are split for the threads (parallel.hpp,
    # positions_per_unit), and each row's result is the same for any count.
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((1024, 1000)) * 3).astype(np.float32)
    target = rng.integers(0, 1000, size=1024)
    y = (rng.standard_normal((700, 40)) * 3).astype(np.float32)  # rows as lanes
    ty = rng.integers(0, 40, size=700)

    def call():
        loss, grad = pyce.cross_entropy_with_grad(x, target, reduction="none")
        return (
            loss,
            grad,
            pyce.logsumexp(x),
            pyce.softmax(x),
            pyce.log_softmax(x),
            pyce.cross_entropy_with_grad(y, ty, reduction="none")[1],
            pyce.softmax(y),
        )

    same_for_every_thread_count(call, counts=(1, 2, 3, 16))


# --------------------------------------------------------------------------- evaluate, entropy
# Below 128 classes pyce.evaluate and pyce.entropy take one row per vector
# lane too (csrc/kernels/evaluate_lanes.hpp); from 128 on the row kernel.


def _precise_rows(wide, target):
    """Per-row loss, entropy and max probability in float64 without the
    cancellation of lse - x (a confident row's loss and entropy are tiny):
    with d = max - x >= 0 and u = sum exp(-d) = 1 + (the terms but one max),
    log u = log1p(u - 1), loss = (max - x_t) + log u,
    entropy = log u + sum q d, max_prob = 1 / u."""
    top = wide.max(axis=1, keepdims=True)
    d = top - wide
    e = np.exp(-d)
    first_max = np.argmax(wide, axis=1)
    mask = np.ones_like(e, dtype=bool)
    mask[np.arange(len(e)), first_max] = False
    others = np.where(mask, e, 0.0).sum(axis=1)
    log_u = np.log1p(others)
    q = e / (1.0 + others)[:, None]
    entropy = log_u + (q * d).sum(axis=1)
    xt = np.take_along_axis(wide, np.where(target >= 0, target, 0)[:, None], axis=1)[:, 0]
    loss = (top[:, 0] - xt) + log_u
    return loss, entropy, 1.0 / (1.0 + others)


def _check_evaluate_rows(x, target, *, rtol32=4e-6, loss_rtol32=None):
    """Per-row loss, entropy, max probability and rank of the scored rows
    against float64, in the rows' own precision (relative, also for tiny values)."""
    from pyce.metrics import evaluate_rows

    wide = x.astype(np.float64)
    loss, ent, max_prob, rank = evaluate_rows(x, target)
    scored = target != -100
    exp_loss, exp_ent, exp_max = _precise_rows(wide, target)
    xt = np.take_along_axis(wide, np.where(scored, target, 0)[:, None], axis=1)[:, 0]
    exp_rank = (wide > xt[:, None]).sum(axis=1)
    rtol = 1e-13 if x.dtype == np.float64 else rtol32
    atol = 1e-300
    loss_rtol = rtol if loss_rtol32 is None or x.dtype == np.float64 else loss_rtol32
    np.testing.assert_allclose(loss, exp_loss[scored], rtol=loss_rtol, atol=atol, err_msg="loss")
    np.testing.assert_allclose(ent, exp_ent[scored], rtol=rtol, atol=atol, err_msg="entropy")
    np.testing.assert_allclose(max_prob, exp_max[scored], rtol=rtol, atol=atol, err_msg="max_prob")
    np.testing.assert_array_equal(rank, exp_rank[scored])
    np.testing.assert_allclose(pyce.entropy(x), exp_ent, rtol=rtol, atol=atol, err_msg="entropy()")


@pytest.mark.parametrize("n_classes", [1, 2, 3, 10, 16, 17, 21, 33, 88, 127, 128, 256])
def test_short_rows_evaluate_every_isa(each_isa, n_classes):
    rng = np.random.default_rng(n_classes)
    for dtype in (np.float32, np.float64):
        for n_rows in ROWS:
            x = (rng.standard_normal((n_rows, n_classes)) * 3).astype(dtype)
            target = rng.integers(0, n_classes, size=n_rows)
            target[1::4] = -100
            _check_evaluate_rows(x, target)
            result = pyce.evaluate(x, target, topk=(1, 2, 5))
            expected = ref.evaluate(x.astype(np.float64), target, topk=(1, 2, 5))
            assert result.accuracy == expected["accuracy"]


def _confident_rows(rng, n_classes):
    """Rows whose largest logit (0.37, at a random class) leads the others by
    gaps of 5 to 80 (float64, 9 rows per gap)."""
    rows = []
    for gap in (5.0, 17.0, 30.0, 55.0, 80.0):
        for _ in range(9):
            r = -gap - rng.random(n_classes) * 3
            r[rng.integers(n_classes)] = 0.37
            rows.append(r)
    return np.array(rows)


@pytest.mark.parametrize("n_classes", [2, 21, 88])
def test_short_rows_evaluate_confident_rows_keep_relative_precision(each_isa, n_classes):
    # A confident row's loss and entropy are tiny (e^-gap): they keep their
    # relative precision. The loss within 4 ulp of float32 (measured: at most
    # 2.5e-7) because the dominant class's sum is refined (dominant.hpp): the
    # sweep's exps of rounded differences x - max (7.6e-6 absolute at a gap of
    # 80) alone are off by several 1e-6. The entropy sums those exps times
    # the gaps, in the rows' kernel as here: within 4e-6.
    rng = np.random.default_rng(7)
    for dtype in (np.float32, np.float64):
        x = _confident_rows(rng, n_classes).astype(dtype)
        target = x.argmax(axis=1)
        _check_evaluate_rows(x, target, rtol32=4e-6, loss_rtol32=5e-7)


def _extreme_problem(n_classes, dtype):
    """Extreme rows (nan, +inf, all -inf among ordinary ones), their targets
    (some ignored), and the rows padded with -inf classes to 128: the same
    distributions, through the row kernels."""
    x = _extreme_rows(n_classes, dtype)
    target = np.arange(len(x)) % n_classes
    target[::5] = -100
    padded = np.full((len(x), 128), -np.inf, dtype=x.dtype)
    padded[:, :n_classes] = x
    return x, target, padded


def _assert_same_values(got, want, *, atol, err_msg=""):
    """nan where want is nan, and close elsewhere."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=err_msg)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol, err_msg=err_msg)


@pytest.mark.parametrize("n_classes", [2, 7, 17, 88])
def test_short_rows_evaluate_special_values(each_isa, n_classes):
    # nan, +inf, all -inf rows among ordinary ones in a group: what the row
    # kernel writes for such rows (checked against 128 classes, the row
    # kernel, with the extra classes at -inf: the same distribution).
    from pyce.metrics import evaluate_rows

    for dtype in (np.float32, np.float64):
        x, target, padded = _extreme_problem(n_classes, dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            got = evaluate_rows(x, target)
            want = evaluate_rows(padded, target)
            got_h, want_h = pyce.entropy(x), pyce.entropy(padded)
        for name, a, b in zip(("loss", "entropy", "max_prob", "rank"), got, want):
            _assert_same_values(a, b, atol=1e-30, err_msg=name)
        np.testing.assert_allclose(got_h, want_h, rtol=1e-5, atol=1e-30)


def test_short_rows_evaluate_bitwise_for_every_thread_count_and_views():
    from pyce.metrics import evaluate_rows

    rng = np.random.default_rng(11)
    x = (rng.standard_normal((300000, 10)) * 3).astype(np.float32)  # above the threading threshold
    target = rng.integers(0, 10, size=300000)
    target[::7] = -100
    view = (rng.standard_normal((3000, 50)) * 2).astype(np.float32)[::3, 5:26]  # not contiguous

    def call():
        return (*evaluate_rows(x, target), pyce.entropy(x), pyce.entropy(view))

    first = same_for_every_thread_count(call)
    np.testing.assert_array_equal(first[-1], pyce.entropy(np.ascontiguousarray(view)))


# --------------------------------------------------------------------------- focal loss
# Below 128 classes pyce.focal_loss(_with_grad) takes one row per vector lane
# too (ClassLanes' focal outputs, csrc/kernels/strided_lanes.hpp, with the
# focal terms lane by lane in double); from 128 on the row kernel.

FOCAL_CLASSES = [1, 2, 3, 10, 16, 17, 21, 33, 88, 127, 128, 256]


def _precise_focal(wide, target, gamma, alpha):
    """Per-row focal loss in float64 from the nll of _precise_rows (no
    cancellation for a confident row): alpha_t (1 - p)^gamma nll."""
    nll, _, _ = _precise_rows(wide, target)
    one_minus_p = -np.expm1(-nll)
    a = alpha[np.where(target >= 0, target, 0)]
    return np.where(target >= 0, a * one_minus_p**gamma * nll, 0.0)


@pytest.mark.parametrize("n_classes", FOCAL_CLASSES)
def test_short_rows_focal_every_isa(each_isa, n_classes):
    rng = np.random.default_rng(n_classes + 500)
    alpha = rng.random(n_classes) + 0.25
    for dtype in (np.float32, np.float64):
        for n_rows in ROWS:
            x = (rng.standard_normal((n_rows, n_classes)) * 3).astype(dtype)
            target = rng.integers(0, n_classes, size=n_rows)
            target[1::4] = -100
            wide = x.astype(np.float64)
            for gamma in (0.0, 0.5, 2.0, 3.7):
                for a in (None, 0.25, alpha):
                    kw = dict(gamma=gamma, alpha=a)
                    loss, grad = pyce.focal_loss_with_grad(x, target, reduction="none", **kw)
                    assert loss.dtype == dtype and grad.dtype == dtype
                    np.testing.assert_array_equal(loss, pyce.focal_loss(x, target, reduction="none", **kw))
                    full = np.ones(n_classes) * (1.0 if a is None else a)
                    want = _precise_focal(wide, target, gamma, full)
                    rtol = 1e-13 if dtype == np.float64 else 2e-6
                    np.testing.assert_allclose(loss, want, rtol=rtol, atol=1e-300, err_msg=f"loss {kw}")
                    _, want_grad = ref.focal_loss_with_grad(wide, target, reduction="none", **kw)
                    gtol = dict(rtol=1e-11, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=2e-6)
                    assert_close(grad, want_grad, **gtol, err_msg=f"grad {kw}")
                mean, grad = pyce.focal_loss_with_grad(x, target, gamma=2.0, alpha=alpha)
                want_mean, want_grad = ref.focal_loss_with_grad(wide, target, gamma=2.0, alpha=alpha)
                assert_close(mean, want_mean, rtol=1e-11 if dtype == np.float64 else 1e-5, atol=0)
                assert_close(grad, want_grad, **gtol)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("n_classes", [2, 21, 88])
def test_short_rows_focal_confident_rows_keep_relative_precision(each_isa, n_classes, gamma):
    # A confident row's nll is tiny (e^-gap) and its focal loss tinier
    # (~nll^(1 + gamma)): both keep their relative precision because the
    # lanes take their terms with the rounding of x - max recovered
    # (dominant.hpp's exp_recovered). The plain exps of rounded differences
    # (7.6e-6 absolute at a gap of 80) would leave the float32 loss off by
    # several 1e-6, times 1 + gamma.
    rows = _confident_rows(np.random.default_rng(17), n_classes)
    for dtype in (np.float32, np.float64):
        x = rows.astype(dtype)
        target = x.argmax(axis=1)
        want = _precise_focal(x.astype(np.float64), target, gamma, np.ones(n_classes))
        got = pyce.focal_loss(x, target, gamma=gamma, reduction="none")
        # float32 results below its normal range are flushed: only those above.
        normal = want > (1e-300 if dtype == np.float64 else 1e-37)
        rtol = 1e-13 if dtype == np.float64 else 4e-7 * (1 + gamma)
        np.testing.assert_allclose(got[normal], want[normal], rtol=rtol, atol=0)


@pytest.mark.parametrize("n_classes", [2, 7, 17, 88])
def test_short_rows_focal_special_values(each_isa, n_classes):
    # nan, +inf, all -inf rows among ordinary ones in a group: what the row
    # kernel writes (the same rows padded to 128 classes with -inf).
    for dtype in (np.float32, np.float64):
        x, target, padded = _extreme_problem(n_classes, dtype)
        for gamma in (0.0, 2.0):
            with np.errstate(invalid="ignore", over="ignore"):
                loss, grad = pyce.focal_loss_with_grad(x, target, gamma=gamma, reduction="none")
                want, want_grad = pyce.focal_loss_with_grad(padded, target, gamma=gamma, reduction="none")
            _assert_same_values(loss, want, atol=1e-30, err_msg="loss")
            _assert_same_values(grad, want_grad[:, :n_classes], atol=1e-7, err_msg="grad")


def test_short_rows_focal_bitwise_for_every_thread_count_and_views():
    rng = np.random.default_rng(29)
    x = (rng.standard_normal((300000, 10)) * 3).astype(np.float32)  # above the threading threshold
    target = rng.integers(0, 10, size=300000)
    target[::7] = -100
    alpha = rng.random(10) + 0.5
    view = (rng.standard_normal((3000, 50)) * 2).astype(np.float32)[::3, 5:26]  # not contiguous
    vt = rng.integers(0, 21, size=1000)

    def call():
        return (
            *pyce.focal_loss_with_grad(x, target, alpha=alpha, reduction="none"),
            *pyce.focal_loss_with_grad(view, vt, gamma=1.5, reduction="none"),
        )

    first = same_for_every_thread_count(call)
    contiguous = pyce.focal_loss_with_grad(np.ascontiguousarray(view), vt, gamma=1.5, reduction="none")
    np.testing.assert_array_equal(first[2], contiguous[0])
    np.testing.assert_array_equal(first[3], contiguous[1])


# --------------------------------------------------------------------------- distillation (KL)
# Below 128 classes pyce.kl_divergence(_with_grad) takes one row per vector
# lane too (KLLanes, csrc/kernels/divergence_lanes.hpp); from 128 on the row kernel.

KL_CLASSES = [1, 2, 3, 10, 16, 17, 21, 33, 88, 127, 128, 256]


def _kl_pair(rng, n_rows, n_classes, dtype, scale=3.0):
    s = (rng.standard_normal((n_rows, n_classes)) * scale).astype(dtype)
    t = (rng.standard_normal((n_rows, n_classes)) * scale).astype(dtype)
    return s, t


@pytest.mark.parametrize("n_classes", KL_CLASSES)
def test_short_rows_kl_every_isa(each_isa, n_classes):
    rng = np.random.default_rng(n_classes + 900)
    for dtype in (np.float32, np.float64):
        for n_rows in ROWS:
            s, t = _kl_pair(rng, n_rows, n_classes, dtype)
            wide_s, wide_t = s.astype(np.float64), t.astype(np.float64)
            for temperature in (1.0, 2.0, 0.5):
                for reduction in ("none", "batchmean", "sum"):
                    kw = dict(temperature=temperature, reduction=reduction)
                    loss, grad = pyce.kl_divergence_with_grad(s, t, **kw)
                    assert grad.dtype == dtype
                    np.testing.assert_array_equal(loss, pyce.kl_divergence(s, t, **kw))
                    want, want_grad = ref.kl_divergence_with_grad(wide_s, wide_t, **kw)
                    scale = 1 + 3 * 6 / temperature  # the largest |logit| / T, about
                    if dtype == np.float64:
                        ltol, gtol = (
                            dict(rtol=1e-11, atol=1e-13 * scale),
                            dict(rtol=1e-11, atol=1e-14 * scale),
                        )
                    else:
                        ltol, gtol = dict(rtol=2e-5, atol=16 * 2**-23 * scale), dict(rtol=1e-5, atol=2e-6)
                    assert_close(loss, want, **ltol, err_msg=f"loss {kw}")
                    assert_close(grad, want_grad, **gtol, err_msg=f"grad {kw}")
                    assert np.all(np.asarray(loss) >= 0)


def test_short_rows_kl_identical_and_close_distributions():
    # The same teacher and student: KL and gradient exactly 0 (the lanes take
    # x - max on both sides, so nothing is left over, and subtract rounded
    # products). Close ones (KL ~ 1e-9 to 1e-6): float32 is off by the exps'
    # rounding in log S_t - log S_s, a few 1e-8 absolute -- no more than the
    # row kernel (the same rows padded to 128 classes) is; float64 within 1e-15.
    rng = np.random.default_rng(31)
    for dtype in (np.float32, np.float64):
        for n_classes in (2, 21, 88):
            s = (rng.standard_normal((130, n_classes)) * 3).astype(dtype)
            loss, grad = pyce.kl_divergence_with_grad(s, s.copy(), reduction="none")
            np.testing.assert_array_equal(loss, 0.0)
            np.testing.assert_array_equal(grad, 0.0)
            t = (s.astype(np.float64) + rng.standard_normal(s.shape) * 1e-3).astype(dtype)
            want = ref.kl_divergence(s.astype(np.float64), t.astype(np.float64), reduction="none")
            err = np.abs(pyce.kl_divergence(s, t, reduction="none") - want).max()
            pad = np.full((130, 128 - n_classes), -np.inf, dtype=dtype)
            row_err = np.abs(
                pyce.kl_divergence(np.hstack([s, pad]), np.hstack([t, pad]), reduction="none") - want
            )
            if dtype == np.float64:
                assert err < 1e-15
            else:
                assert err < max(2e-7, 2 * row_err.max()), (err, row_err.max())


@pytest.mark.parametrize("n_classes", [2, 7, 17, 88])
def test_short_rows_kl_special_values(each_isa, n_classes):
    # nan, +inf, all -inf rows on either side, among ordinary ones, and -inf
    # classes (masked on one side or both): what the row kernel writes (the
    # same rows padded to 128 classes with -inf on both sides).
    rng = np.random.default_rng(n_classes)
    for dtype in (np.float32, np.float64):
        x, _, _ = _extreme_problem(n_classes, dtype)
        other = (rng.standard_normal(x.shape) * 3).astype(dtype)
        masked = other.copy()
        masked[::3, 0] = -np.inf
        for s, t in ((x, other), (other, x), (x, x[::-1].copy()), (masked, other), (other, masked)):
            pad = np.full((len(s), 128 - n_classes), -np.inf, dtype=dtype)
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                loss, grad = pyce.kl_divergence_with_grad(s, t, temperature=1.5, reduction="none")
                want, want_grad = pyce.kl_divergence_with_grad(
                    np.hstack([s, pad]), np.hstack([t, pad]), temperature=1.5, reduction="none"
                )
            np.testing.assert_array_equal(np.isinf(loss), np.isinf(want))
            _assert_same_values(loss, want, atol=1e-6, err_msg="loss")
            _assert_same_values(grad, want_grad[:, :n_classes], atol=1e-7, err_msg="grad")


# The focal and KL lanes round their 16-bit gradient once, from the float32
# one they compute (grad_dtype=float32 returns that one unrounded). Each entry:
# the function, its float64 reference, and the call's two inputs -- logits and
# class indices (focal), student and teacher logits (KL).
_WITH_GRAD_16BIT = {
    "focal": (
        pyce.focal_loss_with_grad,
        ref.focal_loss_with_grad,
        lambda rng, dtype, n_classes: (
            (rng.standard_normal((130, n_classes)) * 3).astype(dtype),
            rng.integers(0, n_classes, size=130),
        ),
    ),
    "kl": (
        pyce.kl_divergence_with_grad,
        ref.kl_divergence_with_grad,
        lambda rng, dtype, n_classes: _kl_pair(rng, 130, n_classes, dtype),
    ),
}


def _widened(a):
    """Floating inputs in float64 for the reference; class indices as they are."""
    return a if a.dtype.kind in "iu" else a.astype(np.float64)


@pytest.mark.parametrize("function", sorted(_WITH_GRAD_16BIT))
def test_short_rows_16bit_gradient_is_the_float32_gradient_rounded_once(function):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    with_grad, reference, inputs = _WITH_GRAD_16BIT[function]
    rng = np.random.default_rng(37)
    for dtype in (ml_dtypes.bfloat16, np.float16):
        for n_classes in (3, 21, 88):
            first, second = inputs(rng, dtype, n_classes)
            loss, grad = with_grad(first, second, reduction="none")
            loss32, grad32 = with_grad(first, second, reduction="none", grad_dtype=np.float32)
            assert grad.dtype == dtype and grad32.dtype == np.float32
            np.testing.assert_array_equal(loss, loss32)
            np.testing.assert_array_equal(grad.astype(np.float32), grad32.astype(dtype).astype(np.float32))
            _, want = reference(_widened(first), _widened(second), reduction="none")
            assert_close(grad32, want, rtol=1e-5, atol=2e-6)


def test_short_rows_kl_bitwise_for_every_thread_count_and_views():
    rng = np.random.default_rng(41)
    s, t = _kl_pair(rng, 300000, 10, np.float32)  # above the threading threshold
    view_s = (rng.standard_normal((3000, 50)) * 2).astype(np.float32)[::3, 5:26]  # not contiguous
    view_t = (rng.standard_normal((3000, 50)) * 2).astype(np.float32)[1::3, 3:24]

    def call():
        return (
            *pyce.kl_divergence_with_grad(s, t, temperature=2.0, reduction="none"),
            *pyce.kl_divergence_with_grad(view_s, view_t, reduction="none"),
        )

    first = same_for_every_thread_count(call)
    contiguous = pyce.kl_divergence_with_grad(
        np.ascontiguousarray(view_s), np.ascontiguousarray(view_t), reduction="none"
    )
    np.testing.assert_array_equal(first[2], contiguous[0])
    np.testing.assert_array_equal(first[3], contiguous[1])
