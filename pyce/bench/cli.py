"""``pyce bench``'s command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Optional, Sequence

import numpy as np

from .console import make_progress, print_report
from .environment import set_threads, thread_counts, versions
from .floors import bandwidths, measure_exp_throughput, measure_floors
from .format import parse_list, parse_shape, shape_str
from .memory import measure_memory, memory_kinds
from .ops import (
    DEFAULT_DTYPES,
    DEFAULT_SHAPES,
    KNOWN_DTYPES,
    OPS,
    PEER_OP,
    PEERS,
    QUICK_SHAPES,
    REFERENCE_LIMIT,
    check_pyce_support,
)
from .peers import available_peers
from .plot import plot_results
from .runner import measure_scaling, run_benchmark
from .suites import SUITES, format_suite, run_suite, suite_names


def build_parser(prog: str = "pyce bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Time pyce's cross-entropy kernels against the memory-bandwidth floor "
        "(measured in the same run) and against the NumPy reference, PyTorch and "
        "JAX when installed. Each figure is the best of --repeat runs after a "
        "warm-up.",
        epilog="Example: pyce bench --shapes 4096x32000 --dtypes float32 --memory --scaling "
        "--json out.json --plot out.png. `pyce bench --suite linear --help`: the fused "
        "linear cross-entropy (LM head) suite.",
    )
    p.add_argument(
        "--shapes",
        help="comma-separated ROWSxCLASSES (default: " + ",".join(map(shape_str, DEFAULT_SHAPES)) + ")",
    )
    p.add_argument(
        "--dtypes", help="comma-separated, from " + ", ".join(KNOWN_DTYPES) + " (default: float32,bfloat16)"
    )
    p.add_argument(
        "--ops", default=",".join(OPS), help="comma-separated, from " + ", ".join(OPS) + " (default: all)"
    )
    p.add_argument(
        "--peers",
        default=",".join(PEERS),
        help="comma-separated, from numpy (the float64 reference), torch, jax (default: those installed)",
    )
    p.add_argument("--no-peers", action="store_true", help="time pyce and the floor only")
    p.add_argument("--threads", type=int, help="threads for pyce and torch (default: pyce's)")
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per figure; the best is reported (default 5; 3 with --quick)",
    )
    p.add_argument(
        "--min-time",
        type=float,
        default=None,
        help="a run of a short call averages calls for at least this many seconds "
        "(default 0.02; 0.005 with --quick)",
    )
    p.add_argument(
        "--reference-limit",
        type=float,
        default=REFERENCE_LIMIT,
        help="skip the NumPy reference above this many elements, it is slow and "
        "needs several float64 copies (default 50e6; 0: never skip)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a fast smoke run: small shapes ("
        + ",".join(map(shape_str, QUICK_SHAPES))
        + "), 3 runs, peers on forward and fused only",
    )
    p.add_argument(
        "--memory",
        action="store_true",
        help="also measure the peak extra memory of pyce fused / fused inplace / "
        "PyTorch forward+backward (one subprocess per measurement)",
    )
    p.add_argument(
        "--scaling",
        action="store_true",
        help="also time pyce at 1..N threads (N = CPU count), each against the "
        "streaming bandwidth at that thread count",
    )
    p.add_argument(
        "--max-threads",
        type=int,
        default=None,
        help="largest thread count for --scaling (default: os.cpu_count())",
    )
    p.add_argument("--json", metavar="FILE", help="write every raw number to FILE")
    p.add_argument("--plot", metavar="FILE.png", help="draw the results (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--suite",
        choices=suite_names(),
        help="run a named suite instead of the default table: 'layouts' (class axis not "
        "innermost: (8,21,512,512) axis 1, axis-0 reductions of (32000,2048)), "
        "'few-classes' (2 to 1000 classes), 'tiny-calls' (pyce.torch's per-call cost at 64x10)",
    )
    return p


def main(argv: Optional[Sequence[str]] = None, prog: str = "pyce bench") -> int:
    """Entry point of ``pyce bench`` and ``python -m pyce.bench``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["--suite", "linear"] or argv[:1] == ["--suite=linear"]:
        # The fused linear cross-entropy has its own workloads and report.
        from . import linear

        return linear.main(argv[2 if argv[0] == "--suite" else 1 :], prog=f"{prog} --suite linear")
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        shapes = (
            [parse_shape(s) for s in args.shapes.split(",") if s.strip()]
            if args.shapes
            else list(QUICK_SHAPES if args.quick else DEFAULT_SHAPES)
        )
        if not shapes:
            raise ValueError("--shapes is empty")
        dtypes = parse_list(args.dtypes or ",".join(DEFAULT_DTYPES), KNOWN_DTYPES, "dtypes")
        ops = parse_list(args.ops, OPS, "ops")
        requested = [] if args.no_peers else parse_list(args.peers, PEERS, "peers")
    except ValueError as exc:
        parser.error(str(exc))
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.plot:  # fail before the long run, not after it
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install matplotlib (or pip install 'pyce[bench]')")
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 5)
    if repeat < 1:
        parser.error("--repeat must be >= 1")
    reference_limit = int(args.reference_limit)
    if args.min_time is None:
        args.min_time = 0.005 if args.quick else 0.02

    import pyce

    if args.suite:
        return _run_suite(args, repeat, requested)

    peers, missing = available_peers(requested)
    if args.threads is not None:
        set_threads(args.threads)
    elif "torch" in peers:
        set_threads(pyce.get_num_threads())  # torch on the same thread count as pyce
    threads = pyce.get_num_threads()

    out = sys.stdout
    ver = versions()
    info = pyce.cpu_info()
    bw_bytes = (16 << 20) if args.quick else (512 << 20)
    floor_runs = repeat if args.quick else 10
    bw_floors = measure_floors(bw_bytes, repeat=repeat, min_time=args.min_time, min_runs=floor_runs)
    bw = dict(bandwidths(bw_floors), nbytes=bw_bytes, source=bw_floors["source"])

    compared = {PEER_OP[o] for o in ops} & ({"forward", "fused"} if args.quick else set(OPS))
    n_tasks = len(shapes) * len(dtypes) * (len(ops) + len(compared) * len(peers))
    max_threads = args.max_threads or os.cpu_count() or 1
    counts = thread_counts(max_threads)
    if args.scaling:
        n_tasks += len(shapes) * len(dtypes) * len(ops) * len(counts)
    if args.memory:
        n_tasks += sum(len(memory_kinds(peers, sh, reference_limit)) for sh in shapes) * len(dtypes)
    progress = make_progress(n_tasks, sys.stderr, args.quiet)

    report: dict = {
        "schema": 1,
        "command": ["pyce", "bench"] + list(argv if argv is not None else sys.argv[1:]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": ver,
        "cpu_info": info,
        "threads": threads,
        "settings": {
            "shapes": [list(s) for s in shapes],
            "dtypes": dtypes,
            "ops": ops,
            "peers": peers,
            "missing_peers": missing,
            "repeat": repeat,
            "min_time_s": args.min_time,
            "reference_limit": reference_limit,
            "max_threads": max_threads,
        },
        "bandwidth_gbs": bw,
        "exp_ns_per_element": measure_exp_throughput(repeat=repeat),
    }
    try:
        results = run_benchmark(
            shapes,
            dtypes,
            ops,
            peers,
            repeat=repeat,
            min_time=args.min_time,
            reference_limit=reference_limit,
            progress=progress,
            floor_runs=floor_runs,
            peer_ops=("forward", "fused") if args.quick else None,
        )
        report["results"] = results
        scaling = []
        if args.scaling:
            for shape in shapes:
                for dtype_name in dtypes:
                    ok_ops = [o for o in ops if check_pyce_support(o, dtype_name) is None]
                    if ok_ops:
                        scaling += measure_scaling(
                            shape,
                            dtype_name,
                            ok_ops,
                            counts,
                            repeat=repeat,
                            min_time=args.min_time,
                            progress=progress,
                        )
            report["scaling"] = scaling
        memory = []
        if args.memory:
            for shape in shapes:
                for dtype_name in dtypes:
                    why = check_pyce_support("fused", dtype_name)
                    for kind in memory_kinds(peers, shape, reference_limit):
                        progress.start(f"memory {kind} {shape_str(shape)} {dtype_name}")
                        if why is not None and kind.startswith("pyce"):
                            memory.append(
                                {"kind": kind, "shape": list(shape), "dtype": dtype_name, "status": why}
                            )
                        elif why is None:
                            memory.append(measure_memory(kind, shape, dtype_name, threads))
                        progress.advance()
            report["memory"] = memory
    finally:
        progress.close()

    if args.json:  # first: the raw numbers survive a failure to print or plot
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=_json_default)
    print_report(report, out)
    if args.json:
        print(f"\nwrote {args.json}", file=out)
    if args.plot:
        plot_results(args.plot, results, peers, report.get("scaling", ()), title=plot_title(report))
        print(f"wrote {args.plot}", file=out)
    return 0


