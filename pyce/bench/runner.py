"""Running a benchmark: every shape, dtype and op, the peers beside, thread scaling."""

from __future__ import annotations

import gc
from typing import Optional, Sequence

from .environment import set_threads
from .floors import _probe_array, bandwidths, measure_floors, measure_in_cache, stream_probes
from .format import Progress, shape_str
from .ops import (
    FLOOR_KIND,
    OP_LABEL,
    PEER_OP,
    REFERENCE_LIMIT,
    TRAFFIC,
    check_pyce_support,
    make_problem,
    pyce_op,
)
from .peers import PeerUnavailable, peer_op
from .timing import time_against_floor, time_call


def measure_scaling(
    shape,
    dtype_name: str,
    ops: Sequence[str],
    counts: Sequence[int],
    *,
    repeat: int = 5,
    min_time: float = 0.02,
    progress: Optional[Progress] = None,
    problem=None,
) -> list:
    """Time pyce's ``ops`` at each thread count in ``counts`` with the floor re-measured at
    that count; restores the thread count it found. One dict per (op, threads)."""
    import pyce

    x, t = problem if problem is not None else make_problem(shape, dtype_name)
    before = pyce.get_num_threads()
    rows = []
    try:
        for n in counts:
            set_threads(n)
            floors = measure_floors(x.nbytes, repeat=repeat, min_time=min_time)
            bw = bandwidths(floors)
            for op in ops:
                if progress:
                    progress.start(f"scaling {op} {shape_str(shape)} {dtype_name} {n} thr")
                fn, setup, keep = pyce_op(op, x, t)
                tm = time_call(fn, setup=setup, repeat=repeat, min_time=min_time)
                del keep
                kind = FLOOR_KIND[op]
                traffic = TRAFFIC[kind] * x.nbytes
                rows.append(
                    {
                        "shape": list(shape),
                        "dtype": dtype_name,
                        "op": op,
                        "threads": n,
                        "time": tm.to_json(),
                        "floor_kind": kind,
                        "floor_s": floors[kind],
                        "stream_gbs": bw[kind],
                        "gbs": traffic / tm.best / 1e9,
                        "fraction_of_stream": floors[kind] / tm.best,
                    }
                )
                if progress:
                    progress.advance()
    finally:
        set_threads(before)
    base = {r["op"]: r["time"]["best_s"] for r in rows if r["threads"] == counts[0]}
    for r in rows:
        r["speedup_vs_1"] = base[r["op"]] / r["time"]["best_s"]
    return rows


# --------------------------------------------------------------------------
# The main benchmark
# --------------------------------------------------------------------------


def run_benchmark(
    shapes,
    dtypes,
    ops,
    peers,
    *,
    repeat=5,
    min_time=0.02,
    reference_limit=REFERENCE_LIMIT,
    progress: Optional[Progress] = None,
    floor_runs: int = 10,
    peer_ops: Optional[Sequence[str]] = None,
) -> list:
    """Time every (shape, dtype, op) for pyce and its peers; one dict per row.

    Two passes: pyce on every shape first, then the peers. PyTorch's OpenMP
    workers and JAX's thread pool keep cores busy for a while after a call, and
    on a machine with few cores that would slow whatever is timed next; so no
    pyce measurement follows a peer's. Peers are measured once per (shape,
    dtype, peer computation) and shared by the pyce ops compared with it (fused,
    fused out= and fused inplace share the peer's forward+backward).
    ``peer_ops`` limits which peer computations run (default: all).
    """
    compared_ops = set(PEER_OP.values()) if peer_ops is None else set(peer_ops)
    cases = []  # (shape, dtype_name, rows)
    for shape in shapes:
        for dtype_name in dtypes:
            cases.append(
                (
                    shape,
                    dtype_name,
                    _time_pyce(
                        shape,
                        dtype_name,
                        ops,
                        repeat=repeat,
                        min_time=min_time,
                        floor_runs=floor_runs,
                        progress=progress,
                    ),
                )
            )
    for shape, dtype_name, rows in cases:
        if any(row.get("pyce") for row in rows):
            _time_peers(
                shape,
                dtype_name,
                ops,
                rows,
                peers,
                compared_ops,
                repeat=repeat,
                min_time=min_time,
                reference_limit=reference_limit,
                progress=progress,
            )
        elif progress:
            compared = {PEER_OP[o] for o in ops} & compared_ops
            for _ in range(len(peers) * len(compared)):
                progress.advance()
    return [row for _, _, rows in cases for row in rows]


