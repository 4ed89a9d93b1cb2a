"""The chunked engine behind the fused linear cross-entropy (NumPy and PyTorch).

A call is validated and laid out once (LinearCall): hidden states as (R, D)
rows, every row's target (``shift`` applied by pairing row t with target
t + shift, without copying the hidden states), the rows that need any work
(ignored rows have neither loss nor gradient and are skipped), and the
divisor of the mean. Then the rows are processed in chunks of ``chunk_rows``:

1. ``logits = h_c @ W.T (+ b)`` into one (chunk_rows, V) buffer, reused;
2. pyce's fused kernel over it, in place: the loss, and the gradient
   ``dL/dlogits`` written over the logits while they are still in cache;
3. ``grad_h_c = G @ W`` and ``grad_W += G.T @ h_c`` (``grad_b += sum(G)``),
   where the BLAS accumulates into ``grad_W`` itself (beta = 1).

Nothing of size R x V is allocated. The matrix products (and the two column
reductions) come from the ``ops`` the caller passes: NumPy's BLAS for arrays
(``pyce._blas.NumpyOps``), PyTorch's for tensors (``pyce.torch.linear``).
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._cache import empty_output
from ._linear_filter import FILTER_BLOCK, kept_vocab_runs
from ._validation import (
    REDUCTIONS,
    check_chunk_size,
    check_class_targets,
    check_filter_eps,
    check_ignore_index,
    check_label_smoothing,
    check_linear_operands,
    check_reduction,
    check_shift,
    check_softcap,
    check_weight,
    check_z_loss,
)

# The logits of one chunk: at most CHUNK_BYTES (whole rows), but never fewer
# than MIN_CHUNK_ROWS rows. Every chunk reads W twice (the logits' product and
# grad_hidden's) and reads and writes grad_W once, 16 V D bytes in float32
# whatever its row count, against 6 rows V D flops: the fewer the rows, the
# larger that traffic's share. 48 MiB is 393 rows at V = 32000. At V = 128256
# it would be 98 rows, and there (2048 x 512 x 128256, pyce.torch, 2 threads)
# chunks of 98, 128 and 256 rows took 1.50, 1.25 and 1.18 x the three
# full-size GEMMs; hence at least 256 rows (125 MiB of logits at V = 128256,
# still bounded whatever N is; chunk_size= sets it).
CHUNK_BYTES = 48 << 20
MIN_CHUNK_ROWS = 256

_SUM = REDUCTIONS["sum"]
_NONE = REDUCTIONS["none"]


def default_chunk_rows(n_classes: int, itemsize: int) -> int:
    return max(MIN_CHUNK_ROWS, CHUNK_BYTES // (n_classes * itemsize))


def even_chunks(n_rows: int, most: int) -> list:
    """(start, stop) of the fewest chunks of at most ``most`` rows covering
    ``n_rows`` rows, their sizes differing by at most one."""
    if n_rows <= 0:
        return []
    n_chunks = -(-n_rows // most)
    bounds = [i * n_rows // n_chunks for i in range(n_chunks + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


class LinearCall:
    """A validated ``cross_entropy(hidden @ linear_weight.T + linear_bias, target)`` call.

    The arrays are NumPy arrays (PyTorch tensors come as zero-copy views);
    ``dtypes`` are the input dtypes the caller accepts, ``names`` the
    argument names its errors use, ``compute_dtype`` the dtype of the loss
    and of the accumulated weight/bias gradients.
    """

    def __init__(
        self,
        hidden,
        linear_weight,
        target,
        *,
        linear_bias,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        z_loss,
        softcap,
        shift,
        return_lse,
        filter_eps,
        chunk_size,
        dtypes,
        compute_dtype,
        names=("hidden", "linear_weight", "target", "linear_bias"),
    ):
        self.V, self.D = check_linear_operands(hidden, linear_weight, target, linear_bias, dtypes, names)
        check_class_targets(target, names[2])
        self.dtype = hidden.dtype
        self.compute_dtype = np.dtype(compute_dtype)
        self.reduction = check_reduction(reduction)
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.z_loss = check_z_loss(z_loss, self.compute_dtype)
        self.softcap = check_softcap(softcap, self.compute_dtype)
        self.ignore_index = check_ignore_index(ignore_index)
        self.weight = check_weight(weight, self.V, self.compute_dtype)
        self.shift = check_shift(shift, hidden.shape)
        self.return_lse = bool(return_lse)
        self.filter_eps = check_filter_eps(filter_eps, _machine_eps(self.dtype))
        self.chunk_rows = check_chunk_size(chunk_size) or default_chunk_rows(self.V, self.dtype.itemsize)

        self.hidden_shape = tuple(hidden.shape)
        self.hidden = np.ascontiguousarray(hidden).reshape(-1, self.D)
        self.linear_weight = _rows_readable(linear_weight)
        self.linear_bias = None if linear_bias is None else np.ascontiguousarray(linear_bias)
        self._lay_out_targets(np.asarray(target))

    # -- layout ---------------------------------------------------------------

    def _lay_out_targets(self, target):
        R = self.hidden.shape[0]
        flat = target.astype(np.int64, copy=False).reshape(-1)
        k = self.shift
        if k:
            # Row t of every sequence is scored against target t + k; the last
            # k rows of each sequence have no target (they are left out).
            T = self.hidden_shape[-2]
            paired = np.full((R // T, T), self.ignore_index, dtype=np.int64)
            paired[:, : T - k] = flat.reshape(-1, T)[:, k:]
            self.row_target = paired.reshape(-1)
            in_scope = np.zeros((R // T, T), dtype=bool)
            in_scope[:, : T - k] = True
            self.in_scope = in_scope.reshape(-1)
            self.scored_shape = tuple(target.shape[:-1]) + (T - k,)
        else:
            self.row_target = flat
            self.in_scope = None
            self.scored_shape = tuple(target.shape)
        scored = self.row_target != self.ignore_index
        bad = scored & ((self.row_target < 0) | (self.row_target >= self.V))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise IndexError(
                f"target {int(self.row_target[row])} at position {row + k} (flattened) is out of "
                f"range for {self.V} classes (the rows of linear_weight)"
            )
        # Rows with work: those scored, or with return_lse every row in scope
        # (the lse of an ignored row is returned too).
        work = (
            (np.ones(R, dtype=bool) if self.in_scope is None else self.in_scope)
            if self.return_lse
            else scored
        )
        self.active = None if work.all() else np.flatnonzero(work)
        self.n_rows = R
        self.n_active = R if self.active is None else int(self.active.size)
        if self.weight is None:
            self.divisor = float(np.count_nonzero(scored))
        else:
            self.divisor = float(np.sum(self.weight[self.row_target[scored]], dtype=np.float64))

    def chunks(self):
        """Row selections of at most chunk_rows rows: slices where the rows are
        consecutive (views), index arrays otherwise (gathered).

        The rows are shared out as evenly as whole rows allow (sizes differ by
        at most one): every chunk costs a pass over W and grad_W whatever its
        size, so a short last chunk (83 rows after five of 393, at 2048 rows
        and V = 32000) would pay that pass for a sliver of the work."""
        for s, e in even_chunks(self.n_active, self.chunk_rows):
            if self.active is None:
                yield slice(s, e)
                continue
            idx = self.active[s:e]
            if idx[-1] - idx[0] == e - s - 1:
                yield slice(int(idx[0]), int(idx[-1]) + 1)
            else:
                yield idx

    def largest_chunk(self) -> int:
        """Rows of the largest chunk (at least 1: the buffers' first axis)."""
        return max([1] + [e - s for s, e in even_chunks(self.n_active, self.chunk_rows)])

    def _logits_buffer(self, dtype=None):
        rows = self.largest_chunk()
        return empty_output((rows, self.V), dtype or self.dtype)

    def _chunk_logits(self, ops, h_c, L):
        ops.gemm(h_c, self.linear_weight.T, L, 0.0)
        if self.linear_bias is not None:
            L += self.linear_bias

    def _gather(self, rows, buf):
        if isinstance(rows, slice):
            return self.hidden[rows]
        m = rows.size
        return np.take(self.hidden, rows, axis=0, out=buf[:m])

    # -- the loss ---------------------------------------------------------------

    def _kernel(self, L, t_c, g_out, grad):
        code = _NONE if self.reduction == _NONE else _SUM
        return _core.cross_entropy(
            L,
            t_c,
            None,
            self.weight,
            self.ignore_index,
            self.label_smoothing,
            code,
            g_out,
            grad,
            self.z_loss,
            self.return_lse,
            self.softcap,
        )

    def _start_results(self):
        self._total = 0.0
        self._loss_rows = np.zeros(self.n_rows, self.compute_dtype) if self.reduction == _NONE else None
        self._lse_rows = np.full(self.n_rows, np.nan, self.compute_dtype) if self.return_lse else None

    def _keep_results(self, rows, raw):
        loss, lse = raw if self.return_lse else (raw, None)
        if self._loss_rows is not None:
            self._loss_rows[rows] = loss
        else:
            self._total += float(loss)
        if lse is not None:
            self._lse_rows[rows] = lse

    def _scored(self, per_row):
        """A per-row array as the scored shape (rows without a target left out)."""
        if self.in_scope is not None:
            per_row = per_row[self.in_scope]
        return per_row.reshape(self.scored_shape)

    def loss(self):
        """The reduced loss (a scalar of compute_dtype) or per-row losses ('none')."""
        if self._loss_rows is not None:
            return self._scored(self._loss_rows)
        total = self._total
        if self.reduction != _SUM:
            with np.errstate(invalid="ignore", divide="ignore"):
                total = np.float64(total) / np.float64(self.divisor)
        return self.compute_dtype.type(total)

    def lse(self):
        return None if self._lse_rows is None else self._scored(self._lse_rows)

    def forward(self, ops):
        """The loss only: a logits GEMM and pyce's forward kernel per chunk."""
        self._start_results()
        L = self._logits_buffer()
        hbuf = np.empty((self.largest_chunk(), self.D), self.dtype)
        for rows in self.chunks():
            h_c = self._gather(rows, hbuf)
            m = h_c.shape[0]
            self._chunk_logits(ops, h_c, L[:m])
            self._keep_results(rows, self._kernel(L[:m], self.row_target[rows], None, None))

    # -- loss and gradients --------------------------------------------------------

    def gradient_scale(self):
        """The factor the reduction puts on every row's gradient ('sum' 1, 'mean' 1/divisor)."""
        if self.reduction == REDUCTIONS["mean"]:
            with np.errstate(divide="ignore"):
                return np.float64(1.0) / np.float64(self.divisor)
        return 1.0

    def with_grad(self, ops, grad_output_rows=None, scale=1.0, grad_hidden=None, want_weight=True):
        """Loss and the gradients w.r.t. hidden, linear_weight and linear_bias.

        ``grad_output_rows`` (reduction 'none'): the upstream gradient of each
        scored row as an (R,) array (default ones). ``scale`` multiplies every
        gradient (a scalar grad_output). Returns (grad_hidden as (R, D),
        grad_weight (V, D) and grad_bias (V,) or None, both of compute_dtype
        for 16-bit inputs). ``want_weight=False`` (a frozen head) skips the
        grad_weight product and returns None for it.
        """
        self._start_results()
        accum = self.compute_dtype
        R, D, V = self.n_rows, self.D, self.V
        filtering = self.filter_eps > 0.0
        # The returned gradients come from the buffer cache (pyce._cache), as
        # the fused kernels' do: a training loop frees last step's (zero_grad)
        # before it asks for this step's, whose pages are then already mapped
        # (a fresh 62.5 MiB grad_W costs 16000 page faults and zeroings).
        if grad_hidden is None:
            grad_hidden = empty_output((R, D), self.dtype)
        if self.active is not None:  # ignored rows get no product: their gradient is 0
            grad_hidden[...] = 0
        # With filtering some blocks of grad_W are never written: start from zeros.
        start_zero = filtering or self.n_active == 0
        grad_weight = empty_output((V, D), accum) if want_weight else None
        if grad_weight is not None and start_zero:
            grad_weight[...] = 0
        grad_bias = None if self.linear_bias is None else np.zeros(V, accum)
        L = self._logits_buffer()
        chunk = self.largest_chunk()
        hbuf = np.empty((chunk, D), self.dtype)
        direct = accum == self.dtype  # the grad_h of a slice of rows written in place
        ghbuf = None if direct and self.active is None else np.empty((chunk, D), accum)
        colsum = None if grad_bias is None else np.empty(V, accum)
        # grad_h of a chunk as (W.T @ G.T).T where the ops say so (see NumpyOps).
        ghT = np.empty((D, chunk), accum) if ops.transposed_grad_hidden else None
        row_scale = self.gradient_scale() * scale
        self.kept_blocks = 0
        self.total_blocks = 0
        first = not start_zero
        for rows in self.chunks():
            h_c = self._gather(rows, hbuf)
            m = h_c.shape[0]
            G = L[:m]
            self._chunk_logits(ops, h_c, G)
            if self.reduction == _NONE:
                g = (
                    np.ones(m)
                    if grad_output_rows is None
                    else np.asarray(grad_output_rows[rows], dtype=np.float64)
                ) * scale
                threshold = self.filter_eps * float(np.max(np.abs(g))) if m else 0.0
            else:
                g = np.array([row_scale], dtype=np.float64)
                threshold = self.filter_eps * abs(float(row_scale))
            self._keep_results(rows, self._kernel(G, self.row_target[rows], g, G))
            in_place = direct and isinstance(rows, slice)
            gh = grad_hidden[rows] if in_place else ghbuf[:m]
            runs = (
                kept_vocab_runs(G, self.row_target[rows], threshold, ops.column_max_abs)
                if filtering and m
                else None
            )
            self._backward_products(ops, G, h_c, gh, ghT, grad_weight, runs, first)
            first = False
            if not in_place:
                grad_hidden[rows] = gh
            if grad_bias is not None:
                grad_bias += ops.column_sum(G, colsum)
        return grad_hidden, grad_weight, grad_bias

    def _backward_products(self, ops, G, h_c, gh, ghT, grad_weight, runs, first):
        W = self.linear_weight
        gemm = ops.gemm
        n_blocks = -(-self.V // FILTER_BLOCK)
        self.total_blocks += n_blocks
        if runs is None:
            self.kept_blocks += n_blocks
            runs = [(0, self.V)]
            beta_w = 0.0 if first else 1.0
        else:
            beta_w = 1.0  # grad_weight started from zeros
        if not runs:
            gh[...] = 0
            return
        out = gh if ghT is None else ghT[:, : G.shape[0]]
        for i, (a, b) in enumerate(runs):
            if a or b != self.V:
                self.kept_blocks += -(-(b - a) // FILTER_BLOCK)
            beta_h = 0.0 if i == 0 else 1.0
            if ghT is None:
                gemm(G[:, a:b], W[a:b], out, beta_h)
            else:
                gemm(W[a:b].T, G[:, a:b].T, out, beta_h)
            if grad_weight is not None:
                gemm(G[:, a:b].T, h_c, grad_weight[a:b], beta_w)
        if ghT is not None:
            gh[...] = out.T

    # -- evaluation -------------------------------------------------------------

    def evaluate_rows(self, ops) -> tuple:
        """pyce.evaluate's four per-row numbers for the scored rows (loss, entropy,
        top probability, target rank), each an array over the scored rows."""
        L = self._logits_buffer()
        hbuf = np.empty((self.largest_chunk(), self.D), self.dtype)
        parts = []
        for rows in self.chunks():
            h_c = self._gather(rows, hbuf)
            m = h_c.shape[0]
            self._chunk_logits(ops, h_c, L[:m])
            parts.append(
                _core.evaluate(L[:m], np.ascontiguousarray(self.row_target[rows]), self.ignore_index)
            )
        if not parts:
            return (np.zeros(0),) * 3 + (np.zeros(0, np.int64),)
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))


def _machine_eps(dtype) -> float:
    try:
        return float(np.finfo(dtype).eps)
    except (TypeError, ValueError):  # ml_dtypes.bfloat16
        import ml_dtypes

        return float(ml_dtypes.finfo(dtype).eps)


def _rows_readable(w: np.ndarray) -> np.ndarray:
    """``w`` (V, D) as an array BLAS reads row by row (unit stride along D)."""
    if w.strides[1] == w.itemsize and w.strides[0] >= w.shape[1] * w.itemsize:
        return w
    return np.ascontiguousarray(w)
