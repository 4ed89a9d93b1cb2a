"""Dark and light themes: a Qt palette for the widgets and colours for the plots."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6 import QtGui, QtWidgets


@dataclass(frozen=True)
class Theme:
    name: str
    window: str  # widget backgrounds
    base: str  # text fields, plot backgrounds
    text: str
    muted: str  # secondary text, axes
    accent: str  # selection, links
    bar: str  # an ordinary class
    target: str  # the target class
    selected: str  # outline of the keyboard-selected class
    positive: str  # gradient > 0: descent pushes this logit down
    negative: str  # gradient < 0: descent pushes this logit up
    curve: str  # loss-vs-step curve, histogram


DARK = Theme(
    "dark",
    window="#1e2127",
    base="#16181d",
    text="#e6e6e6",
    muted="#9aa4b2",
    accent="#5aa9ff",
    bar="#4c8dd6",
    target="#f2a03d",
    selected="#ffffff",
    positive="#e0605a",
    negative="#4fbf7f",
    curve="#c58af9",
)
LIGHT = Theme(
    "light",
    window="#f3f4f6",
    base="#ffffff",
    text="#1d2129",
    muted="#5b6472",
    accent="#1f6feb",
    bar="#3b78c3",
    target="#e0862a",
    selected="#111111",
    positive="#cf3f3a",
    negative="#2e9d5d",
    curve="#8a4fd1",
)

THEMES = {"dark": DARK, "light": LIGHT}


def apply_to_app(app: QtWidgets.QApplication, theme: Theme) -> None:
    """Fusion style with the theme's palette: looks the same on every platform."""
    app.setStyle("Fusion")
    pal = QtGui.QPalette()
    c = QtGui.QColor
    role = QtGui.QPalette.ColorRole
    pal.setColor(role.Window, c(theme.window))
    pal.setColor(role.WindowText, c(theme.text))
    pal.setColor(role.Base, c(theme.base))
    pal.setColor(role.AlternateBase, c(theme.window))
    pal.setColor(role.Text, c(theme.text))
    pal.setColor(role.Button, c(theme.window))
    pal.setColor(role.ButtonText, c(theme.text))
    pal.setColor(role.ToolTipBase, c(theme.base))
    pal.setColor(role.ToolTipText, c(theme.text))
    pal.setColor(role.Highlight, c(theme.accent))
    pal.setColor(role.HighlightedText, c("#ffffff"))
    pal.setColor(role.PlaceholderText, c(theme.muted))
    pal.setColor(role.Link, c(theme.accent))
    disabled = QtGui.QPalette.ColorGroup.Disabled
    for r in (role.WindowText, role.Text, role.ButtonText):
        pal.setColor(disabled, r, c(theme.muted))
    app.setPalette(pal)
