"""A sentence, token by token: each position's −log q(word), their mean = log perplexity.

The built-in sentence (:mod:`pyce_gui.sentence`) is a batch with one row per
position; its statistics come from pyce like any batch's (reduction='none' for
the per-word losses, ignore_index=-100 for the masked position). Clicking a word
shows that position's distribution in the main plots.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from .. import sentence
from ..model import BATCH
from .panel import Panel
from .readouts import fmt
from .widgets import fixed_plot, rich_text_label


class SentencePanel(QtWidgets.QWidget, Panel):
    name = "sentence"
    title = "Sentence"
    listens = frozenset({BATCH})

    def __init__(self, ctx, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self.attach(ctx)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.load_button = QtWidgets.QPushButton("Load the sentence")
        self.load_button.setToolTip(
            "“The cat sat on the mat .”: a language model's guess at each position, as a batch of 7 rows"
        )
        self.load_button.clicked.connect(lambda: self.push("The example sentence", self.model.load_sentence))
        words = QtWidgets.QHBoxLayout()
        words.addWidget(self.load_button)
        self.word_buttons = []
        for i, word in enumerate(sentence.WORDS):
            b = QtWidgets.QPushButton(word)
            b.setCheckable(True)
            b.setMinimumWidth(10)
            b.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Fixed)
            b.setToolTip(
                f"Show position {i}: the guess of the word after “{' '.join(['<bos>'] + sentence.WORDS[:i])}”"
            )
            b.clicked.connect(lambda _checked=False, row=i: self._show(row))
            words.addWidget(b, 1)
            self.word_buttons.append(b)
        layout.addLayout(words)
        self.text = rich_text_label()
        layout.addWidget(self.text)
        self.plot = fixed_plot(110)
        self.plot.setLabel("left", "−log q(word)")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.7)
        self.current = pg.BarGraphItem(x=[], height=[], width=0.7)
        self.mean_line = pg.InfiniteLine(
            angle=0, movable=False, label="mean = log perplexity", labelOpts={"position": 0.3}
        )
        for it in (self.bars, self.current, self.mean_line):
            self.plot.addItem(it)
        self.masked = []
        layout.addWidget(self.plot, 1)
        self.apply_theme(self.theme)

    def _show(self, row: int) -> None:
        if self.is_sentence():
            self.push(f"Position {row}", lambda: self.model.set_batch_row(row))
        else:
            self.on_model(BATCH)

    def is_sentence(self) -> bool:
        b = self.model.state.batch
        return b is not None and b.example == "sentence"

    def on_model(self, kind) -> None:
        m = self.model
        on = self.is_sentence() and m.batch_stats is not None
        for i, b in enumerate(self.word_buttons):
            b.setEnabled(on)
            b.setChecked(on and m.state.batch_row == i)
        if not on:
            self.bars.setOpts(x=[], height=[])
            self.current.setOpts(x=[], height=[])
            self.mean_line.hide()
            for t in self.masked:
                t.hide()
            self.text.setText(
                "A language model scores a sentence one word at a time: "
                "load the example to see each position's −log q(word) and "
                "their mean, the log perplexity."
            )
            return
        st = m.batch_stats
        losses = st.row_losses
        scored = np.setdiff1d(np.arange(len(losses)), st.ignored_rows)
        x = np.arange(len(losses), dtype=float)
        row = m.state.batch_row
        others = scored[scored != row]
        self.bars.setOpts(x=x[others], height=losses[others])
        mine = [row] if row in scored else []
        self.current.setOpts(x=x[mine], height=losses[mine])
        self.mean_line.setPos(st.mean_loss)
        self.mean_line.show()
        while len(self.masked) < len(st.ignored_rows):
            t = pg.TextItem("masked", anchor=(0.5, 1.0))
            self.plot.addItem(t)
            self.masked.append(t)
        for i, t in enumerate(self.masked):
            t.setVisible(i < len(st.ignored_rows))
            if i < len(st.ignored_rows):
                t.setPos(float(st.ignored_rows[i]), 0.0)
                t.setColor(self.theme.muted)
        top = float(np.nanmax(losses[scored])) if scored.size else 1.0
        self.plot.setYRange(0, max(top, st.mean_loss) * 1.25 + 0.05, padding=0)
        self.plot.setXRange(-0.6, len(losses) - 0.4, padding=0)
        self.plot.getAxis("bottom").setTicks([list(enumerate(sentence.WORDS)), []])
        total = float(np.sum(losses[scored]))
        n = len(scored)
        masked_words = ", ".join(f"“{sentence.WORDS[r]}”" for r in st.ignored_rows)
        self.text.setText(
            f"log P(sentence) = Σ log q(word | the words before) = −{fmt(total)} over {n} "
            f"scored words; their mean −log q = {fmt(total)} / {n} = <b>{fmt(st.mean_loss)}</b>"
            f" = log perplexity (pyce's mean with ignore_index), so perplexity = "
            f"<b>{fmt(st.perplexity, 3)}</b>: as unsure as a uniform pick among that many words "
            f"at each step. Masked (target −100, not scored): {masked_words or 'none'}."
            + ("" if math.isfinite(total) else " A position's logits are not finite.")
        )

    def apply_theme(self, theme) -> None:
        self.theme = theme
        self.plot.setBackground(theme.base)
        for name in ("left", "bottom"):
            ax = self.plot.getAxis(name)
            ax.setPen(theme.muted)
            ax.setTextPen(theme.text)
        self.bars.setOpts(brush=theme.bar, pen=None)
        self.current.setOpts(brush=theme.target, pen=None)
        self.mean_line.setPen(pg.mkPen(theme.curve, width=1, style=QtCore.Qt.PenStyle.DashLine))
        self.mean_line.label.setColor(theme.muted)
        self.on_model(BATCH)
