"""The two widgets the learner panels all start from: a wrapped rich-text label
and a plot the user cannot pan, zoom or open a menu on (the panels set its ranges)."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets


def rich_text_label() -> QtWidgets.QLabel:
    label = QtWidgets.QLabel()
    label.setWordWrap(True)
    label.setTextFormat(QtCore.Qt.TextFormat.RichText)
    return label


def fixed_plot(min_height: int) -> pg.PlotWidget:
    plot = pg.PlotWidget()
    plot.setMenuEnabled(False)
    plot.setMouseEnabled(x=False, y=False)
    plot.hideButtons()
    plot.setMinimumHeight(min_height)
    return plot