def _run_suite(args, repeat: int, requested) -> int:
    """``--suite NAME``: that suite's table (and --json), nothing else."""
    import pyce

    if args.threads is not None:
        set_threads(args.threads)
    elif "torch" in requested:
        set_threads(pyce.get_num_threads())
    progress = make_progress(len(SUITES[args.suite]), sys.stderr, args.quiet)
    try:
        result = run_suite(
            args.suite, repeat=repeat, min_time=args.min_time, peers="torch" in requested, progress=progress
        )
    finally:
        progress.close()
    result.update(
        command=["pyce", "bench"] + list(sys.argv[1:]),
        versions=versions(),
        cpu_info=pyce.cpu_info(),
        threads=pyce.get_num_threads(),
        time=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=_json_default)
    print(f"pyce {pyce.__version__}, isa {pyce.cpu_info()['isa']}, {pyce.get_num_threads()} threads")
    print(format_suite(result))
    return 0


def plot_title(report: dict) -> str:
    """The figure's title: what ran, where."""
    ver, info = report["versions"], report["cpu_info"]
    machine = ver.get("cpu_model") or ver.get("machine") or "this machine"
    return (
        f"pyce {ver['pyce']} bench: ms per call (log), lower is better -- {machine}, "
        f"{info.get('isa')}, {report['threads']} threads"
    )


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    return str(obj)
