"""Regression tests for the defects of issue 16 (pyce-gui as a new user meets it).

Each test is named after its defect number and reproduces what the issue
describes, driven through the window (pytest-qt, offscreen) or the model.
"""

import math
import re
import time
import tracemalloc

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from PySide6 import QtCore, QtGui, QtTest, QtWidgets  # noqa: E402

from pyce import reference  # noqa: E402
from pyce_gui import commands, derive, io, presets  # noqa: E402
from pyce_gui.app import MainWindow, create_app, duplicate_shortcuts  # noqa: E402
from pyce_gui.model import ExplorerModel  # noqa: E402

LEFT = QtCore.Qt.MouseButton.LeftButton
NO_BUTTON = QtCore.Qt.MouseButton.NoButton
E = QtCore.QEvent.Type


def make_window(qtbot, preset="the-cat-sat", size=(1400, 900)):
    create_app()
    model = ExplorerModel()
    model.set_state(presets.get(preset))
    win = MainWindow(model)
    qtbot.addWidget(win)
    win.resize(*size)
    win.show()
    qtbot.waitExposed(win)
    QtWidgets.QApplication.processEvents()
    return win


@pytest.fixture
def window(qtbot):
    return make_window(qtbot)


def widget_point(win, kind, column, value):
    vb = win.plots.plots[kind].vb
    return win.plots.mapFromScene(vb.mapViewToScene(QtCore.QPointF(column, value)))


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


def wait_for_click(win):
    deadline = QtCore.QDeadlineTimer(3000)
    while win.plots.click_pending() and not deadline.hasExpired():
        QtTest.QTest.qWait(20)


def type_into(qtbot, field, text):
    field.setFocus()
    field.selectAll()
    qtbot.keyClicks(field, text)
    qtbot.keyClick(field, QtCore.Qt.Key.Key_Return)


def save_batch(tmp_path, logits, targets):
    np.save(tmp_path / "b.npy", logits)
    np.save(tmp_path / "t.npy", np.asarray(targets))
    return str(tmp_path / "b.npy"), str(tmp_path / "t.npy")


# 1 --------------------------------------------------------------------------------
def test_1_no_shortcut_is_bound_twice(window):
    # (Under X11 with real keys: tests/test_gui_xcb.py.)
    assert duplicate_shortcuts(window) == {}
    keys = [k.toString() for k in window.redo_action.shortcuts()]
    assert keys.count("Ctrl+Shift+Z") == 1


