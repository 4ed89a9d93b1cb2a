"""The explorer under a real X11 server (Xvfb) with real key events (xdotool).

The offscreen platform does not resolve shortcuts the way X11 does: on X11
StandardKey.Redo *is* Ctrl+Shift+Z, so binding both made Qt print "Ambiguous
shortcut overload" and do nothing (issue 16, defect 1). This test starts its own
Xvfb and skips only when Xvfb, xdotool or Qt's X11 libraries are absent.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

CHILD = r"""
import json, subprocess, sys
from PySide6 import QtCore
from pyce_gui import presets
from pyce_gui.app import MainWindow, create_app, duplicate_shortcuts
from pyce_gui.model import ExplorerModel

app = create_app()
model = ExplorerModel()
model.set_state(presets.get("the-cat-sat"))
window = MainWindow(model)
window.resize(1280, 720)
window.show()
out = {"platform": app.platformName(), "duplicates": duplicate_shortcuts(window)}

def settle():
    for _ in range(30):
        app.processEvents()
        QtCore.QThread.msleep(10)

def key(name):
    subprocess.run(["xdotool", "key", "--clearmodifiers", name], check=True)
    settle()

def run():
    window.activateWindow()
    window.plots.setFocus()
    settle()
    z0 = float(model.logits[0])
    key("Up")                    # nudge the selected logit (class 0) by +0.1
    out["after_nudge"] = float(model.logits[0]) - z0
    key("ctrl+z")
    out["after_undo"] = float(model.logits[0]) - z0
    key("ctrl+shift+z")
    out["after_redo"] = float(model.logits[0]) - z0
    key("ctrl+z")
    key("ctrl+y")                # the other common redo key is not bound on X11
    out["after_ctrl_y"] = float(model.logits[0]) - z0
    print("RESULT " + json.dumps(out), flush=True)
    app.quit()

QtCore.QTimer.singleShot(500, run)
app.exec()
"""


def _free_display() -> int:
    for n in range(90, 200):
        if not os.path.exists(f"/tmp/.X11-unix/X{n}") and not os.path.exists(f"/tmp/.X{n}-lock"):
            return n
    pytest.skip("no free X display number")


@pytest.fixture
def xvfb():
    if sys.platform != "linux" or not shutil.which("Xvfb") or not shutil.which("xdotool"):
        pytest.skip("needs Xvfb and xdotool (Linux)")
    from pyce_gui.__main__ import missing_x11_libraries

    n = _free_display()
    missing = missing_x11_libraries({"DISPLAY": f":{n}"}, "linux")
    if missing:
        pytest.skip(f"Qt's X11 plugin needs {', '.join(missing)}")
    server = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not os.path.exists(f"/tmp/.X11-unix/X{n}"):
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            pytest.fail("Xvfb did not start")
        time.sleep(0.05)
    yield f":{n}"
    server.terminate()
    server.wait(10)


def test_redo_shortcut_works_under_x11_and_no_key_is_bound_twice(xvfb):
    import pyce
    import pyce_gui

    paths = [os.path.dirname(os.path.dirname(os.path.abspath(m.__file__))) for m in (pyce, pyce_gui)]
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=xvfb, QT_QPA_PLATFORM="xcb", PYTHONPATH=os.pathsep.join(paths))
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                          timeout=120)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-2000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["platform"] == "xcb"
    assert out["duplicates"] == {}
    assert "Ambiguous shortcut" not in proc.stderr
    assert out["after_nudge"] == pytest.approx(0.1)
    assert out["after_undo"] == 0.0
    assert out["after_redo"] == pytest.approx(0.1)      # Ctrl+Shift+Z redoes
    # X11's only redo key is Ctrl+Shift+Z: Ctrl+Y does nothing (and nothing breaks).
    assert out["after_ctrl_y"] == 0.0
