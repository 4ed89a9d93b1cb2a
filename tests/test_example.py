"""examples/char_lm.py runs end to end (a tiny configuration) and its two loss curves agree."""

from __future__ import annotations

import importlib.util
import math
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pyce  # noqa: E402

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "char_lm.py"


@pytest.fixture
def char_lm():
    spec = importlib.util.spec_from_file_location("char_lm_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_training_run(char_lm, capsys):
    out = char_lm.main(
        [
            "--steps",
            "60",
            "--batch",
            "64",
            "--hidden",
            "48",
            "--embed",
            "8",
            "--timing-batch",
            "512",
            "--token-vocab",
            "3000",
            "--token-rows",
            "16",
            "--sample",
            "30",
        ]
    )
    printed = capsys.readouterr().out
    for phrase in ("loss curves", "speed-up", "final perplexity", "sample:"):
        assert phrase in printed
    a, b = out["losses_pyce"], out["losses_torch"]
    assert a.shape == b.shape == (60,)
    # Same model, same batches: the curves differ only by float32 rounding.
    assert out["max_curve_diff"] < 1e-4
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # It learns: from about log(V) (uniform) to clearly below it.
    V = out["vocab"]
    assert abs(a[0] - math.log(V)) < 0.5
    assert a[-5:].mean() < a[0] - 0.5
    result = out["evaluation"]
    assert isinstance(result, pyce.EvalResult) and result.n_tokens > 1000
    assert 1.0 < result.perplexity < V
    assert 0.0 <= result.ece <= 1.0 and 0.0 < result.accuracy[1] <= result.accuracy[5] <= 1.0
    for key in ("speedup", "token_vocab_speedup"):
        assert math.isfinite(out[key]) and out[key] > 0


def test_model_and_text(char_lm):
    text = char_lm.load_text("argparse")
    assert len(text) > 10_000  # a real text, from the standard library
    model = char_lm.NeuralNgram(vocab=30, context=4, embed=3, hidden=5)
    x, y = char_lm.make_windows(np.arange(20) % 30, 4)
    assert x.shape == (16, 4) and y.shape == (16,)
    np.testing.assert_array_equal(x[1].numpy(), [1, 2, 3, 4])
    assert y[0] == 4
    assert model(x).shape == (16, 30)
