"""The main window: the plots on the left; readouts, controls, descent and batch on the right."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets
import pyqtgraph as pg

from . import commands, io, presets
from .model import ExplorerModel
from .theme import THEMES, apply_to_app
from .views.bars import PlotStack
from .views.batch import BatchPanel
from .views.controls import ControlsPanel
from .views.descent import DescentPanel
from .views.readouts import ReadoutsPanel

DEFAULT_SIZE = (1400, 900)
HINT = ("Drag a bar to change it · click a bar to make it the target · double-click to type "
        "a value · ←/→ select, ↑/↓ nudge (Shift: ×10), Enter: target · Ctrl+Z / Ctrl+Shift+Z")


class MainWindow(QtWidgets.QMainWindow):
    def __init__(self, model: ExplorerModel | None = None, theme: str = "dark"):
        super().__init__()
        self.setWindowTitle("pyce explorer — softmax and cross-entropy, live")
        self.model = model if model is not None else ExplorerModel()
        self.undo_stack = QtGui.QUndoStack(self)
        self.theme = THEMES[theme]
        app = QtWidgets.QApplication.instance()
        apply_to_app(app, self.theme)

        self.plots = PlotStack(self.model, self.undo_stack, self.theme)
        self.readouts = ReadoutsPanel(self.model, self.theme)
        self.controls = ControlsPanel(self.model, self.undo_stack)
        self.controls.preset_chosen.connect(self.load_preset)
        self.descent = DescentPanel(self.model, self.undo_stack, self.theme)
        self.batch = BatchPanel(self.model, self.undo_stack, self.theme)
        self.batch.load_requested.connect(lambda: self.open_batch())

        right = QtWidgets.QWidget()
        column = QtWidgets.QVBoxLayout(right)
        column.setContentsMargins(8, 4, 4, 4)
        column.addWidget(self._group("Readouts", self.readouts))
        column.addWidget(self._group("Controls", self.controls))
        self.tabs = QtWidgets.QTabWidget()
        self.tabs.addTab(self.descent, "Gradient descent")
        self.tabs.addTab(self.batch, "Batch")
        column.addWidget(self.tabs, 1)

        splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        splitter.addWidget(self.plots)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([800, 600])
        self.setCentralWidget(splitter)
        self.statusBar().showMessage(HINT)
        self._build_menus()
        self.resize(*DEFAULT_SIZE)
        self.plots.setFocus()

    @staticmethod
    def _group(title: str, widget: QtWidgets.QWidget) -> QtWidgets.QGroupBox:
        box = QtWidgets.QGroupBox(title)
        lay = QtWidgets.QVBoxLayout(box)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(widget)
        return box

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
        undo.setShortcut(QtGui.QKeySequence.StandardKey.Undo)
        redo = self.undo_stack.createRedoAction(self, "Redo")
        # Ctrl+Shift+Z everywhere, and the platform's own redo key (Ctrl+Y on Windows).
        redo.setShortcuts([QtGui.QKeySequence("Ctrl+Shift+Z"),
                           QtGui.QKeySequence(QtGui.QKeySequence.StandardKey.Redo)])
        edit.addAction(undo)
        edit.addAction(redo)

        preset_menu = bar.addMenu("&Presets")
        for name in presets.names():
            self._action(preset_menu, presets.title(name),
                         lambda checked=False, n=name: self.load_preset(n))

        view = bar.addMenu("&View")
        group = QtGui.QActionGroup(self)
        self.theme_actions = {}
        for name in THEMES:
            act = self._action(view, f"{name.title()} theme",
                               lambda checked=False, n=name: self.set_theme(n))
            act.setCheckable(True)
            act.setChecked(name == self.theme.name)
            group.addAction(act)
            self.theme_actions[name] = act

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "How to use", lambda: QtWidgets.QMessageBox.information(
            self, "pyce explorer", HINT.replace(" · ", "\n")))

    def _action(self, menu, text, slot, shortcut=None) -> QtGui.QAction:
        act = QtGui.QAction(text, self)
        if shortcut:
            act.setShortcut(QtGui.QKeySequence(shortcut))
        act.triggered.connect(slot)
        menu.addAction(act)
        return act

    # --- actions ---------------------------------------------------------------------
    def load_preset(self, name: str) -> None:
        state = presets.get(name)
        commands.push_edit(self.undo_stack, self.model, f"Preset: {presets.title(name)}",
                           lambda: self.model.set_state(state))

    def set_theme(self, name: str) -> None:
        self.theme = THEMES[name]
        apply_to_app(QtWidgets.QApplication.instance(), self.theme)
        for view in (self.plots, self.readouts, self.descent, self.batch):
            view.apply_theme(self.theme)
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
        QtWidgets.QMessageBox.warning(self, "pyce explorer", str(exc))

    def open_logits(self, path=None) -> bool:
        """One row of logits (V,) shows in the plots; an (N, V) array asks for targets."""
        path = path or self._ask_open("Open logits", "NumPy arrays (*.npy)")
        if not path:
            return False
        try:
            arr = io.load_logits(path)
            if arr.ndim == 2:
                return self.open_batch(path)
            self.model.clear_batch()
            self.model.load_logits(arr)
        except (OSError, ValueError, IndexError) as exc:
            self._report(exc)
            return False
        self.undo_stack.clear()   # the old vocabulary's edits do not apply to this one
        return True

    def open_batch(self, logits_path=None, targets_path=None) -> bool:
        logits_path = logits_path or self._ask_open("Open a batch of logits (N×V)",
                                                    "NumPy arrays (*.npy)")
        if not logits_path:
            return False
        targets_path = targets_path or self._ask_open("Open its targets (N integers)",
                                                      "NumPy arrays (*.npy)")
        if not targets_path:
            return False
        try:
            logits = io.load_logits(logits_path)
            if logits.ndim == 1:
                logits = logits[None, :]
            self.model.load_batch(logits, io.load_targets(targets_path))
        except (OSError, ValueError, IndexError) as exc:
            self._report(exc)
            return False
        self.undo_stack.clear()
        self.tabs.setCurrentWidget(self.batch)
        return True

    def open_labels(self, path=None) -> bool:
        path = path or self._ask_open("Open class labels, one per line", "Text (*.txt)")
        if not path:
            return False
        try:
            labels = io.load_labels(path)
            commands.push_edit(self.undo_stack, self.model, "Load labels",
                               lambda: self.model.set_labels(labels))
        except (OSError, ValueError) as exc:
            self._report(exc)
            return False
        return True

    def load_state(self, path=None) -> bool:
        path = path or self._ask_open("Load state", "pyce-gui state (*.json)")
        if not path:
            return False
        try:
            state = io.read_state(path)
            commands.push_edit(self.undo_stack, self.model, "Load state",
                               lambda: self.model.set_state(state))
        except (OSError, ValueError, KeyError) as exc:
            self._report(exc)
            return False
        return True

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

    def export_plots_png(self, path=None) -> bool:
        path = path or self._ask_save("Export plots", "PNG image (*.png)", ".png")
        if not path:
            return False
        io.save_png(self.plots, path)
        self.statusBar().showMessage(f"Wrote {path}", 4000)
        return True

    def export_window_png(self, path=None) -> bool:
        path = path or self._ask_save("Export window", "PNG image (*.png)", ".png")
        if not path:
            return False
        io.save_png(self, path)
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
