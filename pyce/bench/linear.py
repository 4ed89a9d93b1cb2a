"""``pyce bench --suite linear``: the fused linear cross-entropy (the LM head) against its floor.

For each (N, D, V) workload, forward + backward of ``loss(hidden @ W.T, target)``
(mean over N rows, float32 unless told) is timed for

* the three-GEMM floor: ``logits = h @ W.T``, ``grad_h = G @ W``,
  ``grad_W = G.T @ h`` as three full-size products on the same BLAS -- NumPy's
  for the NumPy API, PyTorch's for ``pyce.torch`` -- the floor of any exact
  method (no cross-entropy, no chunking);
* ``pyce.linear_cross_entropy_with_grad`` (NumPy) and
  ``pyce.torch.linear_cross_entropy`` + backward;
* PyTorch naive, ``F.cross_entropy(F.linear(h, W), y)`` + backward (the logits,
  their log-softmax and their gradient: three N x V tensors), and PyTorch's
  chunked ``F.linear_cross_entropy(..., options=nn.LinearCrossEntropyOptions())``;
* Cut Cross-Entropy's ``torch_compile`` implementation when it is importable.

The methods are timed in interleaved rounds (each round runs every method
once) and the medians are reported, so that the ratios -- which are what this
suite is for -- come from the same conditions even on a shared machine.

``--filter`` times gradient filtering on two workloads (float32, NumPy):
*flat*, a random-init head (hidden states of unit variance, W ~ N(0, 0.02^2)
as transformers initialises it: the softmax is nearly uniform and nothing can
be skipped) and *peaked*, a confident model after training: targets follow a
Zipf law over the vocabulary (token ids sorted by frequency, as in BPE
vocabularies); 90% of the rows have hidden states aligned with their
target's row of W (probability within 1e-9 of 1), the other 10% hesitate
between their target and two of the 64 most frequent tokens (about 1/3
each); everywhere else the softmax is far below 2**-12. Reported: time,
the fraction of vocabulary blocks kept, the loss difference (0) and the
gradients' largest error against the unfiltered run next to the documented bound.

``--memory`` measures the peak resident memory of one forward + backward in a
fresh process, beyond the inputs and the returned gradients: once as a new
process pays it, and once with the BLAS's own thread work buffers already in
place (:func:`warm_blas`), which is what the loss adds to a process that has
run any product of that size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Optional, Sequence

import numpy as np

from .memory import child_command

DEFAULT_SHAPES = [(2048, 512, 32000), (4096, 1024, 32000), (2048, 512, 128256)]
MEMORY_SHAPE = (8192, 256, 32000)
FILTER_SHAPE = (2048, 512, 32000)
FILTER_EPS = 2.0**-12


def parse_shape3(text: str) -> tuple:
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"a workload is NxDxV (three positive integers), got {text!r}")
    return tuple(int(p) for p in parts)


# -- workloads ------------------------------------------------------------------------


def flat_problem(N, D, V, seed=0):
    """A random-init head: unit-variance hidden states, W ~ N(0, 0.02^2), uniform targets."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((N, D), dtype=np.float32)
    W = (0.02 * rng.standard_normal((V, D))).astype(np.float32)
    y = rng.integers(0, V, N)
    return h, W, y


