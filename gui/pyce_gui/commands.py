"""Undoable edits: every user action becomes one QUndoCommand on the window's stack.

A command keeps a :class:`~pyce_gui.state.Delta`: the fields the action changed,
and of an array only the elements that changed (a nudge of one logit keeps two
numbers, not the vocabulary). Undo and redo restore those values exactly, so an
edit never has to be inverted (inverting a probability drag would not give back
the same floating-point logits). The stack keeps at most ``UNDO_LIMIT`` steps.
"""

from __future__ import annotations

from PySide6.QtGui import QUndoCommand, QUndoStack

from .state import delta

# Commands with the same merge id that follow one another become one undo step
# (typing in a spin box, or many gradient steps of one "play").
MERGE_NONE = -1
MERGE_TEMPERATURE = 1
MERGE_SMOOTHING = 2
MERGE_DESCENT = 3
MERGE_LEARNING_RATE = 4

UNDO_LIMIT = 500


def make_undo_stack(parent) -> QUndoStack:
    stack = QUndoStack(parent)
    stack.setUndoLimit(UNDO_LIMIT)  # only allowed while the stack is empty
    return stack


class StateChange(QUndoCommand):
    """The change from one state of the model to the next, as a delta."""

    def __init__(self, model, text, before, after, merge_id=MERGE_NONE):
        super().__init__(text)
        self.model = model
        self.delta = delta(before, after)
        self._merge_id = merge_id
        # QUndoStack.push() calls redo(); the edit has already been made.
        self._applied = True

    def id(self):  # noqa: A003 - Qt's name
        return self._merge_id

    def redo(self):
        if self._applied:
            self._applied = False
            return
        self.model.restore(self.delta.apply(self.model.state, forward=True))

    def undo(self):
        self.model.restore(self.delta.apply(self.model.state, forward=False))

    def mergeWith(self, other):
        if other.id() != self._merge_id or self._merge_id == MERGE_NONE:
            return False
        # The model is at other's "after": walk back through both, then diff once.
        now = self.model.state
        before = self.delta.apply(other.delta.apply(now, forward=False), forward=False)
        self.delta = delta(before, now)
        if not self.delta:
            self.setObsolete(True)  # back where it started: the stack drops the step
        return True


def push_edit(stack, model, text, action, merge_id=MERGE_NONE, before=None):
    """Run ``action()`` on the model and record it on ``stack`` as one undo step.

    ``before`` is given when the edit already happened live (a drag: the bars
    followed the mouse) and only its start state was remembered. Nothing is
    pushed when the action left the state as it was.
    """
    if before is None:
        before = model.state
    action()
    after = model.state
    command = StateChange(model, text, before, after, merge_id)
    if not command.delta:
        return False
    stack.push(command)
    return True
