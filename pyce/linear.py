"""The LM head without its logits: fused linear cross-entropy for NumPy arrays.

``linear_cross_entropy(hidden, W, target)`` is ``cross_entropy(hidden @ W.T + b,
target)`` computed chunk by chunk (``pyce._linear_call``): no array of the
logits' size (rows x vocabulary) is ever allocated, the matrix products run on
NumPy's own BLAS, and each chunk's loss and gradient come from pyce's fused
kernel writing the gradient over the chunk's logits.
"""

from __future__ import annotations

import numpy as np

from ._blas import NumpyOps
from ._linear_call import LinearCall
from ._validation import FLOAT_DTYPES, check_ignore_index
from .metrics import EvalResult, check_topk, result_from_rows

__all__ = ["linear_cross_entropy", "linear_cross_entropy_with_grad", "linear_evaluate"]


def _call(
    hidden,
    linear_weight,
    target,
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
):
    hidden = _as_array(hidden, "hidden")
    linear_weight = _as_array(linear_weight, "linear_weight")
    linear_bias = None if linear_bias is None else _as_array(linear_bias, "linear_bias")
    return LinearCall(
        hidden,
        linear_weight,
        np.asarray(target),
        linear_bias=linear_bias,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        shift=shift,
        return_lse=return_lse,
        filter_eps=filter_eps,
        chunk_size=chunk_size,
        dtypes=FLOAT_DTYPES,
        compute_dtype=hidden.dtype,
    )


def _as_array(x, name):
    a = np.asarray(x)
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be a float32 or float64 array, got dtype {a.dtype}"
            + ("; convert it first, e.g. .astype(np.float32)" if a.dtype.kind in "biuf" else "")
        )
    return a


def linear_cross_entropy(
    hidden,
    linear_weight,
    target,
    *,
    linear_bias=None,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    shift=0,
    return_lse=False,
    filter_eps=None,
    chunk_size=None,
):
    """Cross-entropy of the logits ``hidden @ linear_weight.T + linear_bias``, never materialised.

    The same loss as ``pyce.cross_entropy(hidden @ linear_weight.T + linear_bias,
    target, ...)`` (and as PyTorch's
    ``F.cross_entropy(F.linear(hidden, W, b), target, ...)``), computed on
    chunks of rows: at most ``chunk_size`` rows of logits exist at a time.

    Parameters
    ----------
    hidden : array_like of float32 or float64, shape (..., D)
        The hidden states, e.g. (batch, time, D).
    linear_weight : array_like, shape (V, D)
        The output projection (``torch.nn.Linear(D, V).weight``), the hidden's dtype.
    target : array_like of int, shape (...)
        Class indices: the hidden's shape without D.
    linear_bias : array_like, shape (V,), optional
        The projection's bias.
    weight, ignore_index, reduction, label_smoothing, z_loss, softcap
        As :func:`pyce.cross_entropy` (``weight`` is one factor per class).
    shift : int, optional
        Score hidden state ``t`` against target ``t + shift`` along the time axis
        (hidden's second-to-last): ``shift=1`` is a causal LM's next-token loss,
        with no copy of the hidden states. The result is that of
        ``hidden[..., :-shift, :]`` against ``target[..., shift:]``: for
        reduction 'none' the loss has shape (..., T - shift).
    return_lse : bool, optional
        Also return each scored row's log-sum-exp (shape of the per-row loss).
    filter_eps : None, 'auto' or float, optional
        Gradient filtering (see :func:`linear_cross_entropy_with_grad`); it never
        changes the loss and is accepted here so one set of options serves both.
    chunk_size : int, optional
        The most rows per chunk; default: as many as fit in 48 MiB of logits (at
        least 256). The rows are shared out in chunks of equal size.

    Returns
    -------
    loss : numpy scalar or numpy.ndarray
        As :func:`pyce.cross_entropy`, in the hidden's dtype.
    lse : numpy.ndarray
        Only with ``return_lse=True``.

    Examples
    --------
    >>> import numpy as np, pyce
    >>> rng = np.random.default_rng(0)
    >>> h, W = rng.standard_normal((6, 4)), rng.standard_normal((10, 4))
    >>> y = np.array([1, 2, 3, 4, 5, 6])
    >>> bool(np.isclose(pyce.linear_cross_entropy(h, W, y), pyce.cross_entropy(h @ W.T, y)))
    True
    """
    call = _call(
        hidden,
        linear_weight,
        target,
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
    )
    call.forward(NumpyOps)
    return (call.loss(), call.lse()) if return_lse else call.loss()


