"""The explorer's Qt-free model, presets and file formats (no Qt is imported here)."""

import csv
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import pyce
from pyce import reference

# pyce_gui is installed with pyce (pyproject: wheel.packages).
from pyce_gui import io, presets
from pyce_gui.model import BATCH, DESCENT, SELECTION, STRUCTURE, TOP_K, VALUES, ExplorerModel


def make(preset="the-cat-sat"):
    m = ExplorerModel()
    m.set_state(presets.get(preset))
    return m


def test_no_qt_imported_by_the_model(tmp_path):
    # The model, presets, io and the CLI's argument parsing are used headless: no Qt.
    # A fresh interpreter, because pytest-qt has already imported Qt into this one
    # (and outside the source tree, whose pyce/ would shadow the installed one).
    code = (
        "import sys, pyce_gui.model, pyce_gui.presets, pyce_gui.io, pyce_gui.state, "
        "pyce_gui.derive, pyce_gui.batchstats, pyce_gui.curve, pyce_gui.sentence, "
        "pyce_gui.__main__ as m; "
        "m.parse_args([]); "
        "sys.exit(any(n.split('.')[0] in ('PySide6', 'pyqtgraph') for n in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path).returncode == 0


def test_worked_example_logits_2_1_3_target_2():
    m = make("worked-1")
    assert m.loss == pytest.approx(0.4076059644, abs=1e-9)
    assert round(m.loss, 4) == 0.4076
    # CE = -z_y + logsumexp(z)
    assert m.loss == pytest.approx(-3.0 + math.log(math.exp(2) + math.exp(1) + math.exp(3)))
    assert m.target_rank == 1


def test_worked_example_q_06_target_0_is_log_5_over_3():
    m = make("worked-2")
    np.testing.assert_allclose(m.q, [0.6, 0.1, 0.1, 0.1, 0.1], rtol=1e-12)
    assert m.loss == pytest.approx(math.log(5 / 3), rel=1e-12)
    assert m.perplexity == pytest.approx(5 / 3, rel=1e-12)


def test_derived_quantities_match_the_reference_and_the_identities():
    m = make()
    z = m.logits
    np.testing.assert_allclose(m.q, reference.softmax(z), rtol=1e-12)
    np.testing.assert_allclose(m.log_q, reference.log_softmax(z), rtol=1e-12, atol=1e-15)
    assert m.loss == pytest.approx(float(reference.cross_entropy(z[None], np.array([m.target]))))
    # gradient = q - y, rows sum to 0
    y = np.eye(m.n_classes)[m.target]
    np.testing.assert_allclose(m.grad, m.q - y, atol=1e-12)
    assert abs(m.grad.sum()) < 1e-12
    assert m.perplexity == pytest.approx(math.exp(m.loss))
    # H(p, q) = H(p) + KL(p || q) = loss; a one-hot p has H(p) = 0
    assert m.entropy_p == 0.0
    assert m.cross_entropy_pq == pytest.approx(m.loss, rel=1e-12)
    assert m.entropy_p + m.kl_pq == pytest.approx(m.loss, rel=1e-12)
    assert m.entropy_q == pytest.approx(-np.sum(m.q * np.log(m.q)))
    assert m.q_target == pytest.approx(m.q[m.target])


def test_numbers_come_from_pyce(monkeypatch):
    calls = []
    for name in ("softmax", "log_softmax", "logsumexp", "cross_entropy", "cross_entropy_with_grad"):
        original = getattr(pyce, name)

        def spy(*args, _f=original, _n=name, **kwargs):
            calls.append(_n)
            return _f(*args, **kwargs)

        monkeypatch.setattr(pyce, name, spy)
    make().set_logit(0, 1.0)
    assert {"softmax", "log_softmax", "logsumexp", "cross_entropy", "cross_entropy_with_grad"} <= set(calls)


def test_rank_of_the_target():
    m = make("confident-wrong")  # logits [6, 1, 0.5, 0, -1], target 3
    assert m.target_rank == 4
    m.set_target(0)
    assert m.target_rank == 1


def test_set_probability_keeps_the_ratios_of_the_other_classes():
    m = make()
    before = m.q.copy()
    m.set_probability(2, 0.5)
    assert m.q[2] == pytest.approx(0.5, abs=1e-12)
    others = np.arange(m.n_classes) != 2
    np.testing.assert_allclose(
        m.q[others] / m.q[others].sum(), before[others] / before[others].sum(), rtol=1e-10
    )
    # with a temperature the same holds: the logit moves by T * delta
    m.set_temperature(2.5)
    m.set_probability(0, 0.9)
    assert m.q[0] == pytest.approx(0.9, abs=1e-12)


def test_set_probability_is_finite_when_q_rounds_to_zero():
    m = make("confident-right")
    m.set_temperature(0.05)  # q(eel) = exp(-140) ~ 1e-61
    m.set_probability(4, 0.25)
    assert np.isfinite(m.logits).all()
    assert m.q[4] == pytest.approx(0.25, abs=1e-9)


def test_temperature_limits_are_stable():
    m = make("confident-right")
    m.set_logits([60.0, 20.0, 10.0, 0.0, -50.0])
    m.set_temperature(0.05)  # z / T up to 1200: exp would overflow without the max shift
    assert np.isfinite(m.q).all() and np.isfinite(m.loss)
    np.testing.assert_allclose(m.q, [1, 0, 0, 0, 0], atol=1e-300)
    assert m.entropy_q == pytest.approx(0.0, abs=1e-12)
    m.set_logits([1.0, 0.5, 0.0, -0.5, -1.0])
    m.set_temperature(10.0)
    q = reference.softmax(m.logits / 10.0)
    assert m.entropy_q == pytest.approx(-np.sum(q * np.log(q)), rel=1e-12)
    assert 0 < math.log(5) - m.entropy_q < 0.005  # nearly uniform: H(q) -> log C
    with pytest.raises(ValueError):
        m.set_temperature(0.0)


def test_label_smoothing_is_cross_entropy_with_the_smoothed_target():
    m = make("worked-1")
    m.set_label_smoothing(0.1)
    log_q = reference.log_softmax(m.logits)
    expected = 0.9 * -log_q[2] + 0.1 * np.mean(-log_q)
    assert m.loss == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(m.p, 0.9 * np.eye(3)[2] + 0.1 / 3)
    np.testing.assert_allclose(m.grad, m.q - m.p, atol=1e-12)
    assert m.cross_entropy_pq == pytest.approx(m.loss, rel=1e-12)
    assert m.entropy_p + m.kl_pq == pytest.approx(m.loss, rel=1e-12)


def test_soft_targets():
    m = make("worked-2")
    m.set_soft_mode(True)
    loss_onehot = math.log(5 / 3)
    assert m.loss == pytest.approx(loss_onehot)  # switching on changes nothing
    m.set_soft_probability(1, 0.4)
    np.testing.assert_allclose(m.soft_target, [0.6, 0.4, 0, 0, 0], atol=1e-12)
    expected = -np.sum(m.p * reference.log_softmax(m.logits))
    assert m.loss == pytest.approx(expected, rel=1e-12)
    assert m.entropy_p == pytest.approx(-(0.6 * math.log(0.6) + 0.4 * math.log(0.4)))
    assert m.entropy_p + m.kl_pq == pytest.approx(m.loss, rel=1e-12)
    np.testing.assert_allclose(m.grad, m.q - m.p, atol=1e-12)
    assert m.target_class == 0  # argmax p
    m.set_soft_mode(False)
    assert m.target == 0 and m.loss == pytest.approx(loss_onehot)


def test_gradient_descent_lowers_the_loss_and_reset_restores():
    m = make("confident-wrong")
    start = m.logits.copy()
    grad, T = m.grad.copy(), m.temperature
    m.set_learning_rate(0.5)
    m.descent_step()
    np.testing.assert_allclose(m.logits, start - 0.5 * grad / T)
    for _ in range(9):
        m.descent_step()
    assert len(m.trajectory) == 11
    assert all(b < a for a, b in zip(m.trajectory, m.trajectory[1:]))
    assert m.trajectory[-1] == pytest.approx(m.loss)
    m.descent_reset()
    np.testing.assert_array_equal(m.logits, start)
    assert m.trajectory == []


def test_top_k_for_a_large_vocabulary():
    m = make("large-vocab")
    assert m.n_classes == 32000
    vis = m.visible_classes()
    assert len(vis) == TOP_K
    assert np.all(np.diff(m.q[vis]) <= 0)  # most probable first
    assert m.target_class in vis  # (the 4th most likely token)
    assert np.sum(m.q > m.q[vis[-1]]) == TOP_K - 1  # nothing more probable left out
    m.select(12345)  # a rarely likely class stays visible once selected
    assert 12345 in m.visible_classes() and len(m.visible_classes()) == TOP_K
    m.set_target(12345)  # target and selection are one class: shown once
    vis = m.visible_classes()
    assert len(vis) == TOP_K == len(set(vis.tolist())) and 12345 in vis
    assert len(make("the-cat-sat").visible_classes()) == 10


def test_number_of_classes_and_labels():
    m = make("worked-1")
    m.set_num_classes(5)
    assert m.n_classes == 5 and m.labels[3:] == ["class 3", "class 4"]
    assert m.logits[3] == 0.0
    m.set_num_classes(2)
    assert m.target == 1  # target 2 no longer exists
    with pytest.raises(ValueError):
        m.set_num_classes(1)
    with pytest.raises(ValueError):
        m.set_num_classes(65)
    m.set_labels(["yes", "no"])
    assert m.labels == ["yes", "no"]
    with pytest.raises(ValueError):
        m.set_labels(["only one"])


def test_observers_hear_each_change_once_per_batch_update():
    m = make()
    heard = []
    m.subscribe(heard.append)
    m.set_logit(0, 1.0)
    assert heard == [VALUES]
    heard.clear()
    m.set_num_classes(12)
    assert heard == [STRUCTURE, VALUES]  # structure first: axes before bars (the selection stays)
    heard.clear()
    m.set_num_classes(5)  # the selected class 0 stays; the values change
    m.select(2)
    assert heard == [STRUCTURE, VALUES, SELECTION]
    heard.clear()
    with m.batch_update():
        m.set_logit(0, 2.0)
        m.set_logit(1, 2.0)
        m.select(3)
    assert heard == [VALUES, SELECTION]
    heard.clear()
    m.descent_step()
    assert heard == [VALUES, DESCENT]
    m.unsubscribe(heard.append)


def test_presets_all_load():
    for name in presets.names():
        m = make(name)
        assert m.note and np.isfinite(m.loss)
    assert make("uniform").loss == pytest.approx(math.log(5))
    assert make("confident-right").loss < 0.05 < 3.0 < make("confident-wrong").loss
    with pytest.raises(KeyError, match="unknown preset"):
        presets.get("nope")


def test_state_round_trips_through_json(tmp_path):
    m = make("worked-2")
    m.set_temperature(1.7)
    m.set_label_smoothing(0.2)
    m.set_soft_mode(True)
    m.set_soft_probability(3, 0.3)
    m.descent_step()
    path = tmp_path / "state.json"
    io.save_state(m, path)
    assert json.loads(path.read_text())["format"] == "pyce-gui-state"
    m2 = ExplorerModel()
    m2.set_state(io.read_state(path))
    assert m2.get_state() == m.get_state()
    assert m2.loss == m.loss
    bad = tmp_path / "bad.json"
    bad.write_text('{"logits": [1, 2]}')
    with pytest.raises(ValueError, match="not a pyce-gui state"):
        io.read_state(bad)


def test_csv_export(tmp_path):
    m = make("worked-1")
    path = tmp_path / "numbers.csv"
    io.save_csv(m, path)
    rows = list(csv.reader(path.open()))
    assert rows[0][0].startswith("# pyce explorer: loss 0.407606") and "T = 1" in rows[0][0]
    rows = rows[1:]
    assert rows[0][:4] == ["class", "label", "logit", "q"]
    assert [r[1] for r in rows[1:4]] == m.labels
    assert float(rows[3][3]) == pytest.approx(m.q[2])
    assert rows[3][-1] == "1"  # the target's row
    summary = {r[0]: r[1] for r in rows[5:] if len(r) == 2}
    assert float(summary["loss"]) == pytest.approx(0.4076059644)


def test_batch_statistics(tmp_path):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(64, 100)).astype(np.float32)
    logits[np.arange(64), np.arange(64) % 100] += 3.0  # mostly right
    targets = np.arange(64) % 100
    targets[:8] = 99  # a few wrong
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "targets.npy", targets)
    m = ExplorerModel()
    heard = []
    m.subscribe(heard.append)
    m.load_batch(io.load_logits(tmp_path / "logits.npy"), io.load_targets(tmp_path / "targets.npy"))
    b = m.batch_stats
    expected_rows = reference.cross_entropy(logits, targets, reduction="none")
    np.testing.assert_allclose(b.row_losses, expected_rows, rtol=1e-5)
    assert b.mean_loss == pytest.approx(expected_rows.mean(), rel=1e-5)
    assert b.perplexity == pytest.approx(math.exp(b.mean_loss))
    assert b.accuracy == pytest.approx(np.mean(logits.argmax(1) == targets))
    assert m.batch.forward_ms > 0 and m.batch.fused_ms > 0
    assert BATCH in heard
    # the explorer shows row 0, then any row
    assert m.n_classes == 100 and m.target == targets[0]
    m.set_batch_row(5)
    np.testing.assert_allclose(m.logits, logits[5])
    assert m.loss == pytest.approx(expected_rows[5], rel=1e-5)
    # temperature applies to the batch too
    m.set_temperature(2.0)
    np.testing.assert_allclose(
        m.batch_stats.row_losses, reference.cross_entropy(logits / 2, targets, reduction="none"), rtol=1e-5
    )
    with pytest.raises(ValueError, match="integer class indices"):
        m.load_batch(logits, targets.astype(float))
    with pytest.raises(IndexError):
        m.load_batch(logits, targets + 100)


