"""The report of a benchmark: tables, notes and header (the figure is in plot.py)."""

from __future__ import annotations

from typing import Sequence

from .format import Span, TableBlock, fmt_gbs, fmt_mb, fmt_ms, fmt_ratio, render_table, shape_str
from .ops import IN_CACHE_BYTES, OP_LABEL


def results_table(results: Sequence[dict], peers: Sequence[str]) -> str:
    """The main table: one line per (shape, dtype, op)."""
    return render_table(*results_block(results, peers))


def results_block(results: Sequence[dict], peers: Sequence[str]) -> TableBlock:
    """The main table's headers and cells."""
    headers = ["shape", "dtype", "op", "pyce ms", "GB/s", "floor ms", "x floor", "in-cache ms"]
    for p in peers:
        headers += [f"{p} ms", f"vs {p}"]
    rows = []
    for r in results:
        cells = [shape_str(r["shape"]), r["dtype"], r["op_label"]]
        if r["status"] != "ok":
            rows.append(cells + [Span(r["status"])])
            continue
        best = r["pyce"]["best_s"]
        cells += [
            fmt_ms(best),
            fmt_gbs(r["gbs"]),
            fmt_ms(r["floor_s"]),
            fmt_ratio(r["x_floor"]),
            fmt_ms(r.get("in_cache_s")),
        ]
        for p in peers:
            e = r["peers"].get(p, {"status": "n/a"})
            if e.get("status") == "ok":
                cells += [fmt_ms(e["best_s"]), fmt_ratio(e.get("speedup"))]
            else:
                word = e.get("status", "n/a").split(":")[0]
                cells += [word, ""]
        rows.append(cells)
    return TableBlock(headers, rows)


def table_notes(results: Sequence[dict], peers: Sequence[str], missing: dict) -> list:
    """Footnotes: what the columns mean, and why a peer cell is empty."""
    notes = [
        "x floor = pyce time / time of pyce's stream probe moving the same bytes "
        "(read: forward, logsumexp; read+write: fused, backward; in place: fused inplace).",
        "GB/s counts the bytes the op must move (logits read, plus gradient written).",
        f"in-cache ms = the same op on its first R and 2R rows (R: about "
        f"{IN_CACHE_BYTES >> 20} MB of logits, at least 4 rows per thread), each called over "
        "and over so that it stays in cache; the cost of the R extra rows, scaled to all "
        "rows: the time the op's arithmetic takes without waiting for memory. Where it "
        "exceeds floor ms, the op is bound by compute on this machine and x floor cannot "
        "reach 1.",
        "vs PEER = PEER time / pyce time (>1: pyce faster). fused inplace is compared "
        "with the peer's forward+backward; torch backward = loss.backward() alone; "
        "jax backward = jit(grad(loss)).",
        "fused and backward return a new gradient array; from the second call of a "
        "shape on its memory comes from pyce's buffer cache, already mapped (run with "
        "PYCE_CACHE_MB=0 to see every call pay the first-touch page faults instead).",
    ]
    by_status: dict = {}  # status -> {peer: [where]}, in first-seen order
    for r in results:
        for p, e in r["peers"].items():
            s = e.get("status", "ok")
            if s != "ok":
                where = by_status.setdefault(s, {}).setdefault(p, [])
                key = f"{shape_str(r['shape'])} {r['dtype']}"
                if key not in where:
                    where.append(key)
    for s, who in by_status.items():
        places = sorted({w for ws in who.values() for w in ws}, key=lambda w: w)
        notes.append(f"{', '.join(who)}: {s} ({'; '.join(places)})")
    for p, why in missing.items():
        notes.append(f"{p}: {why}, not compared")
    return notes


def memory_table(rows: Sequence[dict]) -> str:
    return render_table(*memory_block(rows))