def _time_pyce(shape, dtype_name, ops, *, repeat, min_time, floor_runs, progress) -> list:
    """One row per op: pyce's time, and its floor probe timed alternately with it."""
    support = {op: check_pyce_support(op, dtype_name) for op in ops}
    if all(support.values()):
        if progress:
            for _ in ops:
                progress.advance()
        return [_row(shape, dtype_name, op, status=support[op]) for op in ops]
    x, t = make_problem(shape, dtype_name)
    import pyce

    threads = pyce.get_num_threads()
    if progress:
        progress.start(f"floor {shape_str(shape)} {dtype_name}")
    floors = measure_floors(x.nbytes, repeat=repeat, min_time=min_time, min_runs=floor_runs)
    # The probes each op is timed against, on buffers of the logits' size.
    read, scale, _ = stream_probes()
    probe_src, probe_dst = _probe_array(x.nbytes), _probe_array(x.nbytes)
    floor_fns = {
        "read": lambda: read(probe_src),
        "copy": lambda: scale(probe_src, probe_dst, 1.0),
        "inplace": lambda: scale(probe_src, probe_src, 1.0),
    }
    rows = []
    for op in ops:
        row = _row(shape, dtype_name, op, status=support[op])
        row["bytes"] = TRAFFIC[FLOOR_KIND[op]] * x.nbytes
        row["floor_kind"] = FLOOR_KIND[op]
        row["floor_s"] = floors[FLOOR_KIND[op]]
        row["floor_source"] = floors["source"]
        if FLOOR_KIND[op] == "copy":
            row["floor_fresh_s"] = floors["copy_fresh"]
        if progress:
            progress.start(f"{OP_LABEL[op]} {shape_str(shape)} {dtype_name} (pyce)")
        if support[op] is None:
            try:
                fn, setup, keep = pyce_op(op, x, t)
                tm, floor_tm = time_against_floor(
                    fn, floor_fns[FLOOR_KIND[op]], setup=setup, rounds=repeat, min_time=min_time
                )
                del keep
                row["floor_s"] = floor_tm.best
                row["floor_samples_s"] = floor_tm.samples
                row["pyce"] = tm.to_json()
                row["gbs"] = row["bytes"] / tm.best / 1e9
                row["x_floor"] = tm.best / row["floor_s"]
                row["in_cache_s"], row["in_cache_rows"] = measure_in_cache(
                    op, x, t, threads=threads, repeat=repeat, min_time=min_time
                )
            except Exception as exc:
                row["status"] = f"error: {type(exc).__name__}: {exc}"
        if progress:
            progress.advance()
        rows.append(row)
    return rows


def _time_peers(
    shape, dtype_name, ops, rows, peers, peer_ops, *, repeat, min_time, reference_limit, progress
) -> None:
    """Time the peers on the same problem and add them (and pyce's speed-up) to ``rows``."""
    x, t = make_problem(shape, dtype_name)
    peer_cache = {}
    for op, row in zip(ops, rows):
        for peer in peers:
            key = (peer, PEER_OP[op])
            if PEER_OP[op] not in peer_ops:
                peer_cache[key] = {"status": "skipped: --quick compares peers on forward and fused only"}
            if key not in peer_cache:
                if progress:
                    progress.start(f"{OP_LABEL[PEER_OP[op]]} {shape_str(shape)} {dtype_name} ({peer})")
                peer_cache[key] = _time_peer(
                    peer, PEER_OP[op], x, t, repeat=repeat, min_time=min_time, reference_limit=reference_limit
                )
                if progress:
                    progress.advance()
            entry = dict(peer_cache[key])
            if entry.get("status") == "ok" and row.get("pyce"):
                entry["speedup"] = entry["best_s"] / row["pyce"]["best_s"]
            row["peers"][peer] = entry
    if x.nbytes >= (64 << 20):  # autograd graphs / jax buffers in cycles; gc is slow with torch loaded
        del x, t, peer_cache
        gc.collect()


def _row(shape, dtype_name, op, status=None) -> dict:
    return {
        "shape": list(shape),
        "dtype": dtype_name,
        "op": op,
        "op_label": OP_LABEL[op],
        "status": status or "ok",
        "pyce": None,
        "peers": {},
    }


def _time_peer(peer, op, x, t, *, repeat, min_time, reference_limit) -> dict:
    """Time one peer computation; a dict with ``status`` 'ok', 'skipped: ...' or 'n/a: ...'."""
    if peer == "numpy" and reference_limit > 0 and x.size > reference_limit:
        return {"status": f"skipped: above {reference_limit / 1e6:g}M elements (--reference-limit 0 runs it)"}
    try:
        fn, setup = peer_op(peer, op, x, t)
        tm = time_call(fn, setup=setup, repeat=repeat, min_time=min_time)
    except PeerUnavailable as exc:
        return {"status": f"n/a: {exc}"}
    except Exception as exc:
        return {"status": f"n/a: {type(exc).__name__}: {str(exc)[:200]}"}
    out = {"status": "ok", "op": op}
    out.update(tm.to_json())
    return out