def linear_cross_entropy_with_grad(
    hidden,
    linear_weight,
    target,
    *,
    linear_bias=None,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    shift=0,
    return_lse=False,
    filter_eps=None,
    chunk_size=None,
):
    """The loss of :func:`linear_cross_entropy` and its gradients, from three GEMMs per chunk.

    Each chunk's logits are computed by NumPy's BLAS, pyce's fused kernel
    writes ``d loss / d logits`` over them in place, and two more products
    turn that into the chunk's rows of ``grad_hidden`` and its share of
    ``grad_linear_weight`` (accumulated in the BLAS call itself).

    Parameters
    ----------
    hidden, linear_weight, target, linear_bias, weight, ignore_index, reduction
        As for :func:`linear_cross_entropy`.
    label_smoothing, z_loss, softcap, shift, return_lse, chunk_size
        As for :func:`linear_cross_entropy`.
    filter_eps : None, 'auto' or float in (0, 1), optional
        Gradient filtering (Cut Cross-Entropy's): the vocabulary is cut into
        blocks of 512 columns, and a block in which every entry of a chunk's
        per-row gradient ``d loss_i / d logits_i`` is below ``filter_eps`` in
        magnitude is skipped by both backward products. ``'auto'`` is CCE's
        rule, the dtype's machine epsilon / 32 (2**-28 for float32, so only
        extremely confident rows are skipped); None (default) skips nothing.
        The loss is never changed. The error this allows: every dropped
        entry of the logits' gradient ``G = d L / d logits`` is below
        ``filter_eps * s`` (``s``: 1/divisor for 'mean', 1 for 'sum', the
        row's upstream gradient for 'none'), so for each element
        ``|error of grad_hidden[i, d]| <= filter_eps * s * sum_v' |W[v', d]|``
        and ``|error of grad_linear_weight[v, d]| <= filter_eps * s * sum_i |hidden[i, d]|``,
        the sums running over the skipped columns ``v'`` of row i's chunk and
        over the rows ``i`` of the chunks that skipped ``v``. The bias
        gradient is always exact.

    Returns
    -------
    loss : numpy scalar or numpy.ndarray
        As :func:`linear_cross_entropy`.
    grad_hidden : numpy.ndarray
        ``d loss / d hidden``, the hidden's shape (rows without a target, or
        ignored, are 0). For reduction 'none', the gradient of the sum of the
        per-row losses.
    grad_linear_weight : numpy.ndarray
        ``d loss / d linear_weight``, shape (V, D).
    grad_linear_bias : numpy.ndarray
        ``d loss / d linear_bias``, shape (V,): only when a bias is given.
    lse : numpy.ndarray
        Only with ``return_lse=True``.

    Examples
    --------
    >>> import numpy as np, pyce
    >>> rng = np.random.default_rng(0)
    >>> h, W = rng.standard_normal((6, 4)), rng.standard_normal((10, 4))
    >>> y = np.array([1, 2, 3, 4, 5, 6])
    >>> loss, g_h, g_W = pyce.linear_cross_entropy_with_grad(h, W, y)
    >>> _, G = pyce.cross_entropy_with_grad(h @ W.T, y)
    >>> bool(np.allclose(g_h, G @ W) and np.allclose(g_W, G.T @ h))
    True
    """
    call = _call(
        hidden,
        linear_weight,
        target,
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
    )
    grad_hidden, grad_weight, grad_bias = call.with_grad(NumpyOps)
    values = (call.loss(), grad_hidden.reshape(call.hidden_shape), grad_weight)
    if grad_bias is not None:
        values += (grad_bias,)
    if return_lse:
        values += (call.lse(),)
    return values


def linear_evaluate(
    hidden,
    linear_weight,
    target,
    *,
    linear_bias=None,
    ignore_index=-100,
    topk=(1, 5),
    shift=0,
    chunk_size=None,
) -> EvalResult:
    """:func:`pyce.evaluate` of the logits ``hidden @ linear_weight.T + linear_bias``, chunk by chunk.

    The same metrics (loss, perplexity, top-k accuracies, entropy, ECE, number
    of tokens) with no array of the logits' size: each chunk's logits are
    computed by NumPy's BLAS and read once by pyce's evaluation kernel.

    Parameters
    ----------
    hidden, linear_weight, target, linear_bias, shift, chunk_size
        As :func:`linear_cross_entropy`.
    ignore_index : int, optional
        Rows with this target are not scored (default -100).
    topk : int or sequence of int, optional
        The k of the top-k accuracies (default ``(1, 5)``).

    Returns
    -------
    EvalResult
        As :func:`pyce.evaluate`.

    Examples
    --------
    >>> import numpy as np, pyce
    >>> rng = np.random.default_rng(0)
    >>> h, W = rng.standard_normal((6, 4)), rng.standard_normal((10, 4))
    >>> y = np.array([1, 2, 3, 4, 5, 6])
    >>> pyce.linear_evaluate(h, W, y).n_tokens
    6
    """
    ks = check_topk(topk)
    check_ignore_index(ignore_index)
    call = _call(
        hidden,
        linear_weight,
        target,
        linear_bias,
        None,
        ignore_index,
        "mean",
        0.0,
        0.0,
        None,
        shift,
        False,
        None,
        chunk_size,
    )
    loss, entropy, max_prob, rank = call.evaluate_rows(NumpyOps)
    return result_from_rows(loss, entropy, max_prob, rank, ks)
