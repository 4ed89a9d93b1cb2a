"""Helpers shared by pyce's tests: the oracle, random problems, tolerances, torch.

Nothing here imports ``pyce`` at module level, so that ``test_reference.py``
(which only needs the plain-NumPy oracle) also runs from a source checkout
that has no compiled core.
"""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)
DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]

# Named option sets for cross-entropy; make_problem turns them into arrays.
OPTIONS = {
    "plain": {},
    "weight": {"weight": True},
    "ignore": {"ignore": True},
    "ignore-class0": {"ignore": "class0"},
    "smooth": {"smoothing": 0.1},
    "smooth-1": {"smoothing": 1.0},
    "soft-smooth": {"soft": True, "smoothing": 0.15},
    "weight-ignore-smooth": {"weight": True, "ignore": True, "smoothing": 0.25},
    "soft": {"soft": True},
    "soft-weight-smooth": {"soft": True, "weight": True, "smoothing": 0.1},
}


def load_reference():
    """``pyce.reference``; loaded by path when the compiled package is not importable.

    The reference is plain NumPy, so its own tests do not need the C++ core.
    """
    try:
        from pyce import reference
    except ImportError:
        path = pathlib.Path(__file__).resolve().parents[1] / "pyce" / "reference.py"
        spec = importlib.util.spec_from_file_location("_pyce_reference_by_path", path)
        reference = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(reference)
    return reference


def make_problem(
    rng,
    shape,
    *,
    axis=-1,
    dtype=np.float64,
    weight=False,
    ignore=False,
    smoothing=0.0,
    soft=False,
    scale=2.0,
    offset=0.0,
):
    """Random logits, a target and the keyword options of one cross-entropy call.

    ``ignore=True`` marks ~30% of the rows with ignore_index -100 (at least one
    row kept when there are rows); ``ignore="class0"`` uses ignore_index=0, so
    rows whose (valid) target is class 0 are ignored. Weights and soft targets
    are created in the logits' dtype, as pyce computes with them.
    """
    shape = tuple(shape)
    ax = axis % len(shape)
    n_classes = shape[ax]
    target_shape = shape[:ax] + shape[ax + 1 :]
    logits = (rng.standard_normal(shape) * scale + offset).astype(dtype)
    kwargs = {"axis": axis}
    if smoothing:
        kwargs["label_smoothing"] = smoothing
    if soft:
        p = rng.random(shape) ** 3 + 1e-3
        p /= p.sum(axis=ax, keepdims=True)
        target = p.astype(dtype)
    else:
        target = rng.integers(0, n_classes, size=target_shape)
        if ignore is True:
            mask = rng.random(target_shape) < 0.3
            if mask.size:
                mask.flat[0] = False
            target[mask] = -100
            kwargs["ignore_index"] = -100
        elif ignore == "class0":
            kwargs["ignore_index"] = 0
    if weight:
        kwargs["weight"] = (rng.random(n_classes) * 1.5 + 0.25).astype(dtype)
    return logits, target, kwargs


def option_problem(rng, shape, option, dtype, axis=-1, **extra):
    return make_problem(rng, shape, axis=axis, dtype=dtype, **OPTIONS[option], **extra)


def value_scale(x):
    """1 + the largest finite magnitude in ``x``: the size of the numbers a result is a difference of."""
    x = np.asarray(x, dtype=np.float64)
    finite = np.abs(x[np.isfinite(x)])
    return 1.0 + (float(finite.max()) if finite.size else 0.0)


def loss_tol(dtype, scale=1.0):
    """Tolerance for losses, log-sum-exps and log-softmaxes.

    These are differences of numbers of size ``scale`` (e.g. lse - z_target), so
    the absolute floor is a few float32 / float64 roundings of ``scale``.
    """
    if np.dtype(dtype) == np.float64:
        return {"rtol": 1e-12, "atol": 1e-14 * scale}
    return {"rtol": 2e-6, "atol": 4 * EPS32 * scale}


def prob_tol(dtype, scale=1.0):
    """Tolerance for softmax values and gradients (probabilities, bounded by the weights)."""
    if np.dtype(dtype) == np.float64:
        return {"rtol": 1e-12, "atol": 1e-14 * scale}
    return {"rtol": 1e-5, "atol": 1e-6}


