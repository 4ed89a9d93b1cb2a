"""Gradient descent on the logits, step by step, with the loss-vs-step curve."""

from __future__ import annotations

import math

from PySide6 import QtCore, QtWidgets
import pyqtgraph as pg

from .. import commands
from ..model import DESCENT, VALUES

PLAY_INTERVAL_MS = 150


class DescentPanel(QtWidgets.QWidget):
    """Step / play / pause / reset with a learning rate; the loss after every step.

    A run of steps (clicked or played) is one undo step; reset is another.
    """

    def __init__(self, model, undo_stack, theme, parent=None):
        super().__init__(parent)
        self.model = model
        self.undo_stack = undo_stack
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("learning rate"))
        self.lr = QtWidgets.QDoubleSpinBox()
        self.lr.setRange(0.001, 100.0)
        self.lr.setDecimals(3)
        self.lr.setSingleStep(0.1)
        self.lr.setValue(model.learning_rate)
        self.lr.valueChanged.connect(model.set_learning_rate)
        row.addWidget(self.lr)
        self.step_button = QtWidgets.QPushButton("Step")
        self.step_button.setToolTip("z ← z − lr · ∂loss/∂z  (one step)")
        self.step_button.clicked.connect(self.step)
        self.play_button = QtWidgets.QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(self._play_toggled)
        self.reset_button = QtWidgets.QPushButton("Reset")
        self.reset_button.setToolTip("Back to the logits before the first step")
        self.reset_button.clicked.connect(self.reset)
        for b in (self.step_button, self.play_button, self.reset_button):
            row.addWidget(b)
        layout.addLayout(row)

        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "step")
        for name in ("bottom", "left"):
            self.plot.getAxis(name).enableAutoSIPrefix(False)   # no "loss (x0.001)"
        self.plot.setLabel("left", "loss")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.setMinimumHeight(150)
        self.curve = pg.PlotDataItem()
        self.plot.addItem(self.curve)
        layout.addWidget(self.plot, 1)
        self.caption = QtWidgets.QLabel()
        self.caption.setEnabled(False)
        layout.addWidget(self.caption)

        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(PLAY_INTERVAL_MS)
        self.timer.timeout.connect(self.step)
        self.apply_theme(theme)
        model.subscribe(self.on_model)
        self.on_model(DESCENT)

    def step(self) -> None:
        # Consecutive steps merge into one undo entry ("Gradient descent").
        commands.push_edit(self.undo_stack, self.model, "Gradient descent",
                           self.model.descent_step, commands.MERGE_DESCENT)

    def reset(self) -> None:
        self.play_button.setChecked(False)
        commands.push_edit(self.undo_stack, self.model, "Reset descent", self.model.descent_reset)

    def _play_toggled(self, on: bool) -> None:
        self.play_button.setText("Pause" if on else "Play")
        if on:
            self.timer.start()
        else:
            self.timer.stop()

    def on_model(self, kind: str) -> None:
        if kind not in (DESCENT, VALUES):
            return
        # Before any step the curve is the current loss alone, at step 0.
        traj = self.model.trajectory or [self.model.loss]
        self.curve.setData(list(range(len(traj))), traj)
        # Fixed ranges from the data: steps from 0 (at least 10 wide), loss from 0.
        top = max(traj)
        self.plot.setXRange(0, max(10, len(traj) - 1), padding=0.02)
        self.plot.setYRange(0, top * 1.1 if top > 0 and math.isfinite(top) else 1.0, padding=0)
        with QtCore.QSignalBlocker(self.lr):
            self.lr.setValue(self.model.learning_rate)
        if self.model.trajectory:
            self.caption.setText(f"{len(traj) - 1} steps: loss {traj[0]:.4f} → {traj[-1]:.4f}")
        else:
            self.caption.setText("Step or play: the logits move against the gradient bars.")

    def apply_theme(self, theme) -> None:
        self.plot.setBackground(theme.base)
        for name in ("left", "bottom"):
            ax = self.plot.getAxis(name)
            ax.setPen(theme.muted)
            ax.setTextPen(theme.text)
        self.curve.setPen(pg.mkPen(theme.curve, width=2))
        self.curve.setSymbol("o")
        self.curve.setSymbolSize(5)
        self.curve.setSymbolBrush(theme.curve)
        self.curve.setSymbolPen(None)
