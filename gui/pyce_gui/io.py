"""Files in and out: logits and targets (.npy), state (.json), numbers (.csv), plots (.png).

Everything here except :func:`save_png` is plain Python + NumPy, so it is tested
without Qt; :func:`save_png` only paints the widget's own ``grab()`` and a caption.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from . import state as state_module
from .curve import loss_curve

STATE_FORMAT = "pyce-gui-state"
STATE_VERSION = 1
NPY_MAGIC = b"\x93NUMPY"


def _load_npy(path, what: str) -> np.ndarray:
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head != NPY_MAGIC:
        # np.load would talk about pickles here; say what the file is not.
        raise ValueError(
            f"{path} is not a NumPy .npy file (it starts with {head!r}, not "
            f"{NPY_MAGIC!r}): save the {what} with numpy.save"
        )
    return np.load(path, allow_pickle=False)


def load_logits(path) -> np.ndarray:
    """Logits from a .npy file: one row (V,) / (1, V), or a batch (N, V)."""
    arr = _load_npy(path, "logits")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{path}: logits must be numbers, got dtype {arr.dtype}")
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim not in (1, 2) or arr.size == 0:
        raise ValueError(f"{path}: expected logits of shape (V,) or (N, V), got {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return arr


def load_targets(path) -> np.ndarray:
    """Integer class indices from a .npy file, one per row of a batch (-100: ignored)."""
    arr = _load_npy(path, "targets")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{path}: targets must be integer class indices, got dtype {arr.dtype}")
    return arr.reshape(-1).astype(np.int64)


def load_labels(path) -> list:
    """Class labels from a text file, one per line (a tokenizer's vocabulary)."""
    return Path(path).read_text(encoding="utf-8").splitlines()


def save_state(model, path) -> None:
    """The whole explorer state as JSON (a loaded batch is not included: it is data)."""
    doc = {"format": STATE_FORMAT, "version": STATE_VERSION, **model.get_state()}
    Path(path).write_text(json.dumps(doc, indent=1), encoding="utf-8")


def read_state(path) -> dict:
    """A state dict from :func:`save_state`'s JSON, checked, for ``model.set_state``."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a pyce-gui state file (not JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a pyce-gui state file")
    if doc.get("version", 0) > STATE_VERSION:
        raise ValueError(f"{path} was written by a newer pyce-gui (version {doc['version']})")
    d = {k: v for k, v in doc.items() if k not in ("format", "version")}
    try:
        state_module.from_dict(d)  # the one validator: fail here, naming the file
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return d


def caption(model) -> str:
    """One line that says what a picture or a table shows."""
    s, d = model.state, model.derived
    target = s.labels[d.target_class]
    return (
        f"pyce explorer: loss {d.loss:.6g}, T = {s.temperature:g}, "
        f"label smoothing ε = {s.label_smoothing:g}, target “{target}”, {s.n_classes} classes"
    )


def save_csv(model, path) -> None:
    """The current numbers: a caption, one row per class, then the readouts as name,value."""
    s, d = model.state, model.derived
    naive = d.naive_q is not None
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["# " + caption(model)])
        header = [
            "class",
            "label",
            "logit",
            "q",
            "log_q",
            "p",
            "grad_q_minus_p",
            "kl_pq_term",
            "kl_qp_term",
            "focal_grad",
            "class_weight",
            "is_target",
        ]
        weights = s.class_weights if s.class_weights is not None else np.ones(s.n_classes)
        if naive:
            header += ["naive_exp_float32", "naive_q_float32", "shifted_exp_float32"]
        teacher = s.teacher is not None
        if teacher:
            header += ["teacher_logit", "teacher_q_T"]
        w.writerow(header)
        t = d.target_class
        for i in range(s.n_classes):
            row = [
                i,
                s.labels[i],
                repr(float(s.logits[i])),
                repr(float(d.q[i])),
                repr(float(d.log_q[i])),
                repr(float(d.p[i])),
                repr(float(d.grad[i])),
                repr(float(d.kl_pq_terms[i])),
                repr(float(d.kl_qp_terms[i])),
                repr(float(d.focal_grad[i])),
                repr(float(weights[i])),
                int(i == t),
            ]
            if naive:
                row += [repr(float(d.naive_exp[i])), repr(float(d.naive_q[i])), repr(float(d.stable_exp[i]))]
            if teacher:
                row += [repr(float(s.teacher[i])), repr(float(d.teacher_q[i]))]
            w.writerow(row)
        w.writerow([])
        w.writerow(["quantity", "value"])
        for name, value in model.summary().items():
            w.writerow([name, value])
        for name in ("naive_softmax", "log_q", "log_loss"):
            w.writerow([name, int(getattr(s, name))])
        sweep = loss_curve(s, s.selected)  # the selected class's L(z_i), as plotted
        if sweep is not None:
            w.writerow([])
            w.writerow([f"z_of_class_{s.selected}", "loss"])
            for x, y in zip(*sweep):
                w.writerow([repr(float(x)), repr(float(y))])
        b, st = s.batch, model.batch_stats
        if b is not None and st is not None:
            rows = [
                ("batch_rows", b.shape[0]),
                ("batch_vocab", b.shape[1]),
                ("batch_row_shown", s.batch_row),
                ("batch_mean_loss", st.mean_loss),
                ("batch_finite_mean_loss", st.finite_mean_loss),
                ("batch_perplexity", st.perplexity),
                ("batch_nonfinite_rows", " ".join(map(str, st.nonfinite_rows))),
                ("batch_ignored_rows", " ".join(map(str, st.ignored_rows))),
                ("batch_forward_ms", b.forward_ms),
                ("batch_fused_ms", b.fused_ms),
            ]
            if st.evaluation is not None:
                ev = st.evaluation
                rows += [(f"batch_top{k}_accuracy", v) for k, v in ev.accuracy.items()]
                rows += [("batch_ece", ev.ece), ("batch_mean_entropy", ev.entropy)]
            for name, value in rows:
                w.writerow([name, value])


def save_png(widgets, path, text: str = "") -> None:
    """Render Qt widgets side by side (the plots and a tab, or the window) to a PNG,
    with a caption below."""
    from PySide6 import QtCore, QtGui

    widgets = widgets if isinstance(widgets, (list, tuple)) else [widgets]
    parts = [w.grab() for w in widgets]
    widget = widgets[0]
    pixmap = parts[0]
    if len(parts) > 1:
        pixmap = QtGui.QPixmap(sum(p.width() for p in parts), max(p.height() for p in parts))
        pixmap.fill(widget.palette().color(QtGui.QPalette.ColorRole.Window))
        painter = QtGui.QPainter(pixmap)
        x = 0
        for part in parts:
            painter.drawPixmap(x, 0, part)
            x += part.width()
        painter.end()
    if text:
        metrics = QtGui.QFontMetrics(widget.font())
        strip = metrics.height() + 12
        out = QtGui.QPixmap(pixmap.width(), pixmap.height() + strip)
        out.fill(widget.palette().color(QtGui.QPalette.ColorRole.Window))
        painter = QtGui.QPainter(out)
        painter.drawPixmap(0, 0, pixmap)
        painter.setPen(widget.palette().color(QtGui.QPalette.ColorRole.WindowText))
        painter.drawText(
            QtCore.QRect(8, pixmap.height(), pixmap.width() - 16, strip),
            int(QtCore.Qt.AlignmentFlag.AlignVCenter),
            text,
        )
        painter.end()
        pixmap = out
    if not pixmap.save(str(path), "PNG"):
        raise OSError(f"could not write {path}")
