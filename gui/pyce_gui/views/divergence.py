"""KL both ways: the per-class terms of KL(p‖q) and KL(q‖p), and CE = H(p) + KL(p‖q).

Forward KL(p‖q) = Σ p log(p/q) is what cross-entropy minimises (H(p) is fixed by
the target); it is large where p has mass that q misses. Reverse KL(q‖p) is large
where q puts mass that p does not have — infinite for a one-hot p, finite once
label smoothing gives every class some mass. Both totals come from
pyce.kl_divergence; the bars are the terms p·log(p/q) and q·log(q/p) per class.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtWidgets

from ..model import SELECTION, STRUCTURE, VALUES
from .panel import Panel
from .readouts import fmt
from .widgets import PairedClassBars, rich_text_label


class DivergencePanel(QtWidgets.QWidget, Panel):
    name = "divergence"
    title = "KL"
    listens = frozenset({VALUES, STRUCTURE, SELECTION})

    def __init__(self, ctx, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self.attach(ctx)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.text = rich_text_label()
        layout.addWidget(self.text)
        self.bars = PairedClassBars(160, "p·log(p/q)  (forward)", "q·log(q/p)  (reverse)", zero_line=True)
        self.plot, self.forward, self.reverse = self.bars.plot, self.bars.left, self.bars.right
        self.markers: list[pg.TextItem] = []
        layout.addWidget(self.plot, 1)
        self.apply_theme(self.theme)

    def on_model(self, kind) -> None:
        m, th = self.model, self.theme
        vis = m.visible_classes()
        fwd = m.kl_pq_terms[vis]
        rev = m.kl_qp_terms[vis]
        rev_finite = np.isfinite(rev)
        both = np.concatenate([fwd[np.isfinite(fwd)], rev[rev_finite]])
        lo = min(0.0, float(both.min()) if both.size else 0.0)
        hi = max(0.05, float(both.max()) if both.size else 0.05)
        top = hi + 0.15 * (hi - lo)
        # An infinite term is drawn to the top of the frame and marked ∞.
        x = self.bars.show(
            np.where(np.isfinite(fwd), fwd, 0.0), np.where(rev_finite, rev, top), [m.labels[c] for c in vis]
        )
        inf_x = x[~rev_finite] + self.bars.OFFSET
        while len(self.markers) < len(inf_x):
            t = pg.TextItem(anchor=(0.5, 1.0))
            t.setHtml("<b style='font-size:13pt'>∞</b>")
            self.plot.addItem(t)
            self.markers.append(t)
        for i, t in enumerate(self.markers):
            t.setVisible(i < len(inf_x))
            if i < len(inf_x):
                t.setPos(inf_x[i], top)
                t.setColor(th.text)
        # Room above the bars for the ∞ marks and the legend.
        self.plot.setYRange(lo - 0.05 * (hi - lo), top + 0.4 * (top - lo), padding=0)
        why_inf = (
            ""
            if math.isfinite(m.kl_qp)
            else " — infinite: q gives mass to classes where p is 0 (a one-hot p has only "
            "one class); label smoothing ε &gt; 0 makes it finite"
        )
        self.text.setText(
            f"<b>forward</b> KL(p‖q) = Σ p·log(p/q) = <b>{fmt(m.kl_pq)}</b>: what "
            f"cross-entropy minimises, since CE = H(p) + KL(p‖q) = {fmt(m.entropy_p)} + "
            f"{fmt(m.kl_pq)} = {fmt(m.entropy_p + m.kl_pq)} (loss {fmt(m.loss)}). It punishes "
            "q for missing mass that p has (mode-covering).<br>"
            f"<b>reverse</b> KL(q‖p) = Σ q·log(q/p) = <b>{fmt(m.kl_qp)}</b>{why_inf}. It "
            "punishes q for putting mass where p has little (mode-seeking)."
        )

    def apply_theme(self, theme) -> None:
        self.theme = theme
        self.bars.apply_theme(theme, theme.bar, theme.curve)
        self.on_model(VALUES)
