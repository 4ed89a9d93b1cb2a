"""Fuzz smoke test over every public function (issue 14, "In CI from now on").

Random shapes (empty ones included), strides, dtypes, options (good and bad)
and output buffers that alias an input: every call either gives the
reference's answer or raises TypeError, ValueError or IndexError -- never a
crash, another exception or silent garbage -- and leaves its inputs as they
were. Bounded (a few seconds); the long runs of issue 14 used the same
properties with far more examples.
"""

import numpy as np
import pytest

import pyce
from pyce import reference

hypothesis = pytest.importorskip("hypothesis")
ml_dtypes = pytest.importorskip("ml_dtypes")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.kernels

ALLOWED = (TypeError, ValueError, IndexError)
DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16, np.int32]
TOLERANCE = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 2e-4}  # 16-bit: 2e-2

TARGET_FUNCS = [
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_with_grad",
    "focal_loss",
    "focal_loss_with_grad",
    "evaluate",
]
PLAIN_FUNCS = ["logsumexp", "softmax", "log_softmax", "entropy"]
PAIR_FUNCS = ["kl_divergence", "kl_divergence_with_grad"]


@st.composite
def logits_arrays(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = rng.standard_normal(shape) * draw(st.sampled_from([1.0, 30.0]))
    if draw(st.booleans()) and base.size:
        base.flat[draw(st.integers(0, base.size - 1))] = draw(
            st.sampled_from([np.inf, -np.inf, np.nan, 80.0])
        )
    x = base.astype(dtype)
    layout = draw(st.sampled_from(["contiguous", "transposed", "strided"]))
    if layout == "transposed" and ndim > 1:
        x = np.ascontiguousarray(x.swapaxes(0, -1)).swapaxes(0, -1)
    elif layout == "strided":
        x = np.repeat(x, 2, axis=-1)[..., ::2]
    return x


def _options(draw, name, n_classes):
    o = {}
    if name.startswith(("cross_entropy", "focal", "evaluate")):
        o["ignore_index"] = draw(st.sampled_from([-100, -100, 0, 1, 2**63, "x"]))
    if name.startswith(("cross_entropy", "focal")):
        o["reduction"] = draw(st.sampled_from(["mean", "sum", "none", "avg"]))
    if name.startswith("cross_entropy"):
        o["label_smoothing"] = draw(st.sampled_from([0.0, 0.0, 0.2, 1.5, float("nan")]))
        o["weight"] = draw(st.sampled_from([None, None, "ones", "bf16", "short"]))
        o["softcap"] = draw(st.sampled_from([None, None, 4.0, -1.0, 1e39]))
        o["z_loss"] = draw(st.sampled_from([0.0, 0.0, 1e-3, -1.0]))
        w = o["weight"]
        if w == "ones":
            o["weight"] = np.linspace(0.5, 2.0, n_classes)
        elif w == "bf16":
            o["weight"] = np.ones(n_classes, dtype=ml_dtypes.bfloat16)
        elif w == "short":
            o["weight"] = np.ones(n_classes + 1)
    if name.startswith("focal"):
        o["gamma"] = draw(st.sampled_from([2.0, 0.0, -1.0]))
    if name.startswith("kl"):
        o["temperature"] = draw(st.sampled_from([1.0, 2.0, 0.0, 1e-39]))
        o["reduction"] = draw(st.sampled_from(["batchmean", "sum", "mean", "none", "avg"]))
    return o


def _snapshot(arrays):
    return [(a, a.copy()) for a in arrays if isinstance(a, np.ndarray)]


def _unchanged(snap):
    return all(np.array_equal(a, before, equal_nan=True) and a.dtype == before.dtype for a, before in snap)


def _as_list(result):
    items = result if isinstance(result, tuple) else (result,)
    out = []
    for r in items:
        if isinstance(r, pyce.EvalResult):
            out += [np.float64(r.loss), np.float64(r.entropy)]
        elif isinstance(r, dict):  # reference.evaluate
            out += [np.float64(r["loss"]), np.float64(r["entropy"])]
        else:
            out.append(np.asarray(r, dtype=np.float64))
    return out


def _agree(got, want, dtype):
    tol = TOLERANCE.get(np.dtype(dtype), 2e-2)
    for g, w in zip(_as_list(got), _as_list(want)):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol, equal_nan=True)


