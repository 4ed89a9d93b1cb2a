"""The loss as a function of the selected class's logit, with its tangent.

The tangent's slope is the gradient bar of that class over T: a positive bar
means raising z_i raises the loss, so descent lowers it, and the curve shows
how far a step can go before the slope changes.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from ..curve import HALF_WIDTH, loss_curve, slope
from ..model import SELECTION, STRUCTURE, VALUES
from .panel import Panel
from .readouts import fmt
from .widgets import fixed_plot, rich_text_label


class CurvePanel(QtWidgets.QWidget, Panel):
    name = "curve"
    title = "L(zᵢ)"
    listens = frozenset({VALUES, STRUCTURE, SELECTION})

    def __init__(self, ctx, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self.attach(ctx)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.text = rich_text_label()
        layout.addWidget(self.text)
        self.plot = fixed_plot(130)
        self.plot.setLabel("left", "loss")
        for name in ("left", "bottom"):
            self.plot.getAxis(name).enableAutoSIPrefix(False)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.curve = pg.PlotDataItem()
        self.tangent = pg.PlotDataItem()
        self.point = pg.ScatterPlotItem(size=10)
        for it in (self.curve, self.tangent, self.point):
            self.plot.addItem(it)
        layout.addWidget(self.plot, 1)
        self.data = None  # (z values, losses) as drawn, for the CSV and tests
        self.apply_theme(self.theme)

    def on_model(self, kind) -> None:
        m = self.model
        i = m.state.selected
        label = m.labels[i]
        self.plot.setLabel("bottom", f"z of “{label}” (the others fixed)")
        result = loss_curve(m.state, i)
        self.data = result
        if result is None:
            self.curve.setData([], [])
            self.tangent.setData([], [])
            self.point.setData([], [])
            self.text.setText(
                "The curve needs finite logits, and beyond 4096 classes a one-hot target without smoothing."
            )
            return
        xs, ys = result
        zi, loss, k = float(m.logits[i]), m.loss, slope(m.state, m.grad, i)
        self.curve.setData(xs, ys)
        half = 0.25 * HALF_WIDTH * m.temperature
        self.tangent.setData([zi - half, zi + half], [loss - k * half, loss + k * half])
        self.point.setData([zi], [loss])
        self.plot.setXRange(xs[0], xs[-1], padding=0)
        top = float(np.max(ys))
        self.plot.setYRange(min(0.0, float(np.min(ys))), top * 1.1 + 0.05, padding=0)
        way = (
            "raising it raises the loss, so descent lowers it"
            if k > 0
            else "raising it lowers the loss, so descent raises it"
            if k < 0
            else "flat here"
        )
        self.text.setText(
            f"L(z<sub>i</sub>) for “{label}” (select another class with ←/→ or a click). At "
            f"z = {fmt(zi)} the loss is {fmt(loss)} and the slope is (q<sub>i</sub> − "
            f"p<sub>i</sub>)/T = <b>{fmt(k)}</b>, the gradient bar over T: {way}."
        )

    def apply_theme(self, theme) -> None:
        self.theme = theme
        self.plot.setBackground(theme.base)
        for name in ("left", "bottom"):
            ax = self.plot.getAxis(name)
            ax.setPen(theme.muted)
            ax.setTextPen(theme.text)
        self.curve.setPen(pg.mkPen(theme.curve, width=2))
        self.tangent.setPen(pg.mkPen(theme.target, width=2, style=QtCore.Qt.PenStyle.DashLine))
        self.point.setBrush(theme.target)
        self.point.setPen(None)
        self.on_model(VALUES)
