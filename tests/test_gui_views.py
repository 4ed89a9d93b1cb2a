"""The explorer's window, driven like a user would, offscreen with pytest-qt."""

import math

import numpy as np
import pytest

pytest.importorskip("PySide6")  # import PySide6 before pyqtgraph: it picks the binding
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from PySide6 import QtCore, QtGui, QtTest, QtWidgets  # noqa: E402

from pyce_gui import presets  # noqa: E402
from pyce_gui.__main__ import main as cli_main  # noqa: E402
from pyce_gui.app import MainWindow, create_app  # noqa: E402
from pyce_gui.model import T_MAX, TOP_K, ExplorerModel  # noqa: E402

LEFT = QtCore.Qt.MouseButton.LeftButton
NO_BUTTON = QtCore.Qt.MouseButton.NoButton


@pytest.fixture
def window(qtbot):
    create_app()
    model = ExplorerModel()
    model.set_state(presets.get("the-cat-sat"))
    win = MainWindow(model)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    QtWidgets.QApplication.processEvents()
    return win


def widget_point(win, kind, column, value):
    """Where (class column, value) of plot ``kind`` is, in the plot widget's pixels."""
    vb = win.plots.plots[kind].vb
    scene = vb.mapViewToScene(QtCore.QPointF(column, value))
    return win.plots.mapFromScene(scene)


def send_mouse(win, kind, point, button, buttons):
    viewport = win.plots.viewport()
    ev = QtGui.QMouseEvent(
        kind,
        QtCore.QPointF(point),
        QtCore.QPointF(viewport.mapToGlobal(point)),
        button,
        buttons,
        QtCore.Qt.KeyboardModifier.NoModifier,
    )
    QtWidgets.QApplication.sendEvent(viewport, ev)


def drag(win, kind, column, y_from, y_to, steps=6):
    """A real press-move-release drag through Qt's event system (and pyqtgraph's scene)."""
    start = widget_point(win, kind, column, y_from)
    end = widget_point(win, kind, column, y_to)
    send_mouse(win, QtCore.QEvent.Type.MouseButtonPress, start, LEFT, LEFT)
    for k in range(1, steps + 1):
        # pyqtgraph drops mouse moves closer than 1/mouseRateLimit (10 ms) to the last.
        QtTest.QTest.qWait(12)
        y = round(start.y() + (end.y() - start.y()) * k / steps)
        send_mouse(win, QtCore.QEvent.Type.MouseMove, QtCore.QPoint(start.x(), y), NO_BUTTON, LEFT)
    send_mouse(win, QtCore.QEvent.Type.MouseButtonRelease, end, LEFT, NO_BUTTON)


def click(win, kind, column, value, wait=True):
    """A single click; it acts once the double-click interval has passed without a second."""
    pt = widget_point(win, kind, column, value)
    send_mouse(win, QtCore.QEvent.Type.MouseButtonPress, pt, LEFT, LEFT)
    send_mouse(win, QtCore.QEvent.Type.MouseButtonRelease, pt, LEFT, NO_BUTTON)
    if wait:
        deadline = QtCore.QDeadlineTimer(3000)
        while win.plots.click_pending() and not deadline.hasExpired():
            QtTest.QTest.qWait(20)
        assert not win.plots.click_pending()


def data_per_pixel(win, kind):
    vb = win.plots.plots[kind].vb
    lo, hi = vb.viewRange()[1]
    return (hi - lo) / vb.height()


def type_number(qtbot, field, text):
    """Type into a number field as a person does: select all, type, press Enter."""
    field.setFocus()
    field.selectAll()
    qtbot.keyClicks(field, text)
    qtbot.keyClick(field, QtCore.Qt.Key.Key_Return)


def pixel_std(image: QtGui.QImage) -> float:
    image = image.convertToFormat(QtGui.QImage.Format.Format_RGB32)
    ptr = image.constBits()
    arr = np.frombuffer(ptr, np.uint8, count=image.sizeInBytes()).reshape(
        image.height(), image.bytesPerLine()
    )
    return float(arr[:, : image.width() * 4].std())


