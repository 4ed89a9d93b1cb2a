"""``pyce bench --plot``: the benchmark as a figure (needs matplotlib).

One panel per shape (rows) and dtype (columns). In each, every op has a group
of bars: pyce's milliseconds, with the op's memory-bandwidth floor drawn
across its bar and pyce's ``x floor`` written above it, and each peer's
milliseconds beside it. The time axis is logarithmic, so a peer 20x slower is
as readable as pyce at 1.05x its floor. With ``--scaling`` a last row shows
GB/s against the thread count, next to the stream probe's.
"""

from __future__ import annotations

import math
from typing import Sequence

from .format import fmt_ratio, shape_str
from .ops import OP_LABEL

PYCE_COLOUR = "#1f77b4"
PEER_COLOURS = {"numpy": "#8c8c8c", "torch": "#ee4c2c", "jax": "#2ca02c"}
FLOOR_COLOUR = "black"


def _ms(seconds):
    return seconds * 1e3 if seconds is not None and math.isfinite(seconds) else None


def _panel_keys(results: Sequence[dict]):
    """Shapes and dtypes in the order they were run."""
    shapes, dtypes = [], []
    for r in results:
        shape, dtype = shape_str(r["shape"]), r["dtype"]
        if shape not in shapes:
            shapes.append(shape)
        if dtype not in dtypes:
            dtypes.append(dtype)
    return shapes, dtypes


def _draw_panel(ax, rows: Sequence[dict], peers: Sequence[str]) -> None:
    """One (shape, dtype): a group of bars per op."""
    width = 0.8 / (1 + len(peers))
    labels = []
    for i, r in enumerate(rows):
        labels.append(r["op_label"].replace(" ", "\n", 1))
        if r["status"] != "ok":
            ax.text(
                i,
                0.5,
                r["status"].split(":")[0],
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="center",
                rotation=90,
                fontsize=7,
                color="0.4",
            )
            continue
        left = i - 0.4 + width / 2
        pyce_ms = _ms(r["pyce"]["best_s"])
        ax.bar(left, pyce_ms, width, color=PYCE_COLOUR)
        floor_ms = _ms(r.get("floor_s"))
        if floor_ms is not None:
            ax.hlines(floor_ms, left - width / 2, left + width / 2, colors=FLOOR_COLOUR, lw=2)
        top = max(pyce_ms, floor_ms or 0.0)  # the label clears both the bar and the floor
        ax.annotate(
            fmt_ratio(r.get("x_floor")),
            (left, top),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=6.5,
            rotation=90,
        )
        for j, peer in enumerate(peers, start=1):
            entry = r["peers"].get(peer, {})
            peer_ms = _ms(entry.get("best_s")) if entry.get("status") == "ok" else None
            if peer_ms is not None:
                ax.bar(left + j * width, peer_ms, width, color=PEER_COLOURS.get(peer, "0.6"))
    from matplotlib.ticker import LogFormatter

    # Plain numbers (0.1, 20, 5000) rather than 2x10^1; some minor ticks are
    # labelled too when the panel spans about a decade or less.
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(LogFormatter())
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_xlim(-0.5, len(rows) - 0.5)
    ax.grid(axis="y", which="major", color="0.9", lw=0.6)
    ax.set_axisbelow(True)
    ax.margins(y=0.25)


def _draw_scaling(ax, scaling: Sequence[dict]) -> None:
    keys = []
    for r in scaling:
        key = (shape_str(r["shape"]), r["dtype"], r["op"])
        if key not in keys:
            keys.append(key)
    for key in keys:
        pts = [r for r in scaling if (shape_str(r["shape"]), r["dtype"], r["op"]) == key]
        threads = [r["threads"] for r in pts]
        (line,) = ax.plot(
            threads, [r["gbs"] for r in pts], marker="o", label=f"{key[0]} {key[1]} {OP_LABEL[key[2]]}"
        )
        ax.plot(threads, [r["stream_gbs"] for r in pts], ls=":", color=line.get_color())
    ax.set_xticks(sorted({r["threads"] for r in scaling}))
    ax.set_xlabel("threads")
    ax.set_ylabel("GB/s (dotted: stream probe)")
    ax.set_title("thread scaling", fontsize=9)
    ax.legend(fontsize=6.5, ncol=2)


def plot_results(
    path: str, results: Sequence[dict], peers: Sequence[str], scaling: Sequence[dict] = (), title: str = ""
) -> None:
    """Write the benchmark figure to ``path`` (PNG, or any format matplotlib infers)."""
    benchmark_figure(results, peers, scaling, title).savefig(path, dpi=120)


def benchmark_figure(
    results: Sequence[dict], peers: Sequence[str], scaling: Sequence[dict] = (), title: str = ""
):
    """The figure as a matplotlib ``Figure`` (no pyplot: no global state, nothing to close)."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
    except ImportError:
        raise RuntimeError(
            "--plot needs matplotlib: pip install matplotlib (or pip install 'pyce[bench]')"
        ) from None
    shapes, dtypes = _panel_keys(results)
    nrows = len(shapes) + (1 if scaling else 0)
    ncols = max(1, len(dtypes))
    n_ops = max(
        1,
        max(
            sum(1 for r in results if r["dtype"] == d and shape_str(r["shape"]) == s)
            for s in shapes
            for d in dtypes
        )
        if results
        else 1,
    )
    fig_w = max(6.0, ncols * (1.0 + 0.55 * n_ops * (1 + len(peers)) ** 0.5))
    fig = Figure(figsize=(fig_w, 2.9 * nrows + 0.9))
    grid = fig.add_gridspec(nrows, ncols)
    for i, shape in enumerate(shapes):
        for j, dtype in enumerate(dtypes):
            ax = fig.add_subplot(grid[i, j])
            rows = [r for r in results if shape_str(r["shape"]) == shape and r["dtype"] == dtype]
            _draw_panel(ax, rows, peers)
            ax.set_title(f"{shape} {dtype}", fontsize=9)
            if j == 0:
                ax.set_ylabel("ms (log)")
    if scaling:
        _draw_scaling(fig.add_subplot(grid[nrows - 1, :]), scaling)
    handles = [
        Patch(color=PYCE_COLOUR, label="pyce (number: x floor)"),
        Line2D([], [], color=FLOOR_COLOUR, lw=2, label="memory-bandwidth floor"),
    ]
    handles += [Patch(color=PEER_COLOURS.get(p, "0.6"), label=p) for p in peers]
    height = fig.get_figheight()
    fig.suptitle(
        title or "pyce bench: time per call (lower is better)", y=1 - 0.08 / height, va="top", fontsize=10
    )
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=len(handles),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 1 - 0.3 / height),
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.55 / height))
    return fig
