"""Focal loss and class weights: how each reshapes the gradient.

Both come from one pyce kernel, pyce.focal_loss_with_grad(z/T, target, gamma=γ,
alpha=weights): the loss −α_t (1 − q_t)^γ log q_t and its gradient G·(q − y),
where G = α_t((1 − q_t)^γ − γ q_t (1 − q_t)^(γ−1) log q_t). The gradient keeps
the direction of cross-entropy's q − y and is scaled by G: a class weight α_t
scales it as it is, and γ > 0 shrinks it when the target is already likely.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6 import QtCore, QtWidgets

from ..model import SELECTION, STRUCTURE, VALUES
from .fields import NumberField
from .panel import Panel
from .readouts import fmt
from .widgets import PairedClassBars, rich_text_label


class FocalPanel(QtWidgets.QWidget, Panel):
    name = "focal"
    title = "Focal"
    listens = frozenset({VALUES, STRUCTURE, SELECTION})

    def __init__(self, ctx, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self.attach(ctx)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("focal γ"))
        self.gamma = NumberField(0.0, 10.0, what="The focal γ", step=0.5, fmt=lambda v: f"{v:.4g}")
        self.gamma.setFixedWidth(70)
        self.gamma.committed.connect(
            lambda g: self.push(f"Focal γ {g:g}", lambda: self.model.set_focal_gamma(g))
        )
        self.gamma.refused.connect(self.ctx.show_message)
        row.addWidget(self.gamma)
        self.gamma_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.gamma_slider.setRange(0, 50)  # γ in steps of 0.1 up to 5
        self.gamma_slider.valueChanged.connect(
            lambda v: self.push(f"Focal γ {v / 10:g}", lambda: self.model.set_focal_gamma(v / 10))
        )
        row.addWidget(self.gamma_slider, 1)
        self.weight_label = QtWidgets.QLabel()
        row.addWidget(self.weight_label)
        self.weight = NumberField(0.0, 1e6, what="A class weight", step=0.5)
        self.weight.setFixedWidth(70)
        self.weight.committed.connect(self._weight_typed)
        self.weight.refused.connect(self.ctx.show_message)
        row.addWidget(self.weight)
        self.reset = QtWidgets.QPushButton("All weights 1")
        self.reset.clicked.connect(lambda: self.push("All class weights 1", self.model.clear_class_weights))
        row.addWidget(self.reset)
        layout.addLayout(row)
        self.text = rich_text_label()
        layout.addWidget(self.text)
        self.bars = PairedClassBars(110, "cross-entropy q − y", "focal, weighted G·(q − y)", zero_line=True)
        self.plot, self.ce_bars, self.focal_bars = self.bars.plot, self.bars.left, self.bars.right
        layout.addWidget(self.plot, 1)
        self.apply_theme(self.theme)

    def _weight_typed(self, w: float) -> None:
        m = self.model
        cls = m.selected
        self.push(f"Weight of “{m.labels[cls]}” {w:g}", lambda: m.set_class_weight(cls, w))

    def on_model(self, kind) -> None:
        m = self.model
        s = m.state
        self.gamma.set_value(s.focal_gamma)
        with QtCore.QSignalBlocker(self.gamma_slider):
            self.gamma_slider.setValue(int(round(min(s.focal_gamma, 5.0) * 10)))
        weights = s.class_weights if s.class_weights is not None else np.ones(s.n_classes)
        self.weight_label.setText(f"weight α of “{m.labels[s.selected]}”")
        self.weight.set_value(weights[s.selected])
        self.reset.setEnabled(s.class_weights is not None)
        vis = m.visible_classes()
        ce = np.nan_to_num(m.grad[vis])
        focal = np.nan_to_num(m.focal_grad[vis])
        self.bars.show(ce, focal, [m.labels[c] for c in vis])
        # Fitted to the bars: a confident, right model's gradient is small, not absent.
        top = max(float(np.max(np.abs(np.r_[ce, focal]))) if len(vis) else 1.0, 1e-9)
        self.plot.setYRange(-1.1 * top, 1.45 * top, padding=0)
        if s.soft_mode:
            self.text.setText("Focal loss takes a target class: untick Soft targets to see it.")
            return
        t = s.target
        y_grad = m.grad[t]
        G = m.focal_grad[t] / y_grad if y_grad != 0 else math.nan
        effect = (
            "the target is already likely, so γ turns its push down"
            if G < 1
            else "a push as strong or stronger"
        )
        self.text.setText(
            f"focal loss −α<sub>t</sub>(1 − q<sub>t</sub>)<sup>γ</sup> log q<sub>t</sub> = "
            f"<b>{fmt(m.focal_loss)}</b> (cross-entropy {fmt(m.loss)}), with q<sub>t</sub> = "
            f"{fmt(m.q_target)}, γ = {s.focal_gamma:g}, α<sub>t</sub> = {weights[t]:g}. "
            f"Its gradient is the cross-entropy's q − y scaled by G = {fmt(G)}: "
            f"{effect} (pyce.focal_loss_with_grad)."
        )

    def apply_theme(self, theme) -> None:
        self.theme = theme
        self.bars.apply_theme(theme, theme.bar, theme.curve)
        self.on_model(VALUES)