def memory_block(rows: Sequence[dict]) -> TableBlock:
    headers = ["shape", "dtype", "what", "extra peak RSS MB", "x logits", "tracemalloc MB", "x logits"]
    out = []
    for r in rows:
        cells = [shape_str(r["shape"]), r["dtype"], r["kind"]]
        if r.get("status") != "ok":
            out.append(cells + [Span(r.get("status", "?"))])
            continue
        out.append(
            cells
            + [
                fmt_mb(r["extra_rss_bytes"]),
                fmt_ratio(r["extra_rss_x"]),
                fmt_mb(r["tracemalloc_peak_bytes"]),
                fmt_ratio(r["tracemalloc_x"]),
            ]
        )
    return TableBlock(headers, out)


def scaling_table(rows: Sequence[dict]) -> str:
    return render_table(*scaling_block(rows))


def scaling_block(rows: Sequence[dict]) -> TableBlock:
    headers = ["shape", "dtype", "op", "threads", "ms", "speed-up", "GB/s", "stream GB/s", "of stream"]
    out = []
    for r in rows:
        out.append(
            [
                shape_str(r["shape"]),
                r["dtype"],
                OP_LABEL[r["op"]],
                str(r["threads"]),
                fmt_ms(r["time"]["best_s"]),
                fmt_ratio(r["speedup_vs_1"]),
                fmt_gbs(r["gbs"]),
                fmt_gbs(r["stream_gbs"]),
                f"{100 * r['fraction_of_stream']:.0f}%",
            ]
        )
    return TableBlock(headers, out)


def header_lines(info: dict, ver: dict, bw: dict, threads: int, exp_ns=None) -> list:
    """The lines printed above the tables: machine, build, bandwidth, exp throughput."""
    isa = info.get("isa")
    compute = []
    if exp_ns:
        compute = [
            f"compute: the sweeps' exp takes {exp_ns:.3f} ns per element on one thread "
            f"(L2-resident), i.e. {1 / exp_ns:.1f} G exps/s/thread; one exp per logit "
            f"bounds any kernel at {threads / exp_ns:.1f} G logits/s on {threads} threads"
        ]
    return [
        f"pyce {ver['pyce']}  isa={isa} openmp={info.get('openmp')} threads={threads}  "
        f"({ver['cpu_model'] or ver['machine']}, {ver['cpu_count']} logical CPUs)",
        "installed: "
        + ", ".join(f"{k} {ver[k]}" for k in ("numpy", "torch", "jax") if ver[k])
        + (f"; torch threads set to {threads}" if ver.get("torch") else "")
        + ("; jax uses its own thread pool" if ver.get("jax") else ""),
        f"streaming bandwidth ({fmt_mb(bw['nbytes'])} MB buffer, {bw['source']}): "
        f"read {fmt_gbs(bw['read'])} GB/s, read+write {fmt_gbs(bw['copy'])} GB/s, "
        f"in place {fmt_gbs(bw['inplace'])} GB/s (both directions counted); read+write into "
        f"a new array each call (page faults included) {fmt_gbs(bw.get('copy_fresh'))} GB/s",
    ] + compute


def report_blocks(report: dict) -> list:
    """What ``pyce bench`` prints, in order: lines of text and tables (:class:`TableBlock`)."""
    s = report["settings"]
    blocks = header_lines(
        report["cpu_info"],
        report["versions"],
        report["bandwidth_gbs"],
        report["threads"],
        report.get("exp_ns_per_element"),
    )
    blocks += ["", results_block(report["results"], s["peers"]), ""]
    blocks += ["  " + n for n in table_notes(report["results"], s["peers"], s["missing_peers"])]
    if "scaling" in report:
        blocks += [
            "",
            f"Thread scaling (1..{s['max_threads']} threads); 'of stream' = stream-probe "
            "time / pyce time, both at that thread count:",
            scaling_block(report["scaling"]),
        ]
    if "memory" in report:
        blocks += [
            "",
            "Peak extra memory of one call, each in a fresh process (RSS: VmHWM minus "
            "the RSS before the call, returned gradient included; tracemalloc: NumPy's "
            "allocations only):",
            memory_block(report["memory"]),
        ]
    return blocks


def format_report(report: dict) -> str:
    """Everything ``pyce bench`` prints, as plain text, from the report it writes with ``--json``."""
    return "\n".join(b if isinstance(b, str) else render_table(*b) for b in report_blocks(report))
