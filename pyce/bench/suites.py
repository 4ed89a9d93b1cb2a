"""Named suites of ``pyce bench --suite NAME``: the layouts and sizes off the default
(rows, vocab) path.

``layouts``: the class axis not innermost -- PyTorch's (N, C, H, W) dense
prediction and NumPy's axis=0 reductions -- against the bandwidth floor of the
bytes they must move and against PyTorch on the same layout.

``few-classes``: 2 to 1000 classes, where a row's cost is its arithmetic and
its chain of dependent steps, not memory: per-row time against PyTorch's
forward+backward and against C exps at the kernels' measured exp throughput.

``tiny-calls``: a small loss step through pyce.torch (64 x 10), where the cost
is per-call overhead, against the least any autograd.Function costs and against
PyTorch (its own module, ``tiny_calls``).

Every figure is timed alternately with its floor probe (``time_against_floor``),
so each ratio comes from one stretch of the same run.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import tiny_calls
from .environment import _optional
from .floors import _probe_array, measure_exp_throughput, stream_probes
from .format import fmt_ms, fmt_ratio, render_table
from .ops import numpy_dtype
from .timing import time_against_floor, time_call


class Case(NamedTuple):
    label: str
    shape: tuple
    axis: int
    # forward, fused, fused_out, logsumexp, softmax, log_softmax, torch_fused,
    # evaluate, entropy, kl_grad, focal_grad
    op: str
    dtype: str = "float32"


_NCHW = (8, 21, 512, 512)
_AXIS0 = (32000, 2048)

SUITES = {
    "layouts": [
        Case("(8,21,512,512) axis 1", _NCHW, 1, "fused_out"),
        Case("(8,21,512,512) axis 1", _NCHW, 1, "fused"),
        Case("(8,21,512,512) axis 1", _NCHW, 1, "forward"),
        Case("(8,21,512,512) axis 1", _NCHW, 1, "torch_fused"),
        Case("(8,21,512,512) axis 1 bf16", _NCHW, 1, "fused_out", "bfloat16"),
        # The other functions that take an axis (issue 15 item 1): one
        # position per vector lane below 128 classes, no transposing copy.
        Case("(8,21,512,512) axis 1", _NCHW, 1, "evaluate"),
        Case("(8,21,512,512) axis 1", _NCHW, 1, "entropy"),
        Case("(8,21,512,512) axis 1", _NCHW, 1, "kl_grad"),
        Case("(8,21,512,512) axis 1", _NCHW, 1, "focal_grad"),
        Case("(32000,2048) axis 0", _AXIS0, 0, "logsumexp"),
        Case("(32000,2048) axis 0", _AXIS0, 0, "softmax"),
        Case("(32000,2048) axis 0", _AXIS0, 0, "log_softmax"),
        # The fused pass that returns a gradient, classes last (issue 15 item 4).
        Case("4096x32000", (4096, 32000), -1, "fused_out"),
        Case("4096x32000", (4096, 32000), -1, "fused_out", "bfloat16"),
        Case("2048x128256", (2048, 128256), -1, "fused_out"),
        Case("2048x128256", (2048, 128256), -1, "fused_out", "bfloat16"),
    ],
    # The normalisers too where a row is a handful of exps: there the
    # dominated rows' second sum (kernels/dominant.hpp) once cost more than
    # PyTorch's whole logsumexp.
    "few-classes": [
        Case(f"{n}x{c}", (n, c), -1, op)
        for n, c in ((262144, 2), (65536, 10), (32768, 32), (8192, 88), (4096, 256), (1024, 1000))
        for op in ("fused", "forward") + (("logsumexp", "log_softmax") if c <= 10 else ())
    ],
    # Timed by tiny_calls.run (per-call overhead, not bytes): its cases are its shapes.
    "tiny-calls": [Case(f"{n}x{c}", (n, c), -1, "torch_step") for n, c in tiny_calls.SHAPES],
}

#: Bytes each op must move, in units of the logits' bytes, and the probe that moves them:
#: outputs are written with non-temporal stores (as the kernels write a large output),
#: so that the floor of a fused pass is one read and one write, no read-for-ownership.
#: KL with its gradient reads two arrays (student, teacher) and writes one: the
#: copy probe's time scaled to its bytes (_PROBE_BYTES).
_TRAFFIC = {
    "forward": ("read", 1),
    "logsumexp": ("read", 1),
    "fused": ("copy_nt", 2),
    "fused_out": ("copy_nt", 2),
    "softmax": ("copy_nt", 2),
    "log_softmax": ("copy_nt", 2),
    "torch_fused": ("copy_nt", 2),
    "evaluate": ("read", 1),
    "entropy": ("read", 1),
    "kl_grad": ("copy_nt", 3),
    "focal_grad": ("copy_nt", 2),
}
#: The bytes each probe moves, in units of the logits' bytes.
_PROBE_BYTES = {"read": 1, "copy_nt": 2}

_LABEL = {
    "forward": "forward",
    "fused": "fused",
    "fused_out": "fused out=",
    "logsumexp": "logsumexp",
    "softmax": "softmax",
    "log_softmax": "log_softmax",
    "torch_fused": "fused via pyce.torch",
    "evaluate": "evaluate",
    "entropy": "entropy",
    "kl_grad": "KL with grad",
    "focal_grad": "focal with grad",
    "torch_step": "fwd+bwd via pyce.torch",
}

#: Ops that read a second array of the logits' shape (the teacher's logits).
_WITH_TEACHER = ("kl_grad",)


def _problem(case: Case):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(case.shape, dtype=np.float32) * 2
    dt = numpy_dtype(case.dtype)
    if x.dtype != dt:
        x = x.astype(dt)
    axis = case.axis % len(case.shape)
    t_shape = case.shape[:axis] + case.shape[axis + 1 :]
    t = rng.integers(0, case.shape[axis], size=t_shape, dtype=np.int64)
    return x, t, axis


def _teacher(case: Case):
    """The teacher's logits of a divergence case, or None."""
    if case.op not in _WITH_TEACHER:
        return None
    teacher = np.random.default_rng(1).standard_normal(case.shape, dtype=np.float32) * 2
    dt = numpy_dtype(case.dtype)
    return teacher if teacher.dtype == dt else teacher.astype(dt)


