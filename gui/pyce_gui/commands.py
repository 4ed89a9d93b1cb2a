"""Undoable edits: every user action becomes one QUndoCommand on the window's stack.

A command stores the model's whole state before and after the action. The
states are small (a row of logits and its labels), and restoring a snapshot is
exact, so undo never has to invert an edit (inverting a probability drag, for
example, would not give back the same floating-point logits).
"""

from __future__ import annotations

from PySide6.QtGui import QUndoCommand

# Commands with the same merge id that follow one another become one undo step
# (typing in a spin box, or many gradient steps of one "play").
MERGE_NONE = -1
MERGE_TEMPERATURE = 1
MERGE_SMOOTHING = 2
MERGE_DESCENT = 3
MERGE_LEARNING_RATE = 4


class StateChange(QUndoCommand):
    """Go from the ``before`` state to the ``after`` state of the model, and back."""

    def __init__(self, model, text, before, after, merge_id=MERGE_NONE):
        super().__init__(text)
        self.model = model
        self.before = before
        self.after = after
        self._merge_id = merge_id

    def id(self):  # noqa: A003 - Qt's name
        return self._merge_id

    def redo(self):
        self.model.set_state(self.after)

    def undo(self):
        self.model.set_state(self.before)

    def mergeWith(self, other):
        if other.id() != self._merge_id or self._merge_id == MERGE_NONE:
            return False
        self.after = other.after
        return True


def push_edit(stack, model, text, action, merge_id=MERGE_NONE, before=None):
    """Run ``action()`` on the model and record it on ``stack`` as one undo step.

    ``before`` is given when the edit already happened live (a drag: the bars
    followed the mouse) and only its start state was remembered. Nothing is
    pushed when the action left the state as it was.
    """
    if before is None:
        before = model.get_state()
    action()
    after = model.get_state()
    if after == before:
        return False
    stack.push(StateChange(model, text, before, after, merge_id))
    return True
