"""The ``pyce`` command: ``pyce info``, ``pyce bench ...``, ``pyce demo``.

``python -m pyce`` with no arguments runs the demo and lists the subcommands.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

SUBCOMMANDS = (
    ("info", "what pyce's kernels run on (instruction set, threads, OpenMP, build)"),
    ("bench", "time pyce against the memory-bandwidth floor, NumPy, PyTorch and JAX (pyce bench --help)"),
    ("demo", "a cross-entropy over a random (8, 32000) language-model batch, pyce vs the NumPy reference"),
)


def _hint() -> str:
    width = max(len(name) for name, _ in SUBCOMMANDS)
    lines = ["subcommands (pyce SUBCOMMAND --help for options):"]
    lines += [f"  pyce {name.ljust(width)}  {text}" for name, text in SUBCOMMANDS]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyce",
        description="pyce: fast, exact cross-entropy, softmax and log-sum-exp for NumPy on the CPU.",
        epilog=_hint() + "\n\nWith no subcommand, `python -m pyce` runs the demo.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print pyce's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    info = sub.add_parser("info", help=SUBCOMMANDS[0][1], description=SUBCOMMANDS[0][1])
    info.add_argument("--json", action="store_true", help="print the information as JSON")
    info.add_argument(
        "--bandwidth",
        action="store_true",
        help="also measure the streaming memory bandwidth (about a second)",
    )
    # `bench` is handed to pyce.bench.main untouched (its own parser and --help).
    sub.add_parser("bench", help=SUBCOMMANDS[1][1], add_help=False)
    demo = sub.add_parser("demo", help=SUBCOMMANDS[2][1], description=SUBCOMMANDS[2][1])
    demo.add_argument("--rows", type=int, default=8, help="batch rows (default 8)")
    demo.add_argument("--vocab", type=int, default=32000, help="vocabulary size (default 32000)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser


def info_dict(bandwidth: bool = False) -> dict:
    """pyce.cpu_info() plus the versions and machine details ``pyce info`` prints."""
    import pyce

    from . import bench

    out = {"pyce": pyce.__version__, "cpu_info": pyce.cpu_info(), "versions": bench.versions()}
    if bandwidth:
        floors = bench.measure_floors(256 << 20, repeat=5)
        out["bandwidth_gbs"] = dict(
            bench.bandwidths(floors),
            nbytes=floors["nbytes"],
            threads=pyce.get_num_threads(),
            source=floors["source"],
        )
    return out


def format_info(data: dict) -> str:
    """``info_dict()`` as aligned ``key: value`` lines."""
    ci, ver = data["cpu_info"], data["versions"]
    rows = [
        ("pyce", data["pyce"]),
        ("instruction set", ci.get("isa")),
        ("supported", ", ".join(ci.get("supported", []))),
        ("forced (PYCE_CPU_CAPABILITY)", ci.get("forced") or "no"),
        ("threads", ci.get("threads")),
        ("OpenMP", "yes" if ci.get("openmp") else "no"),
    ]
    for key, value in ci.items():  # build details this list does not name yet
        if key not in ("isa", "supported", "forced", "threads", "openmp"):
            rows.append((key, value))
    rows += [
        ("CPU", ver.get("cpu_model") or ver.get("machine")),
        ("logical CPUs", ver.get("cpu_count")),
        ("platform", ver.get("platform")),
        ("Python", ver.get("python")),
        ("NumPy", ver.get("numpy")),
    ]
    for name in ("torch", "jax", "ml_dtypes", "matplotlib"):
        rows.append((name, ver.get(name) or "not installed"))
    bw = data.get("bandwidth_gbs")
    if bw:
        rows.append(
            (
                "stream bandwidth",
                f"read {bw['read']:.1f} GB/s, read+write "
                f"{bw['copy']:.1f} GB/s, in place {bw['inplace']:.1f} GB/s "
                f"({bw['threads']} threads, {bw['nbytes'] >> 20} MiB)",
            )
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def cmd_info(args) -> int:
    data = info_dict(bandwidth=args.bandwidth)
    print(json.dumps(data, indent=1, default=str) if args.json else format_info(data))
    return 0


def _best_time(fn, repeat: int = 5):
    """(result, best seconds) of ``repeat`` calls after one warm-up call (the
    benchmark's own timer, one call per run)."""
    from .bench.timing import time_call

    result = fn()
    return result, time_call(fn, repeat=repeat, warmup=0, min_time=0.0).best


def cmd_demo(args) -> int:
    import numpy as np

    import pyce
    import pyce.reference as reference

    if args.rows < 1 or args.vocab < 1:
        raise SystemExit("pyce demo: --rows and --vocab must be >= 1")
    rng = np.random.default_rng(args.seed)
    logits = rng.standard_normal((args.rows, args.vocab), dtype=np.float32) * 2
    target = rng.integers(0, args.vocab, size=args.rows)
    print(
        f"A random language-model batch: logits {args.rows} x {args.vocab} float32, "
        f"one next-token id per row ({pyce.cpu_info()['isa']}, "
        f"{pyce.get_num_threads()} threads)."
    )
    loss, t_pyce = _best_time(lambda: pyce.cross_entropy(logits, target))
    ref, t_ref = _best_time(lambda: reference.cross_entropy(logits, target))
    (_, grad), t_fused = _best_time(lambda: pyce.cross_entropy_with_grad(logits, target))
    rel = abs(float(loss) - float(ref)) / abs(float(ref))
    print(f"  pyce.cross_entropy            loss = {float(loss):.7f}  {t_pyce * 1e3:9.3f} ms")
    print(f"  pyce.reference.cross_entropy  loss = {float(ref):.7f}  {t_ref * 1e3:9.3f} ms (NumPy, float64)")
    speed = t_ref / t_pyce
    print(
        f"  relative difference {rel:.1e}; pyce was {speed:.3g}x faster."
        if speed >= 1
        else f"  relative difference {rel:.1e}; pyce was slower here ({1 / speed:.3g}x the "
        "reference's time: a busy machine?)."
    )
    print(
        f"  pyce.cross_entropy_with_grad  loss and gradient {t_fused * 1e3:9.3f} ms; "
        f"each gradient row (softmax - one-hot) / rows sums to 0 "
        f"(largest |sum| {float(np.abs(grad.sum(axis=1)).max()):.1e})."
    )
    print(f"  Uniform guessing would give ln({args.vocab}) = {np.log(args.vocab):.4f}.")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``pyce`` console script and ``python -m pyce``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        from . import bench

        return bench.main(argv[1:], prog="pyce bench")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        import pyce

        print(f"pyce {pyce.__version__}")
        return 0
    if args.command == "info":
        return cmd_info(args)
    if args.command == "demo":
        return cmd_demo(args)
    # No subcommand: the demo, then what else there is.
    status = cmd_demo(parser.parse_args(["demo"]))
    print()
    print(_hint())
    return status


if __name__ == "__main__":
    sys.exit(main())