def test_load_logits_row(tmp_path):
    np.save(tmp_path / "row.npy", np.linspace(-2, 2, 300))
    arr = io.load_logits(tmp_path / "row.npy")
    m = ExplorerModel()
    m.load_logits(arr)
    assert m.n_classes == 300 and len(m.visible_classes()) == TOP_K
    (tmp_path / "labels.txt").write_text("\n".join(f"w{i}" for i in range(300)))
    m.set_labels(io.load_labels(tmp_path / "labels.txt"))
    assert m.labels[299] == "w299"
    with pytest.raises(ValueError):
        m.load_logits([])
    with pytest.raises(ValueError):
        m.set_logits(np.r_[np.zeros(299), np.inf])  # typed or edited logits stay finite


def test_cli_without_qt_prints_how_to_install(monkeypatch, capsys):
    from pyce_gui import __main__ as cli

    # Simulate an environment without the gui extra: importing PySide6 fails.
    monkeypatch.setitem(sys.modules, "PySide6", None)
    monkeypatch.setitem(sys.modules, "PySide6.QtWidgets", None)
    assert cli.main([]) == 1
    err = capsys.readouterr().err
    assert 'pip install "pyce[gui]"' in err and 'pip install ".[gui]"' in err
    assert "Traceback" not in err


def test_cli_arguments():
    from pyce_gui import __main__ as cli

    args = cli.parse_args(["--preset", "worked-1", "--theme", "light", "--size", "1200x800"])
    assert (args.preset, args.theme, args.size) == ("worked-1", "light", (1200, 800))
    with pytest.raises(SystemExit):
        cli.parse_args(["--preset", "nope"])


