"""Type stubs for pyce._core, the compiled kernels (private: use the pyce package).

Every array argument is a C-contiguous NumPy array laid out as (rows, classes)
with the classes last; pyce's Python layer checks and prepares them.
"""

from typing import Any, Optional, Sequence

import numpy as np
import numpy.typing as npt

# Runtime and dispatch
def cpu_info() -> dict[str, Any]: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def max_threads() -> int: ...
def set_spin_window_us(us: int) -> None: ...
def set_capability(name: str) -> str: ...

# Normalisers
def logsumexp(x: npt.NDArray[Any]) -> npt.NDArray[np.floating[Any]]: ...
def softmax(x: npt.NDArray[Any], out: npt.NDArray[Any]) -> None: ...
def log_softmax(x: npt.NDArray[Any], out: npt.NDArray[Any]) -> None: ...
def vector_exp(x: npt.NDArray[np.floating[Any]], sweep: bool = False) -> npt.NDArray[np.floating[Any]]: ...

# Cross-entropy: the reduced loss (float) or per-row losses (reduction 0);
# with return_lse, a (loss, lse) tuple. Writes the gradient into `grad` when
# `grad_output` is given.
def cross_entropy(
    logits: npt.NDArray[Any],
    target: Optional[npt.NDArray[np.int64]],
    soft_target: Optional[npt.NDArray[Any]],
    weight: Optional[npt.NDArray[np.floating[Any]]],
    ignore_index: int,
    label_smoothing: float,
    reduction: int,
    grad_output: Optional[npt.NDArray[np.float64]],
    grad: Optional[npt.NDArray[Any]],
    z_loss: float = 0.0,
    return_lse: bool = False,
    softcap: float = 0.0,
) -> Any: ...

# Evaluation, divergences, focal loss
def evaluate(
    logits: npt.NDArray[Any], target: npt.NDArray[np.int64], ignore_index: int
) -> tuple[Any, ...]: ...
def entropy(logits: npt.NDArray[Any]) -> npt.NDArray[np.floating[Any]]: ...
def kl_divergence(
    student: npt.NDArray[Any],
    teacher: npt.NDArray[Any],
    temperature: float,
    reduction: int,
    grad_output: Optional[npt.NDArray[np.float64]],
    grad: Optional[npt.NDArray[Any]],
) -> Any: ...
def focal_loss(
    logits: npt.NDArray[Any],
    target: npt.NDArray[np.int64],
    ignore_index: int,
    gamma: float,
    alpha: Optional[npt.NDArray[np.floating[Any]]],
    alpha_scalar: float,
    reduction: int,
    grad_output: Optional[npt.NDArray[np.float64]],
    grad: Optional[npt.NDArray[Any]],
) -> Any: ...

# Vocabulary-parallel cross-entropy (pyce._vocab_shard): per-row statistics
# of a shard of the logits, and its gradient given the global log-sum-exp.
def shard_stats(
    logits: npt.NDArray[Any],
    target: npt.NDArray[np.int64],
    vocab_start: int,
    ignore_index: int,
    weight: Optional[npt.NDArray[np.floating[Any]]],
    want_dot: bool,
    softcap: float,
) -> tuple[
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    Optional[npt.NDArray[np.float64]],
    npt.NDArray[np.float64],
]: ...
def shard_grad(
    logits: npt.NDArray[Any],
    target: npt.NDArray[np.int64],
    vocab_start: int,
    ignore_index: int,
    weight: Optional[npt.NDArray[np.floating[Any]]],
    shift: npt.NDArray[np.float64],
    mul: npt.NDArray[np.float64],
    sub: Optional[npt.NDArray[np.float64]],
    at_target: npt.NDArray[np.float64],
    softcap: float,
    grad: npt.NDArray[Any],
) -> None: ...

# Bandwidth probes of `pyce bench`
def stream_read(x: npt.NDArray[np.float32]) -> float: ...
def stream_scale(src: npt.NDArray[np.float32], dst: npt.NDArray[np.float32], scale: float = 1.0) -> None: ...
def stream_scale_nt(
    src: npt.NDArray[np.float32], dst: npt.NDArray[np.float32], scale: float = 1.0
) -> None: ...

# Buffer cache of large outputs
def empty(shape: Sequence[int], dtype: np.dtype[Any]) -> npt.NDArray[Any]: ...
def cache_info() -> dict[str, int]: ...
def empty_cache() -> None: ...
def set_cache_limit(nbytes: int) -> None: ...
