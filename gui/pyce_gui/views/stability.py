"""Why softmax subtracts the max: the naive exp(z/T) / Σ exp beside pyce's stable result.

Both use pyce's vectorised exp in float32. Without the shift, exp overflows to
inf once z/T passes log(float32 max) ≈ 88.72, and inf / inf is nan; with it, every
exponent is ≤ 0, so exp ≤ 1 and the sum is ≥ 1 — nothing can overflow.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from ..model import OPTIONS, STRUCTURE, VALUES
from .panel import Panel
from .readouts import fmt

FLOAT32_EXP_LIMIT = math.log(float(np.finfo(np.float32).max))  # 88.72
MAX_ROWS = 12
COLUMNS = ("class", "z/T", "exp(z/T)", "naive q", "exp(z/T − max)", "pyce q")


class StabilityPanel(QtWidgets.QWidget, Panel):
    name = "stability"
    title = "Max shift"
    listens = frozenset({VALUES, STRUCTURE, OPTIONS})

    def __init__(self, ctx, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self.attach(ctx)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.toggle = QtWidgets.QCheckBox(
            "Also compute softmax naively: exp(z/T) / Σ exp(z/T) in float32, without subtracting the max"
        )
        self.toggle.toggled.connect(
            lambda on: self.push(
                "Naive softmax shown" if on else "Naive softmax hidden",
                lambda: self.model.set_option("naive_softmax", on),
            )
        )
        layout.addWidget(self.toggle)
        self.explain = QtWidgets.QLabel()
        self.explain.setWordWrap(True)
        self.explain.setTextFormat(QtCore.Qt.TextFormat.RichText)
        layout.addWidget(self.explain)
        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(150)
        layout.addWidget(self.table, 1)
        self.on_model(OPTIONS)

    def on_model(self, kind) -> None:
        m = self.model
        with QtCore.QSignalBlocker(self.toggle):
            self.toggle.setChecked(m.state.naive_softmax)
        z = m.scaled_logits
        zmax = float(np.max(z)) if z.size else 0.0
        if m.naive_q is None:
            self.table.setRowCount(0)
            self.explain.setText(
                f"The largest z/T here is {fmt(zmax)}. pyce computes softmax as "
                "exp(z/T − max) / Σ exp(z/T − max): the same q, because a common shift "
                "cancels, but every exponent is ≤ 0. Tick the box to see the naive way; "
                f"lower T until z/T passes {FLOAT32_EXP_LIMIT:.2f} to watch it break."
            )
            return
        n_inf = int(np.sum(np.isinf(m.naive_exp)))
        n_nan = int(np.sum(np.isnan(m.naive_q)))
        warn = f"style='color:{self.theme.positive}'"
        if n_inf or n_nan:
            verdict = (
                f"<span {warn}><b>Naive: broken.</b> exp overflows float32 above "
                f"{FLOAT32_EXP_LIMIT:.2f}: {n_inf} of the exps are inf, so Σ exp = inf "
                f"and {n_nan} of the q are inf/inf = nan.</span>"
            )
        else:
            verdict = (
                f"<b>Naive: still fine</b> (the largest z/T, {fmt(zmax)}, is below "
                f"{FLOAT32_EXP_LIMIT:.2f}); lower T to push it over."
            )
        self.explain.setText(
            f"{verdict}<br>Stable: exp(z/T − max) ≤ 1 and the sum ≥ 1, so pyce's q is "
            f"finite for any z/T; logsumexp = max + log Σ exp(z/T − max) = {fmt(m.lse)}."
        )
        rows = m.visible_classes()[:MAX_ROWS]
        self.table.setRowCount(len(rows))
        red = QtGui.QColor(self.theme.positive)
        for r, c in enumerate(rows):
            values = (m.labels[c], z[c], m.naive_exp[c], m.naive_q[c], m.stable_exp[c], m.q[c])
            for col, v in enumerate(values):
                text = v if isinstance(v, str) else fmt(float(v))
                item = QtWidgets.QTableWidgetItem(text)
                if not isinstance(v, str) and not math.isfinite(float(v)):
                    item.setForeground(red)
                self.table.setItem(r, col, item)

    def apply_theme(self, theme) -> None:
        self.theme = theme
        self.on_model(OPTIONS)
