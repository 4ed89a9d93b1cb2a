"""Zero-copy NumPy views of CPU tensors, and tensors over NumPy arrays.

pyce's kernels take NumPy arrays; a CPU tensor and an ndarray can share one
buffer. bfloat16 has no NumPy dtype of its own: it travels as ml_dtypes'
bfloat16 (the same bits), read through an int16 view.
"""

from __future__ import annotations

import numpy as np
import torch

try:  # bfloat16 tensors are read through ml_dtypes' NumPy dtype
    import ml_dtypes as _ml_dtypes
except ImportError:  # pragma: no cover - depends on the environment
    _ml_dtypes = None  # type: ignore[assignment]

# The tensor dtypes pyce's kernels compute with (16-bit ones in float32).
KERNEL_DTYPES = frozenset(
    {torch.float32, torch.float64, torch.float16} | ({torch.bfloat16} if _ml_dtypes is not None else set())
)
HALF_DTYPES = frozenset({torch.float16, torch.bfloat16})


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor (a contiguous copy first when it is not contiguous)."""
    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    if t.dtype is torch.bfloat16:
        return t.view(torch.int16).numpy().view(_ml_dtypes.bfloat16)
    return t.numpy()


def from_numpy(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """A tensor sharing ``a``'s memory (bfloat16 through its bits)."""
    if dtype == torch.bfloat16 and a.dtype.itemsize == 2:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)
