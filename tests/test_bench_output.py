"""``pyce bench``'s figure (--plot) and its terminal output (rich, or plain text).

Synthetic results, no timing: what is drawn and printed is checked against the
numbers it was given.
"""

from __future__ import annotations

import io

import pytest

from pyce import bench
from pyce.bench import console


def _row(shape, dtype, op, pyce_s, floor_s, peers=None, status="ok"):
    label = bench.OP_LABEL[op]
    if status != "ok":
        return {
            "shape": list(shape),
            "dtype": dtype,
            "op": op,
            "op_label": label,
            "status": status,
            "pyce": None,
            "peers": {},
        }
    return {
        "shape": list(shape),
        "dtype": dtype,
        "op": op,
        "op_label": label,
        "status": "ok",
        "pyce": {"best_s": pyce_s},
        "floor_s": floor_s,
        "x_floor": pyce_s / floor_s,
        "gbs": 40.0,
        "in_cache_s": pyce_s / 2,
        "peers": peers or {},
    }


RESULTS = [
    _row(
        (64, 1000),
        "float32",
        "forward",
        1e-5,
        2e-6,
        {"torch": {"status": "ok", "best_s": 3e-5, "speedup": 3.0}},
    ),
    _row(
        (64, 1000),
        "float32",
        "fused",
        2e-5,
        4e-6,
        {"torch": {"status": "ok", "best_s": 9e-5, "speedup": 4.5}},
    ),
    _row((64, 1000), "bfloat16", "forward", 1.5e-5, 1e-6, {"torch": {"status": "skipped: not compared"}}),
    _row((64, 1000), "bfloat16", "fused", None, None, status=bench.UNSUPPORTED + " (no)"),
    _row(
        (4096, 32000),
        "float32",
        "forward",
        0.012,
        0.0122,
        {"torch": {"status": "ok", "best_s": 0.16, "speedup": 13.3}},
    ),
    _row(
        (4096, 32000),
        "float32",
        "fused",
        0.026,
        0.024,
        {"torch": {"status": "ok", "best_s": 0.42, "speedup": 16.2}},
    ),
    _row((4096, 32000), "bfloat16", "forward", 0.0064, 0.0041, {}),
    _row((4096, 32000), "bfloat16", "fused", 0.0099, 0.0077, {}),
]
SCALING = [
    {
        "shape": [4096, 32000],
        "dtype": "float32",
        "op": "forward",
        "threads": n,
        "gbs": 30.0 * n,
        "stream_gbs": 35.0 * n,
    }
    for n in (1, 2)
]


def _figure(**kwargs):
    pytest.importorskip("matplotlib")
    from pyce.bench.plot import benchmark_figure

    return benchmark_figure(RESULTS, ["torch"], **kwargs)


def test_one_panel_per_shape_and_dtype_in_run_order():
    fig = _figure()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["64x1000 float32", "64x1000 bfloat16", "4096x32000 float32", "4096x32000 bfloat16"]
    assert all(ax.get_yscale() == "log" for ax in fig.axes)
    assert fig.axes[0].get_ylabel() == "ms (log)"


def test_bars_are_milliseconds_of_pyce_and_peers_with_the_floor_and_x_floor():
    ax = _figure().axes[2]  # 4096x32000 float32
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == sorted([12.0, 160.0, 26.0, 420.0])  # pyce and torch, ms
    floors = sorted(round(float(seg[0][1]), 6) for c in ax.collections for seg in c.get_segments())
    assert floors == [12.2, 24.0]
    labels = [t.get_text() for t in ax.texts]
    assert labels == [bench.fmt_ratio(0.012 / 0.0122), bench.fmt_ratio(0.026 / 0.024)]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["forward", "fused"]


def test_a_peer_not_measured_draws_no_bar_and_an_unsupported_op_says_so():
    ax = _figure().axes[1]  # 64x1000 bfloat16: torch skipped, fused unsupported
    assert [round(p.get_height(), 6) for p in ax.patches] == [0.015]
    assert "unsupported" in " ".join(t.get_text() for t in ax.texts)


def test_scaling_adds_a_row_and_the_legend_names_every_series(tmp_path):
    fig = _figure(scaling=SCALING, title="a run")
    assert len(fig.axes) == 5 and fig.axes[-1].get_xlabel() == "threads"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["pyce (number: x floor)", "memory-bandwidth floor", "torch"]
    assert fig.texts[0].get_text() == "a run"
    path = tmp_path / "bench.png"
    bench.plot_results(str(path), RESULTS, ["torch"], SCALING)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _report():
    return {
        "settings": {"peers": ["torch"], "missing_peers": {}, "max_threads": 2},
        "cpu_info": {"isa": "avx2", "openmp": True},
        "versions": {
            "pyce": "0.0",
            "numpy": "2",
            "torch": "2",
            "jax": None,
            "cpu_model": "a CPU",
            "machine": "x86_64",
            "cpu_count": 2,
        },
        "bandwidth_gbs": {
            "nbytes": 1e6,
            "source": "test",
            "read": 40.0,
            "copy": 35.0,
            "inplace": 60.0,
            "copy_fresh": 20.0,
        },
        "threads": 2,
        "results": RESULTS,
    }


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_piped_output_is_the_plain_text_report():
    out = io.StringIO()
    console.print_report(_report(), out)
    assert out.getvalue() == bench.format_report(_report()) + "\n"


def test_a_terminal_gets_rich_tables_with_every_number():
    pytest.importorskip("rich")
    out = _Terminal()
    console.print_report(_report(), out)
    text = out.getvalue()
    plain = bench.format_report(_report())
    assert text != plain + "\n"
    assert "-----  --------" not in text  # not the plain table's rule
    (table,) = [b for b in bench.report_blocks(_report()) if not isinstance(b, str)]
    for row in table.rows:
        for cell in row:
            assert str(cell).split(" (")[0] in text


def test_without_rich_a_terminal_gets_plain_text(monkeypatch):
    monkeypatch.setattr(console, "rich_available", lambda: False)
    out = _Terminal()
    console.print_report(_report(), out)
    assert out.getvalue() == bench.format_report(_report()) + "\n"


def test_progress_is_rich_on_a_terminal_and_silent_otherwise(monkeypatch):
    assert isinstance(console.make_progress(3, io.StringIO(), quiet=False), bench.Progress)
    quiet = console.make_progress(3, _Terminal(), quiet=True)
    assert isinstance(quiet, bench.Progress) and not quiet.enabled
    monkeypatch.setattr(console, "rich_available", lambda: False)
    plain = console.make_progress(3, _Terminal(), quiet=False)
    assert isinstance(plain, bench.Progress) and plain.enabled
    monkeypatch.undo()
    pytest.importorskip("rich")
    stream = _Terminal()
    bar = console.make_progress(3, stream, quiet=False)
    assert isinstance(bar, console.RichProgress)
    bar.start("fused 4x4 float32")
    bar.advance()
    bar.close()
    assert "fused 4x4 float32" in stream.getvalue()
