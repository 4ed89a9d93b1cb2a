"""`pyce bench --suite layouts|few-classes|tiny-calls`: the named suites run end to end on
small stand-ins for their shapes (the real ones move hundreds of MB), and report
times, floors and ratios that are positive and finite. No timing is asserted.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

from pyce import bench
from pyce.bench import suites


def _positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture
def small_suites(monkeypatch):
    Case = suites.Case
    monkeypatch.setitem(
        suites.SUITES,
        "layouts",
        [
            Case("(2,5,8,16) axis 1", (2, 5, 8, 16), 1, "fused_out"),
            Case("(2,5,8,16) axis 1", (2, 5, 8, 16), 1, "fused"),
            Case("(2,5,8,16) axis 1", (2, 5, 8, 16), 1, "forward"),
            Case("(2,5,8,16) axis 1", (2, 5, 8, 16), 1, "torch_fused"),
            Case("(300,64) axis 0", (300, 64), 0, "logsumexp"),
            Case("(300,64) axis 0", (300, 64), 0, "softmax"),
            Case("(300,64) axis 0", (300, 64), 0, "log_softmax"),
            Case("(2,5,8,16) axis 1", (2, 5, 8, 16), 1, "evaluate"),
            Case("(2,5,8,16) axis 1", (2, 5, 8, 16), 1, "entropy"),
            Case("(2,5,8,16) axis 1", (2, 5, 8, 16), 1, "kl_grad"),
            Case("(2,5,8,16) axis 1", (2, 5, 8, 16), 1, "focal_grad"),
        ],
    )
    monkeypatch.setitem(
        suites.SUITES,
        "few-classes",
        [Case("512x10", (512, 10), -1, "fused"), Case("512x10", (512, 10), -1, "forward")],
    )


@pytest.mark.parametrize("name", ["layouts", "few-classes"])
def test_suite_runs_and_reports(small_suites, tmp_path, name):
    path = tmp_path / "suite.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = bench.main(
            ["--suite", name, "--repeat", "1", "--min-time", "0.001", "--quiet", "--json", str(path)]
        )
    assert status == 0
    text = out.getvalue()
    assert f"suite {name}" in text
    report = json.loads(path.read_text())
    assert report["suite"] == name and len(report["rows"]) == len(suites.SUITES[name])
    for row in report["rows"]:
        if row["op"] == "torch_fused" and "pyce_s" not in row:
            assert row["status"] == "torch not installed"
            continue
        assert _positive(row["pyce_s"]) and _positive(row["floor_s"]) and _positive(row["x_floor"])
        assert row["label"] in text
        if "torch_s" in row:
            assert _positive(row["torch_s"]) and _positive(row["vs_torch"])
    if name == "layouts":
        ops = {r["op"]: r for r in report["rows"]}
        for op in ("evaluate", "entropy", "kl_grad", "focal_grad"):
            assert _positive(ops[op]["pyce_s"])
        # A natural PyTorch version exists for all but evaluate.
        if suites._optional("torch") is not None:
            assert all("torch_s" in ops[op] for op in ("entropy", "kl_grad", "focal_grad"))
            assert "torch_s" not in ops["evaluate"]
    if name == "few-classes":
        assert all(_positive(r["ns_per_row"]) and _positive(r["exp_floor_s"]) for r in report["rows"])
        assert "x exps" in text


def test_suite_names_in_help():
    assert set(suites.suite_names()) == {"layouts", "few-classes", "tiny-calls"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        bench.main(["--help"])
    assert "--suite" in out.getvalue()
    assert "tiny-calls" in out.getvalue()


def test_in_cache_slices_keep_the_kernel_path_and_double_the_elements():
    # The in-cache figure of the layouts suite times two slices whose
    # difference is the arithmetic of as many elements as the small one
    # holds: the same layout (axis, class count kept where it picks the
    # sweep) and exactly twice the elements.
    import numpy as np

    cases = [
        ((8, 21, 512, 512), 1),  # H-rows of one image, the 21 classes kept
        ((32000, 2048), 0),  # 1100 / 2200 classes: still the online sweep
        ((4096, 32000), 1),  # rows, classes last
    ]
    for shape, axis in cases:
        x = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape, (0,) * len(shape))
        t_shape = shape[:axis] + shape[axis + 1 :]
        t = np.zeros(t_shape, np.int64)
        (xs, ts), (xl, tl) = suites._in_cache_slices(x, t, axis)
        assert xl.size == 2 * xs.size
        assert xs.nbytes <= 2 * suites._IN_CACHE_BYTES
        assert ts.shape == xs.shape[:axis] + xs.shape[axis + 1 :]
        assert tl.shape == xl.shape[:axis] + xl.shape[axis + 1 :]
        if axis == 0:
            assert xs.shape[0] > 1024 and xs.shape[1] % 64 == 0
        elif len(shape) == 4:
            assert xs.shape[1] == shape[1]


def test_layouts_suite_reports_the_in_cache_figure(small_suites, tmp_path):
    path = tmp_path / "suite.json"
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert (
            bench.main(["--suite", "layouts", "--repeat", "1", "--min-time", "0.001", "--json", str(path)])
            == 0
        )
    assert "in-cache" in out.getvalue()
    rows = json.loads(path.read_text())["rows"]
    # (300, 64) axis 0 has too few classes for the online slices; (2,5,8,16) has H-rows.
    nchw = [r for r in rows if r["label"].startswith("(2,5,8,16)") and r["op"] != "torch_fused"]
    assert nchw and all(_positive(r["in_cache_s"]) for r in nchw)


def test_tiny_calls_suite_reports_pyce_torch_its_floor_and_pytorch(monkeypatch, tmp_path):
    """Issue 15 item 5: the pyce.torch per-call figure in `pyce bench`, with the
    do-nothing autograd.Function floor and PyTorch beside it (and the NumPy call)."""
    monkeypatch.setitem(suites.SUITES, "tiny-calls", [suites.Case("8x10", (8, 10), -1, "torch_step")])
    path = tmp_path / "suite.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = bench.main(
            ["--suite", "tiny-calls", "--repeat", "1", "--min-time", "0.001", "--quiet", "--json", str(path)]
        )
    assert status == 0
    text = out.getvalue()
    assert "suite tiny-calls" in text and "8x10" in text and "bound vs torch" in text
    (row,) = json.loads(path.read_text())["rows"]
    assert row["shape"] == [8, 10] and _positive(row["numpy_s"])
    if suites._optional("torch") is None:
        assert row["status"] == "torch not installed"
        return
    for key in ("pyce_s", "floor_s", "x_floor", "torch_s", "vs_torch", "bound_vs_torch"):
        assert _positive(row[key]), key


def test_tiny_calls_floor_does_nothing_but_autograd():
    """The floor is a loss step with no work: a 0-d zero loss and a zero gradient
    of the input's shape, through autograd like pyce.torch's."""
    torch = pytest.importorskip("torch")
    from pyce.bench.tiny_calls import nothing_function

    x = torch.randn(4, 3, requires_grad=True)
    loss = nothing_function(torch).apply(x, torch.zeros(4, dtype=torch.int64))
    assert loss.shape == () and loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert x.grad.shape == (4, 3) and not x.grad.any()