# 2 --------------------------------------------------------------------------------
def _least_cpu_time(call, repeats):
    """The least CPU time of `repeats` calls of `call`."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        call()
        times.append(time.process_time() - t0)
    return min(times)


def _panel_update_time(model):
    """The least CPU time of every panel's update for a change of the values
    (what the window does after deriving, without the derive or an undo step)."""
    from pyce_gui.state import Change

    return _least_cpu_time(lambda: model._notify(Change.VALUES), 5)


def _derive_time(model):
    """The least CPU time of deriving everything the model shows from its state
    (softmax, losses, entropies, KL both ways: pyce_gui.derive), the floor of
    any edit, measured beside the edits so that their bound holds on a slower
    CPU as on a faster one. A fixed 10 ms failed on a Zen 3 without AVX-512,
    where deriving alone takes 8 ms; the defect (undo snapshots as Python
    lists) made a nudge 107 ms against about 6 ms to derive."""
    return _least_cpu_time(lambda: derive.derive(model.state), 10)


def test_2_undo_stores_deltas_is_capped_and_a_nudge_is_fast_at_128k(qtbot):
    create_app()
    n = 128_256
    model = ExplorerModel()
    rng = np.random.default_rng(0)
    model.load_logits(rng.normal(size=n), target=5)
    stack = commands.make_undo_stack(None)
    assert stack.undoLimit() == commands.UNDO_LIMIT
    tracemalloc.start()
    times = []
    for i in range(220):
        if i == 20:  # from here on the model's own arrays are replaced, not added
            base, _ = tracemalloc.get_traced_memory()
        # CPU time: the figure is this process's work, not the other jobs on a busy machine.
        t0 = time.process_time()
        commands.push_edit(stack, model, "nudge", lambda i=i: model.set_logit(i % 7, 1.0 + i))
        times.append(time.process_time() - t0)
    grown, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # 200 edits of one logit each: a few bytes per step, not 5 MB per step.
    assert grown - base < 1_000_000
    assert sum(c.delta.nbytes for c in (stack.command(i) for i in range(stack.count()))) < 20_000
    # The fastest nudge: a slow path makes every nudge slow, while a busy machine
    # slows only some (the median once failed with a CI run beside the suite).
    # It derives the new state once, plus the undo step's few elements.
    floor = _derive_time(model)
    fastest = np.min(times)
    assert fastest < 2 * floor, f"fastest nudge {fastest * 1e3:.1f} ms, deriving {floor * 1e3:.1f} ms"
    # Undo restores exactly; the stack is bounded.
    want = model.logits.copy()
    stack.undo()
    stack.redo()
    np.testing.assert_array_equal(model.logits, want)
    for i in range(commands.UNDO_LIMIT + 50):
        commands.push_edit(stack, model, "nudge", lambda i=i: model.set_logit(0, float(i)))
    assert stack.count() == commands.UNDO_LIMIT


def test_2_a_keyboard_nudge_in_the_window_is_fast_at_128k(qtbot):
    win = make_window(qtbot)
    rng = np.random.default_rng(1)
    win.model.load_logits(rng.normal(size=128_256), target=3)
    win.plots.setFocus()
    times = []
    for _ in range(15):
        t0 = time.process_time()
        qtbot.keyClick(win.plots, QtCore.Qt.Key.Key_Up)
        times.append(time.process_time() - t0)
    assert win.undo_stack.count() == 15
    # The model, the undo step and every panel's update (painting comes later):
    # at most twice deriving plus the panels' own update, each measured here.
    # (Against 4 x deriving alone it failed on an AVX-512 machine, before and
    # after stop 30's kernel work alike: there deriving took 2.3-3.2 ms and the
    # panels' pyqtgraph updates about 15 ms, the same on a slower CPU's kernels.)
    # The fastest of 15 (see the test above: the median failed on a busy machine).
    floor = _derive_time(win.model) + _panel_update_time(win.model)
    assert np.min(times) < 2 * floor, (
        f"fastest {np.min(times) * 1e3:.1f} ms, deriving and updating the panels {floor * 1e3:.1f} ms"
    )


def test_2_push_does_not_recompute_twice(window, monkeypatch):
    import pyce_gui.model as model_module

    calls = []
    real = model_module.derive
    monkeypatch.setattr(model_module, "derive", lambda s: calls.append(1) or real(s))
    window.plots.set_value(window.plots.plots["logits"], 1, 2.0, "set")
    assert len(calls) == 1


# 3 --------------------------------------------------------------------------------
def test_3_a_batch_with_nan_and_inf_rows_loads_and_says_which(window, tmp_path):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(12, 20)).astype(np.float32)
    logits[3, 5] = np.nan
    logits[7, 0] = np.inf
    targets = rng.integers(0, 20, size=12)
    assert window.open_batch(*save_batch(tmp_path, logits, targets))
    st = window.model.batch_stats
    assert st.nonfinite_rows.tolist() == [3, 7]
    good = np.setdiff1d(np.arange(12), [3, 7])
    expected = reference.cross_entropy(logits[good], targets[good], reduction="none")
    assert st.finite_mean_loss == pytest.approx(expected.mean(), rel=1e-5)
    assert math.isfinite(st.perplexity)  # not exp(nan) = "inf"
    text = window.batch.stats.text()
    assert "3, 7" in text and "nan" in text
    assert sum(window.batch.hist.opts["height"]) == 10  # the finite rows
    window.grab()  # repaints without pyqtgraph raising
    # Choosing the nan row shows it, honestly, with no traceback.
    window.batch.row.setValue(3)
    assert window.model.batch_row == 3 and np.isnan(window.model.logits[5])
    assert "not finite" in window.readouts.text()
    assert "nan" in window.plots.plots["q"].markers[0].toPlainText()
    window.grab()
    assert not window.descent.step_button.isEnabled()
    # Every tab shows the nan row without raising (pytest-qt fails on exceptions in Qt code).
    window.model.set_option("naive_softmax", True)
    for i in range(window.tabs.count()):
        window.tabs.setCurrentIndex(i)
        window.grab()
    # The inf row too; and T changes recompute the same batch, still loaded.
    window.batch.row.setValue(7)
    window.model.set_temperature(2.0)
    assert window.model.batch_stats.nonfinite_rows.tolist() == [3, 7]
    window.grab()


# 4 --------------------------------------------------------------------------------
def test_4_a_batch_does_not_outlive_a_preset_or_a_state(window, tmp_path):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(6, 10)).astype(np.float32)  # 10 classes, as the preset
    paths = save_batch(tmp_path, logits, rng.integers(0, 10, size=6))
    assert window.open_batch(*paths)
    # A loaded batch has its own labels, not the preset's ("mat", "floor", …).
    assert window.model.labels == [str(i) for i in range(10)]
    window.load_preset("worked-1")
    assert window.model.batch is None and window.model.batch_stats is None
    assert "Load an N×V" in window.batch.stats.text()
    window.export_csv(str(tmp_path / "n.csv"))
    assert "batch_rows" not in (tmp_path / "n.csv").read_text()
    window.model.set_temperature(2.0)  # nothing to recompute
    assert window.model.batch_stats is None
    # Undo brings the batch back with the state it belonged to.
    window.undo_stack.undo()
    assert window.model.batch is not None and window.model.labels[0] == "0"
    window.save_state(str(tmp_path / "s.json"))
    assert window.load_state(str(tmp_path / "s.json"))
    assert window.model.batch is None


# 5 --------------------------------------------------------------------------------
def test_5_typed_values_are_taken_as_typed_or_refused_with_a_reason(window, qtbot):
    c, m = window.controls, window.model
    type_into(qtbot, c.logit, "1e30")
    assert m.logits[0] == 1e30 and c.logit.text() == "1e+30"
    type_into(qtbot, c.logit, "99999")
    assert m.logits[0] == 99999.0
    type_into(qtbot, c.t_spin, "100")
    assert m.temperature == 100.0
    type_into(qtbot, c.t_spin, "0.01")
    assert m.temperature == 0.01
    type_into(qtbot, c.t_spin, "1000")
    assert m.temperature == 0.01 and c.problem.isVisible()
    assert "[0.01, 100]" in c.problem.text()
    type_into(qtbot, c.classes, "65")  # refused whole, no class deleted on the way
    assert m.n_classes == 10 and "[2, 64]" in c.problem.text()
    type_into(qtbot, c.classes, "12")
    assert m.n_classes == 12 and not c.problem.isVisible()
    type_into(qtbot, c.smoothing, "0.125")
    assert m.label_smoothing == 0.125
    type_into(qtbot, c.logit, "abc")
    assert "not a number" in c.problem.text()


def test_5_a_one_class_file_shows_one_class(window, tmp_path):
    np.save(tmp_path / "one.npy", np.array([2.5]))
    assert window.open_logits(str(tmp_path / "one.npy"))
    assert window.controls.classes.text() == "1"
    assert window.model.loss == 0.0


# 6 --------------------------------------------------------------------------------
def test_6_double_click_types_a_value_without_changing_the_target(window, monkeypatch):
    monkeypatch.setattr(QtWidgets.QInputDialog, "getText", lambda *a, **k: ("1.5", True))
    m = window.model
    pt = widget_point(window, "logits", 2, m.logits[2] / 2)
    send_mouse(window, E.MouseButtonPress, pt, LEFT, LEFT)
    send_mouse(window, E.MouseButtonRelease, pt, LEFT, NO_BUTTON)
    send_mouse(window, E.MouseButtonDblClick, pt, LEFT, LEFT)
    send_mouse(window, E.MouseButtonRelease, pt, LEFT, NO_BUTTON)
    QtTest.QTest.qWait(QtWidgets.QApplication.doubleClickInterval() + 100)
    assert m.logits[2] == 1.5 and m.target == 0
    assert window.undo_stack.count() == 1


def test_6_a_click_in_soft_mode_keeps_the_shaped_distribution(window):
    m = window.model
    m.set_soft_mode(True)
    m.set_soft_probability(1, 0.4)
    shaped = m.soft_target.copy()
    pt = widget_point(window, "p", 3, 0.3)
    send_mouse(window, E.MouseButtonPress, pt, LEFT, LEFT)
    send_mouse(window, E.MouseButtonRelease, pt, LEFT, NO_BUTTON)
    wait_for_click(window)
    np.testing.assert_array_equal(m.soft_target, shaped)
    assert m.selected == 3


# 7 --------------------------------------------------------------------------------
def _inputs(win):
    kinds = (QtWidgets.QLineEdit, QtWidgets.QComboBox, QtWidgets.QAbstractButton, QtWidgets.QSlider)
    return [
        w
        for w in win.findChildren(QtWidgets.QWidget)
        if isinstance(w, kinds)
        and w.isVisible()
        and not isinstance(w, QtWidgets.QTabBar)
        and w.window() is win
        and type(w).__name__ != "QToolButton"
        and not isinstance(w.parent(), QtWidgets.QComboBox)
    ]  # a combo's own line edit


def test_7_usable_at_1280x720_and_scrolls_below(qtbot):
    win = make_window(qtbot, size=(1280, 720))
    QtTest.QTest.qWait(50)
    squashed = [
        (type(w).__name__, w.height(), w.minimumSizeHint().height())
        for w in _inputs(win)
        if w.height() < w.minimumSizeHint().height()
    ]
    assert squashed == []
    assert not win.scroll.verticalScrollBar().isVisible()
    assert not win.scroll.horizontalScrollBar().isVisible()
    assert not win.right_scroll.verticalScrollBar().isVisible()  # all of it fits
    d = win.descent
    caption = d.caption.geometry()
    assert not caption.intersects(d.plot.geometry())
    assert caption.height() >= d.caption.heightForWidth(caption.width())  # not clipped
    win.resize(900, 600)
    QtTest.QTest.qWait(50)
    assert win.scroll.horizontalScrollBar().isVisible() and win.scroll.verticalScrollBar().isVisible()
    assert win.plots.height() >= win.plots.minimumHeight()
    assert [w for w in _inputs(win) if w.height() < w.minimumSizeHint().height()] == []


# 8 --------------------------------------------------------------------------------
def test_8_texts_say_what_the_numbers_are(window, qtbot):
    m, r = window.model, window.readouts
    window.load_preset("confident-wrong")  # perplexity ≈ 1.2e2 > C = 5
    assert m.perplexity > 5 and "worse than a uniform guess" in r.text()
    assert "uniform pick among" not in r.text()
    window.load_preset("large-vocab")
    m.set_temperature(50.0)  # perplexity ≈ 3e4: scientific notation
    shown = re.search(r"perplexity</td><td[^>]*><b>([^<]+)</b>", r.text()).group(1)
    assert "e+04" in shown and f"uniform pick among {shown} of the 32000" in r.text()
    m.set_temperature(2.0)
    assert "T = 2" in window.controls.t_hint.text()
    window.load_preset("worked-1")
    assert "0.4076" in r.text()
    window.plots.set_value(window.plots.plots["logits"], 0, 2.5, "set")
    assert "= 0.4076" not in r.text()  # the preset's sentence is gone
    window.undo_stack.undo()
    assert "= 0.4076" in r.text()  # and back with its numbers
    type_into(qtbot, window.controls.logit, "1e30")
    assert not re.search(r"\d{12,}", r.text())  # no 31-digit numbers in the formula
    # The status-bar hint survives a menu hover (a status tip clears the message).
    QtWidgets.QApplication.sendEvent(window, QtGui.QStatusTipEvent(""))
    assert window.hint.isVisible() and "Drag a bar" in window.hint.text()


# 9 --------------------------------------------------------------------------------
def _bottom_axis_texts(plot):
    axis = plot.item.getAxis("bottom")
    image = QtGui.QImage(10, 10, QtGui.QImage.Format.Format_ARGB32)
    painter = QtGui.QPainter(image)
    try:
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [t[2] for t in specs[2]] if specs else []


def test_9_large_vocabularies(window, qtbot):
    m = window.model
    window.load_preset("large-vocab")
    QtWidgets.QApplication.processEvents()
    top = m.labels[window.plots.visible[0]]
    assert top in _bottom_axis_texts(window.plots.plots["grad"])  # the top token is labelled
    # Any token can be made the target by typing it.
    line = window.controls.target.lineEdit()
    line.setText("tok12345")
    qtbot.keyClick(line, QtCore.Qt.Key.Key_Return)
    assert m.target == 12345 and 12345 in window.plots.visible
    # 41–64 classes: every one is shown, so every one can be edited.
    type_into(qtbot, window.controls.classes, "50") if m.n_classes <= 64 else None
    window.load_preset("the-cat-sat")
    type_into(qtbot, window.controls.classes, "50")
    assert len(window.plots.visible) == 50
    # The logit axis keeps headroom, also while playing.
    plot = window.plots.plots["logits"]
    for _ in range(30):
        window.descent.step()
        lo, hi = plot.vb.viewRange()[1]
        z = m.logits
        assert z.max() <= hi - 0.04 * (hi - lo) and z.min() >= lo + 0.04 * (hi - lo)


# 10 -------------------------------------------------------------------------------
def test_10_messages_name_the_problem(tmp_path):
    fake = tmp_path / "notes.npy"
    fake.write_text("these are not logits\n")
    with pytest.raises(ValueError) as err:
        io.load_logits(fake)
    assert "not a NumPy .npy file" in str(err.value) and "pickle" not in str(err.value)
    m = ExplorerModel()
    logits = np.zeros((5, 4), np.float32)
    with pytest.raises(IndexError, match=r"row 3: 9"):
        m.load_batch(logits, np.array([0, 1, 2, 9, 0]))
    # A refused batch leaves nothing behind to come back on the next T change.
    assert m.batch is None and m.batch_stats is None
    m.set_temperature(2.0)
    assert m.batch is None


def test_10_ignore_index_rows_are_honoured(window, tmp_path):
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(8, 6)).astype(np.float32)
    targets = np.array([0, -100, 2, 3, -100, 5, 1, 0])
    assert window.open_batch(*save_batch(tmp_path, logits, targets))
    st = window.model.batch_stats
    keep = targets != -100
    want = reference.cross_entropy(logits[keep], targets[keep], reduction="none").mean()
    assert st.mean_loss == pytest.approx(want, rel=1e-5)
    assert st.ignored_rows.tolist() == [1, 4] and st.n_scored == 6
    assert "ignored rows" in window.batch.stats.text()
    window.batch.row.setValue(1)
    assert "ignored" in window.model.note


# 11 -------------------------------------------------------------------------------
def test_11_play_and_a_drag_leave_caption_and_loss_agreeing(window):
    m, d = window.model, window.descent
    d.play_button.setChecked(True)
    QtTest.QTest.qWait(400)
    start = widget_point(window, "logits", 1, m.logits[1] / 2)
    send_mouse(window, E.MouseButtonPress, start, LEFT, LEFT)
    for k in range(1, 6):
        QtTest.QTest.qWait(60)
        send_mouse(window, E.MouseMove, QtCore.QPoint(start.x(), start.y() - 8 * k), NO_BUTTON, LEFT)
    assert not d.play_button.isChecked()  # a drag pauses Play
    QtTest.QTest.qWait(400)
    send_mouse(window, E.MouseButtonRelease, QtCore.QPoint(start.x(), start.y() - 40), LEFT, NO_BUTTON)
    for _ in range(window.undo_stack.count()):
        window.undo_stack.undo()
        assert f"{m.loss:.4f}" in d.caption.text() or not m.trajectory
        if m.trajectory:
            assert m.trajectory[-1] == pytest.approx(m.loss) or "edited since" in d.caption.text()
