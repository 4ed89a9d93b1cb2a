"""pyce for PyTorch users: a drop-in ``cross_entropy`` and ``CrossEntropyLoss`` for CPU tensors.

``pyce.torch.cross_entropy`` has the signature and semantics of
``torch.nn.functional.cross_entropy`` (class dimension 1, or a 1-D unbatched
input) plus two LLM training options, ``z_loss`` and ``softcap``. For CPU
tensors of float32, float64, bfloat16 or float16 it runs pyce's fused kernel:
the forward pass computes the loss *and* the gradient in one read of the
logits (through zero-copy NumPy views of the tensors), and the backward pass
only scales that saved gradient by ``grad_output``. Anything else -- tensors on
another device, other dtypes, gradients wanted for the target or the weight,
arguments PyTorch rejects -- goes to PyTorch's own implementation, so the
function is safe to use everywhere and raises what PyTorch raises.

PyTorch is an optional dependency of pyce: importing this module needs it
(``pip install "pyce[torch]"``); ``import pyce`` does not.
"""

from __future__ import annotations

# One module per job; each public name is re-exported here, one line each.
from ._cross_entropy import CrossEntropyLoss, cross_entropy
from .hf import causal_lm_loss  # transformers' loss signature
from .linear import LinearCrossEntropyLoss, linear_cross_entropy, patch_causal_lm  # the fused LM head

__all__ = [
    "CrossEntropyLoss",
    "LinearCrossEntropyLoss",
    "causal_lm_loss",
    "cross_entropy",
    "linear_cross_entropy",
    "patch_causal_lm",
]
