"""The LM head without its logits for PyTorch: ``linear_cross_entropy``, ``LinearCrossEntropyLoss``
and ``patch_causal_lm`` for Hugging Face causal language models.

``linear_cross_entropy(input, W, target)`` is
``F.cross_entropy(F.linear(input, W, b), target)`` computed in chunks of rows
by pyce's engine (``pyce._linear_call``): PyTorch's own BLAS for the three
products of every chunk, pyce's fused kernel for the chunk's loss and
gradient (written over its logits). No (rows x vocabulary) tensor exists.
For 'mean' and 'sum' the gradients are computed in the forward pass (as
Liger-Kernel does) and only scaled by ``grad_output`` in backward; for 'none'
the backward pass recomputes each chunk's logits.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import _linear_call
from ._composite import torch_cross_entropy as _torch_cross_entropy
from ._options import check_options as _check_options
from ._tensors import KERNEL_DTYPES as _FAST_DTYPES
from ._tensors import _ml_dtypes
from ._tensors import as_numpy as _as_numpy

__all__ = ["linear_cross_entropy", "LinearCrossEntropyLoss", "patch_causal_lm"]

_NAMES = ("input", "linear_weight", "target", "linear_bias")


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A tensor sharing a NumPy array's memory (any strides; bfloat16 through its bits)."""
    if a.dtype.itemsize == 2 and a.dtype != np.float16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


class _TorchOps:
    """The engine's array operations on PyTorch's BLAS (MKL / oneDNN in its CPU wheels)."""

    transposed_grad_hidden = False

    @staticmethod
    def gemm(a, b, out, beta):
        ta, tb, tout = _tensor(a), _tensor(b), _tensor(out)
        if ta.dtype == tout.dtype:
            if beta:
                tout.addmm_(ta, tb)
            else:
                torch.mm(ta, tb, out=tout)
        else:  # 16-bit operands into a float32 accumulator (grad_weight)
            _gemm_into_float32(ta, tb, tout, beta)
        return out

    @staticmethod
    def column_sum(G, out):
        torch.sum(_tensor(G), dim=0, dtype=_tensor(out).dtype, out=_tensor(out))
        return out

    @staticmethod
    def column_max_abs(G):
        low, high = torch.aminmax(_tensor(G), dim=0)
        return torch.maximum(high.float(), -low.float()).numpy()


# The rows of a 16-bit product computed at a time by _gemm_into_float32.
_PRODUCT_BLOCK_BYTES = 4 << 20


def _gemm_into_float32(ta, tb, tout, beta):
    """``tout = ta @ tb`` (beta 0) or ``tout += ta @ tb`` for 16-bit operands and a
    float32 ``tout``, which PyTorch's CPU products cannot write (no mixed-dtype
    mm or addmm). The product is computed in the operands' dtype (accumulated
    in float32 inside the BLAS, rounded once) a block of output rows at a time,
    each block added while it is still in cache. A whole (V, D) product was
    written to memory, then read back by the addition (and its pages mapped
    afresh every chunk): at 4096 x 1024 x 32000 in bfloat16 that cost 190 ms a
    chunk against 156 ms in blocks of 4 MiB."""
    rows = max(1, _PRODUCT_BLOCK_BYTES // (tout.shape[1] * ta.element_size()))
    block = torch.empty((min(rows, tout.shape[0]), tout.shape[1]), dtype=ta.dtype)
    for r0 in range(0, tout.shape[0], rows):
        r1 = min(tout.shape[0], r0 + rows)
        part = block[: r1 - r0]
        torch.mm(ta[r0:r1], tb, out=part)
        if beta:
            tout[r0:r1].add_(part)
        else:
            tout[r0:r1].copy_(part)


def _compute_dtype(dtype: torch.dtype):
    return np.float64 if dtype == torch.float64 else np.float32


def _numpy_dtypes():
    dtypes = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)]
    if _ml_dtypes is not None:
        dtypes.append(np.dtype(_ml_dtypes.bfloat16))
    return tuple(dtypes)


def _make_call(input, linear_weight, linear_bias, target, weight, options, return_lse=False):
    return _linear_call.LinearCall(
        _as_numpy(input),
        _as_numpy(linear_weight),
        target.detach().numpy(),
        linear_bias=None if linear_bias is None else _as_numpy(linear_bias),
        weight=None if weight is None else _as_numpy(weight).astype(np.float64),
        return_lse=return_lse,
        dtypes=_numpy_dtypes(),
        compute_dtype=_compute_dtype(input.dtype),
        names=_NAMES,
        **options,
    )