def assert_close(got, expected, *, rtol, atol, err_msg=""):
    """assert_allclose that also requires nan and +-inf at the same places."""
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, f"shape {got.shape} != {expected.shape} {err_msg}"
    np.testing.assert_array_equal(
        np.isnan(got), np.isnan(expected), err_msg=f"nan positions differ {err_msg}"
    )
    np.testing.assert_array_equal(
        np.where(np.isinf(got), np.sign(got), 0.0),
        np.where(np.isinf(expected), np.sign(expected), 0.0),
        err_msg=f"inf positions differ {err_msg}",
    )
    fin = np.isfinite(expected)
    np.testing.assert_allclose(got[fin], expected[fin], rtol=rtol, atol=atol, err_msg=err_msg)


def bitwise_equal(a, b):
    """Equal bits (nan at the same places, same dtype and shape)."""
    a = np.asarray(a)
    b = np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def same_for_every_thread_count(call, counts=(1, 2, 3)):
    """Runs ``call()`` with pyce on each thread count (restoring the count
    after), asserts its outputs -- a tuple of arrays -- are bitwise the same
    for all of them, and returns those of the first count."""
    import pyce

    threads = pyce.get_num_threads()
    try:
        out = {}
        for n in counts:
            pyce.set_num_threads(n)
            out[n] = call()
    finally:
        pyce.set_num_threads(threads)
    first = out[counts[0]]
    for n in counts[1:]:
        assert len(out[n]) == len(first)
        for i, (a, b) in enumerate(zip(first, out[n])):
            assert bitwise_equal(a, b), f"output {i} differs between {counts[0]} and {n} threads"
    return first


# --------------------------------------------------------------------------- torch


def torch_cross_entropy(
    torch,
    logits,
    target,
    grad_output=None,
    *,
    axis=-1,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
):
    """``torch.nn.functional.cross_entropy`` forward + autograd backward, as NumPy.

    The class axis is moved to position 1 (PyTorch's layout; a 1-D input is
    unbatched). Returns ``(loss, grad)`` in the logits' dtype.
    """
    logits = np.asarray(logits)
    ax = axis % logits.ndim
    x = torch.tensor(logits)
    torch_axis = 0 if logits.ndim == 1 else 1
    x_moved = torch.movedim(x, ax, torch_axis).detach().requires_grad_(True)
    target = np.asarray(target)
    if target.dtype.kind == "f":
        t = torch.movedim(torch.tensor(target.astype(logits.dtype)), ax, torch_axis)
    else:
        t = torch.tensor(target.astype(np.int64))
    w = None if weight is None else torch.tensor(np.asarray(weight, dtype=logits.dtype))
    loss = torch.nn.functional.cross_entropy(
        x_moved, t, weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing
    )
    if grad_output is None:
        g = torch.ones_like(loss)
    else:
        g = torch.broadcast_to(torch.tensor(np.asarray(grad_output, dtype=logits.dtype)), loss.shape)
    loss.backward(g)
    grad = torch.movedim(x_moved.grad, torch_axis, ax)
    return loss.detach().numpy(), grad.numpy()


# ----------------------------------------------------------------- finite differences


def central_difference(f, x, h=1e-5):
    """Central finite-difference gradient of the scalar function ``f`` at float64 ``x``."""
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        up = float(f(x))
        x[idx] = old - h
        down = float(f(x))
        x[idx] = old
        grad[idx] = (up - down) / (2 * h)
    return grad


# ------------------------------------------------------------ pyce vs reference


def loss_shape_of(logits, axis):
    logits = np.asarray(logits)
    ax = axis % logits.ndim
    return logits.shape[:ax] + logits.shape[ax + 1 :]


def check_loss_output(loss, logits, reduction, axis=-1):
    """The loss's type: a NumPy scalar of the logits' dtype, or an array of the target's shape."""
    dtype = np.asarray(logits).dtype
    if reduction == "none":
        assert isinstance(loss, np.ndarray), type(loss)
        assert loss.dtype == dtype, loss.dtype
        assert loss.shape == loss_shape_of(logits, axis)
    else:
        assert type(loss) is dtype.type, f"{type(loss)} is not {dtype.type}"


