"""Files in and out: logits and targets (.npy), state (.json), numbers (.csv), plots (.png).

Everything here except :func:`save_png` is plain Python + NumPy, so it is tested
without Qt; :func:`save_png` only calls the widget's own ``grab()``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

STATE_FORMAT = "pyce-gui-state"
STATE_VERSION = 1


def load_logits(path) -> np.ndarray:
    """Logits from a .npy file: one row (V,) / (1, V), or a batch (N, V)."""
    arr = np.load(Path(path), allow_pickle=False)
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
    """Integer class indices from a .npy file, one per row of a batch."""
    arr = np.load(Path(path), allow_pickle=False)
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
    """A state dict from :func:`save_state`'s JSON, for ``model.set_state``."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a pyce-gui state file")
    if doc.get("version", 0) > STATE_VERSION:
        raise ValueError(f"{path} was written by a newer pyce-gui (version {doc['version']})")
    return {k: v for k, v in doc.items() if k not in ("format", "version")}


def save_csv(model, path) -> None:
    """The current numbers: one row per class, then the readouts as name,value rows."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["class", "label", "logit", "q", "log_q", "p", "grad_q_minus_p", "is_target"])
        t = model.target_class
        for i in range(model.n_classes):
            w.writerow([i, model.labels[i], repr(float(model.logits[i])), repr(float(model.q[i])),
                        repr(float(model.log_q[i])), repr(float(model.p[i])),
                        repr(float(model.grad[i])), int(i == t)])
        w.writerow([])
        w.writerow(["quantity", "value"])
        for name, value in model.summary().items():
            w.writerow([name, value])
        if model.batch is not None:
            b = model.batch
            for name, value in [("batch_rows", b.shape[0]), ("batch_vocab", b.shape[1]),
                                ("batch_mean_loss", b.mean_loss),
                                ("batch_perplexity", b.perplexity),
                                ("batch_accuracy", b.accuracy),
                                ("batch_forward_ms", b.forward_ms),
                                ("batch_fused_ms", b.fused_ms)]:
                w.writerow([name, value])


def save_png(widget, path) -> None:
    """Render a Qt widget (the plots, or the whole window) to a PNG file."""
    if not widget.grab().save(str(path), "PNG"):
        raise OSError(f"could not write {path}")
