"""The seeds' central example: a language model reads "The cat sat on the mat ." and
at each position guesses the next word. One row of logits per position over a
12-word vocabulary; the row's target is the word that came next.

A sentence's probability is the product of these conditionals,
P(w_1 … w_n) = Π q(w_i | w_<i), so its log is a sum of −log q(w_i) terms, and
their mean is log perplexity. The first position (predicting "The" from the
start token) is masked with -100, as a prompt's tokens are: it is not scored.
"""

from __future__ import annotations

import numpy as np

from .state import IGNORE_INDEX

VOCABULARY = ["<bos>", "The", "cat", "sat", "on", "the", "mat", ".", "dog", "floor", "a", "ran"]
WORDS = ["The", "cat", "sat", "on", "the", "mat", "."]  # the word each position predicts
MASKED = (0,)  # positions not scored

# The model's preferences at each position: {next word: logit}; every other word gets 0.
GUESSES = [
    {"The": 2.0, "a": 1.2},  # after <bos>
    {"cat": 3.0, "dog": 2.7, "mat": 0.4},  # after "The"
    {"sat": 3.4, "ran": 2.9, ".": 0.5},  # after "The cat"
    {"on": 4.2, ".": 1.1},  # after "… sat"
    {"the": 3.6, "a": 3.1},  # after "… on"
    {"mat": 2.6, "floor": 2.3, "cat": 0.9, "dog": 0.9},  # after "… the"
    {".": 3.3, "on": 0.6},  # after "… mat"
]


def batch():
    """(logits (7, 12) float64, targets (7,) with the masked positions at IGNORE_INDEX)."""
    index = {w: i for i, w in enumerate(VOCABULARY)}
    logits = np.zeros((len(WORDS), len(VOCABULARY)))
    for row, guesses in enumerate(GUESSES):
        for word, z in guesses.items():
            logits[row, index[word]] = z
    targets = np.array([index[w] for w in WORDS], dtype=np.int64)
    targets[list(MASKED)] = IGNORE_INDEX
    return logits, targets
