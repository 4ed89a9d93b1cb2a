"""Shapes and layouts shared by the kernel tests (test_normalisers, test_cross_entropy, ...).

Shapes cover 1 class, 1 row, class counts that are not a multiple of the SIMD
width, vocabularies up to 256k with few rows, (B, T, V) batches and PyTorch's
(N, C, d1, d2) layout.
"""

from __future__ import annotations

import zlib

import numpy as np

import pyce

from _helpers import assert_close, loss_shape_of, loss_tol, prob_tol, value_scale

ref = pyce.reference

SHAPES = {
    "1x1": (1, 1),
    "5x1": (5, 1),
    "1x3": (1, 3),
    "7x3": (7, 3),
    "3x16": (3, 16),
    "4x17": (4, 17),
    "3x1000": (3, 1000),
    "2x2049": (2, 2049),
    "2x4097": (2, 4097),
    "1d-37": (37,),
    "btv-2x3x17": (2, 3, 17),
    "btv-2x5x1000": (2, 5, 1000),
    "many-rows-300x33": (300, 33),
}

# Few rows, huge vocabularies (the split-vocabulary path): (shape, options).
BIG_CASES = {
    "2x256000-plain": ((2, 256000), "plain"),
    "2x256000-weight-ignore-smooth": ((2, 256000), "weight-ignore-smooth"),
    "2x256000-soft-weight-smooth": ((2, 256000), "soft-weight-smooth"),
    "1x256000-plain": ((1, 256000), "plain"),
    "3x100003-smooth": ((3, 100003), "smooth"),
}

AXIS_LAYOUTS = {
    "nchw": ((2, 5, 3, 4), 1),
    "nc1-axis1": ((3, 17, 1), 1),
    "n1000hw": ((2, 1000, 2, 3), 1),
    "cn-axis0": ((5, 6), 0),
    "ncd-axis-2": ((3, 7, 4), -2),
    "nc-axis1-of-2d": ((6, 33), 1),
}
AXIS_OPTIONS = ["plain", "weight-ignore-smooth", "ignore-class0", "soft", "soft-weight-smooth"]


def _seed(*parts):
    """A stable seed per test case (hash() of str is salted per process)."""
    return zlib.crc32(repr(parts).encode())


def _grad_output(rng, logits, reduction, axis):
    if reduction == "none":
        return rng.standard_normal(loss_shape_of(logits, axis))
    return 1.0


def _check_normalisers(x, axis=-1):
    dtype = x.dtype
    scale = value_scale(x)
    ltol, ptol = loss_tol(dtype, scale), prob_tol(dtype, scale)
    for keepdims in (False, True):
        got = pyce.logsumexp(x, axis=axis, keepdims=keepdims)
        expected = ref.logsumexp(x, axis=axis, keepdims=keepdims)
        assert np.asarray(got).dtype == dtype
        assert np.shape(got) == np.shape(expected)
        if np.ndim(expected) == 0:
            assert type(got) is dtype.type, type(got)
        assert_close(got, expected, **ltol, err_msg=f"logsumexp keepdims={keepdims}")
    sm = pyce.softmax(x, axis=axis)
    assert sm.dtype == dtype and sm.shape == x.shape
    assert_close(sm, ref.softmax(x, axis=axis), **ptol, err_msg="softmax")
    lsm = pyce.log_softmax(x, axis=axis)
    assert lsm.dtype == dtype and lsm.shape == x.shape
    assert_close(lsm, ref.log_softmax(x, axis=axis), **ltol, err_msg="log_softmax")


def _extreme_rows(n_classes, dtype):
    """Rows exercising +-inf, nan and huge magnitudes at the head, middle and tail of a row."""
    rng = np.random.default_rng(n_classes)
    rows = []
    for pos in sorted({0, n_classes // 2, n_classes - 1}):
        for special in (np.inf, -np.inf, np.nan):
            r = rng.standard_normal(n_classes)
            r[pos] = special
            rows.append(r)
    rows.append(np.full(n_classes, -np.inf))  # all -inf
    rows.append(1e4 + rng.standard_normal(n_classes))  # large, shift is exact
    rows.append(-1e4 + rng.standard_normal(n_classes))
    rows.append(rng.standard_normal(n_classes) * 1e4)  # huge spread: one-hot softmax
    rows.append(rng.uniform(80, 90, n_classes))  # float32 exp overflows naively
    rows.append(np.full(n_classes, 88.7))  # all equal, near exp overflow
    r = rng.standard_normal(n_classes)
    r[:: max(1, n_classes // 3)] = -np.inf  # some -inf, rest finite
    r[-1] = 0.5
    rows.append(r)
    return np.array(rows).astype(dtype)


def _non_contiguous(base, view):
    """A non-C-contiguous view of a 2-D array (the rows' classes along the last axis)."""
    if view == "row-step":
        return base[::2]
    if view == "col-step":
        return base[:, ::2]
    if view == "transposed":
        return np.ascontiguousarray(base.T).T  # F-ordered, same values
    if view == "reversed":
        return base[::-1, ::-1]
    if view == "fortran":
        return np.asfortranarray(base)[1:, 1:]
    raise ValueError(view)


def _far_above_the_shift_rows(dtype):
    """Rows whose later blocks hold logits far above the first block's max.

    A row's exps are taken against its first block's max (the shift). A block
    is first swept without checking each logit against it, and kept if its
    largest logit is at most 64 above the shift and its exps sum to at most
    2**100; otherwise it is swept again with the checks, which move it to a
    larger shift. These rows hit both sides of that line (62 and 66 above),
    logits beyond the exp's range (94 and 134 above) and far beyond it (1e4,
    2e4: the AVX-512 sweep exp gives garbage there, which must never be
    kept), +inf, nan and an all -inf block, in the middle and last blocks of
    a 5000-class row (blocks of 2048).
    """
    rng = np.random.default_rng(70)
    x = rng.standard_normal((10, 5000)) * 2
    x[:, 0] = 6.0  # the shift of every row
    x[0, 3000] = 68.0  # 62 above: kept from the unchecked sweep
    x[1, 3000] = 100.0  # 94 above: swept again
    x[2, 4999] = np.inf
    x[3, 2500] = np.nan
    x[4, 2048:4096] = -np.inf
    x[5, 4100], x[5, 4101] = 72.0, 100.0  # 66 above: swept again
    x[6, 2049], x[6, 4500] = 140.0, 68.0  # the middle block raised, the last kept
    x[7, 3000] = 100.0  # ... and the target
    x[8, 3000], x[8, 4500] = 1e4, 2e4
    x[9, 2100], x[9, 4999] = 1e4, 50.0  # a huge logit, not the target
    target = np.array([3000, 3000, 1, 2, 5, 4101, 4500, 3000, 3000, 4999])
    return x.astype(dtype), target