def peaked_problem(N, D, V, seed=0, confident=0.9):
    """A confident model (see the module docstring)."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((V, D)).astype(np.float32)
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    ranks = np.arange(1, V + 1, dtype=np.float64)
    zipf = 1.0 / ranks**1.1
    y = rng.choice(V, size=N, p=zipf / zipf.sum())
    # Target logit 45, the others about N(0, 45^2 / D): 30 nats below at D = 512.
    # The unsure rows: logit 20 for three tokens, the rest N(0, 3 * 20^2 / D).
    h = 45.0 * W[y]
    unsure = rng.random(N) >= confident
    alternatives = rng.integers(0, 64, size=(N, 2))
    h[unsure] = 20.0 * (W[y[unsure]] + W[alternatives[unsure, 0]] + W[alternatives[unsure, 1]])
    h += 0.01 * rng.standard_normal((N, D)).astype(np.float32)
    return h.astype(np.float32), W, y


# -- the methods, each a forward + backward closure -------------------------------------


def numpy_methods(h, W, y):
    import pyce

    L = np.empty((h.shape[0], W.shape[0]), h.dtype)
    gh = np.empty_like(h)
    gW = np.empty_like(W)

    def floor():
        np.matmul(h, W.T, out=L)
        np.matmul(L, W, out=gh)
        np.matmul(L.T, h, out=gW)

    return {"3 GEMMs (numpy)": floor, "pyce (numpy)": lambda: pyce.linear_cross_entropy_with_grad(h, W, y)}


def torch_methods(h, W, y, dtype_name="float32", peers=True):
    import torch
    import torch.nn.functional as F

    import pyce.torch as pt

    dtype = getattr(torch, dtype_name)
    th = torch.from_numpy(h).to(dtype)
    tW = torch.from_numpy(W).to(dtype)
    ty = torch.from_numpy(y)
    L = torch.empty(th.shape[0], tW.shape[0], dtype=dtype)
    gh, gW = torch.empty_like(th), torch.empty_like(tW)
    hh, WW = th.clone().requires_grad_(), tW.clone().requires_grad_()
    suffix = "" if dtype_name == "float32" else f" {dtype_name}"

    def floor():
        torch.mm(th, tW.T, out=L)
        torch.mm(L, tW, out=gh)
        torch.mm(L.T, th, out=gW)

    def run(loss_fn):
        def step():
            hh.grad = WW.grad = None
            loss_fn().backward()

        return step

    methods = {
        f"3 GEMMs (torch){suffix}": floor,
        f"pyce.torch{suffix}": run(lambda: pt.linear_cross_entropy(hh, WW, ty)),
    }
    if peers:
        methods[f"torch naive{suffix}"] = run(lambda: F.cross_entropy(F.linear(hh, WW), ty))
        if hasattr(F, "linear_cross_entropy") and hasattr(torch.nn, "LinearCrossEntropyOptions"):
            options = torch.nn.LinearCrossEntropyOptions()
            methods[f"torch chunked{suffix}"] = run(
                lambda: F.linear_cross_entropy(hh, WW, ty, options=options)
            )
        cce = cce_loss()
        if cce is not None:
            methods[f"cut-cross-entropy{suffix}"] = run(lambda: cce(hh, WW, ty))
    return methods


def cce_loss():
    """Cut Cross-Entropy's CPU-capable implementation (torch_compile), or None."""
    try:
        from cut_cross_entropy import linear_cross_entropy
    except Exception:  # noqa: BLE001 - not installed, or it fails to import here
        return None
    return lambda h, W, y: linear_cross_entropy(h, W, y, impl="torch_compile")


