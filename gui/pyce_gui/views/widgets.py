"""The widgets the learner panels are built from: a wrapped rich-text label, a
plot the user cannot pan, zoom or open a menu on (the panels set its ranges),
and two bar series compared class by class on such a plot."""

from __future__ import annotations

import math

import numpy as np
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


class PairedClassBars:
    """Two bar series side by side for each visible class (``left`` at x - OFFSET,
    ``right`` at x + OFFSET) on a fixed plot, with a legend, an optional line at
    zero, and the class labels as ticks. The distillation, focal and divergence
    panels each compare two quantities class by class this way."""

    OFFSET, WIDTH = 0.19, 0.36
    MAX_TICKS = 12  # more labels than this overlap: show every k-th

    def __init__(self, min_height: int, left_name: str, right_name: str, zero_line: bool = False):
        self.plot = fixed_plot(min_height)
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.getAxis("bottom").setStyle(hideOverlappingLabels=40)
        self.legend = self.plot.addLegend(offset=(-8, 6))
        self.left = pg.BarGraphItem(x=[], height=[], width=self.WIDTH, name=left_name)
        self.right = pg.BarGraphItem(x=[], height=[], width=self.WIDTH, name=right_name)
        self.plot.addItem(self.left)
        self.plot.addItem(self.right)
        self.zero = None
        if zero_line:
            self.zero = pg.InfiniteLine(pos=0, angle=0, movable=False)
            self.plot.addItem(self.zero)

    def show(self, left, right, labels) -> np.ndarray:
        """Draw ``left`` and ``right`` (one height per label; None: that series
        empty) and fit the x range and ticks to ``labels``; returns the classes' x."""
        x = np.arange(len(labels), dtype=float)
        for bars, heights, shift in ((self.left, left, -self.OFFSET), (self.right, right, self.OFFSET)):
            if heights is None:
                bars.setOpts(x=np.zeros(0), height=np.zeros(0))
            else:
                bars.setOpts(x=x + shift, height=heights)
        self.plot.setXRange(-0.6, len(labels) - 0.4, padding=0)
        ticks = list(enumerate(labels))
        step = max(1, math.ceil(len(ticks) / self.MAX_TICKS))
        self.plot.getAxis("bottom").setTicks([ticks[::step], []])
        return x

    def apply_theme(self, theme, left_brush, right_brush) -> None:
        self.plot.setBackground(theme.base)
        for name in ("left", "bottom"):
            ax = self.plot.getAxis(name)
            ax.setPen(theme.muted)
            ax.setTextPen(theme.text)
        self.left.setOpts(brush=left_brush, pen=None)
        self.right.setOpts(brush=right_brush, pen=None)
        if self.zero is not None:
            self.zero.setPen(pg.mkPen(theme.muted, width=1))
        self.legend.setLabelTextColor(theme.text)
