"""What ``pyce bench`` times: the ops, their floors and peers, the problems they run on."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .peers import PeerUnavailable

#: The reference shapes of DESIGN.md section 7: (rows, classes).
DEFAULT_SHAPES = ((64, 1000), (4096, 32000), (2048, 128256), (8, 256000))


#: Small shapes for ``--quick``.
QUICK_SHAPES = ((64, 1000), (32, 32000))


DEFAULT_DTYPES = ("float32", "bfloat16")


KNOWN_DTYPES = ("float32", "float64", "bfloat16", "float16")


OPS = ("forward", "fused", "fused_out", "inplace", "backward", "logsumexp")


PEERS = ("numpy", "torch", "jax")


#: Logit bytes of the slice each op is also timed on in cache (``measure_in_cache``):
#: with its gradient, well inside the last-level cache of any current x86 CPU.
IN_CACHE_BYTES = 4 << 20


#: The NumPy reference is skipped above this many elements unless told otherwise.
REFERENCE_LIMIT = 50_000_000


#: What each op's floor is: the probe that moves the same bytes the op must move.
FLOOR_KIND = {
    "forward": "read",
    "logsumexp": "read",
    "fused": "copy",
    "fused_out": "copy",
    "backward": "copy",
    "inplace": "inplace",
}


#: Bytes an op must move, as a multiple of the logits' bytes.
TRAFFIC = {"read": 1, "copy": 2, "inplace": 2, "copy_fresh": 2}


#: Which peer computation each pyce op is compared with (a peer has no in-place
#: variant: fused inplace is compared with the peer's forward+backward).
PEER_OP = {
    "forward": "forward",
    "fused": "fused",
    "fused_out": "fused",
    "inplace": "fused",
    "backward": "backward",
    "logsumexp": "logsumexp",
}


OP_LABEL = {
    "forward": "forward",
    "fused": "fused",
    "fused_out": "fused out=",
    "inplace": "fused inplace",
    "backward": "backward",
    "logsumexp": "logsumexp",
}


UNSUPPORTED = "unsupported by this pyce build"


def numpy_dtype(name: str):
    """The NumPy dtype for a dtype name; bfloat16 comes from ``ml_dtypes``."""
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise PeerUnavailable("bfloat16 needs ml_dtypes (pip install ml_dtypes)") from None
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def make_problem(shape, dtype_name: str, seed: int = 0):
    """Random logits (standard normal x 2, in the dtype, touched) and int64 targets."""
    n, v = shape
    rng = np.random.default_rng(seed)
    dt = numpy_dtype(dtype_name)
    x: np.ndarray
    if dt == np.float64:
        x = rng.standard_normal((n, v))
    else:
        x = rng.standard_normal((n, v), dtype=np.float32)
    x *= 2
    if x.dtype != dt:
        x = x.astype(dt)
    t = rng.integers(0, v, size=n, dtype=np.int64)
    return x, t


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------


def pyce_op(op: str, x: np.ndarray, t: np.ndarray):
    """``(fn, setup, keep)`` timing one pyce op on ``(x, t)``; ``keep`` holds buffers alive."""
    import pyce

    if op == "forward":
        return (lambda: pyce.cross_entropy(x, t)), None, None
    if op == "fused":
        return (lambda: pyce.cross_entropy_with_grad(x, t)), None, None
    if op == "backward":
        return (lambda: pyce.cross_entropy_backward(x, t)), None, None
    if op == "logsumexp":
        return (lambda: pyce.logsumexp(x, axis=-1)), None, None
    if op == "fused_out":
        # A training loop reuses its gradient buffer: no page faults of fresh memory.
        out = np.zeros_like(x)
        return (lambda: pyce.cross_entropy_with_grad(x, t, out=out)), None, out
    if op == "inplace":
        buf = x.copy()
        return (
            (lambda: pyce.cross_entropy_with_grad(buf, t, inplace=True)),
            (lambda: np.copyto(buf, x)),
            buf,
        )
    raise ValueError(f"unknown op {op!r}")


def check_pyce_support(op: str, dtype_name: str) -> Optional[str]:
    """None when this pyce build runs ``op`` on ``dtype_name`` logits, else why not.

    Tried on a tiny (2, 8) problem so that an unsupported dtype costs nothing.
    """
    try:
        x, t = make_problem((2, 8), dtype_name)
    except PeerUnavailable as exc:
        return str(exc)
    fn, setup, _ = pyce_op(op, x, t)
    try:
        if setup:
            setup()
        fn()
    except TypeError as exc:
        return f"{UNSUPPORTED} (TypeError: {exc})"
    except Exception as exc:  # a failure, not a missing feature: still report it
        return f"error: {type(exc).__name__}: {exc}"
    return None
