"""The controls panel: preset, classes and labels, target, exact value, T, ε, soft targets.

Every widget edit goes through the undo stack; model changes update the widgets
with their signals blocked, so a refresh never turns into a new edit.
"""

from __future__ import annotations

import math

from PySide6 import QtCore, QtWidgets

from .. import commands, presets
from ..model import MAX_EDIT_CLASSES, MIN_CLASSES, SELECTION, STRUCTURE, T_MAX, T_MIN, VALUES

SLIDER_STEPS = 1000
COMBO_MAX_ITEMS = 2000   # larger vocabularies list only the classes on screen


def t_to_slider(T: float) -> int:
    """Temperature on a log scale: equal slider steps multiply T by the same factor."""
    f = (math.log(T) - math.log(T_MIN)) / (math.log(T_MAX) - math.log(T_MIN))
    return int(round(f * SLIDER_STEPS))


def slider_to_t(v: int) -> float:
    f = v / SLIDER_STEPS
    return math.exp(math.log(T_MIN) + f * (math.log(T_MAX) - math.log(T_MIN)))


def temperature_hint(T: float) -> str:
    if T < 0.3:
        return "T → 0: q sharpens to one-hot on the largest logit (argmax)"
    if T > 3.0:
        return "T → ∞: q flattens to uniform, H(q) → log C"
    return "T = 1: the logits as they are; lower sharpens q, higher flattens it"