def test_known_broken_pyside_is_refused():
    from pyce_gui.__main__ import pyside_is_broken

    assert pyside_is_broken((6, 12, 0, "", ""), (3, 11, 7))
    assert not pyside_is_broken((6, 12, 0, "", ""), (3, 12, 1))  # None is immortal there
    assert not pyside_is_broken((6, 11, 3, "", ""), (3, 11, 7))


def test_missing_x11_libraries_are_named_before_qt_aborts():
    from pyce_gui.__main__ import missing_x11_libraries

    none_found = lambda name: None  # noqa: E731
    all_found = lambda name: f"lib{name}.so"  # noqa: E731
    x11 = {"DISPLAY": ":0"}
    missing = missing_x11_libraries(x11, "linux", none_found)
    assert "libxcb-cursor0" in missing and "libxcb-icccm4" in missing
    assert missing_x11_libraries(x11, "linux", all_found) == []
    # Not X11: offscreen, Wayland, no display, or not Linux.
    assert missing_x11_libraries({**x11, "QT_QPA_PLATFORM": "offscreen"}, "linux", none_found) == []
    assert missing_x11_libraries({**x11, "WAYLAND_DISPLAY": "wayland-0"}, "linux", none_found) == []
    assert missing_x11_libraries({}, "linux", none_found) == []
    assert missing_x11_libraries(x11, "darwin", none_found) == []


def test_no_display_is_reported_before_qt_aborts():
    from pyce_gui.__main__ import has_no_display

    assert has_no_display({}, "linux")
    assert has_no_display({"QT_QPA_PLATFORM": ""}, "linux")
    assert not has_no_display({"DISPLAY": ":0"}, "linux")
    assert not has_no_display({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert not has_no_display({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert not has_no_display({}, "darwin")


def test_pyce_gui_without_a_display_says_so_and_exits_1():
    if sys.platform != "linux":
        pytest.skip("the display check is for Linux")
    pytest.importorskip("PySide6")
    pytest.importorskip("pyqtgraph")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run(
        [sys.executable, "-m", "pyce_gui"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tempfile.gettempdir(),
    )
    assert proc.returncode == 1
    assert "no display" in proc.stderr and "--screenshot" in proc.stderr
