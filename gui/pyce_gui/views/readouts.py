"""The readouts: loss, perplexity, q(target), rank, entropies, with the formulas filled in."""

from __future__ import annotations

import html
import math

from PySide6 import QtCore, QtWidgets

from ..model import STRUCTURE, VALUES


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
    """A term inside a formula: always fixed-point, so 1e-16 reads as 0.000."""
    s = f"{v:.{digits}f}"
    if float(s) == 0.0:
        s = s.lstrip("-")   # no "-0.000"
    return s.replace("-", "−")


class ReadoutsPanel(QtWidgets.QLabel):
    """A rich-text panel that re-renders its formulas whenever the model's values change."""

    def __init__(self, model, theme, parent=None):
        super().__init__(parent)
        self.model = model
        self.theme = theme
        self.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.setWordWrap(True)
        self.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignLeft)
        self.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setMinimumWidth(420)
        model.subscribe(self.on_model)
        self.refresh()

    def on_model(self, kind: str) -> None:
        if kind in (VALUES, STRUCTURE):
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
            rows.append(f"<tr><td style='padding:3px 10px 3px 0'>{name}</td>"
                        f"<td style='padding:3px 10px 3px 0' align='right'><b>{value}</b></td>"
                        f"<td {muted}>{detail}</td></tr>")

        zy = m.logits[t] / T
        if onehot:
            loss_detail = (f"= −z<sub>y</sub>/T + logsumexp(z/T) = {fixed(-zy)} + {fixed(m.lse)}"
                           f"<br>= −log q(“{label}”) = −log {fmt(m.q_target)}")
        else:
            loss_detail = ("= −Σ<sub>c</sub> p<sub>c</sub> log q<sub>c</sub>"
                           + (f", with p = (1 − ε)·y + ε/C, ε = {fmt(eps, 2)}" if eps else ""))
        ppl_detail = (f"= exp(loss): as unsure as a uniform pick among "
                      f"{fmt(m.perplexity, 1)} of the {C} classes")
        row("loss", fmt(m.loss), loss_detail)
        row("perplexity", fmt(m.perplexity, 3), ppl_detail)
        which = "argmax p" if m.soft_mode else "target"
        row(f"q({which})", fmt(m.q_target), f"class “{label}”, rank {m.target_rank} of {C} by q")
        row("H(q)", fmt(m.entropy_q),
            f"= −Σ q log q; from 0 (one-hot, T → 0) to log C = {fmt(math.log(C), 3)} "
            f"(uniform, T → ∞)")
        row("H(p, q)", fmt(m.cross_entropy_pq),
            f"= H(p) + KL(p‖q) = {fmt(m.entropy_p)} + {fmt(m.kl_pq)}")
        note = f"<p {muted}>{html.escape(m.note)}</p>" if m.note else ""
        return (f"<div><span {big}>loss {fmt(m.loss)}</span>"
                f"&nbsp;&nbsp;<span {muted}>target “{label}”, T = {fmt(T, 2)}</span></div>"
                f"<table style='margin-top:6px'>{''.join(rows)}</table>{note}")
