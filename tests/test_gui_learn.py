"""The learner views of issue 16: each computed by pyce, undoable, saved, exported."""

import csv
import json
import math

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from PySide6 import QtWidgets  # noqa: E402

import pyce  # noqa: E402
from pyce import reference  # noqa: E402
from pyce_gui import io, presets  # noqa: E402
from pyce_gui.app import MainWindow, create_app  # noqa: E402
from pyce_gui.batchstats import CALIBRATION_BINS  # noqa: E402
from pyce_gui.model import ExplorerModel  # noqa: E402


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


def csv_rows(path):
    rows = list(csv.reader(open(path, encoding="utf-8")))[1:]  # after the caption
    header = rows[0]
    per_class = [dict(zip(header, r)) for r in rows[1:] if len(r) == len(header)]
    summary = {r[0]: r[1] for r in rows if len(r) == 2}
    return per_class, summary


# 1. Why the max is subtracted ----------------------------------------------------------
def test_naive_softmax_overflows_beside_the_stable_one(window, tmp_path, monkeypatch):
    from pyce import _core

    calls = []
    real = _core.vector_exp
    monkeypatch.setattr(_core, "vector_exp", lambda x, **k: calls.append(x.dtype) or real(x, **k))
    m, panel = window.model, window.stability
    panel.toggle.setChecked(True)  # through the checkbox: one undo step
    assert m.state.naive_softmax and window.undo_stack.count() == 1
    assert calls and calls[0] == np.float32  # pyce's own exp, in float32
    np.testing.assert_allclose(m.naive_q, m.q, rtol=1e-5)  # z/T = 3.1: naive is fine
    assert "still fine" in panel.explain.text()
    m.set_temperature(0.03)  # z/T up to 103 > 88.7: exp overflows
    assert np.isinf(m.naive_exp[0]) and np.isnan(m.naive_q[0])
    assert np.isfinite(m.q).all() and m.q[0] == pytest.approx(1.0)
    np.testing.assert_allclose(m.q, reference.softmax(m.logits / 0.03), rtol=1e-12)
    assert "broken" in panel.explain.text()
    cells = [panel.table.item(0, c).text() for c in range(panel.table.columnCount())]
    assert cells[2] == "∞" and cells[3] == "nan" and cells[5] == "1.0000"
    # Saved in the state, exported in the CSV, undoable.
    io.save_state(m, tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["naive_softmax"] is True
    io.save_csv(m, tmp_path / "n.csv")
    per_class, summary = csv_rows(tmp_path / "n.csv")
    assert per_class[0]["naive_exp_float32"] == "inf" and per_class[0]["naive_q_float32"] == "nan"
    assert summary["naive_softmax"] == "1"
    window.undo_stack.undo()
    assert not m.state.naive_softmax and m.naive_q is None and not panel.toggle.isChecked()


# 2. KL both ways ----------------------------------------------------------------------
def test_kl_both_ways_and_the_entropy_floor(window, monkeypatch, tmp_path):
    calls = []
    real = pyce.kl_divergence
    monkeypatch.setattr(pyce, "kl_divergence", lambda *a, **k: calls.append(1) or real(*a, **k))
    m = window.model
    m.set_logit(0, 3.0)
    assert len(calls) == 2  # forward and reverse, by pyce
    log_q = reference.log_softmax(m.logits)
    assert m.kl_pq == pytest.approx(-log_q[0], rel=1e-12)  # one-hot p: KL(p‖q) = CE
    assert math.isinf(m.kl_qp)  # q has mass where p has none
    assert "infinite" in window.divergence.text.text()
    assert m.kl_pq_terms.sum() == pytest.approx(m.kl_pq, rel=1e-12)
    m.set_label_smoothing(0.1)
    p = m.p
    assert m.kl_pq == pytest.approx(np.sum(p * (np.log(p) - log_q)), rel=1e-10)
    assert m.kl_qp == pytest.approx(np.sum(m.q * (log_q - np.log(p))), rel=1e-10)
    assert m.kl_qp_terms.sum() == pytest.approx(m.kl_qp, rel=1e-10)
    assert m.entropy_p + m.kl_pq == pytest.approx(m.loss, rel=1e-12)  # CE = H(p) + KL
    # The loss curve's floor is H(p).
    assert window.descent.floor.isVisible()
    assert window.descent.floor.value() == pytest.approx(m.entropy_p)
    bars = window.divergence
    np.testing.assert_allclose(bars.forward.opts["height"], m.kl_pq_terms[m.visible_classes()])
    io.save_csv(m, tmp_path / "n.csv")
    per_class, summary = csv_rows(tmp_path / "n.csv")
    assert float(per_class[3]["kl_qp_term"]) == pytest.approx(m.kl_qp_terms[3])
    assert float(summary["kl_qp"]) == pytest.approx(m.kl_qp)


# 5. Log scales ------------------------------------------------------------------------
def test_log_scale_for_q_and_for_the_loss_curve(window, tmp_path):
    m = window.model
    window.load_preset("large-vocab")
    plot = window.plots.plots["q"]
    window.option_actions["log_q"].trigger()
    assert m.state.log_q and plot.log_scale
    q = m.q[window.plots.visible]
    lo = plot.vb.viewRange()[1][0]
    heights = np.sort(np.r_[plot.main.opts["height"], plot.target.opts["height"]])
    np.testing.assert_allclose(heights, np.sort(np.log10(q) - lo))  # every bar visible
    assert heights.min() > 0.5
    # A drag on a log axis sets q = 10^y.
    cls = int(window.plots.visible[5])
    plot.drag_to(cls, -1.0)
    assert m.q[cls] == pytest.approx(0.1, rel=1e-9)
    window.descent.log_box.setChecked(True)
    assert m.state.log_loss and window.descent.plot.getPlotItem().ctrl.logYCheck.isChecked()
    io.save_state(m, tmp_path / "s.json")
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["log_q"] is True and saved["log_loss"] is True
    window.undo_stack.undo()
    assert not m.state.log_loss
    window.undo_stack.undo()
    window.undo_stack.undo()
    assert not m.state.log_q and not plot.log_scale
    assert not window.option_actions["log_q"].isChecked()


# 6. Calibration -----------------------------------------------------------------------
def test_calibration_top_k_reliability_and_ece_from_pyce_evaluate(window, tmp_path):
    rng = np.random.default_rng(5)
    n, v = 400, 30
    logits = (rng.normal(size=(n, v)) * 2.5).astype(np.float32)
    targets = rng.integers(0, v, size=n)
    targets[:150] = logits[:150].argmax(1)  # an overconfident-ish model
    np.save(tmp_path / "b.npy", logits)
    np.save(tmp_path / "t.npy", targets)
    assert window.open_batch(str(tmp_path / "b.npy"), str(tmp_path / "t.npy"))
    st = window.model.batch_stats
    ev = pyce.evaluate(logits, targets, topk=(1, 5))
    assert st.evaluation.ece == pytest.approx(ev.ece) and st.accuracy == pytest.approx(ev.accuracy[1])
    assert st.evaluation.accuracy[5] == pytest.approx(ev.accuracy[5])
    # The reliability diagram's bins reproduce pyce's ECE.
    filled = st.bin_count > 0
    ece = np.sum(st.bin_count[filled] / n * np.abs(st.bin_accuracy[filled] - st.bin_confidence[filled]))
    assert ece == pytest.approx(ev.ece, rel=1e-5)
    assert len(st.bin_count) == CALIBRATION_BINS and st.bin_count.sum() == n
    np.testing.assert_allclose(window.batch.rel_bars.opts["height"], st.bin_accuracy[filled])
    text = window.batch.stats.text()
    assert "top-5" in text and "ECE" in text
    # Temperature scaling changes calibration (and is undoable like any T change).
    window.model.set_temperature(2.0)
    assert window.model.batch_stats.evaluation.ece != pytest.approx(ev.ece)
    assert window.model.batch_stats.evaluation.ece == pytest.approx(
        pyce.evaluate(logits / np.float32(2.0), targets).ece
    )
    window.export_csv(str(tmp_path / "n.csv"))
    _, summary = csv_rows(tmp_path / "n.csv")
    assert "batch_ece" in summary and "batch_top5_accuracy" in summary


# 3. Knowledge distillation --------------------------------------------------------------
def test_distillation_from_a_teacher_with_the_t_squared_factor(window, tmp_path, monkeypatch):
    calls = []
    real = pyce.kl_divergence
    monkeypatch.setattr(
        pyce, "kl_divergence", lambda *a, **k: calls.append(k.get("temperature")) or real(*a, **k)
    )
    m, panel = window.model, window.distillation
    assert not panel.targets_button.isEnabled()
    teacher = m.logits.copy()
    panel.copy_button.click()
    np.testing.assert_array_equal(m.state.teacher, teacher)
    assert m.distillation == pytest.approx(0.0, abs=1e-12)  # the student is the teacher
    window.plots.set_value(window.plots.plots["logits"], 1, 4.0, "student moves")
    window.model.set_temperature(3.0)
    assert 3.0 in calls
    p_t = reference.softmax(teacher / 3.0)
    log_q_t = reference.log_softmax(m.logits / 3.0)
    kl = np.sum(p_t * (np.log(p_t) - log_q_t))
    assert m.distillation == pytest.approx(9.0 * kl, rel=1e-10)  # T² · KL
    np.testing.assert_allclose(m.teacher_q, p_t, rtol=1e-12)
    assert "9.000" in panel.text.text() and f"{m.distillation:.4f}" in panel.text.text()
    np.testing.assert_allclose(panel.teacher_bars.opts["height"], p_t[m.visible_classes()])
    # The teacher's soft targets become the student's p: CE = H(p_T) + KL(p_T‖q).
    panel.targets_button.click()
    assert m.soft_mode
    np.testing.assert_allclose(m.p, p_t, rtol=1e-12)
    assert m.loss == pytest.approx(m.entropy_p + m.kl_pq, rel=1e-10)
    # Saved, exported, undoable.
    io.save_state(m, tmp_path / "s.json")
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["teacher"] == teacher.tolist()
    io.save_csv(m, tmp_path / "n.csv")
    per_class, summary = csv_rows(tmp_path / "n.csv")
    assert float(per_class[0]["teacher_q_T"]) == pytest.approx(p_t[0])
    assert float(summary["distillation_t2_kl"]) == pytest.approx(m.distillation)
    window.undo_stack.undo()  # soft targets
    window.undo_stack.undo()  # (T was set on the model directly: the student's move)
    window.undo_stack.undo()  # the teacher
    assert m.state.teacher is None and m.teacher_q is None and not panel.clear_button.isEnabled()


# 4. A sentence, token by token --------------------------------------------------------------
def test_a_sentence_token_by_token(window, tmp_path):
    from pyce_gui import sentence

    m, panel = window.model, window.sentence
    assert not panel.word_buttons[2].isEnabled()
    panel.load_button.click()
    assert m.batch.example == "sentence" and m.state.batch_row == 1
    logits, targets = sentence.batch()
    scored = targets != -100
    losses = reference.cross_entropy(logits[scored], targets[scored], reduction="none")
    st = m.batch_stats
    np.testing.assert_allclose(st.row_losses[scored], losses, rtol=1e-12)
    assert st.row_losses[0] == 0.0 and st.ignored_rows.tolist() == [0]  # "The" is masked
    assert st.mean_loss == pytest.approx(losses.mean(), rel=1e-12)  # = log perplexity
    assert st.perplexity == pytest.approx(math.exp(losses.mean()), rel=1e-12)
    # log P(sentence) = Σ log q(word | prefix)
    assert -st.row_losses.sum() == pytest.approx(
        np.sum(reference.log_softmax(logits)[np.arange(7)[scored], targets[scored]]), rel=1e-12
    )
    text = panel.text.text()
    assert f"{st.mean_loss:.4f}" in text and "“The”" in text and "masked" in text.lower()
    # Click "mat": the main plots show that position; undo goes back to "cat".
    panel.word_buttons[5].click()
    assert m.state.batch_row == 5 and m.labels[m.target] == "mat"
    assert m.loss == pytest.approx(losses[4], rel=1e-12)
    assert panel.word_buttons[5].isChecked() and not panel.word_buttons[1].isChecked()
    np.testing.assert_allclose(panel.current.opts["height"], [losses[4]])
    # Saved in the state: loading it rebuilds the sentence on the same position.
    io.save_state(m, tmp_path / "s.json")
    window.load_preset("uniform")
    assert m.batch is None and not panel.word_buttons[5].isEnabled()
    assert window.load_state(str(tmp_path / "s.json"))
    assert m.batch.example == "sentence" and m.state.batch_row == 5
    window.undo_stack.undo()  # the state load
    window.undo_stack.undo()  # the preset
    window.undo_stack.undo()  # the click on "mat"
    assert m.state.batch_row == 1


# 7. Focal loss and class weights ------------------------------------------------------------
def test_focal_gamma_and_class_weights_reshape_the_gradient(window, qtbot, tmp_path, monkeypatch):
    calls = []
    real = pyce.focal_loss_with_grad
    monkeypatch.setattr(pyce, "focal_loss_with_grad", lambda *a, **k: calls.append(k) or real(*a, **k))
    m, panel = window.model, window.focal
    window.load_preset("confident-right")  # q(cat) = 0.98: an easy example
    np.testing.assert_allclose(m.focal_grad, m.grad, rtol=1e-12)  # γ = 0, α = 1: CE
    panel.gamma.setFocus()
    panel.gamma.setText("2")
    panel.gamma.commit_text()
    assert m.state.focal_gamma == 2.0 and calls[-1]["gamma"] == 2.0
    qt = m.q_target
    assert m.focal_loss == pytest.approx(-((1 - qt) ** 2) * math.log(qt), rel=1e-10)
    G = (1 - qt) ** 2 - 2 * qt * (1 - qt) * math.log(qt)
    np.testing.assert_allclose(m.focal_grad, G * m.grad, rtol=1e-9, atol=1e-15)
    assert G < 0.05 and "turns its push down" in panel.text.text()
    # A class weight on the target scales loss and gradient by it.
    m.select(0)
    panel.weight.setText("3")
    panel.weight.commit_text()
    assert m.state.class_weights.tolist() == [3, 1, 1, 1, 1]
    np.testing.assert_allclose(m.focal_grad, 3 * G * m.grad, rtol=1e-9, atol=1e-15)
    assert m.focal_loss == pytest.approx(-3 * (1 - qt) ** 2 * math.log(qt), rel=1e-10)
    np.testing.assert_allclose(panel.focal_bars.opts["height"], m.focal_grad[m.visible_classes()])
    io.save_state(m, tmp_path / "s.json")
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["focal_gamma"] == 2.0 and saved["class_weights"] == [3, 1, 1, 1, 1]
    io.save_csv(m, tmp_path / "n.csv")
    per_class, summary = csv_rows(tmp_path / "n.csv")
    assert float(per_class[1]["focal_grad"]) == pytest.approx(m.focal_grad[1])
    assert per_class[0]["class_weight"] == "3.0" and float(summary["focal_loss"]) == pytest.approx(
        m.focal_loss
    )
    window.undo_stack.undo()
    window.undo_stack.undo()
    assert m.state.focal_gamma == 0.0 and m.state.class_weights is None


# 8. Loss as a function of one logit -----------------------------------------------------------
@pytest.mark.parametrize("preset", ["the-cat-sat", "large-vocab"])
def test_the_loss_curve_of_one_logit_has_the_gradient_as_its_slope(window, tmp_path, preset):
    from pyce_gui.curve import loss_curve

    m, panel = window.model, window.curve
    window.load_preset(preset)
    m.set_temperature(1.5)
    cls = int(m.visible_classes()[2])
    m.select(cls)
    xs, ys = panel.data
    mid = len(xs) // 2
    assert xs[mid] == pytest.approx(m.logits[cls]) and ys[mid] == pytest.approx(m.loss, rel=1e-12)
    # The curve's slope at z_i is the gradient bar over T (central differences on the sweep).
    h = xs[mid + 1] - xs[mid]
    assert (ys[mid + 1] - ys[mid - 1]) / (2 * h) == pytest.approx(m.grad[cls] / 1.5, rel=2e-3)
    # Every point is the loss of the row with z_i moved (checked on a few, by the reference).
    for k in (0, 40, 160):
        z = m.logits.copy()
        z[cls] = xs[k]
        want = reference.cross_entropy((z / 1.5)[None], np.array([m.target]))
        assert ys[k] == pytest.approx(float(want), rel=1e-10)
    lo, hi = panel.tangent.getData()[1]
    assert (hi - lo) / np.ptp(panel.tangent.getData()[0]) == pytest.approx(m.grad[cls] / 1.5)
    if preset == "the-cat-sat":
        m.set_label_smoothing(0.2)  # smoothed targets: full rows, still exact
        xs, ys = loss_curve(m.state, cls)
        assert ys[80] == pytest.approx(m.loss, rel=1e-12)
        io.save_csv(m, tmp_path / "n.csv")
        assert f"z_of_class_{cls},loss" in (tmp_path / "n.csv").read_text()
