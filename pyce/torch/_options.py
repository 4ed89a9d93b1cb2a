"""Checks of the options pyce's torch entry points share (PyTorch has no z_loss or softcap)."""

from __future__ import annotations


def check_options(reduction, softcap):
    """A ValueError for an unknown reduction or a softcap that is not a positive number."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be one of 'none', 'mean', 'sum'; got {reduction!r}")
    if softcap is not None and not softcap > 0:
        raise ValueError(f"softcap must be None or a positive number, got {softcap!r}")
