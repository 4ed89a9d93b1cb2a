"""Every number the explorer shows about one row, as a pure function of the state.

:func:`derive` computes through pyce's kernels; NumPy only does arithmetic on what
pyce returned (exp of the loss, the rank of the target, p·log(p/q) per class):

    q, log q   = pyce.softmax(z / T), pyce.log_softmax(z / T)
    loss, grad = pyce.cross_entropy_with_grad(z / T, target, label_smoothing=eps)
    H(p, q)    = pyce.cross_entropy(z / T, p)             (soft targets)
    H(q), H(p) = pyce.entropy(z / T), pyce.entropy(log p)
    KL(p‖q)    = pyce.kl_divergence(z / T, log p)         (student z/T, teacher p)
    KL(q‖p)    = pyce.kl_divergence(log p, z / T)         (the reverse)
    naive q    = pyce's vectorised exp of z / T in float32, without the max shift

Non-finite logits are not refused: pyce's nan (or inf) is what the views show.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np

import pyce
from pyce import _core

from .state import State, _onehot


@dataclass(frozen=True)
class Derived:
    scaled_logits: np.ndarray  # z / T: what the softmax sees
    lse: float
    q: np.ndarray
    log_q: np.ndarray
    p: np.ndarray  # the target distribution, smoothed: (1 - eps) y + eps / C
    loss: float
    grad: np.ndarray  # d loss / d(z / T) = q - p (one row, mean reduction)
    cross_entropy_pq: float
    perplexity: float
    entropy_q: float
    entropy_p: float
    kl_pq: float  # forward KL(p‖q): what cross-entropy minimises, = loss − H(p)
    kl_qp: float  # reverse KL(q‖p): inf where q > 0 on a class p excludes
    kl_pq_terms: np.ndarray  # p_c log(p_c / q_c), summing to kl_pq
    kl_qp_terms: np.ndarray  # q_c log(q_c / p_c), summing to kl_qp
    target_class: int
    q_target: float
    target_rank: int
    nonfinite: np.ndarray  # classes whose logit is nan or ±inf
    naive_exp: np.ndarray | None  # float32 exp(z / T) without the shift (None: toggle off)
    naive_q: np.ndarray | None
    stable_exp: np.ndarray | None  # float32 exp(z / T − max): what pyce's softmax exponentiates
    teacher_q: np.ndarray | None  # softmax(teacher / T): the student's soft targets
    distillation: float  # T² KL(teacher_T ‖ student_T), nan without a teacher
    focal_loss: float  # −α_t (1 − q_t)^γ log q_t (nan for soft targets)
    focal_grad: np.ndarray  # its gradient w.r.t. z / T: G·(q − onehot)


def exp_of_loss(loss: float) -> float:
    """exp(loss), inf above float64's range and nan for a nan loss (not inf)."""
    if math.isnan(loss):
        return math.nan
    return math.exp(loss) if loss < 709.78 else math.inf


def _log(p: np.ndarray) -> np.ndarray:
    """log p with log 0 = −inf, taking logs only where p > 0 (one class when one-hot)."""
    out = np.full_like(p, -np.inf)
    mass = p > 0
    out[mass] = np.log(p[mass])
    return out


def _kl_terms(a: np.ndarray, log_a: np.ndarray, log_b: np.ndarray) -> np.ndarray:
    """a_c (log a_c − log b_c), with 0 where a_c = 0 (0 log 0 = 0)."""
    with np.errstate(invalid="ignore"):
        terms = a * (log_a - log_b)
    terms[a == 0] = 0.0
    return terms


def target_distribution(state: State) -> np.ndarray:
    """p: PyTorch (and pyce) smooth soft targets too: (1 − eps) p + eps / C."""
    C, eps = state.n_classes, state.label_smoothing
    base = state.soft_target if state.soft_mode else _onehot(state.target, C)
    return (1.0 - eps) * base + eps / C


