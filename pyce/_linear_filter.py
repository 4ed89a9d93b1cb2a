"""Gradient filtering for the fused linear cross-entropy (Cut Cross-Entropy's ``filter_eps``).

After the fused kernel has written a chunk's gradient ``G = dL/dlogits``
(m rows x V), the vocabulary is cut into blocks of FILTER_BLOCK columns. A
block whose entries are all below the threshold in magnitude adds almost
nothing to ``grad_h = G @ W`` or to its rows of ``grad_W = G.T @ h``, so both
backward products skip it; the kept blocks are grouped into runs of
consecutive columns, one product per run. Every dropped entry is below the
threshold, so the error of each gradient is bounded by it (see
``pyce.linear_cross_entropy_with_grad``). The forward loss is never changed.

The test first looks at the target entries (one per row); only the blocks
without a large one are read again (their largest magnitude per column, from
the array library: ``ops.column_max_abs``). On a flat distribution every
block holds a target of the chunk, nothing is read, and the test costs
almost nothing.
"""

from __future__ import annotations

import numpy as np

# Columns per vocabulary block: enough for each product over a run of kept
# blocks to stay efficient, few enough that the rare tokens of a peaked
# distribution fill whole blocks.
FILTER_BLOCK = 512

# Splitting a chunk's two products into one per run of kept blocks only pays
# when a good share of the vocabulary goes: below this fraction of blocks
# skippable, the chunk is computed whole (exactly).
MIN_SKIPPED_FRACTION = 0.25


def kept_vocab_runs(
    G: np.ndarray, target: np.ndarray, threshold: float, column_max_abs, block: int = FILTER_BLOCK
):
    """Column ranges ``[(a, b), ...]`` of the blocks to keep, or None when all are kept.

    A block is dropped when every entry of the chunk's gradient ``G`` in its
    columns has ``|G| < threshold``. ``target`` holds the chunk's class
    indices (``column_max_abs(G[:, a:b])`` gives ``max |G|`` per column).

    The target entries are looked at first: ``|G[i, t_i]|`` is about 1 times
    the row's scale unless the model is sure of t_i, so on a flat
    distribution every block holding a target is known to stay without
    reading it, and only the other blocks are scanned.
    """
    m, V = G.shape
    n_blocks = -(-V // block)
    keep = np.zeros(n_blocks, dtype=bool)
    scored = (target >= 0) & (target < V)
    rows = np.flatnonzero(scored)
    if rows.size:
        cols = target[rows]
        at_target = np.abs(G[rows, cols].astype(np.float32))
        keep[cols[~(at_target < threshold)] // block] = True  # nan counts as big
    if np.count_nonzero(~keep) < MIN_SKIPPED_FRACTION * n_blocks:
        return None
    for a, b in _runs(~keep, block, V):
        big = column_max_abs(G[:, a:b]).astype(np.float32, copy=False)
        n = -(-(b - a) // block)
        padded = np.zeros(n * block, dtype=np.float32)
        padded[: b - a] = big
        # not (x < threshold): a block holding a nan is kept.
        keep[a // block : a // block + n] = ~(padded.reshape(n, block).max(axis=1) < threshold)
    if np.count_nonzero(~keep) < MIN_SKIPPED_FRACTION * n_blocks:
        return None
    # A single skippable block between two kept ones is computed too: one
    # product instead of two is worth more than the block.
    lone = ~keep[1:-1] & keep[:-2] & keep[2:]
    keep[1:-1] |= lone
    return list(_runs(keep, block, V))


def _runs(flags, block, V):
    """Column ranges of the runs of consecutive True blocks."""
    b, n = 0, flags.size
    while b < n:
        if not flags[b]:
            b += 1
            continue
        start = b
        while b < n and flags[b]:
            b += 1
        yield start * block, min(b * block, V)