def _grad_tensor(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    t = _tensor(a).reshape(like.shape)
    return t if t.dtype == like.dtype else t.to(like.dtype)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, linear_weight, linear_bias, target, weight, options):
        call = _make_call(input, linear_weight, linear_bias, target, weight, options)
        needs = ctx.needs_input_grad[:3]
        ctx.reduction = options["reduction"]
        ctx.grads_ready = any(needs) and ctx.reduction != "none"
        if ctx.grads_ready:
            # A frozen head (LoRA, linear probing) skips its gradient's product.
            gh, gW, gb = call.with_grad(_TorchOps, want_weight=needs[1])
            saved = [_grad_tensor(gh, input), None if gW is None else _grad_tensor(gW, linear_weight)]
            if gb is not None:
                saved.append(_grad_tensor(gb, linear_bias))
            ctx.save_for_backward(*saved)
        else:
            call.forward(_TorchOps)
            if any(needs):  # reduction 'none': backward recomputes the logits
                ctx.options = options
                ctx.save_for_backward(input, linear_weight, linear_bias, target, weight)
        loss = call.loss()
        if ctx.reduction == "none":
            return torch.from_numpy(np.ascontiguousarray(loss)).to(input.dtype)
        return torch.tensor(float(loss), dtype=input.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        if ctx.grads_ready:
            grads = list(ctx.saved_tensors)
            scale = float(grad_output)
            if scale != 1.0:
                grads = [None if g is None else g * scale for g in grads]
        else:
            input, linear_weight, linear_bias, target, weight = ctx.saved_tensors
            call = _make_call(input, linear_weight, linear_bias, target, weight, ctx.options)
            rows = np.zeros(call.n_rows)
            per_scored = grad_output.detach().to(torch.float64).contiguous().numpy().reshape(-1)
            if call.in_scope is None:
                rows[:] = per_scored
            else:
                rows[call.in_scope] = per_scored
            gh, gW, gb = call.with_grad(_TorchOps, grad_output_rows=rows, want_weight=ctx.needs_input_grad[1])
            grads = [_grad_tensor(gh, input), None if gW is None else _grad_tensor(gW, linear_weight)]
            if gb is not None:
                grads.append(_grad_tensor(gb, linear_bias))
        if len(grads) == 2:
            grads.append(None)
        return grads[0], grads[1], grads[2], None, None, None


def _use_pyce(tensors, target, weight) -> bool:
    if any(t.device.type != "cpu" for t in tensors + [target]):
        return False
    if any(t.dtype not in _FAST_DTYPES for t in tensors):
        return False
    if target.is_floating_point() or target.requires_grad:
        return False
    return weight is None or (weight.device.type == "cpu" and not weight.requires_grad)


def _torch_linear_cross_entropy(
    input,
    linear_weight,
    target,
    linear_bias,
    weight,
    reduction,
    ignore_index,
    label_smoothing,
    z_loss,
    softcap,
    shift,
):
    """The same function composed from PyTorch operations (logits and all)."""
    if shift:
        input, target = input[..., :-shift, :], target[..., shift:]
    logits = F.linear(input, linear_weight, linear_bias)
    flat = _torch_cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        target.reshape(-1),
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        z_loss,
        softcap,
    )
    return flat.reshape(target.shape) if reduction == "none" else flat


