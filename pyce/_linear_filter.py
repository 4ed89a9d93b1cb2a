"""Gradient filtering for the fused linear cross-entropy (Cut Cross-Entropy's ``filter_eps``).

After the fused kernel has written a chunk's gradient ``G = dL/dlogits``
(m rows x V), the vocabulary is cut into blocks of FILTER_BLOCK columns. A
block whose entries are all below the threshold in magnitude adds almost
nothing to ``grad_h = G @ W`` or to its rows of ``grad_W = G.T @ h``, so both
backward products skip it; the kept blocks are grouped into runs of
consecutive columns, one product per run. Every dropped entry is below the
threshold, so the error of each gradient is bounded by it (see
``pyce.linear_cross_entropy_with_grad``). The forward loss is never changed.

The test reads the chunk once more (its largest magnitude per column, from the
array library: ``ops.column_max_abs``), which is the cost when nothing can be
skipped.
"""

from __future__ import annotations

import numpy as np

# Columns per vocabulary block: enough for each product over a run of kept
# blocks to stay efficient, few enough that the rare tokens of a peaked
# distribution fill whole blocks.
FILTER_BLOCK = 512


def kept_vocab_runs(column_max_abs: np.ndarray, threshold: float, block: int = FILTER_BLOCK):
    """Column ranges ``[(a, b), ...]`` of the blocks to keep, or None when all are kept.

    ``column_max_abs`` is ``max_rows |G|`` for every column of the chunk's
    gradient. A block is dropped when all of its columns are below ``threshold``.
    """
    V = column_max_abs.shape[0]
    n_blocks = -(-V // block)
    padded = np.zeros(n_blocks * block, dtype=np.float32)
    padded[:V] = column_max_abs
    # not (x < threshold): a block holding a nan is kept.
    keep = ~(padded.reshape(n_blocks, block).max(axis=1) < threshold)
    if keep.all():
        return None
    runs = []
    b = 0
    while b < n_blocks:
        if not keep[b]:
            b += 1
            continue
        start = b
        while b < n_blocks and keep[b]:
            b += 1
        runs.append((start * block, min(b * block, V)))
    return runs
