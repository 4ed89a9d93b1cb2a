"""A loaded batch: mean loss, perplexity, top-k accuracy, calibration, kernel time,
the per-row loss histogram and the reliability diagram.

Rows holding nan or inf are listed by index (their loss is nan, and they sit
outside the histogram); rows with target -100 are ignored, as pyce does.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from ..model import BATCH
from .panel import Panel
from .readouts import fmt

HISTOGRAM_BINS = 40


def row_list(rows, limit: int = 8) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return shown + (f" … ({len(rows)} in all)" if len(rows) > limit else "")


class BatchPanel(QtWidgets.QWidget, Panel):
    """Statistics of an (N, V) batch, all from pyce; a row box shows any row in the plots."""

    name = "batch"
    title = "Batch"
    listens = frozenset({BATCH})

    def __init__(self, ctx, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self.attach(ctx)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        top = QtWidgets.QHBoxLayout()
        self.load_button = QtWidgets.QPushButton("Load batch (.npy)…")
        self.load_button.clicked.connect(lambda: self.ctx.open_batch())
        top.addWidget(self.load_button)
        top.addStretch(1)
        top.addWidget(QtWidgets.QLabel("row"))
        self.row = QtWidgets.QSpinBox()
        self.row.setKeyboardTracking(False)
        self.row.setMinimumWidth(80)
        self.row.valueChanged.connect(self._row_chosen)
        top.addWidget(self.row)
        layout.addLayout(top)
        self.stats = QtWidgets.QLabel()
        self.stats.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.stats.setWordWrap(True)
        self.stats.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.stats)
        plots = QtWidgets.QHBoxLayout()
        self.plot = self._make_plot("loss of a row", "rows")
        self.hist = pg.BarGraphItem(x0=[], x1=[], height=[])
        self.row_line = pg.InfiniteLine(angle=90, movable=False)
        self.plot.addItem(self.hist)
        self.plot.addItem(self.row_line)
        plots.addWidget(self.plot, 1)
        # Reliability diagram: accuracy against confidence per bin; the diagonal is calibrated.
        self.reliability = self._make_plot("confidence (max q)", "accuracy")
        self.reliability.setXRange(0, 1, padding=0.02)
        self.reliability.setYRange(0, 1, padding=0.02)
        self.diagonal = pg.PlotDataItem([0, 1], [0, 1])
        self.rel_bars = pg.BarGraphItem(x0=[], x1=[], height=[])
        self.reliability.addItem(self.rel_bars)
        self.reliability.addItem(self.diagonal)
        plots.addWidget(self.reliability, 1)
        layout.addLayout(plots, 1)
        self.apply_theme(self.theme)
        self.on_model(BATCH)

    @staticmethod
    def _make_plot(bottom: str, left: str) -> pg.PlotWidget:
        plot = pg.PlotWidget()
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        plot.setLabel("bottom", bottom)
        plot.setLabel("left", left)
        for name in ("bottom", "left"):
            plot.getAxis(name).enableAutoSIPrefix(False)
        plot.setMinimumHeight(160)
        plot.setMinimumWidth(180)
        return plot

    def _row_chosen(self, row: int) -> None:
        # Another row is another problem; choosing it is an undo step of its own.
        self.push(f"Batch row {row}", lambda: self.model.set_batch_row(row))

    def on_model(self, kind) -> None:
        m = self.model
        b, st = m.state.batch, m.batch_stats
        self.row.setEnabled(b is not None)
        if b is None or st is None:
            self.stats.setText(
                "Load an N×V logits .npy and its N targets .npy (−100: an "
                "ignored row) to see the batch's mean loss, perplexity, top-k "
                "accuracy, calibration and pyce's speed."
            )
            self.hist.setOpts(x0=[], x1=[], height=[])
            self.rel_bars.setOpts(x0=[], x1=[], height=[])
            self.row_line.hide()
            return
        n, v = b.shape
        with QtCore.QSignalBlocker(self.row):
            self.row.setRange(0, n - 1)
            self.row.setValue(m.state.batch_row)
        warn = f"style='color:{self.theme.positive}'"
        lines = [
            f"<b>{n}</b> rows × <b>{v}</b> classes ({b.logits.dtype}), "
            f"T = {m.temperature:g}, ε = {m.label_smoothing:g}"
        ]
        if st.nonfinite_rows.size:
            lines.append(
                f"<span {warn}>rows holding nan or inf: {row_list(st.nonfinite_rows)}"
                f" — their loss is nan, so pyce's mean is {fmt(st.mean_loss)}; "
                f"the figures below are over the other rows</span>"
            )
        if st.ignored_rows.size:
            lines.append(f"ignored rows (target −100): {row_list(st.ignored_rows)}")
        lines.append(
            f"mean loss <b>{fmt(st.finite_mean_loss)}</b> over {st.n_scored} scored "
            f"rows · perplexity <b>{fmt(st.perplexity, 2)}</b>"
        )
        ev = st.evaluation
        if ev is not None:
            acc = " · ".join(f"top-{k} <b>{100 * a:.1f}%</b>" for k, a in ev.accuracy.items())
            lines.append(
                f"accuracy {acc} · ECE <b>{fmt(ev.ece)}</b> · mean H(q) {fmt(ev.entropy)} (pyce.evaluate)"
            )
        if math.isfinite(b.forward_ms) and b.forward_ms > 0:
            gb = b.logits.nbytes / 1e9
            lines.append(
                f"pyce kernels: loss {b.forward_ms:.2f} ms "
                f"({gb / (b.forward_ms / 1e3):.1f} GB/s of logits read), "
                f"loss + gradient {b.fused_ms:.2f} ms"
            )
        self.stats.setText("<br>".join(lines))
        finite = st.row_losses[np.isfinite(st.row_losses)]
        if finite.size:
            counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS)
            self.hist.setOpts(x0=edges[:-1], x1=edges[1:], height=counts)
        else:
            self.hist.setOpts(x0=[], x1=[], height=[])
        loss = st.row_losses[m.state.batch_row]
        self.row_line.setVisible(bool(np.isfinite(loss)))
        if np.isfinite(loss):
            self.row_line.setPos(float(loss))
        filled = st.bin_count > 0
        k = len(st.bin_count)
        lo = np.arange(k) / k
        self.rel_bars.setOpts(x0=lo[filled], x1=lo[filled] + 1.0 / k, height=st.bin_accuracy[filled])

    def apply_theme(self, theme) -> None:
        self.theme = theme
        for plot in (self.plot, self.reliability):
            plot.setBackground(theme.base)
            for name in ("left", "bottom"):
                ax = plot.getAxis(name)
                ax.setPen(theme.muted)
                ax.setTextPen(theme.text)
        self.hist.setOpts(brush=theme.curve, pen=pg.mkPen(theme.base))
        self.rel_bars.setOpts(brush=theme.bar, pen=pg.mkPen(theme.base))
        self.diagonal.setPen(pg.mkPen(theme.muted, width=1, style=QtCore.Qt.PenStyle.DashLine))
        self.row_line.setPen(pg.mkPen(theme.target, width=2))
