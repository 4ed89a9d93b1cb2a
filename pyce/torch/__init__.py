"""pyce for PyTorch users: a drop-in ``cross_entropy`` and ``CrossEntropyLoss`` for CPU tensors.

``pyce.torch.cross_entropy`` has the signature and semantics of
``torch.nn.functional.cross_entropy`` (class dimension 1, or a 1-D unbatched
input) plus two LLM training options, ``z_loss`` and ``softcap``. For CPU
tensors of float32, float64, bfloat16 or float16 it runs pyce's fused kernel:
the forward pass computes the loss *and* the gradient in one read of the
logits (through zero-copy NumPy views of the tensors), and the backward pass
only scales that saved gradient by ``grad_output``. Anything else -- tensors on
another device, other dtypes, gradients wanted for the target or the weight
-- goes to PyTorch's own implementation, so the function is safe to use
everywhere.

PyTorch is an optional dependency of pyce: importing this module needs it
(``pip install "pyce[torch]"``); ``import pyce`` does not.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import _cross_entropy as _api

__all__ = ["cross_entropy", "CrossEntropyLoss", "causal_lm_loss"]

try:  # bfloat16 tensors are read through ml_dtypes' NumPy dtype
    import ml_dtypes as _ml_dtypes
except ImportError:  # pragma: no cover - depends on the environment
    _ml_dtypes = None  # type: ignore[assignment]

_FAST_DTYPES = {torch.float32, torch.float64, torch.float16}
if _ml_dtypes is not None:
    _FAST_DTYPES.add(torch.bfloat16)


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor (no copy when it is contiguous)."""
    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(_ml_dtypes.bfloat16)
    return t.numpy()


