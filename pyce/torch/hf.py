"""pyce's loss for Hugging Face transformers' causal language models, in one line.

``model.loss_function = pyce.torch.causal_lm_loss`` makes a transformers model
compute its training loss with pyce's fused kernel, and
``Trainer(compute_loss_func=pyce.torch.causal_lm_loss)`` does the same for a
Trainer. Both follow transformers' own ``ForCausalLMLoss``: the labels are
shifted so that position t predicts token t + 1, and the summed loss is divided
by ``num_items_in_batch`` when the Trainer counts the tokens of an accumulated
batch. transformers is not needed to import this module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import cross_entropy

__all__ = ["causal_lm_loss"]


def _logits_of(output) -> torch.Tensor:
    """The logits tensor, given it or a model's output (what ``Trainer`` passes)."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, dict):
        logits = output.get("logits")
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            "causal_lm_loss expects logits as a tensor or a model output with a "
            f"'logits' tensor, got {type(output).__name__}"
        )
    return logits


def causal_lm_loss(
    logits, labels, vocab_size=None, num_items_in_batch=None, ignore_index=-100, shift_labels=None, **kwargs
):
    """The next-token cross-entropy of a causal LM, as transformers computes it, by pyce.

    A drop-in for transformers' ``ForCausalLMLoss``: assign it to a model's
    ``loss_function`` or pass it as a Trainer's ``compute_loss_func``.

    Parameters
    ----------
    logits : torch.Tensor or model output
        Logits of shape ``(batch, time, vocab_size)``, or a model's output
        holding them as ``.logits`` (what ``Trainer`` passes to
        ``compute_loss_func``).
    labels : torch.Tensor of shape (batch, time)
        The input tokens, ``ignore_index`` where no loss is wanted (padding).
        Position t's logits are scored against ``labels[..., t + 1]``; the last
        position has no next token and is ignored. Unused when ``shift_labels``
        is given.
    vocab_size : int, optional
        The size of the logits' last dimension (transformers passes
        ``config.vocab_size``); by default the logits' own.
    num_items_in_batch : int or torch.Tensor, optional
        If given, the loss is the sum over all scored tokens divided by it (the
        Trainer passes the number of scored tokens in the whole accumulated
        batch, so that gradient accumulation gives the large batch's mean);
        otherwise the mean over the scored tokens.
    ignore_index : int, optional
        The label that is not scored (default -100).
    shift_labels : torch.Tensor of shape (batch, time), optional
        Labels already aligned with the logits (position t scored against
        ``shift_labels[..., t]``), as padding-free collators provide them.
    **kwargs
        Other keyword arguments transformers passes with the loss (attention
        options and the like); ignored, as ``ForCausalLMLoss`` ignores them.

    Returns
    -------
    torch.Tensor
        The loss, a 0-d float32 tensor (float64 logits are computed in float32,
        16-bit logits are upcast to float32 first, as transformers does).

    Notes
    -----
    The logits are not sliced: the labels are padded with one ``ignore_index``
    and shifted instead (as in transformers), so a contiguous ``(B, T, V)``
    logits tensor reaches pyce's fused kernel without a copy. Logits on another
    device than the CPU go to ``torch.nn.functional.cross_entropy``, as every
    call of :func:`pyce.torch.cross_entropy` does. When no token is scored the
    mean is nan, as in PyTorch and transformers.

    Examples
    --------
    >>> import torch, pyce.torch
    >>> logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 1.0, 1.0]]])
    >>> labels = torch.tensor([[0, 1, 2]])  # position 0 predicts 1, position 1 predicts 2
    >>> round(pyce.torch.causal_lm_loss(logits, labels, vocab_size=3).item(), 4)
    2.6672
    >>> round(pyce.torch.causal_lm_loss(logits, labels, 3, num_items_in_batch=4).item(), 4)
    1.3336
    """
    logits = _logits_of(logits).float()
    if vocab_size is None:
        vocab_size = logits.shape[-1]
    if shift_labels is None:
        labels = F.pad(labels, (0, 1), value=ignore_index)
        shift_labels = labels[..., 1:]
    logits = logits.reshape(-1, vocab_size)
    shift_labels = shift_labels.reshape(-1).to(logits.device)
    if num_items_in_batch is None:
        return cross_entropy(logits, shift_labels, ignore_index=ignore_index, reduction="mean")
    loss = cross_entropy(logits, shift_labels, ignore_index=ignore_index, reduction="sum")
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(loss.device)
    return loss / num_items_in_batch
