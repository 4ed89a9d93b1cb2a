"""The four linked bar plots over the classes: logits, softmax q, target p, gradient q − p.

Direct manipulation follows pyqtgraph's idioms: a ViewBox subclass overrides
pyqtgraph's ``mouseDragEvent`` / ``mouseClickEvent`` hooks and turns a vertical
drag over column i into "set value i", a click into "make i the target", a
double-click into "type a value for i". Axis ranges are fixed while dragging, so
the bar stays under the pointer. Each colour is one BarGraphItem (ordinary
classes, the target, the selection outline; gradient signs).

A live drag edits the model directly (every frame recomputes through pyce), and
its end pushes one undo step from the state at the drag's start.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets
import pyqtgraph as pg

from .. import commands
from ..model import SELECTION, STRUCTURE, VALUES

LEFT = QtCore.Qt.MouseButton.LeftButton
BAR_WIDTH = 0.72
MAX_VALUE_TEXTS = 16     # q values printed above the bars when there are at most this many
TICK_GAP_PX = 10         # at least this much room between two class labels


class ClassViewBox(pg.ViewBox):
    """A ViewBox whose columns are classes: drag sets a value, click picks a class."""

    def __init__(self, owner):
        super().__init__(enableMenu=False)
        self.owner = owner          # the ClassBarPlot that interprets the gestures
        self.setMouseEnabled(x=False, y=False)
        self._drag_class = None

    def class_at(self, view_pos) -> int | None:
        """The class whose column contains ``view_pos`` (view coordinates), if any."""
        col = int(math.floor(view_pos.x() + 0.5))
        visible = self.owner.stack.visible
        if 0 <= col < len(visible):
            return int(visible[col])
        return None

    # pyqtgraph's hooks (not Qt's): called by its GraphicsScene with its own event types.
    def mouseDragEvent(self, ev, axis=None):
        if ev.button() != LEFT:
            ev.ignore()
            return
        ev.accept()
        if ev.isStart():
            cls = self.class_at(self.mapToView(ev.buttonDownPos()))
            self._drag_class = cls if cls is not None and self.owner.drag_start(cls) else None
        if self._drag_class is None:
            return
        self.owner.drag_to(self._drag_class, self.mapToView(ev.pos()).y())
        if ev.isFinish():
            self.owner.drag_finish(self._drag_class)
            self._drag_class = None

    def mouseClickEvent(self, ev):
        if ev.button() != LEFT:
            ev.ignore()
            return
        ev.accept()
        cls = self.class_at(self.mapToView(ev.pos()))
        if cls is None:
            return
        if ev.double():
            self.owner.edit_value(cls)
        else:
            self.owner.click(cls)


class ClassBarPlot:
    """One plot of one per-class quantity; ``kind`` says which and how it is edited."""

    TITLES = {
        "logits": "logits  z   <span style='font-size:9pt'>(drag a bar)</span>",
        "q": "softmax  q = softmax(z / T)   <span style='font-size:9pt'>(drag: set a probability, "
             "others keep their ratios)</span>",
        "p": "target  p",
        "grad": "gradient  ∂loss/∂(z/T) = q − p   <span style='font-size:9pt'>"
                "(descent moves each logit against its bar)</span>",
    }

    def __init__(self, stack, kind: str):
        self.stack = stack
        self.kind = kind
        self.vb = ClassViewBox(self)
        self.item = pg.PlotItem(viewBox=self.vb)
        self.item.hideButtons()
        self.item.showGrid(x=False, y=True, alpha=0.18)
        self.item.setMenuEnabled(False)
        self.item.getAxis("left").setWidth(52)
        # One BarGraphItem per colour: [ordinary, target] or [gradient > 0, gradient < 0],
        # then the target (drawn on top) and the outline of the selected class.
        self.main = pg.BarGraphItem(x=[], height=[], width=BAR_WIDTH)
        self.second = pg.BarGraphItem(x=[], height=[], width=BAR_WIDTH)
        self.target = pg.BarGraphItem(x=[], height=[], width=BAR_WIDTH)
        self.outline = pg.BarGraphItem(x=[], height=[], width=BAR_WIDTH + 0.1)
        for it in (self.main, self.second, self.target, self.outline):
            self.item.addItem(it)
        self.zero_line = pg.InfiniteLine(pos=0, angle=0, movable=False)
        self.item.addItem(self.zero_line)
        self.texts: list[pg.TextItem] = []
        if kind in ("q", "p"):
            self.vb.setYRange(0.0, 1.12, padding=0)
        elif kind == "grad":
            self.vb.setYRange(-1.08, 1.08, padding=0)
        self.y_range = None

    # --- what the gestures mean for this plot -------------------------------------
    @property
    def model(self):
        return self.stack.model

    def editable(self) -> bool:
        if self.kind in ("logits", "q"):
            return True
        # p is edited only as a soft target, and not when smoothing leaves no room.
        return self.kind == "p" and self.model.soft_mode and self.model.label_smoothing < 1.0

    def drag_start(self, cls: int) -> bool:
        if not self.editable():
            return False
        self.stack.begin_drag()
        self.model.select(cls)
        return True

    def drag_to(self, cls: int, y: float) -> None:
        self.set_value(cls, y)

    def drag_finish(self, cls: int) -> None:
        what = {"logits": "logit", "q": "probability", "p": "target probability"}[self.kind]
        self.stack.end_drag(f"Drag {what} of “{self.model.labels[cls]}”")

    def set_value(self, cls: int, y: float) -> None:
        m = self.model
        if self.kind == "logits":
            m.set_logit(cls, y)
        elif self.kind == "q":
            m.set_probability(cls, y)
        elif self.kind == "p":
            # The bar shows the smoothed p = (1 - eps) p_soft + eps / C; solve for p_soft.
            eps, C = m.label_smoothing, m.n_classes
            m.set_soft_probability(cls, (y - eps / C) / (1.0 - eps))

    def current_value(self, cls: int) -> float:
        return float({"logits": self.model.logits, "q": self.model.q,
                      "p": self.model.p, "grad": self.model.grad}[self.kind][cls])

    def click(self, cls: int) -> None:
        self.stack.pick_target(cls)

    def edit_value(self, cls: int) -> None:
        if self.editable():
            self.stack.edit_value_dialog(self, cls)

    # --- drawing -------------------------------------------------------------------
    def values(self) -> np.ndarray:
        m = self.model
        return {"logits": m.logits, "q": m.q, "p": m.p, "grad": m.grad}[self.kind]

    def redraw(self, theme, dragging: bool) -> None:
        m = self.model
        visible = self.stack.visible
        x = np.arange(len(visible), dtype=float)
        h = np.asarray(self.values())[visible]
        tpos = np.flatnonzero(visible == m.target_class)
        is_target = np.zeros(len(visible), bool)
        is_target[tpos] = True
        if self.kind == "grad":
            pos = h > 0
            self.main.setOpts(x=x[pos & ~is_target], height=h[pos & ~is_target],
                              brush=theme.positive, pen=None)
            self.second.setOpts(x=x[~pos & ~is_target], height=h[~pos & ~is_target],
                                brush=theme.negative, pen=None)
        else:
            self.main.setOpts(x=x[~is_target], height=h[~is_target], brush=theme.bar, pen=None)
            self.second.setOpts(x=[], height=[])
        self.target.setOpts(x=x[is_target], height=h[is_target], brush=theme.target, pen=None)
        spos = np.flatnonzero(visible == m.selected)
        self.outline.setOpts(x=x[spos], height=h[spos], brush=None,
                             pen=pg.mkPen(theme.selected, width=2))
        if self.kind == "logits" and not dragging:
            self._fit_logit_range(h)
        if self.kind == "q":
            self._value_texts(x, h, theme)

    def _fit_logit_range(self, h: np.ndarray) -> None:
        """Keep a fixed range; change it only when the bars leave it or shrink a lot."""
        lo = min(float(h.min()), 0.0)
        hi = max(float(h.max()), 0.0)
        span = hi - lo
        cur = self.y_range
        if cur is None or lo < cur[0] or hi > cur[1] or span < 0.4 * (cur[1] - cur[0]):
            pad = max(1.0, 0.15 * span)
            self.y_range = (math.floor(lo - pad), math.ceil(hi + pad))
            self.vb.setYRange(*self.y_range, padding=0)

    def _value_texts(self, x, h, theme) -> None:
        show = len(x) <= MAX_VALUE_TEXTS
        while len(self.texts) < (len(x) if show else 0):
            t = pg.TextItem(anchor=(0.5, 1.0))
            self.item.addItem(t)
            self.texts.append(t)
        for i, t in enumerate(self.texts):
            if show and i < len(x):
                t.setText(f"{h[i]:.3f}" if h[i] < 0.9995 else "1.000")
                t.setColor(theme.muted)
                t.setPos(x[i], h[i] + 0.01)
                t.show()
            else:
                t.hide()

    def apply_theme(self, theme, font: QtGui.QFont) -> None:
        for name in ("left", "bottom"):
            ax = self.item.getAxis(name)
            ax.setPen(theme.muted)
            ax.setTextPen(theme.text)
            ax.setStyle(tickFont=font)
        self.zero_line.setPen(pg.mkPen(theme.muted, width=1))
        self.item.setTitle(self.TITLES[self.kind], color=theme.text, size="10.5pt")


class PlotStack(pg.GraphicsLayoutWidget):
    """The four class plots, stacked and linked along the class axis.

    Keyboard (when the plots have focus): ←/→ select a class, ↑/↓ change its
    logit by 0.1 (Shift: 1), Enter or Space make it the target.
    """

    KINDS = ("logits", "q", "p", "grad")

    def __init__(self, model, undo_stack, theme, parent=None):
        super().__init__(parent=parent)
        self.model = model
        self.undo_stack = undo_stack
        self.theme = theme
        self.visible = model.visible_classes()
        self._drag_before = None
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self._tick_font = QtGui.QFont(self.font())
        self._tick_font.setPointSizeF(9.5)
        self.ci.layout.setSpacing(2)
        self.plots = {}
        for row, kind in enumerate(self.KINDS):
            plot = ClassBarPlot(self, kind)
            self.addItem(plot.item, row=row, col=0)
            self.plots[kind] = plot
        first = self.plots["logits"].item
        for kind in self.KINDS[1:]:
            self.plots[kind].item.setXLink(first)
        # Only the bottom plot names the classes; the others share its columns.
        for kind in self.KINDS[:-1]:
            self.plots[kind].item.getAxis("bottom").setStyle(showValues=False)
        self.apply_theme(theme)
        model.subscribe(self.on_model)
        self.on_model(STRUCTURE)

    # --- model -> view -------------------------------------------------------------
    def on_model(self, kind: str) -> None:
        if kind not in (STRUCTURE, VALUES, SELECTION):
            return
        dragging = self._drag_before is not None
        # In top-k mode the order of bars follows q; freeze it while dragging, so
        # the dragged bar does not run away from the pointer.
        if not dragging or kind == STRUCTURE:
            visible = self.model.visible_classes()
            if kind == STRUCTURE or not np.array_equal(visible, self.visible):
                self.visible = visible
                self._set_columns()
        for plot in self.plots.values():
            plot.redraw(self.theme, dragging)

    def _set_columns(self) -> None:
        self.plots["logits"].vb.setXRange(-0.6, len(self.visible) - 0.4, padding=0)
        self._set_ticks()

    def _set_ticks(self) -> None:
        """Name the columns, skipping labels when they would overlap at this width."""
        n = len(self.visible)
        labels = [self.model.labels[c] for c in self.visible]
        metrics = QtGui.QFontMetrics(self._tick_font)
        widest = max(metrics.horizontalAdvance(s) for s in labels) + TICK_GAP_PX
        column_px = max(self.plots["grad"].vb.width(), 200) / max(n, 1)
        every = max(1, math.ceil(widest / column_px))
        ticks = [(i, s) for i, s in enumerate(labels) if i % every == 0]
        for plot in self.plots.values():
            plot.item.getAxis("bottom").setTicks([ticks, []])

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        if hasattr(self, "plots"):   # Qt may resize before __init__ has built the plots
            self._set_ticks()        # more or fewer labels fit now

    def apply_theme(self, theme) -> None:
        self.theme = theme
        self.setBackground(theme.base)
        for plot in self.plots.values():
            plot.apply_theme(theme, self._tick_font)
            plot.redraw(theme, False)

    # --- edits ---------------------------------------------------------------------
    def begin_drag(self) -> None:
        self._drag_before = self.model.get_state()

    def end_drag(self, text: str) -> None:
        before, self._drag_before = self._drag_before, None
        commands.push_edit(self.undo_stack, self.model, text, lambda: None, before=before)
        self.on_model(VALUES)   # re-fit ranges and the top-k order now the drag is over

    def pick_target(self, cls: int) -> None:
        self.model.select(cls)
        if cls != self.model.target_class:
            commands.push_edit(self.undo_stack, self.model,
                               f"Target “{self.model.labels[cls]}”",
                               lambda: self.model.set_target(cls))

    def set_value(self, plot: ClassBarPlot, cls: int, value: float, text: str) -> None:
        commands.push_edit(self.undo_stack, self.model, text,
                           lambda: plot.set_value(cls, value))

    def edit_value_dialog(self, plot: ClassBarPlot, cls: int) -> None:
        label = self.model.labels[cls]
        what = {"logits": "logit z", "q": "probability q", "p": "target probability p"}[plot.kind]
        lo, hi = (-1e6, 1e6) if plot.kind == "logits" else (0.0, 1.0)
        value, ok = QtWidgets.QInputDialog.getDouble(
            self, "Set a value", f"{what} of “{label}”:", plot.current_value(cls), lo, hi, 4)
        if ok:
            self.set_value(plot, cls, value, f"Set {what} of “{label}”")

    def keyPressEvent(self, ev: QtGui.QKeyEvent) -> None:
        key = ev.key()
        Key = QtCore.Qt.Key
        m = self.model
        pos = np.flatnonzero(self.visible == m.selected)
        pos = int(pos[0]) if pos.size else 0
        if key in (Key.Key_Left, Key.Key_Right):
            step = -1 if key == Key.Key_Left else 1
            m.select(int(self.visible[(pos + step) % len(self.visible)]))
        elif key in (Key.Key_Up, Key.Key_Down):
            big = ev.modifiers() & QtCore.Qt.KeyboardModifier.ShiftModifier
            delta = (1.0 if big else 0.1) * (1 if key == Key.Key_Up else -1)
            cls = m.selected
            self.set_value(self.plots["logits"], cls, m.logits[cls] + delta,
                           f"Nudge logit of “{m.labels[cls]}”")
        elif key in (Key.Key_Return, Key.Key_Enter, Key.Key_Space):
            self.pick_target(m.selected)
        else:
            super().keyPressEvent(ev)
            return
        ev.accept()
