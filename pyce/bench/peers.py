"""The peers pyce is compared with: the NumPy reference, PyTorch and JAX."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .environment import _optional


class PeerUnavailable(Exception):
    """A peer cannot run this op/dtype (the message says why)."""


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------


def _torch_tensor(torch, x: np.ndarray):
    """A torch tensor sharing ``x``'s memory (bfloat16 via an int16 view)."""
    if x.dtype.name == "bfloat16":
        return torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(x)


def peer_op(peer: str, op: str, x: np.ndarray, t: np.ndarray):
    """``(fn, setup)`` timing ``peer``'s version of ``op`` (see ``PEER_OP``).

    Raises :class:`PeerUnavailable` when the peer is not installed or has no such op.
    """
    if peer == "numpy":
        import pyce.reference as ref

        fns = {
            "forward": lambda: ref.cross_entropy(x, t),
            "fused": lambda: ref.cross_entropy_with_grad(x, t),
            "backward": lambda: ref.cross_entropy_backward(x, t),
            "logsumexp": lambda: ref.logsumexp(x, axis=-1),
        }
        return fns[op], None

    if peer == "torch":
        torch = _optional("torch")
        if torch is None:
            raise PeerUnavailable("torch not installed")
        import torch.nn.functional as F

        xt, tt = _torch_tensor(torch, x), torch.from_numpy(t)
        if op == "forward":

            def fwd():
                with torch.no_grad():
                    return F.cross_entropy(xt, tt)

            return fwd, None
        if op == "logsumexp":

            def lse():
                with torch.no_grad():
                    return torch.logsumexp(xt, dim=-1)

            return lse, None
        xg = xt.detach().requires_grad_(True)

        def clear():
            xg.grad = None  # as optimizer.zero_grad(set_to_none=True)

        if op == "fused":

            def fused():
                F.cross_entropy(xg, tt).backward()
                return xg.grad

            return fused, clear
        if op == "backward":
            state = {}

            def forward_untimed():
                clear()
                state["loss"] = F.cross_entropy(xg, tt)

            def backward():
                state.pop("loss").backward()
                return xg.grad

            return backward, forward_untimed
        raise PeerUnavailable(f"no torch op for {op}")

    if peer == "jax":
        jax = _optional("jax")
        if jax is None:
            raise PeerUnavailable("jax not installed")
        import jax.numpy as jnp

        xj, tj = jnp.asarray(x), jnp.asarray(t.astype(np.int32))

        def loss(z, tgt):
            logp = jax.nn.log_softmax(z, axis=-1)
            picked = jnp.take_along_axis(logp, tgt[:, None], axis=-1)
            return -jnp.mean(picked.astype(jnp.float32))

        if op == "forward":
            f = jax.jit(loss)
        elif op == "fused":
            f = jax.jit(jax.value_and_grad(loss))
        elif op == "backward":
            f = jax.jit(jax.grad(loss))
        elif op == "logsumexp":

            def f_raw(z, tgt):
                return jax.nn.logsumexp(z, axis=-1)

            f = jax.jit(f_raw)
        else:
            raise PeerUnavailable(f"no jax op for {op}")
        return (lambda: jax.block_until_ready(f(xj, tj))), None

    raise ValueError(f"unknown peer {peer!r}")


def available_peers(requested: Sequence[str]) -> tuple:
    """``(usable peers, {peer: why not})`` for the requested peers."""
    usable, missing = [], {}
    for peer in requested:
        if peer == "numpy" or _optional(peer) is not None:
            usable.append(peer)
        else:
            missing[peer] = "not installed"
    return usable, missing


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------