def _from_numpy(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """A tensor sharing ``a``'s memory (bfloat16 through its bits)."""
    if dtype == torch.bfloat16 and a.dtype.itemsize == 2:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _class_axis(input: torch.Tensor) -> int:
    return 0 if input.dim() == 1 else 1


def _check_options(reduction, softcap):
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be one of 'none', 'mean', 'sum'; got {reduction!r}")
    if softcap is not None and not softcap > 0:
        raise ValueError(f"softcap must be None or a positive number, got {softcap!r}")


def _use_pyce(input, target, weight) -> bool:
    """Whether pyce's kernel can take this call (else PyTorch's implementation does)."""
    tensors = [input, target] + ([weight] if weight is not None else [])
    if any(t.device.type != "cpu" for t in tensors):
        return False
    if input.dtype not in _FAST_DTYPES or input.dim() == 0:
        return False
    if target.requires_grad or (weight is not None and weight.requires_grad):
        return False  # pyce differentiates w.r.t. the logits only
    if target.is_floating_point() and target.dtype not in _FAST_DTYPES:
        return False
    return True


class _PyceCrossEntropy(torch.autograd.Function):
    """Forward: pyce's fused loss + gradient; backward: the saved gradient times grad_output."""

    @staticmethod
    def forward(ctx, input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap):
        axis = _class_axis(input)
        x = _as_numpy(input)
        t = _as_numpy(target)
        w = None if weight is None else _as_numpy(weight)
        kw = dict(axis=axis, weight=w, ignore_index=ignore_index, reduction=reduction,
                  label_smoothing=label_smoothing)
        if z_loss:
            kw["z_loss"] = z_loss
        if softcap is not None:
            kw["softcap"] = softcap
        if not ctx.needs_input_grad[0]:
            loss = _api.cross_entropy(x, t, **kw)
        else:
            loss, grad = _api.cross_entropy_with_grad(x, t, **kw)
            # Saved as an intermediate: autograd frees it after backward (unless
            # the graph is retained, when a second backward needs it again).
            ctx.save_for_backward(_from_numpy(grad, input.dtype))
        ctx.axis = axis
        ctx.reduction = reduction
        if reduction == "none":
            return torch.from_numpy(np.asarray(loss)).to(input.dtype)
        return torch.tensor(float(loss), dtype=input.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        if not ctx.needs_input_grad[0]:
            return (None,) * 8
        (grad,) = ctx.saved_tensors
        if ctx.reduction == "none":
            scale = grad_output.unsqueeze(ctx.axis)
        else:
            scale = grad_output
            if scale.numel() == 1 and float(scale) == 1.0:
                return (grad,) + (None,) * 7
        return (grad * scale.to(grad.dtype),) + (None,) * 7


def _torch_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap):
    """PyTorch's own implementation, with z_loss and softcap composed from torch ops
    (the same definitions as pyce's kernel)."""
    x = input if softcap is None else softcap * torch.tanh(input / softcap)
    if not z_loss:
        return F.cross_entropy(x, target, weight=weight, ignore_index=ignore_index,
                               reduction=reduction, label_smoothing=label_smoothing)
    rows = F.cross_entropy(x, target, weight=weight, ignore_index=ignore_index,
                           reduction="none", label_smoothing=label_smoothing)
    lse = torch.logsumexp(x, dim=_class_axis(input))
    if target.is_floating_point():
        scored = torch.ones_like(lse, dtype=torch.bool)
        divisor = torch.tensor(float(lse.numel()), dtype=rows.dtype, device=rows.device)
    else:
        scored = target != ignore_index
        w_t = (torch.ones((), dtype=rows.dtype, device=rows.device) if weight is None
               else weight[torch.where(scored, target, torch.zeros_like(target))])
        divisor = (w_t * scored).sum()
    rows = rows + torch.where(scored, z_loss * lse * lse, torch.zeros_like(lse))
    if reduction == "none":
        return rows
    return rows.sum() if reduction == "sum" else rows.sum() / divisor


def _torch_cross_entropy_kw(input, target, *, weight=None, ignore_index=-100, reduction="mean",
                            label_smoothing=0.0, z_loss=0.0, softcap=None):
    """The PyTorch path with keyword arguments (the tests' second opinion)."""
    return _torch_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing,
                                z_loss, softcap)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, *, z_loss=0.0, softcap=None):
    """``torch.nn.functional.cross_entropy`` computed by pyce's fused CPU kernel.

    Parameters
    ----------
    input : torch.Tensor
        Logits of shape ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)`` (unbatched),
        as in PyTorch (class dimension 1).
    target : torch.Tensor
        Class indices (an integer tensor of the input's shape without the class
        dimension) or class probabilities (a float tensor of the input's shape).
    weight : torch.Tensor of shape (C,), optional
        A rescaling weight for each class.
    ignore_index : int, optional
        Targets equal to it contribute neither loss nor gradient (default -100).
    reduction : {'mean', 'sum', 'none'}, optional
        As PyTorch: the weighted mean divides by the sum of ``weight[target]``
        over the rows that are not ignored.
    label_smoothing : float in [0, 1], optional
        Mixes the target with the uniform distribution.
    z_loss : float, optional
        Adds ``z_loss * logsumexp(z)**2`` per row that is not ignored (PaLM's
        auxiliary loss, which keeps the softmax normaliser near 1); included in
        the gradient. Default 0.
    softcap : float, optional
        If given, the logits pass through ``softcap * tanh(z / softcap)`` first
        (Gemma 2's logit soft-capping); the gradient flows through the cap.

    Returns
    -------
    torch.Tensor
        The loss in the input's dtype: a 0-d tensor for 'mean'/'sum', the
        target's shape for 'none'.

    Notes
    -----
    For a CPU tensor of float32, float64, bfloat16 or float16 the loss and its
    gradient come from one pass of pyce's kernel over zero-copy views of the
    tensors; the gradient is kept until backward (one logits-sized buffer,
    as PyTorch keeps its log-softmax) and scaled by ``grad_output`` there. The
    kernels compute 16-bit logits in float32. Other devices or dtypes, and a
    target or weight that requires grad, use ``torch.nn.functional.cross_entropy``
    (with ``z_loss`` and ``softcap`` composed from torch operations). Second
    derivatives are not supported on pyce's path.

    Examples
    --------
    >>> import torch, pyce.torch
    >>> x = torch.tensor([[2.0, 1.0, 3.0]], requires_grad=True)
    >>> loss = pyce.torch.cross_entropy(x, torch.tensor([2]))
    >>> loss.backward()
    >>> round(loss.item(), 4), x.grad.round(decimals=4)
    (0.4076, tensor([[ 0.2447,  0.0900, -0.3348]]))
    """
    _check_options(reduction, softcap)
    if not _use_pyce(input, target, weight):
        return _torch_cross_entropy(input, target, weight, ignore_index, reduction,
                                    label_smoothing, z_loss, softcap)
    return _PyceCrossEntropy.apply(input, target, weight, ignore_index, reduction,
                                   float(label_smoothing), float(z_loss),
                                   None if softcap is None else float(softcap))


class CrossEntropyLoss(torch.nn.Module):
    """``torch.nn.CrossEntropyLoss`` computed by :func:`pyce.torch.cross_entropy`.

    Parameters
    ----------
    weight : torch.Tensor of shape (C,), optional
        Class weights (kept as a buffer, so ``.to()`` moves it with the module).
    ignore_index, reduction, label_smoothing, z_loss, softcap
        As for :func:`cross_entropy`.

    Examples
    --------
    >>> import torch, pyce.torch
    >>> criterion = pyce.torch.CrossEntropyLoss(label_smoothing=0.1, z_loss=1e-4)
    >>> loss = criterion(torch.randn(8, 100, requires_grad=True), torch.randint(0, 100, (8,)))
    """

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, *,
                 z_loss=0.0, softcap=None):
        super().__init__()
        _check_options(reduction, softcap)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap

    def forward(self, input, target):
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing,
                             z_loss=self.z_loss, softcap=self.softcap)

    def extra_repr(self) -> str:
        parts = [f"ignore_index={self.ignore_index}", f"reduction={self.reduction!r}"]
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing}")
        if self.z_loss:
            parts.append(f"z_loss={self.z_loss}")
        if self.softcap is not None:
            parts.append(f"softcap={self.softcap}")
        return ", ".join(parts)


from .hf import causal_lm_loss  # noqa: E402  (transformers' loss signature; needs cross_entropy above)
from .linear import LinearCrossEntropyLoss, linear_cross_entropy, patch_causal_lm  # noqa: E402,F401  (issue 17: the fused LM head)
