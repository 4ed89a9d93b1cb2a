"""The controls panel: preset, classes and labels, target, exact value, T, ε, soft targets.

Every widget edit goes through the undo stack; model changes update the widgets
with their signals blocked, so a refresh never turns into a new edit. Typed
numbers are taken as typed or refused with the reason shown under the form.
"""

from __future__ import annotations

import math

from PySide6 import QtCore, QtWidgets

from .. import commands, presets
from ..model import MAX_EDIT_CLASSES, MIN_CLASSES, OPTIONS, SELECTION, STRUCTURE, T_MAX, T_MIN, VALUES
from .fields import NumberField
from .panel import Panel

SLIDER_STEPS = 1000
COMBO_MAX_ITEMS = 2000  # larger vocabularies list only the classes on screen (search for others)
LOGIT_LIMIT = 1e300  # typed logits up to this size are taken as typed


def t_to_slider(T: float) -> int:
    """Temperature on a log scale: equal slider steps multiply T by the same factor."""
    f = (math.log(T) - math.log(T_MIN)) / (math.log(T_MAX) - math.log(T_MIN))
    return int(round(f * SLIDER_STEPS))


def slider_to_t(v: int) -> float:
    f = v / SLIDER_STEPS
    return math.exp(math.log(T_MIN) + f * (math.log(T_MAX) - math.log(T_MIN)))


def temperature_hint(T: float) -> str:
    t = f"{T:.3g}"
    if T < 0.3:
        return f"T = {t} → 0: q sharpens to one-hot on the largest logit (argmax)"
    if T > 3.0:
        return f"T = {t} → ∞: q flattens to uniform, H(q) → log C"
    if T == 1.0:
        return "T = 1: the logits as they are; lower sharpens q, higher flattens it"
    if T < 1.0:
        return f"T = {t} < 1: z/T spreads the logits apart, which sharpens q"
    return f"T = {t} > 1: z/T squeezes the logits together, which flattens q"


