"""Text formatting of ``pyce bench``'s output: numbers, tables, the progress line."""

from __future__ import annotations

import math
import sys
from typing import NamedTuple, Optional, Sequence


def parse_shape(text: str) -> tuple:
    """``"4096x32000"`` -> ``(4096, 32000)`` (rows x classes)."""
    parts = text.strip().lower().replace("×", "x").split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        n, v = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"a shape is ROWSxCLASSES, e.g. 4096x32000; got {text!r}") from None
    if n < 1 or v < 1:
        raise ValueError(f"shape {text!r} must have at least one row and one class")
    return (n, v)


def parse_list(text: str, allowed: Sequence[str], what: str) -> list:
    """A comma-separated list, each item checked against ``allowed``."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise ValueError(f"empty list of {what}")
    for item in items:
        if item not in allowed:
            raise ValueError(f"unknown {what[:-1]} {item!r}; choose from {', '.join(allowed)}")
    return items


def shape_str(shape) -> str:
    return f"{shape[0]}x{shape[1]}"


# --------------------------------------------------------------------------
# Formatting (pure functions, no measuring)
# --------------------------------------------------------------------------


def fmt_ms(seconds: Optional[float]) -> str:
    """Milliseconds with about four significant digits (``"12.34"``, ``"0.0312"``)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    ms = seconds * 1e3
    if ms >= 1000:
        return f"{ms:.0f}"
    if ms >= 100:
        return f"{ms:.1f}"
    if ms >= 10:
        return f"{ms:.2f}"
    if ms >= 1:
        return f"{ms:.3f}"
    return f"{ms:.4f}"


def fmt_ratio(x: Optional[float]) -> str:
    """A ratio as ``"1.07x"`` (``"123x"`` when large, ``"-"`` when missing)."""
    if x is None or not math.isfinite(x):
        return "-"
    if x >= 100:
        return f"{x:.0f}x"
    if x >= 10:
        return f"{x:.1f}x"
    return f"{x:.2f}x"


def fmt_gbs(x: Optional[float]) -> str:
    """A bandwidth in GB/s (``"47.3"``)."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.1f}" if x < 1000 else f"{x:.0f}"


def fmt_mb(nbytes: Optional[float]) -> str:
    """Bytes as MB (10^6), e.g. ``"524.3"``."""
    if nbytes is None or not math.isfinite(nbytes):
        return "-"
    return f"{nbytes / 1e6:.1f}"


class Span(str):
    """A table cell that spans all remaining columns (a note in place of numbers)."""


class TableBlock(NamedTuple):
    """A table to print: its headers and rows of cells (strings, a row may end with a Span)."""

    headers: Sequence[str]
    rows: Sequence[Sequence[str]]


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: Optional[str] = None) -> str:
    """Plain-text table. ``align`` has one ``l``/``r`` per column (default:
    first three left, rest right). A row may end with a :class:`Span`, which
    is printed as-is after the cells before it and takes no column width."""
    ncol = len(headers)
    align = align or ("l" * min(3, ncol) + "r" * max(0, ncol - 3))
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            if isinstance(cell, Span):
                break
            widths[i] = max(widths[i], len(cell))

    def line(cells):
        out = []
        for i, cell in enumerate(cells):
            if isinstance(cell, Span):
                out.append(str(cell))
                break
            out.append(cell.ljust(widths[i]) if align[i] == "l" else cell.rjust(widths[i]))
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def progress_line(done: int, total: int, label: str = "", width: int = 20) -> str:
    """``[#####...............] 5/20 fused 4096x32000 float32``."""
    total = max(total, 1)
    filled = min(width, int(width * done / total))
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label}".rstrip()


class Progress:
    """A one-line progress bar on a stream; silent unless enabled (a TTY and not ``--quiet``)."""

    def __init__(self, total: int, enabled: bool, stream=None):
        self.total, self.done, self.enabled = total, 0, enabled
        self.stream = stream if stream is not None else sys.stderr
        self._width = 0

    def _write(self, text: str) -> None:
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def start(self, label: str) -> None:
        """Show ``label`` as the task now running."""
        if self.enabled:
            self._write(progress_line(self.done, self.total, label))

    def advance(self) -> None:
        self.done += 1

    def close(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


# --------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------