def naive_softmax(scaled: np.ndarray):
    """exp(z/T) and exp(z/T)/Σexp in float32 without subtracting the max (pyce's exp).

    This is what goes wrong without the shift: exp overflows to inf above
    z/T ≈ 88.7 in float32, and inf / inf is nan. Also returns the shifted exps.
    """
    z32 = scaled.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        e = _core.vector_exp(z32)
        naive_q = e / e.sum(dtype=np.float32)
        top = np.max(z32) if np.isfinite(z32).any() else np.float32(0)
        shifted = _core.vector_exp(z32 - top)
    return e, naive_q, shifted


@contextlib.contextmanager
def one_thread():
    """Run pyce on the calling thread only, for one row.

    One row is too little work to share out: waking the other threads costs
    more than the row itself, and far more on a busy machine. pyce's results are
    bitwise the same for every thread count.
    """
    before = pyce.get_num_threads()
    pyce.set_num_threads(1)
    try:
        yield
    finally:
        pyce.set_num_threads(before)


def derive(state: State) -> Derived:
    with one_thread():
        return _derive(state)


def _derive(state: State) -> Derived:
    z = state.logits / state.temperature
    row = z[None, :]
    eps = state.label_smoothing
    with np.errstate(invalid="ignore", over="ignore"):
        lse = float(pyce.logsumexp(z))
        q = np.asarray(pyce.softmax(z), dtype=np.float64)
        log_q = np.asarray(pyce.log_softmax(z), dtype=np.float64)
        p = target_distribution(state)
        log_p = _log(p)
        if state.soft_mode:
            loss, grad = pyce.cross_entropy_with_grad(row, state.soft_target[None, :], label_smoothing=eps)
        else:
            loss, grad = pyce.cross_entropy_with_grad(row, np.array([state.target]), label_smoothing=eps)
        loss = float(loss)
        cross_entropy_pq = float(pyce.cross_entropy(row, p[None, :]))
        entropy_q = float(pyce.entropy(z))
        entropy_p = float(pyce.entropy(log_p))
        kl_pq = float(pyce.kl_divergence(row, log_p[None, :], reduction="none")[0])
        kl_qp = float(pyce.kl_divergence(log_p[None, :], row, reduction="none")[0])
        kl_pq_terms = _kl_terms(p, log_p, log_q)
        kl_qp_terms = _kl_terms(q, log_q, log_p)
    t = int(np.argmax(state.soft_target)) if state.soft_mode else state.target
    naive = naive_softmax(z) if state.naive_softmax else (None, None, None)
    teacher_q, distillation = None, math.nan
    if state.teacher is not None:
        with np.errstate(invalid="ignore", over="ignore"):
            teacher_q = np.asarray(pyce.softmax(state.teacher / state.temperature), np.float64)
            distillation = float(
                pyce.kl_divergence(
                    state.logits[None, :], state.teacher[None, :], temperature=state.temperature
                )
            )
    focal_loss, focal_grad = math.nan, np.full_like(z, math.nan)
    if not state.soft_mode:
        # Focal loss takes class indices; with γ = 0 and weights it is weighted cross-entropy.
        with np.errstate(invalid="ignore", over="ignore"):
            fl, fg = pyce.focal_loss_with_grad(
                row, np.array([state.target]), gamma=state.focal_gamma, alpha=state.class_weights
            )
        focal_loss, focal_grad = float(fl), np.asarray(fg, dtype=np.float64)[0]
    return Derived(
        scaled_logits=z,
        lse=lse,
        q=q,
        log_q=log_q,
        p=p,
        loss=loss,
        grad=np.asarray(grad, dtype=np.float64)[0],
        cross_entropy_pq=cross_entropy_pq,
        perplexity=exp_of_loss(loss),
        entropy_q=entropy_q,
        entropy_p=entropy_p,
        kl_pq=kl_pq,
        kl_qp=kl_qp,
        kl_pq_terms=kl_pq_terms,
        kl_qp_terms=kl_qp_terms,
        target_class=t,
        q_target=float(q[t]),
        # Rank 1 = the model's top guess; ties count in the target's favour.
        target_rank=1 + int(np.sum(q > q[t])),
        nonfinite=np.flatnonzero(~np.isfinite(state.logits)),
        naive_exp=naive[0],
        naive_q=naive[1],
        stable_exp=naive[2],
        teacher_q=teacher_q,
        distillation=distillation,
        focal_loss=focal_loss,
        focal_grad=focal_grad,
    )
