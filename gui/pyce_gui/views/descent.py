"""Gradient descent on the logits, step by step, with the loss-vs-step curve.

The curve has a floor: cross-entropy H(p, q) = H(p) + KL(p‖q) can never go below
the target's own entropy H(p) (0 for a one-hot target), and the gap above the
line is the KL divergence that descent removes.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from .. import commands
from ..model import DESCENT, OPTIONS, VALUES
from .fields import NumberField
from .panel import Panel

PLAY_INTERVAL_MS = 150
LOG_FLOOR = 1e-6  # the loss curve's lowest value on the log scale


class DescentPanel(QtWidgets.QWidget, Panel):
    """Step / play / pause / reset with a learning rate; the loss after every step.

    A run of steps (clicked or played) is one undo step; reset is another.
    """

    name = "descent"
    title = "Gradient descent"
    listens = frozenset({DESCENT, VALUES, OPTIONS})

    def __init__(self, ctx, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self.attach(ctx)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("learning rate"))
        self.lr = NumberField(1e-6, 1e6, what="The learning rate", step=0.1)
        self.lr.setMaximumWidth(80)
        self.lr.committed.connect(self._lr_typed)
        self.lr.refused.connect(self.ctx.show_message)
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
        self.log_box = QtWidgets.QCheckBox("log scale")
        self.log_box.setToolTip("Loss on a log axis: the last digits of convergence show")
        self.log_box.toggled.connect(
            lambda on: self.push(
                "Log-scale loss" if on else "Linear loss", lambda: self.model.set_option("log_loss", on)
            )
        )
        row.addWidget(self.log_box)
        row.addStretch(1)
        layout.addLayout(row)

        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "step")
        for name in ("bottom", "left"):
            self.plot.getAxis(name).enableAutoSIPrefix(False)  # no "loss (x0.001)"
        self.plot.setLabel("left", "loss")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.setMinimumHeight(140)
        self.curve = pg.PlotDataItem()
        self.plot.addItem(self.curve)
        self.floor = pg.InfiniteLine(
            angle=0,
            movable=False,
            label="H(p): the floor; above it, KL(p‖q)",
            labelOpts={"position": 0.7, "anchors": [(0.5, 1), (0.5, 1)]},
        )
        self.plot.addItem(self.floor)
        layout.addWidget(self.plot, 1)
        self.caption = QtWidgets.QLabel()
        self.caption.setEnabled(False)
        self.caption.setWordWrap(True)
        layout.addWidget(self.caption)

        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(PLAY_INTERVAL_MS)
        self.timer.timeout.connect(self.step)
        self.apply_theme(self.theme)
        self.on_model(DESCENT)

    def _lr_typed(self, lr: float) -> None:
        self.push(
            f"Learning rate {lr:g}", lambda: self.model.set_learning_rate(lr), commands.MERGE_LEARNING_RATE
        )

    def step(self) -> None:
        # Consecutive steps merge into one undo entry ("Gradient descent").
        if not self.push("Gradient descent", self.model.descent_step, commands.MERGE_DESCENT):
            self.pause()

    def pause(self) -> None:
        self.play_button.setChecked(False)

    def reset(self) -> None:
        self.pause()
        self.push("Reset descent", self.model.descent_reset)

    def _play_toggled(self, on: bool) -> None:
        self.play_button.setText("Pause" if on else "Play")
        if on:
            self.timer.start()
        else:
            self.timer.stop()

    def on_model(self, kind) -> None:
        m = self.model
        # Before any step the curve is the current loss alone, at step 0.
        traj = list(m.trajectory) or [m.loss]
        log = m.state.log_loss
        ys = np.asarray(traj, dtype=float)
        finite = ys[np.isfinite(ys)]
        self.plot.setLogMode(y=log)
        if log:
            ys = np.maximum(ys, LOG_FLOOR)
        steps = np.arange(len(ys), dtype=float)
        keep = np.isfinite(ys)  # a nan loss (a non-finite row) has no point to draw
        self.curve.setData(steps[keep], ys[keep])
        floor = m.entropy_p
        self.floor.setVisible(math.isfinite(floor) and (floor > 0 or not log))
        self.floor.setPos(math.log10(max(floor, LOG_FLOOR)) if log else floor)
        # Fixed ranges from the data: steps from 0 (at least 10 wide), loss from 0.
        top = float(finite.max()) if finite.size else 1.0
        self.plot.setXRange(0, max(10, len(traj) - 1), padding=0.02)
        if log:
            low = max(min(float(finite.min()) if finite.size else 1.0, floor or 1.0), LOG_FLOOR)
            self.plot.setYRange(math.log10(low) - 0.3, math.log10(max(top, low)) + 0.2, padding=0)
        else:
            self.plot.setYRange(0, top * 1.1 if top > 0 else 1.0, padding=0)
        self.lr.set_value(m.learning_rate)
        with QtCore.QSignalBlocker(self.log_box):
            self.log_box.setChecked(log)
        ok = m.nonfinite.size == 0
        self.step_button.setEnabled(ok)
        self.play_button.setEnabled(ok)
        if not ok:
            self.pause()
        if m.trajectory:
            text = f"{len(traj) - 1} steps: loss {traj[0]:.4f} → {traj[-1]:.4f}"
            if m.loss != traj[-1]:
                # Edited since the last step: say so, rather than a number the readouts contradict.
                text += f"; edited since, the loss is now {m.loss:.4f}"
            text += f" (floor H(p) = {floor:.4f})"
            self.caption.setText(text)
        else:
            self.caption.setText(
                "Step or play: the logits move against the gradient bars; "
                f"the loss can fall to H(p) = {floor:.4f}."
            )

    def apply_theme(self, theme) -> None:
        self.theme = theme
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
        self.floor.setPen(pg.mkPen(theme.target, width=1, style=QtCore.Qt.PenStyle.DashLine))
        self.floor.label.setColor(theme.muted)