def linear_cross_entropy(
    input,
    linear_weight,
    target,
    *,
    linear_bias=None,
    weight=None,
    reduction="mean",
    ignore_index=-100,
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    shift=0,
    filter_eps=None,
    chunk_size=None,
):
    """``F.cross_entropy(F.linear(input, linear_weight, linear_bias), target, ...)`` without the logits.

    Parameters
    ----------
    input : torch.Tensor of shape (..., D)
        Hidden states, e.g. (batch, time, D); float32, float64, bfloat16 or float16.
    linear_weight : torch.Tensor of shape (V, D)
        The LM head's weight (``lm_head.weight``), the input's dtype.
    target : torch.Tensor of integers, shape (...)
        Class indices, the input's shape without D.
    linear_bias : torch.Tensor of shape (V,), optional
        The head's bias, if it has one.
    weight, reduction, ignore_index, label_smoothing, z_loss, softcap
        As :func:`pyce.torch.cross_entropy` (``weight``: one factor per class).
    shift : int, optional
        Score position t against target t + shift along the time axis
        (``shift=1``: a causal LM's next-token loss, with no copy of the hidden
        states). The loss is that of ``input[..., :-shift, :]`` against
        ``target[..., shift:]`` ('none': shape (..., T - shift)).
    filter_eps : None, 'auto' or float, optional
        Gradient filtering (see :func:`pyce.linear_cross_entropy_with_grad`):
        vocabulary blocks whose gradient entries are all below it are skipped
        by the backward products. ``'auto'``: the dtype's epsilon / 32 (CCE's
        rule: 2**-12 for bfloat16). The loss is never changed.
    chunk_size : int, optional
        The most rows per chunk (default: 48 MiB of logits, at least 256 rows);
        the rows are shared out in chunks of equal size.

    Returns
    -------
    torch.Tensor
        The loss in the input's dtype, differentiable w.r.t. input,
        linear_weight and linear_bias.

    Notes
    -----
    CPU tensors of float32, float64, bfloat16 or float16 take pyce's path:
    16-bit products accumulate in float32 inside PyTorch's BLAS, the kernel
    computes in float32, and ``grad_weight`` is accumulated across chunks in
    float32 before its final rounding. Anything else (other devices, float
    targets, a target or class weight that requires grad) is computed by
    PyTorch operations with the logits materialised. Second derivatives are
    not supported on pyce's path.

    Examples
    --------
    >>> import torch, pyce.torch
    >>> h = torch.randn(2, 5, 8, requires_grad=True)
    >>> W = torch.randn(100, 8, requires_grad=True)
    >>> y = torch.randint(0, 100, (2, 5))
    >>> loss = pyce.torch.linear_cross_entropy(h, W, y, shift=1)
    >>> loss.backward()
    """
    _check_options(reduction, softcap)
    tensors = [input, linear_weight] + ([linear_bias] if linear_bias is not None else [])
    if not _use_pyce(tensors, target, weight):
        return _torch_linear_cross_entropy(
            input,
            linear_weight,
            target,
            linear_bias,
            weight,
            reduction,
            ignore_index,
            label_smoothing,
            z_loss,
            softcap,
            int(shift),
        )
    options = dict(
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        shift=shift,
        filter_eps=filter_eps,
        chunk_size=chunk_size,
    )
    return _LinearCrossEntropy.apply(input, linear_weight, linear_bias, target, weight, options)


