"""Where ``pyce bench`` writes to a terminal: rich's progress bar and tables.

rich (in the ``bench`` extra) draws them when it is installed and the stream is
a terminal. Otherwise -- rich absent, output piped to a file, ``--quiet`` -- the
plain-text progress line and tables of :mod:`pyce.bench.format` are used: they
keep every column on one line whatever the width, so a log or a README can
quote them as they are.
"""

from __future__ import annotations

import importlib.util
from typing import TextIO

from .format import Progress, Span, TableBlock
from .report import format_report, report_blocks


def rich_available() -> bool:
    return importlib.util.find_spec("rich") is not None


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class RichProgress:
    """rich's progress bar (task, bar, done/total, elapsed) on stderr; same methods as Progress."""

    def __init__(self, total: int, stream):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as _Progress

        self._bar = _Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(file=stream),
            transient=True,
        )
        self._task = self._bar.add_task("", total=total)
        self._bar.start()

    def start(self, label: str) -> None:
        self._bar.update(self._task, description=label)

    def advance(self) -> None:
        self._bar.advance(self._task)

    def close(self) -> None:
        self._bar.stop()


def make_progress(total: int, stream, quiet: bool):
    """The progress display for ``total`` tasks: rich's on a terminal, else the plain one."""
    enabled = _is_terminal(stream) and not quiet
    if enabled and rich_available():
        return RichProgress(total, stream)
    return Progress(total, enabled=enabled, stream=stream)


def _rich_table(block: TableBlock):
    """A rich Table, and the notes of its rows whose cells end in a Span (rich has no
    column spans: such a row shows the note's first word, the whole note follows)."""
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    spans = []
    for row in block.rows:
        if row and isinstance(row[-1], Span):
            spans.append(f"{' '.join(row[:-1])}: {row[-1]}")
    for i, header in enumerate(block.headers):
        # As wide as the widest cell: a narrow terminal wraps lines, never truncates numbers.
        width = max(
            [len(header)] + [len(r[i]) for r in block.rows if i < len(r) and not isinstance(r[i], Span)]
        )
        table.add_column(header, justify="left" if i < 3 else "right", no_wrap=True, min_width=width)
    for row in block.rows:
        cells = list(row)
        if cells and isinstance(cells[-1], Span):
            cells[-1] = cells[-1].split()[0] + " *"
        table.add_row(*cells, *[""] * (len(block.headers) - len(cells)))
    return table, spans


def print_report(report: dict, stream: TextIO) -> None:
    """Print the report: rich tables on a terminal (when rich is installed), else plain text."""
    if not (_is_terminal(stream) and rich_available()):
        print(format_report(report), file=stream)
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(file=stream, soft_wrap=True)
    for block in report_blocks(report):
        if isinstance(block, TableBlock):
            table, spans = _rich_table(block)
            # Wider than the terminal: lines wrap there, no column is squeezed out.
            unbounded = console.options.update(max_width=1 << 16)
            console.width = max(console.width, console.measure(table, options=unbounded).maximum)
            console.print(table)
            for note in spans:
                console.print(Text("* " + note))
        else:
            console.print(Text(block))