def test_drag_a_logit_changes_the_loss_and_undo_restores_it(window):
    m = window.model
    before_logits, before_loss = m.logits.copy(), m.loss
    before_text = window.readouts.text()
    drag(window, "logits", 1, m.logits[1] / 2, 4.0)  # drag "floor" up to 4
    tol = 2 * data_per_pixel(window, "logits")
    assert m.logits[1] == pytest.approx(4.0, abs=tol)
    assert m.loss > before_loss  # "floor" now beats the target "mat"
    assert f"{m.loss:.4f}" in window.readouts.text() and window.readouts.text() != before_text
    np.testing.assert_array_equal(np.delete(m.logits, 1), np.delete(before_logits, 1))
    # one drag = one undo step
    assert window.undo_stack.count() == 1
    window.undo_stack.undo()
    np.testing.assert_array_equal(m.logits, before_logits)
    assert m.loss == before_loss and window.readouts.text() == before_text
    window.undo_stack.redo()
    assert m.logits[1] == pytest.approx(4.0, abs=tol)


def test_drag_a_probability_keeps_the_others_ratios(window):
    m = window.model
    q_before = m.q.copy()
    drag(window, "q", 2, q_before[2] / 2, 0.6)
    assert m.q[2] == pytest.approx(0.6, abs=2 * data_per_pixel(window, "q"))
    others = np.arange(m.n_classes) != 2
    np.testing.assert_allclose(
        m.q[others] / m.q[others].sum(), q_before[others] / q_before[others].sum(), rtol=1e-9
    )
    assert window.undo_stack.count() == 1


def test_click_makes_the_target_and_drag_on_p_shapes_a_soft_target(window):
    m = window.model
    click(window, "p", 3, 0.5)
    assert m.target == 3 and m.selected == 3
    assert window.controls.target.currentData() == 3
    window.undo_stack.undo()
    assert m.target == 0
    # one-hot p cannot be dragged; soft targets can
    drag(window, "p", 1, 0.02, 0.5)
    assert m.p[1] == 0.0
    window.controls.soft.setChecked(True)
    assert m.soft_mode
    drag(window, "p", 1, 0.02, 0.4)
    assert m.p[1] == pytest.approx(0.4, abs=2 * data_per_pixel(window, "p"))
    assert m.p.sum() == pytest.approx(1.0)


def test_double_click_types_an_exact_value(window, monkeypatch):
    asked = []

    def fake_get_text(parent, title, label, text=""):
        asked.append((label, float(text)))
        return "1.25", True

    monkeypatch.setattr(QtWidgets.QInputDialog, "getText", fake_get_text)
    m = window.model
    pt = widget_point(window, "logits", 2, m.logits[2] / 2)
    E = QtCore.QEvent.Type
    send_mouse(window, E.MouseButtonPress, pt, LEFT, LEFT)
    send_mouse(window, E.MouseButtonRelease, pt, LEFT, NO_BUTTON)
    send_mouse(window, E.MouseButtonDblClick, pt, LEFT, LEFT)
    send_mouse(window, E.MouseButtonRelease, pt, LEFT, NO_BUTTON)
    assert asked == [("logit z of “sofa”:", pytest.approx(2.1))]
    assert m.logits[2] == 1.25
    window.undo_stack.undo()
    assert m.logits[2] == pytest.approx(2.1)


def test_keyboard_selects_nudges_and_sets_the_target(window, qtbot):
    m = window.model
    window.plots.setFocus()
    qtbot.keyClick(window.plots, QtCore.Qt.Key.Key_Right)
    assert m.selected == 1
    z1 = m.logits[1]
    qtbot.keyClick(window.plots, QtCore.Qt.Key.Key_Up)
    assert m.logits[1] == pytest.approx(z1 + 0.1)
    qtbot.keyClick(window.plots, QtCore.Qt.Key.Key_Down, QtCore.Qt.KeyboardModifier.ShiftModifier)
    assert m.logits[1] == pytest.approx(z1 - 0.9)
    qtbot.keyClick(window.plots, QtCore.Qt.Key.Key_Return)
    assert m.target == 1
    assert window.controls.logit.value() == pytest.approx(m.logits[1], abs=1e-3)
    # Ctrl+Z through the window's shortcut undoes the target change
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Z, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert m.target == 0


def test_presets_load_and_show_the_worked_examples(window):
    window.load_preset("worked-1")
    assert window.model.labels == ["class 0", "class 1", "class 2"]
    assert "0.4076" in window.readouts.text()
    assert len(window.plots.visible) == 3
    window.load_preset("worked-2")
    assert f"{math.log(5 / 3):.4f}" in window.readouts.text()  # 0.5108
    window.undo_stack.undo()
    assert "0.4076" in window.readouts.text()
    # the preset combo box does the same
    combo = window.controls.preset
    combo.setCurrentIndex(combo.findData("uniform"))
    combo.activated.emit(combo.currentIndex())
    assert window.model.loss == pytest.approx(math.log(5))