def _pyce_fn(case: Case, x, t, axis, teacher=None):
    import pyce

    if case.op == "forward":
        return lambda: pyce.cross_entropy(x, t, axis=axis), None
    if case.op == "fused":
        return lambda: pyce.cross_entropy_with_grad(x, t, axis=axis), None
    if case.op == "fused_out":
        out = np.zeros_like(x)
        return lambda: pyce.cross_entropy_with_grad(x, t, axis=axis, out=out), out
    if case.op == "logsumexp":
        return lambda: pyce.logsumexp(x, axis=axis), None
    if case.op == "softmax":
        return lambda: pyce.softmax(x, axis=axis), None
    if case.op == "log_softmax":
        return lambda: pyce.log_softmax(x, axis=axis), None
    if case.op == "evaluate":
        return lambda: pyce.evaluate(x, t, axis=axis), None
    if case.op == "entropy":
        return lambda: pyce.entropy(x, axis=axis), None
    if case.op == "kl_grad":
        return lambda: pyce.kl_divergence_with_grad(x, teacher, axis=axis), None
    if case.op == "focal_grad":
        return lambda: pyce.focal_loss_with_grad(x, t, axis=axis), None
    if case.op == "torch_fused":
        torch = _optional("torch")
        if torch is None:
            return None, None
        import pyce.torch as ptorch

        xg = torch.from_numpy(x).requires_grad_(True)
        tt = torch.from_numpy(t)

        def step():
            xg.grad = None
            ptorch.cross_entropy(xg, tt).backward()
            return xg.grad

        return step, xg
    raise ValueError(f"unknown suite op {case.op!r}")


def _torch_fn(case: Case, x, t, axis, teacher=None):
    """PyTorch's own version of the case, on its native layout, or None
    (evaluate has none: its metrics are several torch calls, not one)."""
    torch = _optional("torch")
    if torch is None:
        return None
    import torch.nn.functional as F

    def tensor(a):
        if case.dtype != "bfloat16":
            return torch.from_numpy(a)
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)

    xt = tensor(x)
    tt = torch.from_numpy(t)
    if case.op == "evaluate":
        return None
    if case.op == "entropy":

        def entropy():
            with torch.no_grad():
                logq = F.log_softmax(xt, dim=axis)
                return -(logq.exp() * logq).sum(dim=axis)

        return entropy
    if case.op in ("kl_grad", "focal_grad"):
        xg = xt.detach().requires_grad_(True)
        teacher_t = tensor(teacher) if teacher is not None else None

        def loss():
            if case.op == "kl_grad":
                # pyce's default temperature 1; its batchmean divides by the positions,
                # kl_div's by N: the scale differs, the work does not.
                return F.kl_div(
                    F.log_softmax(xg, dim=axis),
                    F.log_softmax(teacher_t, dim=axis),
                    reduction="batchmean",
                    log_target=True,
                )
            # The softmax focal loss as PyTorch code writes it (gamma 2, mean).
            ce = F.cross_entropy(xg, tt, reduction="none")
            return ((1 - torch.exp(-ce)) ** 2 * ce).mean()

        def fused():
            xg.grad = None
            loss().backward()
            return xg.grad

        return fused
    if case.op in ("forward", "fused", "fused_out", "torch_fused"):
        if not (xt.ndim == 2 or axis == 1):
            return None  # F.cross_entropy takes the classes last (2-D) or at dim 1 only
        if case.op == "forward":

            def fwd():
                with torch.no_grad():
                    return F.cross_entropy(xt, tt)

            return fwd
        xg = xt.detach().requires_grad_(True)

        def fused():
            xg.grad = None
            F.cross_entropy(xg, tt).backward()
            return xg.grad

        return fused
    dim_ops = {"logsumexp": torch.logsumexp, "softmax": torch.softmax, "log_softmax": torch.log_softmax}

    def reduce():
        with torch.no_grad():
            return dim_ops[case.op](xt, dim=axis)

    return reduce


