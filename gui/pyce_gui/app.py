"""The main window: the plots on the left; readouts, controls and the tabs on the right.

Panels are built from one list (:data:`PANELS`) with one constructor argument (a
:class:`~pyce_gui.views.panel.Context`) and placed by their ``place``. The whole
content scrolls when the window is smaller than it needs (below about 1100×620),
and the right column scrolls on its own when it is taller than the window.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from . import commands, io, presets
from .model import OPTIONS, ExplorerModel
from .theme import THEMES, apply_to_app
from .views.bars import PlotStack
from .views.batch import BatchPanel
from .views.controls import ControlsPanel
from .views.curve import CurvePanel
from .views.descent import DescentPanel
from .views.distillation import DistillationPanel
from .views.divergence import DivergencePanel
from .views.focal import FocalPanel
from .views.panel import Context
from .views.readouts import ReadoutsPanel
from .views.sentence import SentencePanel
from .views.stability import StabilityPanel

DEFAULT_SIZE = (1400, 900)
MIN_CONTENT = (1100, 620)  # below this the window scrolls instead of squashing widgets
HINT = (
    "Drag a bar to change it · click a bar to make it the target · double-click to type "
    "a value · ←/→ select, ↑/↓ nudge (Shift: ×10), Enter: target · Ctrl+Z / Ctrl+Shift+Z"
)

# The panels on the right, in order: "side" ones stacked in groups, then "tab" ones.
PANELS = (
    ReadoutsPanel,
    ControlsPanel,
    DescentPanel,
    BatchPanel,
    StabilityPanel,
    DivergencePanel,
    DistillationPanel,
    SentencePanel,
    FocalPanel,
    CurvePanel,
)

OPTION_ACTIONS = (("log_q", "Log scale for q"), ("naive_softmax", "Naive softmax beside the stable one"))


class _Column(QtWidgets.QWidget):
    """The right column. In a resizable QScrollArea a layout with word-wrapped labels is
    made as tall as its size hints want (the plots' hints are large); asking for
    its minimum height instead scrolls only when it really does not fit."""

    def heightForWidth(self, width: int) -> int:
        return self.minimumSizeHint().height()


def duplicate_shortcuts(widget: QtWidgets.QWidget) -> dict:
    """Key sequences bound to more than one action of ``widget`` (Qt ignores both)."""
    seen: dict = {}
    for action in widget.findChildren(QtGui.QAction):
        for key in action.shortcuts():
            if not key.isEmpty():
                seen.setdefault(key.toString(), []).append(action.text())
    return {k: v for k, v in seen.items() if len(v) > 1}


def redo_shortcuts() -> list:
    """The platform's redo keys, plus Ctrl+Shift+Z where it is not one of them (Windows).

    On X11 and macOS StandardKey.Redo already is Ctrl+Shift+Z: binding it twice
    makes Qt call the key ambiguous and do nothing.
    """
    keys = list(QtGui.QKeySequence.keyBindings(QtGui.QKeySequence.StandardKey.Redo))
    extra = QtGui.QKeySequence("Ctrl+Shift+Z")
    if all(k != extra for k in keys):
        keys.append(extra)
    return keys


class MainWindow(QtWidgets.QMainWindow):
    def __init__(self, model: ExplorerModel | None = None, theme: str = "dark"):
        super().__init__()
        self.setWindowTitle("pyce explorer — softmax and cross-entropy, live")
        self.model = model if model is not None else ExplorerModel()
        self.undo_stack = commands.make_undo_stack(self)
        self.theme = THEMES[theme]
        apply_to_app(QtWidgets.QApplication.instance(), self.theme)
        ctx = Context(
            self.model,
            self.undo_stack,
            self.theme,
            show_message=lambda text: self.statusBar().showMessage(text, 6000),
            open_batch=lambda: self.open_batch(),
        )

        self.plots = PlotStack(ctx)
        self.panels = [self.plots] + [cls(ctx) for cls in PANELS]
        self.tabs = QtWidgets.QTabWidget()
        self.tabs.setUsesScrollButtons(True)
        self.tabs.setMinimumHeight(225)
        right = _Column()
        column = QtWidgets.QVBoxLayout(right)
        column.setContentsMargins(8, 4, 4, 4)
        for panel in self.panels[1:]:
            setattr(self, panel.name, panel)  # window.readouts, window.controls, …
            if panel.place == "side":
                column.addWidget(self._group(panel.title, panel))
            else:
                index = self.tabs.addTab(panel, panel.title)
                # The module's first docstring line says what the short tab title stands for.
                doc = sys.modules[type(panel).__module__].__doc__ or ""
                self.tabs.setTabToolTip(index, doc.strip().splitlines()[0] if doc.strip() else "")
        column.addWidget(self.tabs, 1)
        self.controls.preset_chosen.connect(self.load_preset)
        self.plots.drag_started.connect(self.descent.pause)

        self.right_scroll = QtWidgets.QScrollArea()
        self.right_scroll.setWidgetResizable(True)
        self.right_scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.right_scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.right_scroll.setWidget(right)
        self.right_scroll.setMinimumWidth(right.minimumSizeHint().width() + 16)

        splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(self.plots)
        splitter.addWidget(self.right_scroll)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([800, 600])
        splitter.setMinimumSize(*MIN_CONTENT)
        self.splitter = splitter
        self.scroll = QtWidgets.QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.scroll.setWidget(splitter)
        self.setCentralWidget(self.scroll)

        # A permanent hint: temporary messages (menu hovers, "Saved …") cover it for a
        # while, and it comes back, where a showMessage() hint would be gone for good.
        self.hint = QtWidgets.QLabel(HINT)
        self.hint.setEnabled(False)
        self.statusBar().addWidget(self.hint, 1)
        self._build_menus()
        self.model.subscribe(self._heard)
        self._heard(OPTIONS)
        self.resize(*DEFAULT_SIZE)
        self.plots.setFocus()

    @staticmethod
    def _group(title: str, widget: QtWidgets.QWidget) -> QtWidgets.QGroupBox:
        box = QtWidgets.QGroupBox(title)
        lay = QtWidgets.QVBoxLayout(box)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(widget)
        return box

    def _heard(self, kind) -> None:
        if kind == OPTIONS:
            for name, action in self.option_actions.items():
                with QtCore.QSignalBlocker(action):
                    action.setChecked(getattr(self.model.state, name))

    def closeEvent(self, ev) -> None:
        for panel in self.panels:
            panel.detach()
        if self.model.is_subscribed(self._heard):
            self.model.unsubscribe(self._heard)
        super().closeEvent(ev)

    # --- menus -----------------------------------------------------------------------
    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "Open logits (.npy)…", self.open_logits, "Ctrl+O")
        self._action(file_menu, "Open batch (logits + targets .npy)…", self.open_batch)
        self._action(file_menu, "Open labels (.txt)…", self.open_labels)
        file_menu.addSeparator()
        self._action(file_menu, "Load state (.json)…", self.load_state, "Ctrl+L")
        self._action(file_menu, "Save state (.json)…", self.save_state, "Ctrl+S")
        file_menu.addSeparator()
        self._action(file_menu, "Export plots (.png)…", self.export_plots_png, "Ctrl+E")
        self._action(file_menu, "Export window (.png)…", self.export_window_png)
        self._action(file_menu, "Export numbers (.csv)…", self.export_csv)
        file_menu.addSeparator()
        self._action(file_menu, "Quit", self.close, "Ctrl+Q")

        edit = bar.addMenu("&Edit")
        undo = self.undo_stack.createUndoAction(self, "Undo")
        undo.setShortcuts(QtGui.QKeySequence.StandardKey.Undo)
        redo = self.undo_stack.createRedoAction(self, "Redo")
        redo.setShortcuts(redo_shortcuts())
        edit.addAction(undo)
        edit.addAction(redo)
        self.undo_action, self.redo_action = undo, redo

        preset_menu = bar.addMenu("&Presets")
        for name in presets.names():
            self._action(preset_menu, presets.title(name), lambda checked=False, n=name: self.load_preset(n))

        view = bar.addMenu("&View")
        self.option_actions = {}
        for name, text in OPTION_ACTIONS:
            act = self._action(
                view,
                text,
                lambda on, n=name, t=text: commands.push_edit(
                    self.undo_stack,
                    self.model,
                    t + (" on" if on else " off"),
                    lambda: self.model.set_option(n, on),
                ),
            )
            act.setCheckable(True)
            self.option_actions[name] = act
        view.addSeparator()
        group = QtGui.QActionGroup(self)
        self.theme_actions = {}
        for name in THEMES:
            act = self._action(view, f"{name.title()} theme", lambda checked=False, n=name: self.set_theme(n))
            act.setCheckable(True)
            act.setChecked(name == self.theme.name)
            group.addAction(act)
            self.theme_actions[name] = act

        help_menu = bar.addMenu("&Help")
        self._action(
            help_menu,
            "How to use",
            lambda: QtWidgets.QMessageBox.information(self, "pyce explorer", HINT.replace(" · ", "\n")),
        )

    def _action(self, menu, text, slot, shortcut=None) -> QtGui.QAction:
        act = QtGui.QAction(text, self)
        if shortcut:
            act.setShortcut(QtGui.QKeySequence(shortcut))
        act.triggered.connect(slot)
        menu.addAction(act)
        return act

    # --- actions ---------------------------------------------------------------------
    def _push(self, text, action) -> bool:
        try:
            return commands.push_edit(self.undo_stack, self.model, text, action)
        except (OSError, ValueError, IndexError, KeyError) as exc:
            self._report(exc)
            return False

    def load_preset(self, name: str) -> None:
        state = presets.get(name)
        self._push(f"Preset: {presets.title(name)}", lambda: self.model.set_state(state))

    def set_theme(self, name: str) -> None:
        self.theme = THEMES[name]
        apply_to_app(QtWidgets.QApplication.instance(), self.theme)
        for panel in self.panels:
            panel.apply_theme(self.theme)
        self.theme_actions[name].setChecked(True)

    def _ask_open(self, title, filt):
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, title, "", filt)
        return path or None

    def _ask_save(self, title, filt, suffix):
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, title, "", filt)
        if path and not Path(path).suffix:
            path += suffix
        return path or None

    def _report(self, exc: Exception) -> None:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        QtWidgets.QMessageBox.warning(self, "pyce explorer", str(text))

    def open_logits(self, path=None) -> bool:
        """One row of logits (V,) shows in the plots; an (N, V) array asks for targets."""
        path = path or self._ask_open("Open logits", "NumPy arrays (*.npy)")
        if not path:
            return False
        try:
            arr = io.load_logits(path)
        except (OSError, ValueError) as exc:
            self._report(exc)
            return False
        if arr.ndim == 2:
            return self.open_batch(path)
        return self._push(f"Open {Path(path).name}", lambda: self.model.load_logits(arr))

    def open_batch(self, logits_path=None, targets_path=None) -> bool:
        logits_path = logits_path or self._ask_open("Open a batch of logits (N×V)", "NumPy arrays (*.npy)")
        if not logits_path:
            return False
        targets_path = targets_path or self._ask_open("Open its targets (N integers)", "NumPy arrays (*.npy)")
        if not targets_path:
            return False
        try:
            logits = io.load_logits(logits_path)
            targets = io.load_targets(targets_path)
        except (OSError, ValueError) as exc:
            self._report(exc)
            return False
        if logits.ndim == 1:
            logits = logits[None, :]
        if not self._push(
            f"Open batch {Path(logits_path).name}", lambda: self.model.load_batch(logits, targets)
        ):
            return False
        self.tabs.setCurrentWidget(self.batch)
        st = self.model.batch_stats
        if st is not None and st.nonfinite_rows.size:
            self.statusBar().showMessage(
                f"Loaded; {st.nonfinite_rows.size} rows hold nan or inf (listed in the Batch "
                "tab): their loss is nan",
                10000,
            )
        return True

    def open_labels(self, path=None) -> bool:
        path = path or self._ask_open("Open class labels, one per line", "Text (*.txt)")
        if not path:
            return False
        try:
            labels = io.load_labels(path)
        except OSError as exc:
            self._report(exc)
            return False
        return self._push("Load labels", lambda: self.model.set_labels(labels))

    def load_state(self, path=None) -> bool:
        path = path or self._ask_open("Load state", "pyce-gui state (*.json)")
        if not path:
            return False
        try:
            state = io.read_state(path)
        except (OSError, ValueError) as exc:
            self._report(exc)
            return False
        return self._push("Load state", lambda: self.model.set_state(state))

    def save_state(self, path=None) -> bool:
        path = path or self._ask_save("Save state", "pyce-gui state (*.json)", ".json")
        if not path:
            return False
        io.save_state(self.model, path)
        self.statusBar().showMessage(f"Saved {path}", 4000)
        return True

    def export_csv(self, path=None) -> bool:
        path = path or self._ask_save("Export numbers", "CSV (*.csv)", ".csv")
        if not path:
            return False
        io.save_csv(self.model, path)
        self.statusBar().showMessage(f"Wrote {path}", 4000)
        return True

    def plots_widgets(self) -> list:
        """What "Export plots" renders: the class plots, and the tab on show beside them."""
        return [self.plots, self.tabs.currentWidget()]

    def export_plots_png(self, path=None) -> bool:
        path = path or self._ask_save("Export plots", "PNG image (*.png)", ".png")
        if not path:
            return False
        io.save_png(self.plots_widgets(), path, io.caption(self.model))
        self.statusBar().showMessage(f"Wrote {path}", 4000)
        return True

    def export_window_png(self, path=None) -> bool:
        path = path or self._ask_save("Export window", "PNG image (*.png)", ".png")
        if not path:
            return False
        io.save_png(self, path, io.caption(self.model))
        return True


def create_app(argv=None) -> QtWidgets.QApplication:
    """The QApplication, created once, with the explorer's default font and antialiasing."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication(list(argv or sys.argv[:1]))
        app.setApplicationName("pyce explorer")
        font = app.font()
        font.setPointSizeF(10.0)
        app.setFont(font)
    pg.setConfigOptions(antialias=True)
    return app


def render_screenshot(window: QtWidgets.QMainWindow, path) -> None:
    """Lay the window out (offscreen is fine), let it paint, and save it as PNG."""
    window.show()
    app = QtWidgets.QApplication.instance()
    # A few rounds of events: layouts settle, pyqtgraph re-ranges its axes, then paints.
    for _ in range(5):
        app.processEvents()
        QtCore.QThread.msleep(20)
    io.save_png(window, path)
