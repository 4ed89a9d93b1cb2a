"""``pyce-gui``: launch the explorer, or render it to a PNG with ``--screenshot``.

Qt is imported only after the arguments are read and only inside main(), so
that without the ``gui`` extra this prints how to install it instead of a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

INSTALL_HINT = """\
pyce-gui needs PySide6 and pyqtgraph, which come with pyce's "gui" extra:

    pip install "pyce[gui]"        # from PyPI
    pip install ".[gui]"           # from a pyce source checkout
"""


BROKEN_PYSIDE_HINT = """\
PySide6 {version} crashes on Python {python} (it releases a reference to None on
every call that returns nothing, until Python aborts). Install another version:

    pip install "PySide6-Essentials>=6.8,!=6.9.1,!=6.12.0"
"""


# System libraries Qt's X11 ("xcb") plugin loads; pip cannot install them.
XCB_LIBRARIES = {
    "xcb-cursor": "libxcb-cursor0",
    "xcb-icccm": "libxcb-icccm4",
    "xcb-keysyms": "libxcb-keysyms1",
    "xcb-image": "libxcb-image0",
    "xcb-render-util": "libxcb-render-util0",
    "xkbcommon-x11": "libxkbcommon-x11-0",
}

XCB_HINT = """pyce-gui opens an X11 window, and Qt's X11 plugin needs these system libraries,
which pip cannot install: {missing}. On Debian or Ubuntu:

    sudo apt-get install {packages}

(Without a screen, `pyce-gui --screenshot FILE.png` renders the explorer to a file.)
"""


NO_DISPLAY_HINT = """\
pyce-gui opens a window, but there is no display here (neither DISPLAY nor
WAYLAND_DISPLAY is set). Run it on a desktop, or render it to a picture:

    pyce-gui --screenshot explorer.png