# The online sweep of the strided kernels (more classes than a tile holds):
# the class slices an in-cache figure takes of an axis-0 case keep at least this many.
_ONLINE_CLASSES = 1100
# Logit bytes of the smaller in-cache slice (the larger one is twice that):
# both, with an output as large, stay in one core's L2.
_IN_CACHE_BYTES = 256 << 10


def _in_cache_slices(x, t, axis):
    """Two slices of a case's problem, ``(small, large)`` as ``(x, t)`` pairs,
    the small one about ``_IN_CACHE_BYTES`` of logits (less for a small
    problem) and the large one twice that, so that the per-position or per-row fixed costs drop out of their
    difference. Rows for classes last; for (N, C, H, W) H-rows of the first
    image; for axis 0 of a matrix with many classes, 1100 and 2200 classes of
    a few columns (still the online sweep, targets folded into range). None
    when the problem has no such slices."""
    item = x.itemsize
    if axis == x.ndim - 1:
        rows = min(x.shape[0] // 2, max(1, _IN_CACHE_BYTES // (x.shape[-1] * item)))
        if rows == 0:
            return None
        return (x[:rows], t[:rows]), (x[: 2 * rows], t[: 2 * rows])
    if x.ndim == 4 and axis == 1:
        h = min(x.shape[2] // 2, max(1, _IN_CACHE_BYTES // (x.shape[1] * x.shape[3] * item)))
        if h == 0:
            return None
        return (x[:1, :, :h], t[:1, :h]), (x[:1, :, : 2 * h], t[:1, : 2 * h])
    if x.ndim == 2 and axis == 0 and x.shape[0] >= 2 * _ONLINE_CLASSES:
        c = _ONLINE_CLASSES
        cols = max(64, _IN_CACHE_BYTES // (c * item) // 64 * 64)  # whole groups of lanes
        return (x[:c, :cols], t[:cols] % c), (x[: 2 * c, :cols], t[:cols] % (2 * c))
    return None


def _in_cache_s(case: Case, x, t, axis, teacher=None, *, threads, repeat, min_time):
    """The time the case's pyce op takes on all of x when its data is in cache:
    its arithmetic alone. Timed at one thread on two in-cache slices
    (``_in_cache_slices``), whose difference is scaled to x's elements and
    divided by ``threads`` (the arithmetic shares out over cores; memory does
    not). None for cases without slices (pyce.torch)."""
    import pyce

    if case.op == "torch_fused":
        return None
    slices = _in_cache_slices(x, t, axis)
    if slices is None:
        return None
    # A teacher (KL) is sliced as the logits are.
    teachers = [None, None] if teacher is None else [p[0] for p in _in_cache_slices(teacher, t, axis)]
    times, sizes = [], []
    before = pyce.get_num_threads()
    pyce.set_num_threads(1)
    try:
        for (xs, ts), teacher_s in zip(slices, teachers):
            xs, ts = np.ascontiguousarray(xs), np.ascontiguousarray(ts)
            if teacher_s is not None:
                teacher_s = np.ascontiguousarray(teacher_s)
            fn, keep = _pyce_fn(case, xs, ts, axis, teacher_s)
            times.append(time_call(fn, repeat=repeat, min_time=min_time).best)
            sizes.append(xs.size)
            del keep
    finally:
        pyce.set_num_threads(before)
    per_element = (times[1] - times[0]) / (sizes[1] - sizes[0])
    if per_element <= 0:  # noise larger than the fixed cost: the larger slice whole
        per_element = times[1] / sizes[1]
    return per_element * x.size / threads


def run_suite(
    name: str, *, repeat: int = 5, min_time: float = 0.02, peers: bool = True, progress=None
) -> dict:
    """Time every case of suite ``name``; one dict per case plus the exp throughput."""
    if name == "tiny-calls":
        shapes = tuple(case.shape for case in SUITES[name])
        return tiny_calls.run(shapes, repeat=repeat, min_time=min_time, peers=peers, progress=progress)
    read, scale, source = stream_probes()
    import pyce
    from pyce import _core

    scale_nt = getattr(_core, "stream_scale_nt", scale)
    threads = pyce.get_num_threads()
    exp_ns = measure_exp_throughput(repeat=repeat)
    rows = []
    probes: dict = {}
    for case in SUITES[name]:
        if progress:
            progress.start(f"{name} {case.label} {_LABEL[case.op]}")
        x, t, axis = _problem(case)
        teacher = _teacher(case)
        kind, mult = _TRAFFIC[case.op]
        row = {
            "label": case.label,
            "op": case.op,
            "shape": list(case.shape),
            "axis": axis,
            "dtype": case.dtype,
            "bytes": mult * x.nbytes,
        }
        fn, keep = _pyce_fn(case, x, t, axis, teacher)
        if fn is None:
            row["status"] = "torch not installed"
        else:
            if x.nbytes not in probes:
                probes.clear()
                src = _probe_array(x.nbytes)
                dst = _probe_array(x.nbytes)
                probes[x.nbytes] = {
                    "read": lambda s=src: read(s),
                    "copy_nt": lambda s=src, d=dst: scale_nt(s, d, 1.0),
                }
            tm, floor_tm = time_against_floor(fn, probes[x.nbytes][kind], rounds=repeat, min_time=min_time)
            floor_s = floor_tm.best * mult / _PROBE_BYTES[kind]
            row.update(
                pyce_s=tm.best,
                pyce_samples_s=tm.samples,
                floor_s=floor_s,
                x_floor=tm.best / floor_s,
            )
            n_rows = x.size // x.shape[axis]
            row["ns_per_row"] = tm.best / n_rows * 1e9
            row["exp_floor_s"] = exp_ns * 1e-9 * x.size
            if name == "layouts":
                row["in_cache_s"] = _in_cache_s(
                    case, x, t, axis, teacher, threads=threads, repeat=repeat, min_time=min_time
                )
            tfn = _torch_fn(case, x, t, axis, teacher) if peers else None
            if tfn is not None:
                row["torch_s"] = time_call(tfn, repeat=repeat, min_time=min_time).best
                row["vs_torch"] = row["torch_s"] / tm.best
        del keep, teacher
        rows.append(row)
        if progress:
            progress.advance()
    return {"suite": name, "exp_ns_per_element": exp_ns, "probe_source": source, "rows": rows}


def format_suite(result: dict) -> str:
    name = result["suite"]
    if name == "tiny-calls":
        return tiny_calls.format_result(result)
    headers = ["case", "op", "dtype", "pyce ms", "floor ms", "x floor", "torch ms", "vs torch"]
    if name == "layouts":
        headers += ["in-cache ms", "in-cache x floor"]
    if name == "few-classes":
        headers += ["ns/row", "C exps ms", "x exps"]
    table = []
    for r in result["rows"]:
        cells = [r["label"], _LABEL[r["op"]], r["dtype"]]
        if "pyce_s" not in r:
            table.append(cells + [r.get("status", "")] + [""] * (len(headers) - 4))
            continue
        cells += [
            fmt_ms(r["pyce_s"]),
            fmt_ms(r["floor_s"]),
            fmt_ratio(r["x_floor"]),
            fmt_ms(r.get("torch_s")),
            fmt_ratio(r.get("vs_torch")),
        ]
        if name == "layouts":
            ic = r.get("in_cache_s")
            cells += [fmt_ms(ic), fmt_ratio(None if ic is None else ic / r["floor_s"])]
        if name == "few-classes":
            cells += [
                f"{r['ns_per_row']:.1f}",
                fmt_ms(r["exp_floor_s"]),
                fmt_ratio(r["pyce_s"] / r["exp_floor_s"]),
            ]
        table.append(cells)
    notes = (
        f"floor: the bytes the op must move (forward/logsumexp/evaluate/entropy: the logits once; "
        f"with an output: read + write, non-temporal stores; KL: two reads + a write) at the "
        f"streaming bandwidth probed alternately with it "
        f"({result['probe_source']}); "
        f"vs torch: PyTorch's time / pyce's (its forward+backward for fused ops, on its own layout). "
    )
    if name == "layouts":
        notes += (
            "in-cache: the op's time on all the logits when they are in cache (its arithmetic alone): "
            "the difference of two slices of 256 and 512 KiB called over and over at one thread, "
            "scaled to all the logits and divided by the thread count; "
            "where in-cache x floor exceeds 1, the op is bound by compute on this machine and "
            "x floor cannot reach 1. "
        )
    if name == "few-classes":
        notes += (
            f"C exps: the logits' element count x {result['exp_ns_per_element']:.3f} ns "
            f"(the kernels' exp throughput per element at this thread count)."
        )
    return f"suite {name}\n" + render_table(headers, table) + "\n" + notes


def suite_names() -> tuple:
    return tuple(SUITES)
