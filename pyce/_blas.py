"""Matrix products on NumPy's own BLAS, with C = A @ B + beta * C.

``np.matmul`` cannot accumulate into its output, and the fused linear
cross-entropy adds every chunk's share of ``grad_weight`` (V x D) into one
array: a separate ``+=`` would read and write that whole array once more per
chunk. NumPy's wheels link OpenBLAS (scipy-openblas) and export its CBLAS
``gemm``; calling that library -- the one ``np.matmul`` already uses, loaded
once in the process -- with ``beta = 1`` accumulates inside the product.

When the library cannot be found (NumPy built against another BLAS), or it
fails the self-check at first use, ``gemm`` falls back to ``np.matmul`` and an
explicit addition: the same results, one more pass over C per accumulation.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

__all__ = ["gemm", "blas_info", "NumpyOps"]

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

# (symbol prefix, integer type): scipy-openblas builds NumPy ships are ILP64.
_SYMBOLS = (("scipy_cblas_{}gemm64_", ctypes.c_int64),)

_state: dict = {}


def _numpy_openblas():
    """NumPy's bundled OpenBLAS as ctypes functions {dtype: gemm}, or None."""
    numpy_dir = os.path.dirname(np.__file__)
    candidates = sorted(
        glob.glob(os.path.join(os.path.dirname(numpy_dir), "numpy.libs", "libscipy_openblas*.so*"))
    )
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pattern, int_t in _SYMBOLS:
            try:
                fns = {
                    np.dtype(np.float32): getattr(lib, pattern.format("s")),
                    np.dtype(np.float64): getattr(lib, pattern.format("d")),
                }
            except AttributeError:
                continue
            for dtype, fn in fns.items():
                real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
                fn.restype = None
                fn.argtypes = [
                    ctypes.c_int,
                    ctypes.c_int,
                    ctypes.c_int,
                    int_t,
                    int_t,
                    int_t,
                    real,
                    ctypes.c_void_p,
                    int_t,
                    ctypes.c_void_p,
                    int_t,
                    real,
                    ctypes.c_void_p,
                    int_t,
                ]
            return {"path": path, "functions": fns}
    return None


def _layout(a: np.ndarray):
    """(transpose flag, leading dimension) of a 2-D operand, or None when BLAS cannot read it."""
    item = a.itemsize
    rows, cols = a.shape
    s0, s1 = a.strides
    if (s1 == item or cols == 1) and s0 % item == 0 and s0 // item >= max(cols, 1):
        return _NO_TRANS, s0 // item
    if (s0 == item or rows == 1) and s1 % item == 0 and s1 // item >= max(rows, 1):
        return _TRANS, s1 // item
    return None


def _blas_gemm(fn, a, b, out, beta) -> bool:
    la, lb = _layout(a), _layout(b)
    lc = _layout(out)
    if la is None or lb is None or lc is None or lc[0] != _NO_TRANS:
        return False
    m, k = a.shape
    n = b.shape[1]
    fn(
        _ROW_MAJOR,
        la[0],
        lb[0],
        m,
        n,
        k,
        1.0,
        a.ctypes.data,
        la[1],
        b.ctypes.data,
        lb[1],
        float(beta),
        out.ctypes.data,
        lc[1],
    )
    return True


def _library():
    if "lib" not in _state:
        _state["lib"] = None
        found = _numpy_openblas()
        if found is not None and _self_check(found["functions"]):
            _state["lib"] = found
    return _state["lib"]


def _self_check(fns) -> bool:
    """The library's products on small odd shapes equal np.matmul's (layouts, beta)."""
    rng = np.random.default_rng(0)
    for dtype, fn in fns.items():
        a = rng.standard_normal((5, 3)).astype(dtype)
        b = rng.standard_normal((7, 3)).astype(dtype)
        c = rng.standard_normal((5, 7)).astype(dtype)
        want = a @ b.T + c
        got = c.copy()
        if not _blas_gemm(fn, a, b.T, got, 1.0) or not np.allclose(got, want, rtol=1e-4, atol=1e-4):
            return False
        got_t = np.empty((3, 3), dtype)
        if not _blas_gemm(fn, a.T, a, got_t, 0.0) or not np.allclose(got_t, a.T @ a, rtol=1e-4, atol=1e-4):
            return False
    return True


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray, beta: float = 0.0) -> np.ndarray:
    """``out = a @ b + beta * out`` for 2-D float32/float64 arrays of one dtype.

    ``a`` and ``b`` may be transposed views (``x.T``) or row slices of larger
    arrays; ``out`` must have unit stride along its rows. ``beta`` is 0 (``out``
    is overwritten, never read) or 1 (the product is added to it).
    """
    lib = _library()
    fn = None if lib is None else lib["functions"].get(out.dtype)
    if (
        fn is not None
        and a.dtype == out.dtype
        and b.dtype == out.dtype
        and a.size
        and b.size
        and _blas_gemm(fn, a, b, out, beta)
    ):
        return out
    if beta == 0.0:
        np.matmul(a, b, out=out)
    else:
        out += a @ b
    return out


def blas_info() -> dict:
    """Which library ``gemm`` calls (for benchmarks and bug reports)."""
    lib = _library()
    return {"library": None if lib is None else lib["path"], "accumulates_in_gemm": lib is not None}


class NumpyOps:
    """The array operations the fused linear cross-entropy needs, for NumPy arrays."""

    gemm = staticmethod(gemm)

    # A chunk's grad_h = G @ W (m x V times V x D, m a few hundred rows) is
    # computed as (W.T @ G.T).T: OpenBLAS shares the first form out among its
    # threads so that they synchronise many times along the long V axis, and
    # on a busy machine every wait can cost a time slice; the second form was
    # about twice as fast in the same run (see the commit message).
    transposed_grad_hidden = True

    @staticmethod
    def column_sum(G: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out = G.sum(axis=0)`` (out's dtype)."""
        return np.sum(G, axis=0, out=out)

    @staticmethod
    def column_max_abs(G: np.ndarray, tile_bytes: int = 1 << 20) -> np.ndarray:
        """``max(|G|)`` of every column (nan where a column holds one), in one read of G.

        |G| is taken a tile of rows at a time into a cache-sized buffer, so that
        G is read once and nothing of its size is allocated.
        """
        m, n = G.shape
        rows = max(1, min(m, tile_bytes // max(1, n * G.itemsize)))
        buf = np.empty((rows, n), G.dtype)
        best = np.zeros(n, G.dtype)
        for r in range(0, m, rows):
            tile = np.abs(G[r : r + rows], out=buf[: min(rows, m - r)])
            np.maximum(best, tile.max(axis=0), out=best)
        return best
