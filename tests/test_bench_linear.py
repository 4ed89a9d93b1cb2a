"""pyce bench --suite linear and examples/llama_fused_head.py run end to end on tiny workloads."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from pyce.bench import cli, linear

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "llama_fused_head.py"


def test_suite_linear_tiny(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "linear.json"
    assert (
        cli.main(
            ["--suite", "linear", "--shapes", "64x16x700", "--rounds", "2", "--bfloat16", "--json", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "x the numpy GEMMs" in printed and "x faster than torch naive" in printed
    report = json.loads(out.read_text())
    names = set(report["timings"][0]["times"])
    for name in (
        "3 GEMMs (numpy)",
        "pyce (numpy)",
        "3 GEMMs (torch)",
        "pyce.torch",
        "torch naive",
        "pyce.torch bfloat16",
        "3 GEMMs (torch) bfloat16",
    ):
        assert name in names
    for entry in report["timings"][0]["times"].values():
        assert len(entry["samples_s"]) == 2 and entry["median_s"] > 0


def test_filter_study_and_memory(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setattr(linear, "FILTER_SHAPE", (256, 256, 20000))
    rows = linear.filter_study(linear.FILTER_SHAPE, rounds=1)
    flat, peaked = rows
    # Flat: 1/V = 5e-5 is below 2**-12, so only the blocks holding a target of
    # the chunk are kept -- nearly all of them here (256 targets, 40 blocks).
    assert flat["kept_block_fraction"] > 0.9
    assert peaked["kept_block_fraction"] < 0.5
    for row in rows:
        assert row["loss_difference"] == 0.0
        assert row["grad_hidden_max_error"] <= row["grad_hidden_bound"]
        assert row["grad_weight_max_error"] <= row["grad_weight_bound"]
    mem = linear.measure_memory("pyce (numpy)", (512, 16, 4000), threads=1)
    # The logits are 7.8 MiB; pyce holds one 48 MiB-or-smaller chunk of them at most.
    assert 0 <= mem["extra_bytes"] < 16 << 20
    assert 0 <= mem["extra_bytes_blas_warm"] < 16 << 20
    report = {"memory": [mem, {"method": "cut-cross-entropy", "shape": [512, 16, 4000], "extra_bytes": None}]}
    lines = linear.format_report(
        {"threads": 1, "rounds": 1, "blas": "-", "torch_blas": "-", "timings": []} | report
    )
    assert "BLAS warm" in lines and "not available" in lines


def test_shape_argument_errors():
    with pytest.raises(SystemExit):
        linear.main(["--shapes", "64x16"])
    with pytest.raises(ValueError, match="NxDxV"):
        linear.parse_shape3("1x2x0")


def test_llama_example_tiny(capsys):
    pytest.importorskip("transformers")
    spec = importlib.util.spec_from_file_location("llama_fused_head", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(
        ["--steps", "3", "--batch", "2", "--seq", "16", "--vocab", "3000", "--hidden", "32", "--threads", "1"]
    )
    printed = capsys.readouterr().out
    assert "loss curves" in printed and "peak memory" in printed
    np.testing.assert_allclose(out["fused"]["losses"], out["plain"]["losses"], rtol=1e-5)
    assert out["max_relative_difference"] < 1e-5


def test_memory_children_import_this_pyce_not_the_working_directorys(tmp_path, monkeypatch):
    # CI runs pytest from the source checkout, whose pyce/ has no compiled core:
    # a child started with `python -c` put the working directory first and
    # imported that one (KeyError 'extra_bytes' in the test above).
    pytest.importorskip("torch")
    from pyce import bench

    shadow = tmp_path / "pyce"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the shadowing checkout was imported')\n")
    monkeypatch.chdir(tmp_path)
    mem = linear.measure_memory("pyce (numpy)", (64, 8, 300), threads=1)
    assert "error" not in mem and isinstance(mem["extra_bytes"], int), mem
    row = bench.measure_memory("pyce fused", (64, 300), "float32", threads=1)
    assert "status" not in row or not str(row["status"]).startswith("error"), row