class LinearCrossEntropyLoss(torch.nn.Module):
    """A linear layer and the cross-entropy of its output, as ``torch.nn.LinearCrossEntropyLoss``.

    Holds a ``torch.nn.Linear`` as ``linear`` (``weight`` and ``bias`` are its
    parameters; the state dict is that of PyTorch's module), and computes :func:`linear_cross_entropy` of its
    input with them: the logits are never materialised.

    Parameters
    ----------
    in_features, num_classes : int
        D and V.
    bias : bool, optional
        Whether the projection has a bias (default False, as LM heads).
    device, dtype : optional
        Of the parameters.
    reduction, weight, ignore_index, label_smoothing, z_loss, softcap, shift, filter_eps, chunk_size
        As :func:`linear_cross_entropy` (``weight``, the class weights, is kept
        as the buffer ``class_weight``).

    Examples
    --------
    >>> import torch, pyce.torch
    >>> head = pyce.torch.LinearCrossEntropyLoss(64, 1000, shift=1)
    >>> loss = head(torch.randn(2, 16, 64), torch.randint(0, 1000, (2, 16)))
    """

    def __init__(
        self,
        in_features,
        num_classes,
        *,
        bias=False,
        device=None,
        dtype=None,
        reduction="mean",
        weight=None,
        ignore_index=-100,
        label_smoothing=0.0,
        z_loss=0.0,
        softcap=None,
        shift=0,
        filter_eps=None,
        chunk_size=None,
    ):
        super().__init__()
        _check_options(reduction, softcap)
        # As torch.nn.LinearCrossEntropyLoss: the projection is `linear`, so the
        # two modules' state dicts load into each other.
        self.linear = torch.nn.Linear(in_features, num_classes, bias=bias, device=device, dtype=dtype)
        self.register_buffer("class_weight", weight)
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.shift = shift
        self.filter_eps = filter_eps
        self.chunk_size = chunk_size

    @property
    def weight(self) -> torch.nn.Parameter:
        return self.linear.weight

    @property
    def bias(self):
        return self.linear.bias

    def forward(self, input, target):
        return linear_cross_entropy(
            input,
            self.weight,
            target,
            linear_bias=self.bias,
            weight=self.class_weight,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            z_loss=self.z_loss,
            softcap=self.softcap,
            shift=self.shift,
            filter_eps=self.filter_eps,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        V, D = self.weight.shape
        parts = [
            f"in_features={D}",
            f"num_classes={V}",
            f"bias={self.bias is not None}",
            f"reduction={self.reduction!r}",
        ]
        for name in ("label_smoothing", "z_loss", "softcap", "shift", "filter_eps"):
            value = getattr(self, name)
            if value:
                parts.append(f"{name}={value!r}")
        return ", ".join(parts)


def patch_causal_lm(model, *, filter_eps=None, chunk_size=None):
    """Make a Hugging Face causal LM compute its training loss without materialising logits.

    After ``patch_causal_lm(model)``, a forward call with ``labels`` runs the
    base model, then :func:`linear_cross_entropy` of the last hidden states
    with the output embedding's weight (and bias), ``shift=1`` -- transformers'
    ``ForCausalLMLoss``: position t predicts token t + 1, ``-100`` is ignored,
    the mean over scored tokens, or the sum divided by ``num_items_in_batch``
    when the Trainer passes it; a ``shift_labels`` argument is used as given.
    Gemma 2's ``final_logit_softcapping`` becomes ``softcap``. The output's
    ``logits`` is None on that path (it is what is never computed). Calls
    without labels (generation, evaluation of logits) run the original forward.

    Works for models whose forward is ``base_model(...)`` followed by the
    output embedding (Llama, Mistral, Qwen2, Gemma, GPT-2, ...).
    ``model.pyce_unpatch()`` restores the original forward.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal language model with an output embedding (``get_output_embeddings()``).
    filter_eps, chunk_size
        As for :func:`pyce.linear_cross_entropy_with_grad`.

    Returns
    -------
    transformers.PreTrainedModel
        The same model, patched in place.

    Examples
    --------
    >>> import torch, transformers, pyce.torch
    >>> config = transformers.LlamaConfig(vocab_size=97, hidden_size=16, intermediate_size=32,
    ...                                   num_hidden_layers=1, num_attention_heads=2,
    ...                                   num_key_value_heads=1)
    >>> model = transformers.LlamaForCausalLM(config)
    >>> ids = torch.randint(0, 97, (2, 9))
    >>> own = model(input_ids=ids, labels=ids).loss
    >>> out = pyce.torch.patch_causal_lm(model)(input_ids=ids, labels=ids)
    >>> out.logits is None, torch.allclose(out.loss, own)
    (True, True)
    >>> model.pyce_unpatch()
    """
    original = model.forward
    head = model.get_output_embeddings()
    if head is None or not isinstance(getattr(head, "weight", None), torch.Tensor):
        raise TypeError(f"{type(model).__name__} has no output embedding with a weight to fuse")
    softcap = getattr(model.config, "final_logit_softcapping", None)

    def forward(
        input_ids=None,
        attention_mask=None,
        labels=None,
        num_items_in_batch=None,
        shift_labels=None,
        return_dict=None,
        **kwargs,
    ):
        if labels is None and shift_labels is None:
            return original(
                input_ids=input_ids, attention_mask=attention_mask, return_dict=return_dict, **kwargs
            )
        kwargs.pop("logits_to_keep", None)
        kwargs.pop("num_logits_to_keep", None)
        outputs = model.base_model(
            input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **kwargs
        )
        hidden = outputs[0]
        if shift_labels is not None:
            target, shift = shift_labels, 0
        else:
            target, shift = labels, 1
        target = target.to(hidden.device)
        reduction = "mean" if num_items_in_batch is None else "sum"
        loss = linear_cross_entropy(
            hidden,
            head.weight,
            target,
            linear_bias=head.bias,
            reduction=reduction,
            ignore_index=-100,
            softcap=softcap,
            shift=shift,
            filter_eps=filter_eps,
            chunk_size=chunk_size,
        )
        if num_items_in_batch is not None:
            if isinstance(num_items_in_batch, torch.Tensor):
                num_items_in_batch = num_items_in_batch.to(loss.device)
            loss = loss / num_items_in_batch
        from transformers.modeling_outputs import CausalLMOutputWithPast

        return CausalLMOutputWithPast(
            loss=loss,
            logits=None,
            past_key_values=getattr(outputs, "past_key_values", None),
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )

    def unpatch():
        model.forward = original
        del model.pyce_unpatch

    model.forward = forward
    model.pyce_unpatch = unpatch
    return model
