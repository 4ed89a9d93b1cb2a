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
from .widgets import fixed_plot, rich_text_label

OFFSET, WIDTH = 0.19, 0.36


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
        self.plot = fixed_plot(160)
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.getAxis("bottom").setStyle(hideOverlappingLabels=40)
        self.legend = self.plot.addLegend(offset=(-8, 6))
        self.forward = pg.BarGraphItem(x=[], height=[], width=WIDTH, name="p·log(p/q)  (forward)")
        self.reverse = pg.BarGraphItem(x=[], height=[], width=WIDTH, name="q·log(q/p)  (reverse)")
        self.plot.addItem(self.forward)
        self.plot.addItem(self.reverse)
        self.zero = pg.InfiniteLine(pos=0, angle=0, movable=False)
        self.plot.addItem(self.zero)
        self.markers: list[pg.TextItem] = []
        layout.addWidget(self.plot, 1)
        self.apply_theme(self.theme)

    def on_model(self, kind) -> None:
        m, th = self.model, self.theme
        vis = m.visible_classes()
        x = np.arange(len(vis), dtype=float)
        fwd = m.kl_pq_terms[vis]
        rev = m.kl_qp_terms[vis]
        rev_finite = np.isfinite(rev)
        both = np.concatenate([fwd[np.isfinite(fwd)], rev[rev_finite]])
        lo = min(0.0, float(both.min()) if both.size else 0.0)
        hi = max(0.05, float(both.max()) if both.size else 0.05)
        top = hi + 0.15 * (hi - lo)
        self.forward.setOpts(x=x - OFFSET, height=np.where(np.isfinite(fwd), fwd, 0.0))
        # An infinite term is drawn to the top of the frame and marked ∞.
        self.reverse.setOpts(x=x + OFFSET, height=np.where(rev_finite, rev, top))
        inf_x = x[~rev_finite] + OFFSET
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
        self.plot.setXRange(-0.6, len(vis) - 0.4, padding=0)
        # Room above the bars for the ∞ marks and the legend.
        self.plot.setYRange(lo - 0.05 * (hi - lo), top + 0.4 * (top - lo), padding=0)
        ticks = [(i, m.labels[c]) for i, c in enumerate(vis)]
        step = max(1, math.ceil(len(ticks) / 12))
        self.plot.getAxis("bottom").setTicks([ticks[::step], []])
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
        self.plot.setBackground(theme.base)
        for name in ("left", "bottom"):
            ax = self.plot.getAxis(name)
            ax.setPen(theme.muted)
            ax.setTextPen(theme.text)
        self.forward.setOpts(brush=theme.bar, pen=None)
        self.reverse.setOpts(brush=theme.curve, pen=None)
        self.zero.setPen(pg.mkPen(theme.muted, width=1))
        self.legend.setLabelTextColor(theme.text)
        self.on_model(VALUES)