def check_cross_entropy(pyce, ref, logits, target, reduction, grad_output=1.0, *, check_inplace=True, **kw):
    """Every cross-entropy entry point of pyce against the reference (and each other).

    Returns the fused ``(loss, grad)`` for further checks.
    """
    logits = np.asarray(logits)
    dtype = logits.dtype
    axis = kw.get("axis", -1)
    scale = value_scale(logits)
    ltol = loss_tol(dtype, scale)
    gtol = prob_tol(dtype, scale)
    ref_loss, ref_grad1 = ref.cross_entropy_with_grad(logits, target, reduction=reduction, **kw)
    # d(g * loss) = g * d(loss): scale the reference's gradient by grad_output (per row for 'none').
    g = np.asarray(grad_output, dtype=np.float64)
    if reduction == "none":
        g = np.expand_dims(np.broadcast_to(g, loss_shape_of(logits, axis)), axis % logits.ndim)
    ref_grad = ref_grad1 * g
    what = f"{reduction} {dtype} {logits.shape} {sorted(kw)}"

    loss = pyce.cross_entropy(logits, target, reduction=reduction, **kw)
    check_loss_output(loss, logits, reduction, axis)
    assert_close(loss, ref_loss, **ltol, err_msg=f"cross_entropy {what}")

    grad = pyce.cross_entropy_backward(logits, target, grad_output, reduction=reduction, **kw)
    assert grad.dtype == dtype and grad.shape == logits.shape
    assert_close(grad, ref_grad, **gtol, err_msg=f"cross_entropy_backward {what}")

    fused_loss, fused_grad = pyce.cross_entropy_with_grad(logits, target, reduction=reduction, **kw)
    check_loss_output(fused_loss, logits, reduction, axis)
    assert fused_grad.dtype == dtype and fused_grad.shape == logits.shape
    assert_close(fused_loss, ref_loss, **ltol, err_msg=f"cross_entropy_with_grad loss {what}")
    assert_close(fused_grad, ref_grad1, **gtol, err_msg=f"cross_entropy_with_grad grad {what}")

    ax = axis % logits.ndim
    innermost = all(n == 1 for n in logits.shape[ax + 1 :])
    if check_inplace and innermost:
        buf = np.array(logits, order="C", copy=True)
        in_loss, in_grad = pyce.cross_entropy_with_grad(buf, target, reduction=reduction, inplace=True, **kw)
        assert in_grad is buf
        assert bitwise_equal(in_loss, fused_loss), f"inplace loss differs {what}"
        assert bitwise_equal(in_grad, fused_grad), f"inplace grad differs {what}"
    return fused_loss, fused_grad


# (shape, class axis) pairs for the one-pass kernels beyond cross-entropy:
# 1 class, C not a multiple of the SIMD width, a huge vocabulary with few rows,
# 3-D batches in both layouts, and a single unbatched row.
KERNEL_SHAPES = [
    ((1, 1), -1),
    ((6, 1), -1),
    ((9, 17), -1),
    ((4, 1000), -1),
    ((3, 4097), -1),
    ((2, 100003), -1),
    ((2, 3, 37), -1),
    ((2, 11, 3), 1),
    ((13,), -1),
]

# The 16-bit logit dtypes: float16, and bfloat16 when ml_dtypes is installed.
HALF_DTYPES = {"float16": np.float16}
try:
    import ml_dtypes

    HALF_DTYPES["bfloat16"] = ml_dtypes.bfloat16
except ImportError:  # pragma: no cover
    pass


# Variables that change how pyce starts up; a subprocess starts without them
# unless a test sets them.
STARTUP_VARIABLES = (
    "PYCE_CPU_CAPABILITY",
    "PYCE_NUM_THREADS",
    "PYCE_CACHE_MB",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
)


def run_installed_python(code, **env):
    """stdout of ``python -c code`` in a fresh process with ``env`` added.

    It runs outside the source tree, so that the installed package is imported.
    """
    import os
    import subprocess
    import sys
    import tempfile

    full_env = {k: v for k, v in os.environ.items() if k not in STARTUP_VARIABLES}
    full_env.update(env)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=tempfile.gettempdir(),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()