def test_large_vocabulary_shows_top_k(window):
    window.load_preset("large-vocab")
    assert len(window.plots.visible) == TOP_K
    bars = window.plots.plots["q"]
    shown = len(bars.main.opts["x"]) + len(bars.target.opts["x"])
    assert shown == TOP_K
    assert not window.controls.classes.isEnabled()


def test_controls_temperature_smoothing_and_classes(window, qtbot):
    m = window.model
    type_number(qtbot, window.controls.t_spin, "0.5")
    assert m.temperature == pytest.approx(0.5)
    assert "sharpens" in window.controls.t_hint.text()
    window.controls.t_slider.setValue(1000)
    assert m.temperature == pytest.approx(T_MAX)
    assert window.undo_stack.count() == 1  # one merged temperature step
    type_number(qtbot, window.controls.smoothing, "0.1")
    assert m.label_smoothing == pytest.approx(0.1)
    assert m.p.min() == pytest.approx(0.01)
    type_number(qtbot, window.controls.classes, "12")
    assert m.n_classes == 12 and len(window.plots.visible) == 12
    window.undo_stack.undo()
    assert m.n_classes == 10


def test_gradient_descent_step_and_curve(window, qtbot):
    m = window.model
    loss0 = m.loss
    for _ in range(3):
        qtbot.mouseClick(window.descent.step_button, LEFT)
    assert len(m.trajectory) == 4 and m.loss < loss0
    xs, ys = window.descent.curve.getData()
    np.testing.assert_allclose(ys, m.trajectory)
    assert window.undo_stack.count() == 1  # a run of steps is one undo step
    window.descent.play_button.setChecked(True)
    qtbot.waitUntil(lambda: len(m.trajectory) >= 6, timeout=3000)
    window.descent.play_button.setChecked(False)
    qtbot.mouseClick(window.descent.reset_button, LEFT)
    assert m.trajectory == [] and m.loss == pytest.approx(loss0)


def test_batch_from_npy(window, tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(32, 50)).astype(np.float32)
    targets = rng.integers(0, 50, size=32)
    np.save(tmp_path / "b.npy", logits)
    np.save(tmp_path / "t.npy", targets)
    assert window.open_batch(str(tmp_path / "b.npy"), str(tmp_path / "t.npy"))
    b = window.model.batch_stats
    text = window.batch.stats.text()
    assert f"{b.mean_loss:.4f}" in text and "accuracy" in text and " ms" in text
    heights = window.batch.hist.opts["height"]
    assert sum(heights) == 32
    window.batch.row.setValue(7)
    np.testing.assert_allclose(window.model.logits, logits[7])


def test_exports_and_state(window, tmp_path):
    window.model.set_temperature(2.0)
    assert window.save_state(str(tmp_path / "s.json"))
    window.load_preset("uniform")
    assert window.load_state(str(tmp_path / "s.json"))
    assert window.model.temperature == 2.0 and window.model.labels[0] == "mat"
    assert window.export_csv(str(tmp_path / "n.csv"))
    assert "mat" in (tmp_path / "n.csv").read_text()
    assert window.export_plots_png(str(tmp_path / "plots.png"))
    image = QtGui.QImage(str(tmp_path / "plots.png"))
    assert image.width() > 300 and pixel_std(image) > 10
    # The plots and the tab on show, side by side, with a caption strip under them.
    plots, tab = window.plots, window.tabs.currentWidget()
    assert image.width() == plots.width() + tab.width()
    assert image.height() > max(plots.height(), tab.height())


def test_themes(window):
    window.set_theme("light")
    assert window.plots.backgroundBrush().color().name() == "#ffffff"
    window.set_theme("dark")
    assert window.plots.backgroundBrush().color().lightness() < 50


def test_screenshot_command_writes_a_picture_that_is_not_blank(qtbot, tmp_path):
    path = tmp_path / "shot.png"
    assert cli_main(["--screenshot", str(path), "--preset", "worked-1", "--theme", "light"]) == 0
    image = QtGui.QImage(str(path))
    assert (image.width(), image.height()) == (1400, 900)  # the default size
    assert pixel_std(image) > 20
    for w in QtWidgets.QApplication.topLevelWidgets():  # the CLI's window
        w.close()


def test_panels_let_go_of_the_model_when_the_window_closes(qtbot):
    create_app()
    model = ExplorerModel()
    win = MainWindow(model)
    qtbot.addWidget(win)
    assert len(model._listeners) == len(win.panels) + 1  # every panel, and the window
    win.close()
    assert model._listeners == []
    model.set_logit(0, 1.0)  # nobody left to call: no error