CALLS = [(name, None) for name in TARGET_FUNCS + PLAIN_FUNCS + PAIR_FUNCS] + [
    ("cross_entropy_backward", "out"),
    ("cross_entropy_backward", "out_holding_target"),
    ("cross_entropy_with_grad", "out"),
    ("cross_entropy_with_grad", "out_holding_target"),
    ("cross_entropy_with_grad", "inplace"),
]


@pytest.mark.parametrize("name,alias", CALLS)
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_every_public_function(name, alias, data):
    draw = data.draw
    x = draw(logits_arrays())
    axis = draw(
        st.sampled_from([-1, -1, 0, 1, 3, 1.5] + ([None, (0, -1)] if name in PLAIN_FUNCS[:3] else []))
    )
    kwargs = {"axis": axis}
    n_classes = x.shape[axis] if isinstance(axis, int) and -x.ndim <= axis < x.ndim else 1
    kwargs.update(_options(draw, name, n_classes))
    args = [x]
    if name in TARGET_FUNCS:
        kind = (
            "indices"
            if alias == "out_holding_target"
            else draw(st.sampled_from(["indices", "indices", "probabilities", "wrong_shape"]))
        )
        a = axis if isinstance(axis, int) and -x.ndim <= axis < x.ndim else -1
        t_shape = x.shape[: a % x.ndim] + x.shape[a % x.ndim + 1 :]
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        if kind == "indices":
            # Mostly in range (so that the kernel runs), sometimes not.
            low, high = (0, n_classes) if draw(st.integers(0, 3)) else (-1, n_classes + 1)
            t = rng.integers(low, max(high, low + 1), t_shape)
        elif kind == "probabilities":
            t = rng.dirichlet(np.ones(max(n_classes, 1)), t_shape).astype(np.float64)
            t = np.moveaxis(t, -1, a % x.ndim) if t.shape != x.shape else t
            if t.shape != x.shape:
                t = np.full(x.shape, 0.5)
        else:
            t = rng.integers(0, 2, t_shape + (2,))
        args.append(t)
        if alias is not None and x.dtype.kind != "f":
            alias = None  # out=/inplace on integer or bfloat16 logits: the plain error paths
        if alias is not None:
            if alias == "out":
                kwargs["out"] = np.zeros(x.shape, x.dtype)
            elif (
                alias == "out_holding_target"
                and kind == "indices"
                and t.size
                and x.nbytes % 8 == 0
                and x.nbytes >= 8 * t.size
            ):
                # The int64 target stored inside the gradient buffer: refused.
                out = np.zeros(x.shape, x.dtype)
                view = out.reshape(-1).view(np.int64)[: t.size]
                view[:] = t.reshape(-1)
                t = view.reshape(t.shape)
                args[1] = t
                kwargs["out"] = out
            elif alias == "inplace":
                kwargs["inplace"] = True
                x = x.copy()
                args[0] = x
            else:
                alias = None
        if name == "cross_entropy_backward":
            args.append(draw(st.sampled_from([1.0, 0.5, None])))
    elif name in PAIR_FUNCS:
        args.append(x[::-1].copy() if draw(st.booleans()) else np.zeros((2,) + x.shape))
    hypothesis.event(f"alias={alias}")
    x_before = x.copy()
    snap = _snapshot(
        [a for a in args if a is not x or alias != "inplace"] + [v for k, v in kwargs.items() if k != "out"]
    )
    if alias != "inplace":
        snap += _snapshot([x])
    out_before = _snapshot([kwargs.get("out")])
    try:
        got = getattr(pyce, name)(*args, **kwargs)
    except ALLOWED:
        assert _unchanged(snap), f"{name} changed an input before raising"
        assert _unchanged(out_before), f"{name} wrote out= before raising"
        return
    assert alias != "out_holding_target", f"{name} accepted a target inside its own out= buffer"
    assert _unchanged(snap), f"{name} changed an input"
    # Correct: the reference on the same call, on float64 copies of the inputs.
    ref_args = [x_before.astype(np.float64)] + list(args[1:])
    if name in PAIR_FUNCS:
        ref_args[1] = np.asarray(ref_args[1], dtype=np.float64)
    ref_kwargs = {k: v for k, v in kwargs.items() if k not in ("out", "inplace")}
    if isinstance(ref_kwargs.get("weight"), np.ndarray):
        ref_kwargs["weight"] = ref_kwargs["weight"].astype(np.float64)
    try:
        want = getattr(reference, name)(*ref_args, **ref_kwargs)
    except ALLOWED:
        return  # the reference checks less; pyce's own error tests cover these
    _agree(got, want, x.dtype)
