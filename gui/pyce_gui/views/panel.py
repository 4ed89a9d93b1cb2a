"""What every panel of the window has in common: one constructor argument, one interface.

A panel is built from a :class:`Context` (the model, the undo stack, the theme and
the few window actions panels may ask for), hears the model's changes it lists
in ``listens``, re-themes itself in ``apply_theme`` and lets go of the model in
``detach`` (the window calls it when it closes). The window places panels by
``place`` ("side": a group on the right; "tab": a tab under it) and ``title``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .. import commands


@dataclass
class Context:
    model: object
    undo_stack: object
    theme: object
    show_message: Callable[[str], None]  # a line in the status bar
    open_batch: Callable[[], bool]  # ask for a batch's files and load it


class Panel:
    """Mixin for the explorer's panels (QWidget or pyqtgraph widget subclasses)."""

    name = ""  # the window's attribute for it: window.controls, window.batch, …
    title = ""
    place = "tab"
    listens: frozenset = frozenset()

    def attach(self, ctx: Context) -> None:
        self.ctx = ctx
        self.model = ctx.model
        self.undo_stack = ctx.undo_stack
        self.theme = ctx.theme
        self.model.subscribe(self._heard)

    def detach(self) -> None:
        """Stop hearing the model (again is fine: a window may be closed twice)."""
        if self.model.is_subscribed(self._heard):
            self.model.unsubscribe(self._heard)

    def _heard(self, kind) -> None:
        if kind in self.listens:
            self.on_model(kind)

    def on_model(self, kind) -> None:  # pragma: no cover - every panel overrides it
        raise NotImplementedError

    def apply_theme(self, theme) -> None:
        self.theme = theme

    def push(self, text: str, action, merge_id: int = commands.MERGE_NONE) -> bool:
        """Run ``action`` on the model as one undo step; errors become a status message."""
        try:
            return commands.push_edit(self.undo_stack, self.model, text, action, merge_id)
        except (ValueError, IndexError) as exc:
            self.ctx.show_message(str(exc))
            return False
