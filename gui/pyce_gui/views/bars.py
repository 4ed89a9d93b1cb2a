"""The linked bar plots over the classes: logits, softmax q, target p, gradient q − p.

Each plot is one row of :data:`PLOT_SPECS`: what it shows, its axis, whether and
how a drag edits it. Direct manipulation follows pyqtgraph's idioms: a ViewBox
subclass overrides pyqtgraph's ``mouseDragEvent`` / ``mouseClickEvent`` hooks and
turns a vertical drag over column i into "set value i", a click into "make i the
target", a double-click into "type a value for i". Axis ranges are fixed while
dragging, so the bar stays under the pointer. Each colour is one BarGraphItem
(ordinary classes, the target, the selection outline; gradient signs).

A live drag edits the model directly (every frame recomputes through pyce), and
its end pushes one undo step from the state at the drag's start. A click waits
for the double-click interval, so that a double-click does not also pick a target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from .. import commands
from ..model import OPTIONS, SELECTION, STRUCTURE, VALUES
from .panel import Panel

LEFT = QtCore.Qt.MouseButton.LeftButton
BAR_WIDTH = 0.72
MAX_VALUE_TEXTS = 16  # q values printed above the bars when there are at most this many
TICK_GAP_PX = 10  # at least this much room between two class labels
HEADROOM = 0.12  # the logit axis keeps this fraction of its span above and below
LOG_Q_FLOOR = -300.0  # log10 q below this is drawn at the floor (float64 underflows at -308)


def _set_soft_p(m, cls: int, y: float) -> None:
    # The bar shows the smoothed p = (1 - eps) p_soft + eps / C; solve for p_soft.
    eps, C = m.label_smoothing, m.n_classes
    m.set_soft_probability(cls, (y - eps / C) / (1.0 - eps))


@dataclass(frozen=True)
class PlotSpec:
    """One bar plot: what it shows and how a gesture on it edits the model."""

    kind: str
    title: str
    values: Callable  # model -> one value per class
    y_range: Optional[tuple]  # fixed axis range; None: follow the data
    edit_name: Optional[str] = None  # what a drag or a typed value sets (None: read-only)
    set_value: Optional[Callable] = None  # (model, class, value) -> None
    can_edit: Callable = lambda m: False
    signed: bool = False  # bars coloured by sign (the gradient)
    value_texts: bool = False  # the value printed above each bar, when few
    log_option: Optional[str] = None  # the state option that puts the axis on log10


PLOT_SPECS = (
    PlotSpec(
        "logits",
        "logits  z   <span style='font-size:9pt'>(drag a bar)</span>",
        lambda m: m.logits,
        None,
        "logit z",
        lambda m, c, y: m.set_logit(c, y),
        can_edit=lambda m: True,
    ),
    PlotSpec(
        "q",
        "softmax  q = softmax(z / T)   <span style='font-size:9pt'>(drag: set a "
        "probability, others keep their ratios)</span>",
        lambda m: m.q,
        (0.0, 1.12),
        "probability q",
        lambda m, c, y: m.set_probability(c, y),
        can_edit=lambda m: m.nonfinite.size == 0,
        value_texts=True,
        log_option="log_q",
    ),
    PlotSpec(
        "p",
        "target  p",
        lambda m: m.p,
        (0.0, 1.12),
        "target probability p",
        _set_soft_p,
        # p is edited only as a soft target, and not when smoothing leaves no room.
        can_edit=lambda m: m.soft_mode and m.label_smoothing < 1.0,
    ),
    PlotSpec(
        "grad",
        "gradient  ∂loss/∂(z/T) = q − p   <span style='font-size:9pt'>"
        "(descent moves each logit against its bar)</span>",
        lambda m: m.grad,
        (-1.08, 1.08),
        signed=True,
    ),
)


def nonfinite_text(v: float) -> str:
    return "nan" if math.isnan(v) else ("+inf" if v > 0 else "−inf")


class ClassViewBox(pg.ViewBox):
    """A ViewBox whose columns are classes: drag sets a value, click picks a class."""

    def __init__(self, owner):
        super().__init__(enableMenu=False)
        self.owner = owner  # the ClassBarPlot that interprets the gestures
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
            self.owner.stack.cancel_click()
            self.owner.edit_value(cls)
        else:
            self.owner.stack.click_later(cls)


class ClassBarPlot:
    """One plot of one per-class quantity, drawn and edited as its spec says."""

    def __init__(self, stack, spec: PlotSpec):
        self.stack = stack
        self.spec = spec
        self.kind = spec.kind
        self.vb = ClassViewBox(self)
        self.item = pg.PlotItem(viewBox=self.vb)
        self.item.hideButtons()
        self.item.showGrid(x=False, y=True, alpha=0.18)
        self.item.setMenuEnabled(False)
        self.item.getAxis("left").setWidth(56)
        # The first column's label may reach into the left axis's room instead of vanishing.
        self.item.getAxis("bottom").setStyle(hideOverlappingLabels=56)
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
        self.markers: list[pg.TextItem] = []  # "nan" / "±inf" where a value is not finite
        self.y_range = None
        self.log_scale = None
        self._apply_axis_mode()

    # --- what the gestures mean for this plot -------------------------------------
    @property
    def model(self):
        return self.stack.model

    def in_log_scale(self) -> bool:
        return bool(self.spec.log_option and getattr(self.model.state, self.spec.log_option))

    def editable(self) -> bool:
        return self.spec.set_value is not None and bool(self.spec.can_edit(self.model))

    def drag_start(self, cls: int) -> bool:
        if not self.editable():
            return False
        self.stack.begin_drag()
        self.model.select(cls)
        return True

    def drag_to(self, cls: int, y: float) -> None:
        if self.in_log_scale():
            y = 10.0 ** min(y, 0.0)
        self.spec.set_value(self.model, cls, y)

    def drag_finish(self, cls: int) -> None:
        self.stack.end_drag(f"Drag {self.spec.edit_name} of “{self.model.labels[cls]}”")

    def current_value(self, cls: int) -> float:
        return float(self.spec.values(self.model)[cls])

    def edit_value(self, cls: int) -> None:
        if self.editable():
            self.stack.edit_value_dialog(self, cls)

    # --- drawing -------------------------------------------------------------------
    def _apply_axis_mode(self) -> None:
        log = self.in_log_scale()
        if log == self.log_scale:
            return
        self.log_scale = log
        self.item.getAxis("left").setLogMode(False, log)
        self.zero_line.setVisible(not log)
        if log:
            self.y_range = None  # fitted to the data in redraw
        elif self.spec.y_range is not None:
            self.vb.setYRange(*self.spec.y_range, padding=0)

    def redraw(self, theme, dragging: bool) -> None:
        m = self.model
        self._apply_axis_mode()
        visible = self.stack.visible
        x = np.arange(len(visible), dtype=float)
        raw = np.asarray(self.spec.values(m), dtype=np.float64)[visible]
        finite = np.isfinite(raw)
        y0 = 0.0
        if self.log_scale:
            with np.errstate(divide="ignore", invalid="ignore"):
                logs = np.log10(raw)
            shown = logs[np.isfinite(logs)]
            bottom = max(math.floor(shown.min()) - 1 if shown.size else -3, LOG_Q_FLOOR)
            if not dragging:
                self.vb.setYRange(bottom, 0.3, padding=0)
                self.y_range = (bottom, 0.3)
            y0 = self.y_range[0] if self.y_range else bottom
            h = np.where(np.isfinite(logs), np.maximum(logs, y0), y0) - y0
        else:
            h = np.where(finite, raw, 0.0)
        tpos = np.flatnonzero(visible == m.target_class)
        is_target = np.zeros(len(visible), bool)
        is_target[tpos] = True
        if self.spec.signed:
            pos = h > 0
            self.main.setOpts(
                x=x[pos & ~is_target], height=h[pos & ~is_target], y0=y0, brush=theme.positive, pen=None
            )
            self.second.setOpts(
                x=x[~pos & ~is_target], height=h[~pos & ~is_target], y0=y0, brush=theme.negative, pen=None
            )
        else:
            self.main.setOpts(x=x[~is_target], height=h[~is_target], y0=y0, brush=theme.bar, pen=None)
            self.second.setOpts(x=[], height=[])
        self.target.setOpts(x=x[is_target], height=h[is_target], y0=y0, brush=theme.target, pen=None)
        spos = np.flatnonzero(visible == m.selected)
        self.outline.setOpts(
            x=x[spos], height=h[spos], y0=y0, brush=None, pen=pg.mkPen(theme.selected, width=2)
        )
        if self.spec.y_range is None and not dragging:
            self._fit_range(raw[finite])
        self._markers(x[~finite], raw[~finite], theme)
        if self.spec.value_texts:
            self._value_texts(x, raw, h + y0, theme)

    def _fit_range(self, h: np.ndarray) -> None:
        """Keep a fixed range; change it only when the bars come near its edges or
        shrink a lot, and then leave HEADROOM above and below them."""
        lo = min(float(h.min()) if h.size else 0.0, 0.0)
        hi = max(float(h.max()) if h.size else 0.0, 0.0)
        span = max(hi - lo, 1e-300)
        cur = self.y_range
        if cur is not None:
            margin = 0.04 * (cur[1] - cur[0])
            if lo >= cur[0] + margin and hi <= cur[1] - margin and span >= 0.4 * (cur[1] - cur[0]):
                return
        pad = max(1.0, HEADROOM * span) if span < 1e6 else HEADROOM * span
        self.y_range = (math.floor(lo - pad), math.ceil(hi + pad))
        self.vb.setYRange(*self.y_range, padding=0)

    def _markers(self, xs, values, theme) -> None:
        while len(self.markers) < len(xs):
            t = pg.TextItem(anchor=(0.5, 1.0))
            self.item.addItem(t)
            self.markers.append(t)
        for i, t in enumerate(self.markers):
            if i < len(xs):
                t.setText(nonfinite_text(values[i]))
                t.setColor(theme.positive)
                t.setPos(xs[i], 0.0 if not self.log_scale else (self.y_range or (0, 0))[0])
                t.show()
            else:
                t.hide()

    def _value_texts(self, x, raw, tops, theme) -> None:
        show = len(x) <= MAX_VALUE_TEXTS
        while len(self.texts) < (len(x) if show else 0):
            t = pg.TextItem(anchor=(0.5, 1.0))
            self.item.addItem(t)
            self.texts.append(t)
        for i, t in enumerate(self.texts):
            if show and i < len(x) and np.isfinite(raw[i]):
                v = raw[i]
                if self.log_scale:
                    t.setText(f"{v:.1e}" if v < 1e-3 else f"{v:.3f}")
                else:
                    t.setText(f"{v:.3f}" if v < 0.9995 else "1.000")
                t.setColor(theme.muted)
                t.setPos(x[i], tops[i] + (0.01 if not self.log_scale else 0.1))
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
        title = self.spec.title + (
            "  <span style='font-size:9pt'>(log scale)</span>" if self.log_scale else ""
        )
        self.item.setTitle(title, color=theme.text, size="10.5pt")


class PlotStack(pg.GraphicsLayoutWidget, Panel):
    """The class plots of :data:`PLOT_SPECS`, stacked and linked along the class axis.

    Keyboard (when the plots have focus): ←/→ select a class, ↑/↓ change its
    logit by 0.1 (Shift: 1), Enter or Space make it the target.
    """

    name = "plots"
    place = "plots"
    listens = frozenset({STRUCTURE, VALUES, SELECTION, OPTIONS})
    drag_started = QtCore.Signal()

    def __init__(self, ctx, parent=None):
        pg.GraphicsLayoutWidget.__init__(self, parent=parent)
        self.attach(ctx)
        self.visible = self.model.visible_classes()
        self._drag_before = None
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(520, 480)
        self._tick_font = QtGui.QFont(self.font())
        self._tick_font.setPointSizeF(9.5)
        self.ci.layout.setSpacing(2)
        self.plots = {}
        for row, spec in enumerate(PLOT_SPECS):
            plot = ClassBarPlot(self, spec)
            self.addItem(plot.item, row=row, col=0)
            self.plots[spec.kind] = plot
        kinds = [s.kind for s in PLOT_SPECS]
        first = self.plots[kinds[0]].item
        for kind in kinds[1:]:
            self.plots[kind].item.setXLink(first)
        # Only the bottom plot names the classes; the others share its columns.
        for kind in kinds[:-1]:
            self.plots[kind].item.getAxis("bottom").setStyle(showValues=False)
        self._bottom = self.plots[kinds[-1]]
        self._click_timer = QtCore.QTimer(self)
        self._click_timer.setSingleShot(True)
        self._click_timer.timeout.connect(self._click_now)
        self._pending_click = None
        self.apply_theme(self.theme)
        self.on_model(STRUCTURE)

    # --- model -> view -------------------------------------------------------------
    def on_model(self, kind) -> None:
        dragging = self._drag_before is not None
        # In top-k mode the order of bars follows q; freeze it while dragging, so
        # the dragged bar does not run away from the pointer.
        if not dragging or kind == STRUCTURE:
            visible = self.model.visible_classes()
            if kind == STRUCTURE or not np.array_equal(visible, self.visible):
                self.visible = visible
                self._set_columns()
        if kind == OPTIONS:
            for plot in self.plots.values():
                plot._apply_axis_mode()
                plot.apply_theme(self.theme, self._tick_font)
        for plot in self.plots.values():
            plot.redraw(self.theme, dragging)

    def _set_columns(self) -> None:
        self.plots[PLOT_SPECS[0].kind].vb.setXRange(-0.6, len(self.visible) - 0.4, padding=0)
        self._set_ticks()

    def _set_ticks(self) -> None:
        """Name the columns, skipping labels when they would overlap at this width."""
        n = len(self.visible)
        labels = [self.model.labels[c] for c in self.visible]
        metrics = QtGui.QFontMetrics(self._tick_font)
        widest = max(metrics.horizontalAdvance(s) for s in labels) + TICK_GAP_PX
        column_px = max(self._bottom.vb.width(), 200) / max(n, 1)
        every = max(1, math.ceil(widest / column_px))
        ticks = [(i, s) for i, s in enumerate(labels) if i % every == 0]
        for plot in self.plots.values():
            plot.item.getAxis("bottom").setTicks([ticks, []])

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        if hasattr(self, "plots"):  # Qt may resize before __init__ has built the plots
            self._set_ticks()  # more or fewer labels fit now

    def apply_theme(self, theme) -> None:
        self.theme = theme
        self.setBackground(theme.base)
        for plot in self.plots.values():
            plot.apply_theme(theme, self._tick_font)
            plot.redraw(theme, False)

    # --- edits ---------------------------------------------------------------------
    def begin_drag(self) -> None:
        self.cancel_click()
        self.drag_started.emit()  # Play pauses: a drag and descent steps do not mix
        self._drag_before = self.model.state

    def end_drag(self, text: str) -> None:
        before, self._drag_before = self._drag_before, None
        commands.push_edit(self.undo_stack, self.model, text, lambda: None, before=before)
        self.on_model(VALUES)  # re-fit ranges and the top-k order now the drag is over

    def click_later(self, cls: int) -> None:
        """Select now; make it the target once no double-click followed."""
        self.model.select(cls)
        self._pending_click = cls
        self._click_timer.start(QtWidgets.QApplication.doubleClickInterval())

    def cancel_click(self) -> None:
        self._click_timer.stop()
        self._pending_click = None

    def click_pending(self) -> bool:
        return self._pending_click is not None

    def _click_now(self) -> None:
        cls, self._pending_click = self._pending_click, None
        if cls is not None:
            self.pick_target(cls)

    def pick_target(self, cls: int) -> None:
        m = self.model
        m.select(cls)
        if m.soft_mode:
            # p is shaped by dragging; a click must not wipe it back to one-hot.
            self.ctx.show_message(
                "Soft targets: drag the p bars to shape p (untick Soft targets to pick one target class)"
            )
            return
        if cls != m.target_class:
            self.push(f"Target “{m.labels[cls]}”", lambda: m.set_target(cls))

    def set_value(self, plot: ClassBarPlot, cls: int, value: float, text: str) -> None:
        self.push(text, lambda: plot.spec.set_value(self.model, cls, value))

    def edit_value_dialog(self, plot: ClassBarPlot, cls: int) -> None:
        label = self.model.labels[cls]
        what = plot.spec.edit_name
        text, ok = QtWidgets.QInputDialog.getText(
            self, "Set a value", f"{what} of “{label}”:", text=repr(plot.current_value(cls))
        )
        if not ok:
            return
        try:
            value = float(text.replace("−", "-"))
        except ValueError:
            self.ctx.show_message(f"“{text}” is not a number: {what} unchanged")
            return
        if not math.isfinite(value):
            self.ctx.show_message(f"{what} must be finite, got {text}")
            return
        if plot.kind != "logits" and not 0.0 <= value <= 1.0:
            self.ctx.show_message(f"a probability is in [0, 1], got {text}")
            return
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
            if math.isfinite(m.logits[cls]):
                self.set_value(
                    self.plots["logits"], cls, m.logits[cls] + delta, f"Nudge logit of “{m.labels[cls]}”"
                )
        elif key in (Key.Key_Return, Key.Key_Enter, Key.Key_Space):
            self.pick_target(m.selected)
        else:
            super().keyPressEvent(ev)
            return
        ev.accept()