class ControlsPanel(QtWidgets.QWidget, Panel):
    name = "controls"
    title = "Controls"
    place = "side"
    listens = frozenset({STRUCTURE, VALUES, SELECTION, OPTIONS})
    preset_chosen = QtCore.Signal(str)

    def __init__(self, ctx, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self.attach(ctx)
        self._label_index: dict = {}
        self._label_index_of = None
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(4, 2, 4, 2)
        grid.setVerticalSpacing(4)
        grid.setColumnStretch(1, 1)

        def label(text):
            return QtWidgets.QLabel(text)

        self.preset = QtWidgets.QComboBox()
        self.preset.setPlaceholderText("Load a preset…")
        for name in presets.names():
            self.preset.addItem(presets.title(name), name)
        self.preset.setCurrentIndex(-1)
        self.preset.activated.connect(self._preset_activated)
        self.classes = NumberField(MIN_CLASSES, MAX_EDIT_CLASSES, what="Classes", integer=True)
        self.classes.setProperty(
            "help", f"{MIN_CLASSES} … {MAX_EDIT_CLASSES} classes here; load a .npy for a larger vocabulary"
        )
        self.classes.setToolTip(self.classes.property("help"))
        self.classes.committed.connect(self._classes_edited)
        grid.addWidget(label("Preset"), 0, 0)
        grid.addWidget(self.preset, 0, 1)
        grid.addWidget(label("Classes"), 0, 2)
        grid.addWidget(self.classes, 0, 3)

        self.labels = QtWidgets.QLineEdit()
        self.labels.setToolTip("Class labels, separated by commas")
        self.labels.editingFinished.connect(self._labels_edited)
        grid.addWidget(label("Labels"), 1, 0)
        grid.addWidget(self.labels, 1, 1, 1, 3)

        self.target = QtWidgets.QComboBox()
        self.target.setEditable(True)
        self.target.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
        self.target.lineEdit().setPlaceholderText("a label or a class number, then Enter")
        self.target.setToolTip(
            "Pick the target, or type any class's label or number and "
            "press Enter (searches the whole vocabulary)"
        )
        self.target.activated.connect(self._target_chosen)
        self.target.lineEdit().returnPressed.connect(self._target_typed)
        self.completer_model = QtCore.QStringListModel(self)
        completer = QtWidgets.QCompleter(self.completer_model, self)
        completer.setFilterMode(QtCore.Qt.MatchFlag.MatchContains)
        completer.setCaseSensitivity(QtCore.Qt.CaseSensitivity.CaseInsensitive)
        completer.setMaxVisibleItems(12)
        self.target.setCompleter(completer)
        grid.addWidget(label("Target"), 2, 0)
        grid.addWidget(self.target, 2, 1, 1, 3)

        self.selected_name = QtWidgets.QLabel()
        self.logit = NumberField(-LOGIT_LIMIT, LOGIT_LIMIT, what="A logit")
        self.logit.committed.connect(self._logit_typed)
        grid.addWidget(label("Selected"), 3, 0)
        grid.addWidget(self.selected_name, 3, 1)
        grid.addWidget(label("logit"), 3, 2)
        grid.addWidget(self.logit, 3, 3)

        self.t_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.t_slider.setRange(0, SLIDER_STEPS)
        self.t_slider.valueChanged.connect(lambda v: self._set_temperature(slider_to_t(v)))
        self.t_spin = NumberField(T_MIN, T_MAX, what="Temperature T", step=0.05, fmt=lambda v: f"{v:.4g}")
        self.t_spin.committed.connect(self._set_temperature)
        grid.addWidget(label("Temperature T"), 4, 0)
        grid.addWidget(self.t_slider, 4, 1, 1, 2)
        grid.addWidget(self.t_spin, 4, 3)
        self.t_hint = QtWidgets.QLabel()
        self.t_hint.setWordWrap(True)
        self.t_hint.setEnabled(False)  # drawn in the muted colour
        grid.addWidget(self.t_hint, 5, 1, 1, 3)

        self.smoothing = NumberField(0.0, 1.0, what="Label smoothing ε", step=0.05, fmt=lambda v: f"{v:.4g}")
        self.smoothing.committed.connect(self._set_smoothing)
        self.soft = QtWidgets.QCheckBox("Soft targets (drag the p bars)")
        self.soft.toggled.connect(self._soft_toggled)
        eps_row = QtWidgets.QHBoxLayout()
        eps_row.addWidget(self.smoothing)
        eps_row.addSpacing(16)
        eps_row.addWidget(self.soft, 1)
        grid.addWidget(label("Smoothing ε"), 6, 0)
        grid.addLayout(eps_row, 6, 1, 1, 3)

        self.problem = QtWidgets.QLabel()
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #e0605a")
        self.problem.hide()
        grid.addWidget(self.problem, 7, 0, 1, 4)
        for field in (self.classes, self.logit, self.t_spin, self.smoothing):
            field.setFixedWidth(96)
            field.refused.connect(self.show_problem)
            field.committed.connect(lambda _v: self.show_problem(""))

        self.on_model(STRUCTURE)
        self.on_model(VALUES)

    def show_problem(self, text: str) -> None:
        self.problem.setText(text)
        self.problem.setVisible(bool(text))

    # --- model -> widgets ---------------------------------------------------------
    def on_model(self, kind) -> None:
        m = self.model
        if kind == STRUCTURE:
            small = m.n_classes <= MAX_EDIT_CLASSES
            self.classes.set_range(MIN_CLASSES, MAX_EDIT_CLASSES)
            self.classes.set_value(m.n_classes)  # a 1-class row shows 1
            self.classes.setEnabled(small)  # a loaded vocabulary is not resized by hand
            self.labels.setEnabled(small)
            self.labels.setText(", ".join(m.labels) if small else f"{m.n_classes} labels (loaded)")
            self.completer_model.setStringList(m.labels)
            self._fill_targets(force=True)
        if kind in (VALUES, STRUCTURE):
            if m.n_classes > COMBO_MAX_ITEMS:
                self._fill_targets(force=False)
            with QtCore.QSignalBlocker(self.target):
                self.target.setCurrentIndex(self.target.findData(m.target_class))
            self.target.setEnabled(not m.soft_mode)  # in soft mode the target is argmax p
            with QtCore.QSignalBlocker(self.t_slider):
                self.t_slider.setValue(t_to_slider(m.temperature))
            self.t_spin.set_value(m.temperature)
            self.t_hint.setText(temperature_hint(m.temperature))
            self.smoothing.set_value(m.label_smoothing)
            with QtCore.QSignalBlocker(self.soft):
                self.soft.setChecked(m.soft_mode)
        if kind in (VALUES, STRUCTURE, SELECTION):
            self.selected_name.setText(f"“{m.labels[m.selected]}”")
            self.logit.set_value(m.logits[m.selected])

    def _fill_targets(self, force: bool) -> None:
        m = self.model
        classes = (
            range(m.n_classes)
            if m.n_classes <= COMBO_MAX_ITEMS
            else sorted(set(m.visible_classes().tolist()) | {m.target_class})
        )
        classes = list(classes)
        if not force and [self.target.itemData(i) for i in range(self.target.count())] == classes:
            return
        with QtCore.QSignalBlocker(self.target):
            self.target.clear()
            for c in classes:
                self.target.addItem(f"{c}: {m.labels[c]}", c)

    # --- widgets -> model (undoable) -----------------------------------------------
    def _preset_activated(self, index: int) -> None:
        name = self.preset.itemData(index)
        # Back to "Load a preset…": after the first edit the state is no longer the preset.
        self.preset.setCurrentIndex(-1)
        self.preset_chosen.emit(name)

    def _classes_edited(self, n: float) -> None:
        n = int(n)
        if n != self.model.n_classes:
            self.push(f"{n} classes", lambda: self.model.set_num_classes(n))

    def _labels_edited(self) -> None:
        parts = [s.strip() for s in self.labels.text().split(",")]
        if len(parts) != self.model.n_classes:
            self.show_problem(
                f"Labels: give {self.model.n_classes} labels separated by commas, got {len(parts)}"
            )
            self.labels.setText(", ".join(self.model.labels))
            return
        if parts != self.model.labels:
            self.push("Edit labels", lambda: self.model.set_labels(parts))

    def find_class(self, text: str) -> int:
        """The class a typed text names: an exact label, "123" / "#123", or "123: label"."""
        m = self.model
        text = text.strip()
        if self._label_index_of is not m.labels:
            self._label_index = {}
            for i, s in enumerate(m.labels):
                self._label_index.setdefault(s, i)
            self._label_index_of = m.labels
        if text in self._label_index:
            return self._label_index[text]
        head = text.split(":", 1)[0].lstrip("#").strip()
        if head.isdigit() and int(head) < m.n_classes:
            return int(head)
        folded = text.casefold()
        matches = [i for i, s in enumerate(m.labels) if s.casefold() == folded]
        if len(matches) == 1:
            return matches[0]
        raise ValueError(
            f"Target: no class is labelled “{text}” (type a label, or a class number in [0, {m.n_classes}))"
        )

    def _target_typed(self) -> None:
        text = self.target.lineEdit().text()
        try:
            cls = self.find_class(text)
        except ValueError as exc:
            self.show_problem(str(exc))
            return
        self.show_problem("")
        self._make_target(cls)

    def _target_chosen(self, index: int) -> None:
        cls = self.target.itemData(index)
        if cls is not None:
            self._make_target(cls)

    def _make_target(self, cls: int) -> None:
        m = self.model
        m.select(cls)
        if cls != m.target_class:
            self.push(f"Target “{m.labels[cls]}”", lambda: m.set_target(cls))
        else:
            self.on_model(VALUES)

    def _logit_typed(self, value: float) -> None:
        cls = self.model.selected
        self.push(f"Set logit of “{self.model.labels[cls]}”", lambda: self.model.set_logit(cls, value))

    def _set_temperature(self, T: float) -> None:
        T = min(max(T, T_MIN), T_MAX)
        self.push(f"Temperature {T:.3g}", lambda: self.model.set_temperature(T), commands.MERGE_TEMPERATURE)

    def _set_smoothing(self, eps: float) -> None:
        self.push(
            f"Label smoothing {eps:.3g}",
            lambda: self.model.set_label_smoothing(eps),
            commands.MERGE_SMOOTHING,
        )

    def _soft_toggled(self, on: bool) -> None:
        self.push("Soft targets" if on else "One-hot target", lambda: self.model.set_soft_mode(on))
