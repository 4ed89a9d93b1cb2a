"""A loaded batch: mean loss, perplexity, accuracy, kernel time and the per-row loss histogram."""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtWidgets
import pyqtgraph as pg

from ..model import BATCH

HISTOGRAM_BINS = 40


class BatchPanel(QtWidgets.QWidget):
    """Statistics of an (N, V) batch, all from pyce; a spin box shows any row in the plots."""

    load_requested = QtCore.Signal()

    def __init__(self, model, undo_stack, theme, parent=None):
        super().__init__(parent)
        self.model = model
        self.undo_stack = undo_stack
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        top = QtWidgets.QHBoxLayout()
        self.load_button = QtWidgets.QPushButton("Load batch (.npy)…")
        self.load_button.clicked.connect(self.load_requested)
        top.addWidget(self.load_button)
        top.addStretch(1)
        top.addWidget(QtWidgets.QLabel("row"))
        self.row = QtWidgets.QSpinBox()
        self.row.setKeyboardTracking(False)
        self.row.valueChanged.connect(self._row_chosen)
        top.addWidget(self.row)
        layout.addLayout(top)
        self.stats = QtWidgets.QLabel()
        self.stats.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.stats.setWordWrap(True)
        layout.addWidget(self.stats)
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "loss of a row")
        self.plot.setLabel("left", "rows")
        for name in ("bottom", "left"):
            self.plot.getAxis(name).enableAutoSIPrefix(False)
        self.plot.setMinimumHeight(150)
        self.hist = pg.BarGraphItem(x0=[], x1=[], height=[])
        self.row_line = pg.InfiniteLine(angle=90, movable=False)
        self.plot.addItem(self.hist)
        self.plot.addItem(self.row_line)
        layout.addWidget(self.plot, 1)
        self.apply_theme(theme)
        model.subscribe(self.on_model)
        self.on_model(BATCH)

    def _row_chosen(self, row: int) -> None:
        # Another row is another problem: edits of the previous row are not undoable
        # into this one.
        self.model.set_batch_row(row)
        self.undo_stack.clear()

    def on_model(self, kind: str) -> None:
        if kind != BATCH:
            return
        b = self.model.batch
        self.row.setEnabled(b is not None)
        if b is None:
            self.stats.setText("Load an N×V logits .npy and its N targets .npy to see the "
                               "batch's mean loss, perplexity, accuracy and pyce's speed.")
            self.hist.setOpts(x0=[], x1=[], height=[])
            self.row_line.hide()
            return
        n, v = b.shape
        with QtCore.QSignalBlocker(self.row):
            self.row.setRange(0, n - 1)
            self.row.setValue(self.model.batch_row)
        gb = b.logits.nbytes / 1e9
        self.stats.setText(
            f"<b>{n}</b> rows × <b>{v}</b> classes ({b.logits.dtype})<br>"
            f"mean loss <b>{b.mean_loss:.4f}</b> · perplexity <b>{b.perplexity:.2f}</b> · "
            f"accuracy <b>{100 * b.accuracy:.1f}%</b><br>"
            f"pyce kernels: loss {b.forward_ms:.2f} ms ({gb / (b.forward_ms / 1e3):.1f} GB/s "
            f"of logits read), loss + gradient {b.fused_ms:.2f} ms")
        finite = b.row_losses[np.isfinite(b.row_losses)]
        if finite.size:
            counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS)
            self.hist.setOpts(x0=edges[:-1], x1=edges[1:], height=counts)
        self.row_line.setPos(float(b.row_losses[self.model.batch_row]))
        self.row_line.show()

    def apply_theme(self, theme) -> None:
        self.plot.setBackground(theme.base)
        for name in ("left", "bottom"):
            ax = self.plot.getAxis(name)
            ax.setPen(theme.muted)
            ax.setTextPen(theme.text)
        self.hist.setOpts(brush=theme.curve, pen=pg.mkPen(theme.base))
        self.row_line.setPen(pg.mkPen(theme.target, width=2))
