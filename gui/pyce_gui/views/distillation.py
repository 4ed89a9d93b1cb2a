"""Knowledge distillation: a teacher's logits, softened by the same T as the student's.

The student (the logits in the main plots) learns from the teacher's soft targets
p_T = softmax(teacher / T). Hinton et al.'s loss is T²·KL(p_T‖q_T), from
pyce.kl_divergence(student, teacher, temperature=T): the gradient of KL(p_T‖q_T)
with respect to z is (q_T − p_T)/T, and the probabilities themselves flatten as T
grows, so without the T² factor the soft-target gradient would fade like 1/T².
"""

from __future__ import annotations

import numpy as np
from PySide6 import QtWidgets

from ..model import SELECTION, STRUCTURE, VALUES
from .panel import Panel
from .readouts import fmt
from .widgets import PairedClassBars, rich_text_label


class DistillationPanel(QtWidgets.QWidget, Panel):
    name = "distillation"
    title = "Distil"
    listens = frozenset({VALUES, STRUCTURE, SELECTION})

    def __init__(self, ctx, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self.attach(ctx)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        buttons = QtWidgets.QHBoxLayout()
        self.copy_button = QtWidgets.QPushButton("Teacher = these logits")
        self.copy_button.setToolTip(
            "Copy the current logits into the teacher; then edit the "
            "student (the main plots) and watch the distillation loss"
        )
        self.copy_button.clicked.connect(
            lambda: self.push(
                "Teacher from the logits", lambda: self.model.set_teacher(self.model.logits.copy())
            )
        )
        self.targets_button = QtWidgets.QPushButton("Use as soft targets")
        self.targets_button.setToolTip("p = softmax(teacher / T) in the main plots")
        self.targets_button.clicked.connect(
            lambda: self.push("Teacher's soft targets", self.model.use_teacher_targets)
        )
        self.clear_button = QtWidgets.QPushButton("No teacher")
        self.clear_button.clicked.connect(
            lambda: self.push("No teacher", lambda: self.model.set_teacher(None))
        )
        for b in (self.copy_button, self.targets_button, self.clear_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.text = rich_text_label()
        layout.addWidget(self.text)
        self.bars = PairedClassBars(110, "teacher p_T", "student q_T")
        self.plot, self.teacher_bars, self.student_bars = self.bars.plot, self.bars.left, self.bars.right
        layout.addWidget(self.plot, 1)
        self.apply_theme(self.theme)

    def on_model(self, kind) -> None:
        m = self.model
        has = m.teacher_q is not None
        self.targets_button.setEnabled(has)
        self.clear_button.setEnabled(has)
        vis = m.visible_classes()
        teacher = m.teacher_q[vis] if has else None
        self.bars.show(teacher, np.nan_to_num(m.q[vis]), [m.labels[c] for c in vis])
        self.plot.setYRange(0, 1.3, padding=0)
        T = m.temperature
        if not has:
            self.text.setText(
                "No teacher yet: press <b>Teacher = these logits</b>, then move the student "
                "(the logits on the left) or T, and watch T²·KL(p<sub>T</sub>‖q<sub>T</sub>)."
            )
            return
        kl = m.distillation / (T * T)
        self.text.setText(
            f"distillation loss T²·KL(p<sub>T</sub>‖q<sub>T</sub>) = {fmt(T * T, 3)} × {fmt(kl)} "
            f"= <b>{fmt(m.distillation)}</b> at T = {T:g} (pyce.kl_divergence, temperature=T). "
            f"The gradient of KL with respect to z is (q<sub>T</sub> − p<sub>T</sub>)/T, and both "
            f"flatten as T grows: T² keeps the soft targets' pull on the same scale as the hard "
            f"label's. <b>Use as soft targets</b> puts p<sub>T</sub> into the main plots, where "
            f"the loss is H(p<sub>T</sub>) + KL(p<sub>T</sub>‖q)."
        )

    def apply_theme(self, theme) -> None:
        self.theme = theme
        self.bars.apply_theme(theme, theme.target, theme.bar)
        self.on_model(VALUES)
