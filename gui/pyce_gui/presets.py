"""Named starting points for the explorer, each a (partial) model state.

A preset resets temperature, smoothing and soft-target mode, so that the numbers
it is meant to show (e.g. the worked examples' losses) are what the readouts say.
"""

from __future__ import annotations

import math

import numpy as np

from .model import TOP_K

DEFAULT = "the-cat-sat"


def _state(logits, labels, target, note, **extra):
    state = {
        "logits": [float(v) for v in logits],
        "labels": list(labels),
        "target": int(target),
        "soft_mode": False,
        "soft_target": None,
        "temperature": 1.0,
        "label_smoothing": 0.0,
        "selected": int(target),
        "trajectory": [],
        "descent_start": None,
        "note": note,
    }
    state.update(extra)
    return state


def the_cat_sat():
    # A language model's next-word guess after "The cat sat on the ___";
    # the text continued with "mat".
    words = ["mat", "floor", "sofa", "bed", "rug", "chair", "roof", "table", "dog", "moon"]
    logits = [3.1, 2.4, 2.1, 1.6, 1.4, 1.0, 0.6, 0.3, -0.8, -1.5]
    return _state(logits, words, 0, 'Next word after "The cat sat on the ___"; the text said "mat".')


def uniform():
    n = 5
    return _state(
        [0.0] * n,
        [f"class {i}" for i in range(n)],
        0,
        f"All logits equal: q is uniform, loss = log {n} = {math.log(n):.4f}, perplexity = {n}.",
    )


def confident_right():
    return _state(
        [6.0, 1.0, 0.5, 0.0, -1.0],
        ["cat", "dog", "fox", "owl", "eel"],
        0,
        "The model is sure, and right: a small loss and a small gradient.",
    )


def confident_wrong():
    return _state(
        [6.0, 1.0, 0.5, 0.0, -1.0],
        ["cat", "dog", "fox", "owl", "eel"],
        3,
        "The model is sure, and wrong: a large loss and a strong push on two bars.",
    )


def worked_example_1():
    return _state(
        [2.0, 1.0, 3.0],
        ["class 0", "class 1", "class 2"],
        2,
        "logits [2, 1, 3], target 2: loss = -3 + log(e^2 + e^1 + e^3) = 0.4076.",
    )


def worked_example_2():
    # Logits log q give exactly q = (0.6, 0.1, 0.1, 0.1, 0.1).
    q = [0.6, 0.1, 0.1, 0.1, 0.1]
    return _state(
        [math.log(v) for v in q],
        [f"class {i}" for i in range(5)],
        0,
        "q = (0.6, 0.1, 0.1, 0.1, 0.1), target 0: loss = -log 0.6 = log(5/3) = 0.5108.",
    )


def large_vocabulary(n: int = 32000, seed: int = 0):
    # Zipf-like logits (a few likely tokens, a long tail), shuffled over the ids:
    # what a language model's row over a 32k vocabulary looks like.
    rng = np.random.default_rng(seed)
    rank = rng.permutation(n) + 1
    logits = -1.1 * np.log(rank) + rng.normal(0.0, 0.3, n) + 8.0
    target = int(np.argsort(rank)[3])  # the 4th most likely token
    return _state(
        logits,
        [f"tok{i}" for i in range(n)],
        target,
        f"A random {n}-token vocabulary: the bars show the top {TOP_K} tokens by q.",
    )


PRESETS = {
    DEFAULT: ("The cat sat on the …", the_cat_sat),
    "uniform": ("Uniform", uniform),
    "confident-right": ("Confident and right", confident_right),
    "confident-wrong": ("Confident and wrong", confident_wrong),
    "worked-1": ("Worked example: [2, 1, 3], target 2", worked_example_1),
    "worked-2": ("Worked example: q = (0.6, 0.1, …), target 0", worked_example_2),
    "large-vocab": ("Large random vocabulary (32k)", large_vocabulary),
}


def names():
    return list(PRESETS)


def title(name: str) -> str:
    return PRESETS[name][0]


def get(name: str) -> dict:
    """A fresh state dict for the preset ``name`` (KeyError lists the known names)."""
    try:
        return PRESETS[name][1]()
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
