"""The readouts: loss, perplexity, q(target), rank, entropies, with the formulas filled in."""

from __future__ import annotations

import html
import math

from PySide6 import QtCore, QtWidgets

from ..model import STRUCTURE, VALUES
from .panel import Panel


def perplexity_sentence(ppl: float, ppl_text: str, C: int) -> str:
    """What exp(loss) means here; above C it is worse than a uniform guess."""
    if math.isnan(ppl):
        return "= exp(loss): nan, because the loss is nan"
    if ppl <= C * (1 + 1e-12):
        return f"= exp(loss): as unsure as a uniform pick among {ppl_text} of the {C} classes"
    return (
        f"= exp(loss) &gt; C = {C}: worse than a uniform guess over all {C} classes "
        f"(which scores exactly {C}), because q puts little mass on the target"
    )


def fmt(v: float, digits: int = 4) -> str:
    """A number for the readouts: fixed digits, or scientific when tiny or huge."""
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4):
        s = f"{v:.{digits - 1}e}"
    else:
        s = f"{v:.{digits}f}"
    return s.replace("-", "−")


def fixed(v: float, digits: int = 3) -> str:
    """A term inside a formula: fixed-point, so 1e-16 reads as 0.000; huge terms in
    scientific notation (a 1e30 logit is not printed as 31 digits)."""
    if not math.isfinite(v):
        return fmt(v)
    if abs(v) >= 1e6:
        return f"{v:.{digits}e}".replace("-", "−")
    s = f"{v:.{digits}f}"
    if float(s) == 0.0:
        s = s.lstrip("-")  # no "-0.000"
    return s.replace("-", "−")


class ReadoutsPanel(QtWidgets.QLabel, Panel):
    """A rich-text panel that re-renders its formulas whenever the model's values change."""

    name = "readouts"
    title = "Readouts"
    place = "side"
    listens = frozenset({VALUES, STRUCTURE})

    def __init__(self, ctx, parent=None):
        QtWidgets.QLabel.__init__(self, parent)
        self.attach(ctx)
        self.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.setWordWrap(True)
        self.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignLeft)
        self.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setMinimumWidth(420)
        self.refresh()

    def on_model(self, kind) -> None:
        self.refresh()

    def apply_theme(self, theme) -> None:
        self.theme = theme
        self.refresh()

    def refresh(self) -> None:
        self.setText(self.render_html())

    def render_html(self) -> str:
        m, th = self.model, self.theme
        t = m.target_class
        label = html.escape(m.labels[t])
        T, eps, C = m.temperature, m.label_smoothing, m.n_classes
        muted = f"style='color:{th.muted}'"
        big = f"style='font-size:17pt; font-weight:600; color:{th.target}'"
        onehot = not m.soft_mode and eps == 0.0
        rows = []

        def row(name, value, detail=""):
            rows.append(
                f"<tr><td style='padding:1px 10px 1px 0'>{name}</td>"
                f"<td style='padding:1px 10px 1px 0' align='right'><b>{value}</b></td>"
                f"<td {muted}>{detail}</td></tr>"
            )

        zy = m.logits[t] / T
        if onehot:
            loss_detail = (
                f"= −z<sub>y</sub>/T + logsumexp(z/T) = {fixed(-zy)} + {fixed(m.lse)}"
                f"<br>= −log q(“{label}”) = −log {fmt(m.q_target)}"
            )
        else:
            loss_detail = "= −Σ<sub>c</sub> p<sub>c</sub> log q<sub>c</sub>" + (
                f", with p = (1 − ε)·y + ε/C, ε = {fmt(eps, 2)}" if eps else ""
            )
        ppl_text = fmt(m.perplexity, 3)
        row("loss", fmt(m.loss), loss_detail)
        row("perplexity", ppl_text, perplexity_sentence(m.perplexity, ppl_text, C))
        which = "argmax p" if m.soft_mode else "target"
        row(f"q({which})", fmt(m.q_target), f"class “{label}”, rank {m.target_rank} of {C} by q")
        row(
            "H(q)",
            fmt(m.entropy_q),
            f"= −Σ q log q; from 0 (one-hot, T → 0) to log C = {fmt(math.log(C), 3)} (uniform, T → ∞)",
        )
        row("H(p, q)", fmt(m.cross_entropy_pq), f"= H(p) + KL(p‖q) = {fmt(m.entropy_p)} + {fmt(m.kl_pq)}")
        if m.nonfinite.size:
            bad = ", ".join(html.escape(m.labels[c]) for c in m.nonfinite[:6])
            warn = f"style='color:{th.positive}'"
            rows.append(
                f"<tr><td colspan=3 {warn}>not finite: the logits of {bad} "
                f"({len(m.nonfinite)} in all) are nan or ±inf; pyce's results for "
                "this row are nan, shown as they are</td></tr>"
            )
        note = f"<div style='margin-top:4px' {muted}>{html.escape(m.note)}</div>" if m.note else ""
        return (
            f"<div><span {big}>loss {fmt(m.loss)}</span>"
            f"&nbsp;&nbsp;<span {muted}>target “{label}”, T = {fmt(T, 2)}</span></div>"
            f"<table style='margin-top:2px'>{''.join(rows)}</table>{note}"
        )
