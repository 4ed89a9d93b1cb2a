"""A number field that takes a typed value as typed, or refuses it and says why.

Qt's spin boxes clamp and truncate as the user types (a 1e30 logit shows as the
box's maximum, "1e30" types as 130, "65" in a box limited to 64 becomes 6), so
the explorer's numbers are plain line edits: the text is parsed on Enter or
when the field loses focus, checked against the range, and either committed or
refused with the reason (the field turns red, the reason goes to ``refused``).
↑/↓ step the value (Shift: ×10).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from PySide6 import QtCore, QtGui, QtWidgets

ERROR_STYLE = "QLineEdit { border: 1px solid #e0605a; }"


def parse_number(text: str) -> float:
    """A float from what a person types: 1e30, −2 (a typographic minus), 0,5 is refused."""
    cleaned = text.strip().replace("−", "-").replace("_", "")
    if not cleaned:
        raise ValueError("empty")
    return float(cleaned)


class NumberField(QtWidgets.QLineEdit):
    committed = QtCore.Signal(float)  # a valid number, as typed
    refused = QtCore.Signal(str)  # why the typed text was not taken

    def __init__(
        self,
        lo: float,
        hi: float,
        *,
        what: str,
        integer: bool = False,
        step: float = 0.1,
        fmt: Optional[Callable[[float], str]] = None,
        parent=None,
    ):
        super().__init__(parent)
        self.lo, self.hi, self.what, self.integer, self.step = lo, hi, what, integer, step
        self.fmt = fmt or ((lambda v: str(int(v))) if integer else (lambda v: f"{v:.6g}"))
        self._value = math.nan
        self.setMinimumWidth(90)
        self.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight)
        self.editingFinished.connect(self.commit_text)

    def value(self) -> float:
        return self._value

    def set_range(self, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi

    def set_value(self, v: float) -> None:
        """Show a value from the model (no signal)."""
        self._value = float(v)
        self._set_error(None)
        self.setText(
            self.fmt(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
        )

    def check(self, text: str) -> float:
        """The number ``text`` stands for, or ValueError saying why it is refused."""
        try:
            v = parse_number(text)
        except ValueError:
            raise ValueError(f"{self.what}: “{text}” is not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"{self.what} must be a finite number, got “{text}”")
        if self.integer:
            if v != int(v):
                raise ValueError(f"{self.what} must be a whole number, got “{text}”")
            v = float(int(v))
        if not self.lo <= v <= self.hi:
            raise ValueError(
                f"{self.what} must be in [{self.fmt(self.lo)}, {self.fmt(self.hi)}], got “{text}”"
            )
        return v

    def commit_text(self) -> None:
        try:
            v = self.check(self.text())
        except ValueError as exc:
            self._set_error(str(exc))
            self.refused.emit(str(exc))
            return
        self._set_error(None)
        if v != self._value:
            self._value = v
            self.committed.emit(v)

    def _set_error(self, reason: Optional[str]) -> None:
        self.setStyleSheet(ERROR_STYLE if reason else "")
        self.setToolTip(reason or self.property("help") or "")

    def keyPressEvent(self, ev: QtGui.QKeyEvent) -> None:
        Key = QtCore.Qt.Key
        if ev.key() in (Key.Key_Up, Key.Key_Down) and math.isfinite(self._value):
            big = ev.modifiers() & QtCore.Qt.KeyboardModifier.ShiftModifier
            step = self.step * (10 if big else 1) * (1 if ev.key() == Key.Key_Up else -1)
            v = min(max(self._value + step, self.lo), self.hi)
            self.setText(self.fmt(v))
            self.commit_text()
            ev.accept()
            return
        super().keyPressEvent(ev)