"""


def has_no_display(environ=os.environ, platform=sys.platform) -> bool:
    """True on Linux with no X11/Wayland display and no Qt platform chosen.

    Qt would abort the process there ("could not connect to display"); this is
    checked first, to say what to do instead.
    """
    if platform != "linux" or environ.get("QT_QPA_PLATFORM"):
        return False
    return not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY")


def missing_x11_libraries(environ=os.environ, platform=sys.platform, find_library=None) -> list:
    """The Debian packages of the X11 libraries Qt will fail to load, if it will use X11.

    Qt aborts the whole process when its platform plugin cannot load, so this is
    checked first, to say what to install instead of crashing.
    """
    if platform != "linux" or environ.get("QT_QPA_PLATFORM") or environ.get("WAYLAND_DISPLAY"):
        return []
    if not environ.get("DISPLAY"):
        return []
    if find_library is None:
        from ctypes.util import find_library
    return [pkg for lib, pkg in XCB_LIBRARIES.items() if find_library(lib) is None]


def pyside_is_broken(pyside_version: tuple, python_version: tuple) -> bool:
    """PySide6 6.12.0 over-releases None; Python < 3.12 (None not immortal) then aborts."""
    return tuple(pyside_version[:3]) == (6, 12, 0) and tuple(python_version[:2]) < (3, 12)


def parse_args(argv=None) -> argparse.Namespace:
    from . import presets  # Qt-free

    parser = argparse.ArgumentParser(
        prog="pyce-gui",
        description="The pyce explorer: edit logits and watch softmax, cross-entropy, "
        "perplexity and the gradient respond, computed by pyce's kernels.",
    )
    parser.add_argument(
        "--preset",
        choices=presets.names(),
        default=presets.DEFAULT,
        help="starting point (default: %(default)s)",
    )
    parser.add_argument(
        "--logits",
        metavar="FILE.npy",
        help="start from these logits: one row (V,), or a batch (N, V) with --targets",
    )
    parser.add_argument(
        "--targets", metavar="FILE.npy", help="integer targets (N,) for a batch given with --logits"
    )
    parser.add_argument("--labels", metavar="FILE.txt", help="class labels, one per line")
    parser.add_argument("--state", metavar="FILE.json", help="a state saved from the explorer")
    parser.add_argument("--theme", choices=["dark", "light"], default="dark")
    parser.add_argument(
        "--size",
        metavar="WxH",
        help="window size in pixels (default: 1400x900, or the screen's free area when that is "
        "smaller; 1400x900 for --screenshot)",
    )
    parser.add_argument(
        "--tab",
        choices=["descent", "batch", "stability", "divergence", "distillation", "sentence", "focal", "curve"],
        help="the tab to show on the right (default: descent, or batch for --targets)",
    )
    parser.add_argument(
        "--screenshot", metavar="FILE.png", help="render the window offscreen to FILE.png and exit"
    )
    args = parser.parse_args(argv)
    if args.size is not None:
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            parser.error(f"--size must look like 1400x900, got {args.size!r}")
        args.size = (w, h)
    if args.targets and not args.logits:
        parser.error("--targets needs --logits")
    return args


def fit_to_screen(window, screen) -> None:
    """The default size, or the screen's free area when that is smaller (a
    1280x720 laptop): a window larger than its screen hides its own edges."""
    from PySide6 import QtCore

    from .app import DEFAULT_SIZE

    free = screen.availableGeometry() if screen is not None else None
    if free is None or (free.width() >= DEFAULT_SIZE[0] and free.height() >= DEFAULT_SIZE[1]):
        window.resize(*DEFAULT_SIZE)
        return
    window.resize(min(DEFAULT_SIZE[0], free.width()), min(DEFAULT_SIZE[1], free.height()))
    window.move(free.topLeft())
    # A window manager then fits the frame (title bar included) into the free area.
    window.setWindowState(window.windowState() | QtCore.Qt.WindowState.WindowMaximized)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.screenshot and not os.environ.get("QT_QPA_PLATFORM"):
        # No window appears and no display is needed: render offscreen.
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    try:
        import pyqtgraph  # noqa: F401
        import PySide6.QtWidgets  # noqa: F401  (before pyqtgraph, which picks the binding)
    except ImportError as exc:
        sys.stderr.write(INSTALL_HINT + f"\n(import failed: {exc})\n")
        return 1
    import PySide6

    if pyside_is_broken(PySide6.__version_info__, sys.version_info):
        sys.stderr.write(
            BROKEN_PYSIDE_HINT.format(version=PySide6.__version__, python=sys.version.split()[0])
        )
        return 1
    try:
        import pyce  # noqa: F401
    except ImportError as exc:
        sys.stderr.write(f"pyce-gui could not import pyce: {exc}\n")
        return 1
    if has_no_display():
        sys.stderr.write(NO_DISPLAY_HINT)
        return 1
    missing = missing_x11_libraries()
    if missing:
        sys.stderr.write(XCB_HINT.format(missing=", ".join(missing), packages=" ".join(missing)))
        return 1

    from . import io, presets
    from .app import DEFAULT_SIZE, MainWindow, create_app, render_screenshot
    from .model import ExplorerModel

    app = create_app()
    model = ExplorerModel()
    try:
        model.set_state(io.read_state(args.state) if args.state else presets.get(args.preset))
        if args.logits:
            logits = io.load_logits(args.logits)
            if args.targets:
                model.load_batch(
                    logits if logits.ndim == 2 else logits[None, :], io.load_targets(args.targets)
                )
            elif logits.ndim == 1:
                model.load_logits(logits)
            else:
                raise ValueError(
                    f"{args.logits} holds a batch {logits.shape}: give its targets with --targets"
                )
        if args.labels:
            model.set_labels(io.load_labels(args.labels))
    except (OSError, ValueError, IndexError, KeyError) as exc:
        sys.stderr.write(f"pyce-gui: {exc}\n")
        return 2

    window = MainWindow(model, theme=args.theme)
    if args.size is not None or args.screenshot:
        window.resize(*(args.size or DEFAULT_SIZE))
    else:
        fit_to_screen(window, app.primaryScreen())
    if args.logits and args.targets:
        window.tabs.setCurrentWidget(window.batch)
    if args.tab:
        window.tabs.setCurrentWidget(getattr(window, args.tab))
    if args.screenshot:
        render_screenshot(window, args.screenshot)
        print(f"wrote {args.screenshot}")
        return 0
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