def time_rounds(methods: dict, rounds: int) -> dict:
    """Median seconds of each method over ``rounds`` interleaved rounds (after a warm-up)."""
    for fn in methods.values():
        fn()
    samples: dict = {name: [] for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {name: {"median_s": float(np.median(s)), "samples_s": s} for name, s in samples.items()}


# -- filtering -----------------------------------------------------------------------------


def filter_study(shape, rounds):
    import pyce
    from pyce._blas import NumpyOps
    from pyce._linear_call import LinearCall

    N, D, V = shape
    rows = []
    for workload, make in (("flat", flat_problem), ("peaked", peaked_problem)):
        h, W, y = make(N, D, V)
        L = np.empty((N, V), np.float32)
        gh, gW = np.empty_like(h), np.empty_like(W)

        def floor():
            np.matmul(h, W.T, out=L)
            np.matmul(L, W, out=gh)
            np.matmul(L.T, h, out=gW)

        methods = {
            "3 GEMMs": floor,
            "pyce": lambda: pyce.linear_cross_entropy_with_grad(h, W, y),
            "pyce filtered": lambda: pyce.linear_cross_entropy_with_grad(h, W, y, filter_eps=FILTER_EPS),
        }
        times = time_rounds(methods, rounds)
        exact = pyce.linear_cross_entropy_with_grad(h, W, y)
        call = LinearCall(
            h,
            W,
            y,
            linear_bias=None,
            weight=None,
            ignore_index=-100,
            reduction="mean",
            label_smoothing=0.0,
            z_loss=0.0,
            softcap=None,
            shift=0,
            return_lse=False,
            filter_eps=FILTER_EPS,
            chunk_size=None,
            dtypes=(np.dtype(np.float32),),
            compute_dtype=np.float32,
        )
        gh_f, gW_f, _ = call.with_grad(NumpyOps)
        loss_f = call.loss()
        # The documented bound, at its largest: eps / N times sum_v |W[v]| (grad_hidden)
        # and sum_i |h_i| (grad_weight), over every column or row.
        s = FILTER_EPS / N
        bound_h = s * float(np.max(np.sum(np.abs(W), axis=0, dtype=np.float64)))
        bound_W = s * float(np.max(np.sum(np.abs(h), axis=0, dtype=np.float64)))
        rows.append(
            {
                "workload": workload,
                "shape": list(shape),
                "filter_eps": FILTER_EPS,
                "times": times,
                "kept_block_fraction": call.kept_blocks / max(1, call.total_blocks),
                "loss_difference": float(abs(float(loss_f) - float(exact[0]))),
                "grad_hidden_max_error": float(np.max(np.abs(gh_f - exact[1]))),
                "grad_hidden_bound": bound_h,
                "grad_weight_max_error": float(np.max(np.abs(gW_f - exact[2]))),
                "grad_weight_bound": bound_W,
            }
        )
    return rows


# -- memory (one fresh process per measurement) ---------------------------------------------

MEMORY_METHODS = ("pyce (numpy)", "pyce.torch", "torch naive", "torch chunked", "cut-cross-entropy")


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def warm_blas(method, h, W):
    """Run the three products of one chunk on ``method``'s BLAS into temporaries, then free them.

    A BLAS keeps work buffers for its threads for the life of the process,
    sized by the largest blocking it has used; any product of these sizes
    (the user's own model, or a plain ``h @ W.T``) leaves them resident. This
    puts them in place before the measure, so that the peak counts only what
    the loss itself allocates. Only the buffers stay: the temporaries' memory
    goes back to the system (see _return_freed_memory).
    """
    from pyce._linear_call import default_chunk_rows

    rows = min(h.shape[0], default_chunk_rows(W.shape[0], h.dtype.itemsize))
    h_c = h[:rows]
    if method == "pyce (numpy)":
        L = h_c @ W.T
        _ = L @ W, L.T @ h_c, W.T @ L.T
    else:
        import torch

        th, tW = torch.from_numpy(h_c), torch.from_numpy(W)
        L = th @ tW.T
        _ = L @ tW, L.T @ th
    del L, _


def _return_freed_memory():
    """Give the memory the warm-ups freed back to the system: pyce's buffer
    cache (which would hand the measured call its gradients' or chunk's memory
    already resident) and glibc's heap (malloc_trim). Otherwise that memory
    inflates the base, and the measured call's allocations reuse it unseen."""
    import ctypes

    import pyce

    pyce.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def memory_child(method, N, D, V, blas_warm=False):
    """Subprocess body: peak RSS of one forward + backward beyond inputs and gradients (bytes).

    ``blas_warm``: the BLAS's own work buffers are put in place first
    (:func:`warm_blas`), so they are not counted as the method's.
    """
    h, W, y = flat_problem(N, D, V)
    small = flat_problem(64, D, V, seed=1)
    if method == "pyce (numpy)":
        fns = numpy_methods(h, W, y)
        warm = numpy_methods(*small)[method]
    else:
        fns = torch_methods(h, W, y)
        if method not in fns:
            return None
        # CCE compiles per shape (torch.compile), and compiling is not the
        # loss's memory: warm it up on the measured shape itself.
        warm = fns[method] if method == "cut-cross-entropy" else torch_methods(*small)[method]
    warm()
    if blas_warm:
        warm_blas(method, h, W)
    fn = fns[method]
    grads = h.nbytes + W.nbytes
    _return_freed_memory()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # peak RSS := current RSS
    base = _status_kb("VmRSS") * 1024
    fn()
    peak = _status_kb("VmHWM") * 1024
    return peak - base - grads


def measure_memory(method, shape, threads):
    """Peak memory of ``method`` in fresh processes: ``extra_bytes`` as a new
    process pays it (the BLAS's first large product included), and
    ``extra_bytes_blas_warm`` once the BLAS's own buffers exist."""
    N, D, V = shape
    row = {"method": method, "shape": list(shape)}
    for key, blas_warm in (("extra_bytes", False), ("extra_bytes_blas_warm", True)):
        code = (
            "import json, pyce; from pyce.bench import linear as b; "
            f"pyce.set_num_threads({threads}); import torch; torch.set_num_threads({threads}); "
            f"print(json.dumps(b.memory_child({method!r}, {N}, {D}, {V}, blas_warm={blas_warm})))"
        )
        proc = subprocess.run(child_command(code), capture_output=True, text=True)
        if proc.returncode != 0:
            return {"method": method, "shape": list(shape), "error": proc.stderr.strip()[-300:]}
        row[key] = json.loads(proc.stdout.strip().splitlines()[-1])
    return row


# -- report ------------------------------------------------------------------------------------


def _ms(s):
    return f"{s * 1e3:,.0f}"


def format_report(report) -> str:
    lines = [
        f"pyce bench --suite linear: {report['threads']} threads, float32 unless named, "
        f"medians of {report['rounds']} interleaved rounds; forward + backward",
        f"BLAS: NumPy {report['blas']}; PyTorch {report['torch_blas']}",
        "",
    ]
    for entry in report["timings"]:
        N, D, V = entry["shape"]
        t = {k: v["median_s"] for k, v in entry["times"].items()}
        lines.append(f"(N, D, V) = ({N}, {D}, {V}); logits {N * V * 4 / 2**20:,.0f} MiB in float32")
        floor_np = t.get("3 GEMMs (numpy)")
        floor_t = t.get("3 GEMMs (torch)")
        for name, sec in t.items():
            notes = []
            if name == "pyce (numpy)" and floor_np:
                notes.append(f"{sec / floor_np:.3f} x the numpy GEMMs")
            if name.startswith("pyce.torch"):
                suffix = name[len("pyce.torch") :]
                floor = t.get("3 GEMMs (torch)" + suffix)
                if floor:
                    notes.append(f"{sec / floor:.3f} x the torch GEMMs{suffix}")
                for peer in ("torch naive", "torch chunked", "cut-cross-entropy"):
                    other = t.get(peer + suffix)
                    if other:
                        notes.append(f"{other / sec:.2f} x faster than {peer}{suffix}")
            lines.append(f"  {name:<28} {_ms(sec):>8} ms   " + "; ".join(notes))
        del floor_t
        lines.append("")
    if report.get("filter"):
        lines.append("gradient filtering, filter_eps = 2**-12, NumPy float32:")
        for row in report["filter"]:
            t = {k: v["median_s"] for k, v in row["times"].items()}
            lines.append(
                f"  {row['workload']:<7} 3 GEMMs {_ms(t['3 GEMMs'])} ms, pyce {_ms(t['pyce'])} ms, "
                f"filtered {_ms(t['pyce filtered'])} ms ({t['3 GEMMs'] / t['pyce filtered']:.2f} x "
                f"faster than the GEMMs, {t['pyce filtered'] / t['pyce']:.3f} x unfiltered); "
                f"blocks kept {row['kept_block_fraction']:.1%}; loss diff {row['loss_difference']:.1e}; "
                f"grad_hidden err {row['grad_hidden_max_error']:.1e} (bound {row['grad_hidden_bound']:.1e}), "
                f"grad_weight err {row['grad_weight_max_error']:.1e} (bound {row['grad_weight_bound']:.1e})"
            )
        lines.append("")
    if report.get("memory"):
        N, D, V = report["memory"][0]["shape"]
        lines.append(
            f"peak memory beyond inputs and gradients, (N, D, V) = ({N}, {D}, {V}) "
            f"(logits {N * V * 4 / 2**20:,.0f} MiB), fresh process each:"
        )
        lines.append(f"  {'':<20} {'new process':>12} {'BLAS warm':>12}")
        for row in report["memory"]:
            if "error" in row:
                text = "failed: " + row["error"][-120:]
            elif row.get("extra_bytes") is None:
                text = "not available"
            else:
                text = " ".join(
                    f"{row[k] / 2**20:>8,.0f} MiB" for k in ("extra_bytes", "extra_bytes_blas_warm")
                )
            lines.append(f"  {row['method']:<20} {text}")
        lines.append(
            "  (BLAS warm: the BLAS's own work buffers, which a process keeps after "
            "its first product of a chunk's size, put in place before the measure)"
        )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None, prog: str = "pyce bench --suite linear") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--shapes",
        help="comma-separated NxDxV (default: "
        + ",".join("x".join(map(str, s)) for s in DEFAULT_SHAPES)
        + ")",
    )
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--threads", type=int, help="threads for pyce, NumPy's BLAS and torch")
    p.add_argument(
        "--bfloat16",
        action="store_true",
        help="also time pyce.torch, the torch GEMMs and PyTorch naive in bfloat16",
    )
    p.add_argument("--no-peers", action="store_true", help="skip PyTorch naive/chunked and CCE")
    p.add_argument(
        "--filter",
        action="store_true",
        help="time gradient filtering (flat and peaked workloads, " + "x".join(map(str, FILTER_SHAPE)) + ")",
    )
    p.add_argument(
        "--memory",
        action="store_true",
        help="peak memory at " + "x".join(map(str, MEMORY_SHAPE)) + " (a fresh process per method)",
    )
    p.add_argument("--json", metavar="FILE", help="write every number to FILE")
    args = p.parse_args(argv)
    try:
        shapes = [parse_shape3(s) for s in args.shapes.split(",")] if args.shapes else DEFAULT_SHAPES
    except ValueError as exc:
        p.error(str(exc))
    if args.rounds < 1:
        p.error("--rounds must be >= 1")

    import pyce
    from pyce._blas import blas_info

    if args.threads:
        pyce.set_num_threads(args.threads)
    threads = pyce.get_num_threads()
    try:
        import torch

        torch.set_num_threads(threads)
        torch_blas = "MKL" if torch.backends.mkl.is_available() else "its own"
    except ImportError:
        torch = None  # type: ignore[assignment]
        torch_blas = "not installed"
    report = {
        "command": [prog] + list(argv if argv is not None else sys.argv[1:]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "threads": threads,
        "rounds": args.rounds,
        "blas": blas_info()["library"] or "matmul fallback",
        "torch_blas": torch_blas,
        "cce_available": cce_loss() is not None,
        "timings": [],
    }
    for shape in shapes:
        h, W, y = flat_problem(*shape)
        methods = numpy_methods(h, W, y)
        if torch is not None:
            methods.update(torch_methods(h, W, y, peers=not args.no_peers))
            if args.bfloat16:
                methods.update(torch_methods(h, W, y, "bfloat16", peers=not args.no_peers))
        report["timings"].append({"shape": list(shape), "times": time_rounds(methods, args.rounds)})
        del methods
    if args.filter:
        report["filter"] = filter_study(FILTER_SHAPE, args.rounds)
    if args.memory:
        names = [m for m in MEMORY_METHODS if torch is not None or m == "pyce (numpy)"]
        report["memory"] = [measure_memory(m, MEMORY_SHAPE, threads) for m in names]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    print(format_report(report))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":  # pragma: no cover
        print(json.dumps(memory_child(sys.argv[2], *map(int, sys.argv[3:6]))))  # new process
    else:
        sys.exit(main())
