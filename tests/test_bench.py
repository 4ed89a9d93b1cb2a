"""`pyce bench`, `pyce info`, `pyce demo`: smoke runs with real checks on what they
report, and unit tests of the formatting helpers. No timing is asserted (DESIGN.md
section 7): only that times are positive and ratios finite.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

import pyce
from pyce import __main__ as cli
from pyce import bench

# --------------------------------------------------------------------------
# One quick run of the whole bench, shared by the tests that read its report
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "quick.json"
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        status = bench.main(["--quick", "--json", str(path)])
    assert status == 0
    with open(path) as f:
        report = json.load(f)
    return report, out.getvalue()


def _finite_positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_quick_json_top_level(quick_report):
    report, _ = quick_report
    for key in (
        "schema",
        "command",
        "versions",
        "cpu_info",
        "threads",
        "settings",
        "bandwidth_gbs",
        "results",
    ):
        assert key in report, key
    assert report["cpu_info"]["isa"] == pyce.cpu_info()["isa"]
    assert report["threads"] == pyce.get_num_threads()
    assert report["versions"]["numpy"] == np.__version__
    assert report["versions"]["pyce"] == pyce.__version__
    bw = report["bandwidth_gbs"]
    for k in ("read", "copy", "inplace", "copy_fresh"):
        assert _finite_positive(bw[k]), (k, bw)
    assert bw["nbytes"] > 0
    assert [tuple(s) for s in report["settings"]["shapes"]] == list(bench.QUICK_SHAPES)


def test_quick_json_rows(quick_report):
    report, _ = quick_report
    results = report["results"]
    settings = report["settings"]
    # One row per (shape, dtype, op), in that order.
    expected = [(list(s), d, o) for s in bench.QUICK_SHAPES for d in settings["dtypes"] for o in bench.OPS]
    assert [(r["shape"], r["dtype"], r["op"]) for r in results] == expected
    f32 = [r for r in results if r["dtype"] == "float32"]
    assert f32 and all(r["status"] == "ok" for r in f32)
    for r in f32:
        t = r["pyce"]
        assert _finite_positive(t["best_s"])
        assert t["best_s"] == min(t["samples_s"])
        assert t["runs"] == len(t["samples_s"]) >= 1 and t["calls_per_run"] >= 1
        assert _finite_positive(r["floor_s"]) and _finite_positive(r["x_floor"])
        assert _finite_positive(r["gbs"])
        n, v = r["shape"]
        factor = 1 if r["op"] in ("forward", "logsumexp") else 2
        assert r["bytes"] == factor * n * v * 4
        assert r["floor_kind"] == bench.FLOOR_KIND[r["op"]]
        assert (r["floor_kind"] == "copy") == ("floor_fresh_s" in r)
        assert math.isclose(r["x_floor"], t["best_s"] / r["floor_s"])
        # The in-cache time: measured on a slice of whole rows, scaled to all rows.
        assert _finite_positive(r["in_cache_s"])
        assert r["in_cache_rows"] == bench.in_cache_rows(r["shape"], 4, report["threads"])
        assert 1 <= r["in_cache_rows"] <= n
        # The NumPy reference runs on these small shapes (--quick: forward and fused only).
        ref = r["peers"]["numpy"]
        if r["op"] not in ("forward", "fused", "fused_out", "inplace"):
            assert ref["status"].startswith("skipped: --quick"), ref
            continue
        assert ref["status"] == "ok"
        assert _finite_positive(ref["best_s"]) and _finite_positive(ref["speedup"])
        assert math.isclose(ref["speedup"], ref["best_s"] / t["best_s"])
        for peer in settings["peers"]:
            e = r["peers"][peer]
            assert e["status"] == "ok" or e["status"].startswith(("n/a", "skipped")), e
            if e["status"] == "ok":
                assert _finite_positive(e["speedup"])
    # bfloat16 rows: measured when this build supports it, else reported as such.
    for r in results:
        if r["dtype"] == "bfloat16" and r["status"] != "ok":
            assert r["status"].startswith((bench.UNSUPPORTED, "bfloat16 needs ml_dtypes")), r


def test_quick_printed_table(quick_report):
    report, text = quick_report
    assert "streaming bandwidth" in text
    assert "pyce ms" in text and "x floor" in text and "in-cache ms" in text
    for r in report["results"]:
        assert bench.shape_str(r["shape"]) in text
    # Not a TTY here: no progress bar mixed into the output.
    assert "[#" not in text and "\r" not in text


def test_peers_missing_and_disabled(capsys):
    status = bench.main(
        [
            "--quick",
            "--no-peers",
            "--quiet",
            "--shapes",
            "8x100",
            "--dtypes",
            "float32",
            "--ops",
            "forward,inplace",
            "--repeat",
            "1",
        ]
    )
    assert status == 0
    out, err = capsys.readouterr()
    assert "numpy ms" not in out and "torch ms" not in out
    assert "8x100" in out and "fused inplace" in out
    assert err == ""


def test_reference_limit_skips_numpy(tmp_path):
    path = tmp_path / "r.json"
    bench.main(
        [
            "--quick",
            "--shapes",
            "4x100",
            "--dtypes",
            "float32",
            "--ops",
            "forward",
            "--peers",
            "numpy",
            "--reference-limit",
            "10",
            "--repeat",
            "1",
            "--quiet",
            "--json",
            str(path),
        ]
    )
    row = json.loads(path.read_text())["results"][0]
    assert row["peers"]["numpy"]["status"].startswith("skipped")
    assert row["status"] == "ok"


def test_bad_arguments_exit_with_usage(capsys):
    for argv in (
        ["--shapes", "64by1000"],
        ["--dtypes", "int8"],
        ["--ops", "sideways"],
        ["--peers", "tensorflow"],
        ["--repeat", "0"],
        ["--threads", "0"],
    ):
        with pytest.raises(SystemExit) as exc:
            bench.main(argv)
        assert exc.value.code == 2, argv
    assert "ROWSxCLASSES" in capsys.readouterr().err


def test_plot_written_or_clear_error(tmp_path):
    path = tmp_path / "p.png"
    argv = [
        "--quick",
        "--shapes",
        "4x100",
        "--dtypes",
        "float32",
        "--ops",
        "forward,fused",
        "--no-peers",
        "--repeat",
        "1",
        "--quiet",
        "--plot",
        str(path),
    ]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(SystemExit):
            bench.main(argv)
        return
    assert bench.main(argv) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------
# Memory and scaling measurements (small shapes)
# --------------------------------------------------------------------------


def test_memory_fused_allocates_one_gradient_inplace_none():
    shape = (64, 8192)  # 2 MiB of float32 logits: well above allocator noise
    nbytes = shape[0] * shape[1] * 4
    fused = bench.measure_memory("pyce fused", shape, "float32", threads=1)
    inplace = bench.measure_memory("pyce fused inplace", shape, "float32", threads=1)
    assert fused["status"] == "ok", fused
    assert inplace["status"] == "ok", inplace
    assert fused["logits_bytes"] == nbytes
    # NumPy's allocations: the returned gradient, and nothing else of size N x V.
    assert 0.99 <= fused["tracemalloc_x"] < 1.5
    assert inplace["tracemalloc_x"] < 0.5
    assert fused["extra_rss_bytes"] is not None and fused["extra_rss_bytes"] >= 0


def test_scaling_rows():
    x, t = bench.make_problem((16, 2048), "float32")
    rows = bench.measure_scaling(
        (16, 2048), "float32", ["forward", "fused"], [1, 2], repeat=1, min_time=0.001, problem=(x, t)
    )
    assert [(r["op"], r["threads"]) for r in rows] == [
        ("forward", 1),
        ("fused", 1),
        ("forward", 2),
        ("fused", 2),
    ]
    for r in rows:
        assert _finite_positive(r["time"]["best_s"]) and _finite_positive(r["stream_gbs"])
        assert _finite_positive(r["fraction_of_stream"]) and _finite_positive(r["speedup_vs_1"])
    assert all(r["speedup_vs_1"] == 1.0 for r in rows if r["threads"] == 1)
    text = bench.scaling_table(rows)
    assert "of stream" in text and len(text.splitlines()) == 2 + len(rows)


def test_time_call_runs_setup_before_every_call():
    calls = []
    timing = bench.time_call(
        lambda: calls.append("f"),
        setup=lambda: calls.append("s"),
        repeat=3,
        warmup=1,
        min_time=0.0,
        max_calls=1,
    )
    assert calls == ["s", "f"] * 4
    assert len(timing.samples) == 3 and timing.calls == 1
    assert timing.best == min(timing.samples) > 0


def test_in_cache_rows():
    mb = bench.IN_CACHE_BYTES
    # About IN_CACHE_BYTES of logits...
    assert bench.in_cache_rows((4096, 32000), 2, 2) == mb // (32000 * 2)
    assert bench.in_cache_rows((4096, 32000), 4, 1) == mb // (32000 * 4)
    # ...but at least 4 rows per thread (whole rows shared out, as on the full
    # problem), and never more rows than there are.
    assert bench.in_cache_rows((2048, 4 * mb), 4, 2) == 8
    assert bench.in_cache_rows((8, 256000), 4, 16) == 8
    assert bench.in_cache_rows((64, 1000), 4, 2) == 64


def test_measure_in_cache_scales_to_all_rows(monkeypatch):
    # With a fake clock-free op: time_call's best is replaced by a cost linear
    # in the rows (a fixed cost plus a per-row cost), and the in-cache time must
    # be the per-row cost times all rows, without the fixed cost.
    calls = []

    def fake_time_call(fn, **kw):
        fn()
        return bench.Timing(best=1e-3 + 2e-6 * calls[-1], samples=[0.0], calls=1)

    def fake_op(op, x, t):
        return (lambda: calls.append(x.shape[0])), None, None

    from pyce.bench import floors

    monkeypatch.setattr(floors, "time_call", fake_time_call)
    monkeypatch.setattr(floors, "pyce_op", fake_op)
    x = np.zeros((3000, 1024), np.float32)  # rows of 4 KiB: R = 1024 rows
    t = np.zeros(3000, np.int64)
    seconds, rows = bench.measure_in_cache("forward", x, t, threads=2)
    assert rows == bench.in_cache_rows(x.shape, 4, 2)
    assert sorted(set(calls)) == [rows, 2 * rows]
    assert math.isclose(seconds, 2e-6 * 3000)
    # Fewer than 2 * rows rows: the whole problem is timed, fixed cost included.
    calls.clear()
    small = np.zeros((10, 1024), np.float32)
    seconds, rows = bench.measure_in_cache("forward", small, t[:10], threads=2)
    assert rows == 10 and set(calls) == {10}
    assert math.isclose(seconds, 1e-3 + 2e-6 * 10)


def test_thread_counts():
    assert bench.thread_counts(1) == [1]
    assert bench.thread_counts(2) == [1, 2]
    assert bench.thread_counts(8) == list(range(1, 9))
    assert bench.thread_counts(16) == [1, 2, 4, 8, 16]
    assert bench.thread_counts(12) == [1, 2, 4, 8, 12]


# --------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------


def test_parse_shape():
    assert bench.parse_shape("4096x32000") == (4096, 32000)
    assert bench.parse_shape(" 8X256000 ") == (8, 256000)
    for bad in ("64", "64x", "x3", "2x3x4", "0x10", "ax b"):
        with pytest.raises(ValueError):
            bench.parse_shape(bad)


def test_parse_list():
    assert bench.parse_list("forward, fused", bench.OPS, "ops") == ["forward", "fused"]
    with pytest.raises(ValueError, match="unknown op"):
        bench.parse_list("forward,nope", bench.OPS, "ops")
    with pytest.raises(ValueError):
        bench.parse_list(" , ", bench.OPS, "ops")


def test_fmt_numbers():
    assert bench.fmt_ms(1.2345) == "1234"
    assert bench.fmt_ms(0.12345) == "123.5"
    assert bench.fmt_ms(0.012345) == "12.35"
    assert bench.fmt_ms(0.0012345) == "1.234"
    assert bench.fmt_ms(3.12e-5) == "0.0312"
    assert bench.fmt_ms(None) == "-" and bench.fmt_ms(float("nan")) == "-"
    assert bench.fmt_ratio(1.0712) == "1.07x"
    assert bench.fmt_ratio(46.21) == "46.2x"
    assert bench.fmt_ratio(1234.4) == "1234x"
    assert bench.fmt_ratio(float("inf")) == "-" and bench.fmt_ratio(None) == "-"
    assert bench.fmt_gbs(47.26) == "47.3"
    assert bench.fmt_mb(524_288_000) == "524.3"


def test_render_table_aligns_and_spans():
    text = bench.render_table(
        ["shape", "dtype", "op", "ms", "x"],
        [
            ["64x1000", "float32", "forward", "0.0312", "1.07x"],
            ["4096x32000", "bfloat16", "fused", bench.Span("unsupported by this pyce build")],
        ],
    )
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[0].split() == ["shape", "dtype", "op", "ms", "x"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    # Numbers right-aligned: every line's "ms" column ends at the same place.
    end = lines[0].index("ms") + len("ms")
    assert lines[2][:end].endswith("0.0312")
    assert lines[3].endswith("unsupported by this pyce build")
    # A span takes no column width: the header line is no wider than the numeric rows.
    assert len(lines[0]) <= len(lines[2])


def test_progress_line_and_bar():
    assert bench.progress_line(0, 4, "fused 4x4 float32", width=8) == "[........] 0/4 fused 4x4 float32"
    assert bench.progress_line(2, 4, width=8) == "[####....] 2/4"
    assert bench.progress_line(5, 4, width=8) == "[########] 5/4"
    stream = io.StringIO()
    p = bench.Progress(2, enabled=True, stream=stream)
    p.start("a")
    p.advance()
    p.start("b")
    p.close()
    s = stream.getvalue()
    assert "\r[" in s and "0/2 a" in s and "1/2 b" in s and s.endswith("\r")
    quiet = io.StringIO()
    q = bench.Progress(2, enabled=False, stream=quiet)
    q.start("a")
    q.close()
    assert quiet.getvalue() == ""


def test_results_table_from_rows():
    row = {
        "shape": [4, 10],
        "dtype": "float32",
        "op": "fused",
        "op_label": "fused",
        "status": "ok",
        "pyce": {"best_s": 0.002},
        "gbs": 50.0,
        "floor_s": 0.001,
        "x_floor": 2.0,
        "in_cache_s": 0.0015,
        "peers": {
            "torch": {"status": "ok", "best_s": 0.02, "speedup": 10.0},
            "numpy": {"status": "skipped: above 50M elements"},
        },
    }
    bad = {
        "shape": [4, 10],
        "dtype": "bfloat16",
        "op": "fused",
        "op_label": "fused",
        "status": bench.UNSUPPORTED + " (TypeError: no)",
        "pyce": None,
        "peers": {},
    }
    text = bench.results_table([row, bad], ["numpy", "torch"])
    lines = text.splitlines()
    assert "vs torch" in lines[0]
    assert lines[2].split() == [
        "4x10",
        "float32",
        "fused",
        "2.000",
        "50.0",
        "1.000",
        "2.00x",
        "1.500",
        "skipped",
        "20.00",
        "10.0x",
    ]
    assert bench.UNSUPPORTED in lines[3]
    notes = bench.table_notes([row], ["numpy", "torch"], {"jax": "not installed"})
    assert any(n.startswith("numpy: skipped") for n in notes)
    assert any(n.startswith("jax: not installed") for n in notes)


def test_memory_table():
    rows = [
        {
            "shape": [4, 10],
            "dtype": "float32",
            "kind": "pyce fused",
            "status": "ok",
            "extra_rss_bytes": 2_000_000,
            "extra_rss_x": 1.0,
            "tracemalloc_peak_bytes": 2_000_000,
            "tracemalloc_x": 1.0,
        },
        {"shape": [4, 10], "dtype": "bfloat16", "kind": "pyce fused", "status": bench.UNSUPPORTED},
    ]
    lines = bench.memory_table(rows).splitlines()
    assert lines[2].split()[-4:] == ["2.0", "1.00x", "2.0", "1.00x"]
    assert lines[3].endswith(bench.UNSUPPORTED)


# --------------------------------------------------------------------------
# The pyce command
# --------------------------------------------------------------------------


def test_cli_info(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    info = pyce.cpu_info()
    assert "instruction set" in out and info["isa"] in out
    assert "threads" in out and "NumPy" in out


def test_cli_info_json(capsys):
    assert cli.main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cpu_info"]["isa"] == pyce.cpu_info()["isa"]
    assert data["pyce"] == pyce.__version__


def test_cli_demo(capsys):
    assert cli.main(["demo", "--rows", "4", "--vocab", "1000"]) == 0
    out = capsys.readouterr().out
    assert "pyce.cross_entropy" in out and "pyce.reference.cross_entropy" in out
    losses = [float(line.split("loss = ")[1].split()[0]) for line in out.splitlines() if "loss = " in line]
    assert len(losses) == 2 and math.isclose(losses[0], losses[1], rel_tol=1e-5)


def test_cli_no_args_runs_demo_and_lists_subcommands(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert "loss = " in out
    for name in ("pyce info", "pyce bench", "pyce demo"):
        assert name in out


def test_cli_bench_dispatch_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: pyce bench" in out and "--memory" in out and "--scaling" in out
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "bench" in capsys.readouterr().out
    assert cli.main(["--version"]) == 0
    assert pyce.__version__ in capsys.readouterr().out
