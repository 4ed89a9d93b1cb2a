"""Cross-entropy from PyTorch's own operations, with pyce's two extra options.

This is what pyce.torch runs whenever its kernel does not take a call (another
device, another dtype, a target or weight that needs a gradient, an input
PyTorch would reject, a torch.func transform) and what its second derivatives
are taken through: ``torch.nn.functional.cross_entropy`` itself, so the result
or the error is PyTorch's, with ``z_loss`` and ``softcap`` composed from torch
operations by the definitions pyce's kernel uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_dim(input: torch.Tensor) -> int:
    """PyTorch's class dimension: 1, or 0 for an unbatched (C,) input."""
    return 0 if input.dim() == 1 else 1


def torch_cross_entropy(
    input,
    target,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
):
    """``F.cross_entropy`` (its checks, its errors) plus z_loss and softcap."""
    x = input if softcap is None else softcap * torch.tanh(input / softcap)
    if not z_loss:
        return F.cross_entropy(
            x,
            target,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
        )
    if reduction not in ("none", "mean", "sum"):  # PyTorch's error for an unknown reduction
        raise ValueError(f"{reduction} is not a valid value for reduction")
    rows = F.cross_entropy(
        x, target, weight=weight, ignore_index=ignore_index, reduction="none", label_smoothing=label_smoothing
    )
    lse = torch.logsumexp(x, dim=class_dim(input))
    if target.is_floating_point():
        scored = torch.ones_like(lse, dtype=torch.bool)
        divisor = torch.tensor(float(lse.numel()), dtype=rows.dtype, device=rows.device)
    else:
        scored = target != ignore_index
        w_t = (
            torch.ones((), dtype=rows.dtype, device=rows.device)
            if weight is None
            else weight[torch.where(scored, target, torch.zeros_like(target))]
        )
        divisor = (w_t * scored).sum()
    rows = rows + torch.where(scored, z_loss * lse * lse, torch.zeros_like(lse))
    if reduction == "none":
        return rows
    return rows.sum() if reduction == "sum" else rows.sum() / divisor