class ControlsPanel(QtWidgets.QWidget):
    preset_chosen = QtCore.Signal(str)

    def __init__(self, model, undo_stack, parent=None):
        super().__init__(parent)
        self.model = model
        self.undo_stack = undo_stack
        form = QtWidgets.QFormLayout(self)
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setContentsMargins(4, 4, 4, 4)

        self.preset = QtWidgets.QComboBox()
        self.preset.setPlaceholderText("Load a preset…")
        for name in presets.names():
            self.preset.addItem(presets.title(name), name)
        self.preset.setCurrentIndex(-1)
        self.preset.activated.connect(self._preset_activated)
        form.addRow("Preset", self.preset)

        self.classes = QtWidgets.QSpinBox()
        self.classes.setRange(MIN_CLASSES, MAX_EDIT_CLASSES)
        self.classes.setToolTip(f"{MIN_CLASSES} … {MAX_EDIT_CLASSES} classes here; "
                                "load a .npy for a larger vocabulary")
        # Without keyboard tracking, valueChanged fires per arrow click and once per
        # typed number (on Enter or leaving the field), not per digit.
        self.classes.setKeyboardTracking(False)
        self.classes.valueChanged.connect(self._classes_edited)
        form.addRow("Classes", self.classes)

        self.labels = QtWidgets.QLineEdit()
        self.labels.setToolTip("Class labels, separated by commas")
        self.labels.editingFinished.connect(self._labels_edited)
        form.addRow("Labels", self.labels)

        self.target = QtWidgets.QComboBox()
        self.target.activated.connect(self._target_chosen)
        form.addRow("Target", self.target)

        value_row = QtWidgets.QHBoxLayout()
        self.selected_name = QtWidgets.QLabel()
        self.logit = QtWidgets.QDoubleSpinBox()
        self.logit.setRange(-1000.0, 1000.0)
        self.logit.setDecimals(3)
        self.logit.setSingleStep(0.1)
        self.logit.setKeyboardTracking(False)   # one edit per typed number, not per digit
        self.logit.valueChanged.connect(self._logit_typed)
        value_row.addWidget(self.selected_name, 1)
        value_row.addWidget(QtWidgets.QLabel("logit"))
        value_row.addWidget(self.logit)
        form.addRow("Selected", value_row)

        t_row = QtWidgets.QHBoxLayout()
        self.t_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.t_slider.setRange(0, SLIDER_STEPS)
        self.t_slider.valueChanged.connect(lambda v: self._set_temperature(slider_to_t(v)))
        self.t_spin = QtWidgets.QDoubleSpinBox()
        self.t_spin.setRange(T_MIN, T_MAX)
        self.t_spin.setDecimals(2)
        self.t_spin.setSingleStep(0.05)
        self.t_spin.setKeyboardTracking(False)
        self.t_spin.valueChanged.connect(self._set_temperature)
        t_row.addWidget(self.t_slider, 1)
        t_row.addWidget(self.t_spin)
        form.addRow("Temperature T", t_row)
        self.t_hint = QtWidgets.QLabel()
        self.t_hint.setWordWrap(True)
        self.t_hint.setEnabled(False)    # drawn in the muted colour
        form.addRow("", self.t_hint)

        self.smoothing = QtWidgets.QDoubleSpinBox()
        self.smoothing.setRange(0.0, 1.0)
        self.smoothing.setDecimals(2)
        self.smoothing.setSingleStep(0.05)
        self.smoothing.setKeyboardTracking(False)
        self.smoothing.valueChanged.connect(self._set_smoothing)
        form.addRow("Label smoothing ε", self.smoothing)

        self.soft = QtWidgets.QCheckBox("Soft targets: drag the p bars to shape p")
        self.soft.toggled.connect(self._soft_toggled)
        form.addRow("", self.soft)

        model.subscribe(self.on_model)
        self.on_model(STRUCTURE)
        self.on_model(VALUES)

    # --- model -> widgets ---------------------------------------------------------
    def on_model(self, kind: str) -> None:
        m = self.model
        if kind == STRUCTURE:
            with QtCore.QSignalBlocker(self.classes):
                self.classes.setMaximum(max(MAX_EDIT_CLASSES, m.n_classes))
                self.classes.setValue(m.n_classes)
            small = m.n_classes <= MAX_EDIT_CLASSES
            self.classes.setEnabled(small)   # a loaded vocabulary is not resized by hand
            self.labels.setEnabled(small)
            self.labels.setText(", ".join(m.labels) if small else
                                f"{m.n_classes} labels (loaded)")
            self._fill_targets(force=True)
        if kind in (VALUES, STRUCTURE):
            if m.n_classes > COMBO_MAX_ITEMS:
                self._fill_targets(force=False)
            with QtCore.QSignalBlocker(self.target):
                self.target.setCurrentIndex(self.target.findData(m.target_class))
            with QtCore.QSignalBlocker(self.t_slider), QtCore.QSignalBlocker(self.t_spin):
                self.t_slider.setValue(t_to_slider(m.temperature))
                self.t_spin.setValue(m.temperature)
            self.t_hint.setText(temperature_hint(m.temperature))
            with QtCore.QSignalBlocker(self.smoothing):
                self.smoothing.setValue(m.label_smoothing)
            with QtCore.QSignalBlocker(self.soft):
                self.soft.setChecked(m.soft_mode)
        if kind in (VALUES, STRUCTURE, SELECTION):
            self.selected_name.setText(f"“{m.labels[m.selected]}”")
            with QtCore.QSignalBlocker(self.logit):
                self.logit.setValue(m.logits[m.selected])

    def _fill_targets(self, force: bool) -> None:
        m = self.model
        classes = (range(m.n_classes) if m.n_classes <= COMBO_MAX_ITEMS
                   else sorted(set(m.visible_classes().tolist()) | {m.target_class}))
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

    def _push(self, text, action, merge_id=commands.MERGE_NONE):
        commands.push_edit(self.undo_stack, self.model, text, action, merge_id)

    def _classes_edited(self, n: int) -> None:
        if n != self.model.n_classes:
            self._push(f"{n} classes", lambda: self.model.set_num_classes(n))

    def _labels_edited(self) -> None:
        parts = [s.strip() for s in self.labels.text().split(",")]
        if len(parts) != self.model.n_classes:
            QtWidgets.QToolTip.showText(
                self.labels.mapToGlobal(QtCore.QPoint(0, self.labels.height())),
                f"Give {self.model.n_classes} labels separated by commas", self.labels)
            self.labels.setText(", ".join(self.model.labels))
            return
        if parts != self.model.labels:
            self._push("Edit labels", lambda: self.model.set_labels(parts))

    def _target_chosen(self, index: int) -> None:
        cls = self.target.itemData(index)
        if cls is not None and cls != self.model.target_class:
            self._push(f"Target “{self.model.labels[cls]}”", lambda: self.model.set_target(cls))

    def _logit_typed(self, value: float) -> None:
        cls = self.model.selected
        self._push(f"Set logit of “{self.model.labels[cls]}”",
                   lambda: self.model.set_logit(cls, value))

    def _set_temperature(self, T: float) -> None:
        T = min(max(T, T_MIN), T_MAX)
        self._push(f"Temperature {T:.2f}", lambda: self.model.set_temperature(T),
                   commands.MERGE_TEMPERATURE)

    def _set_smoothing(self, eps: float) -> None:
        self._push(f"Label smoothing {eps:.2f}", lambda: self.model.set_label_smoothing(eps),
                   commands.MERGE_SMOOTHING)

    def _soft_toggled(self, on: bool) -> None:
        self._push("Soft targets" if on else "One-hot target",
                   lambda: self.model.set_soft_mode(on))
