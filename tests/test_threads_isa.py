"""CPU dispatch and threads: every ISA gives the reference's answers, every thread
count gives bitwise the same answers, and concurrent Python threads are safe.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import pyce
from pyce import _core

from _helpers import (
    DTYPES,
    REDUCTIONS,
    assert_close,
    bitwise_equal,
    check_cross_entropy,
    loss_shape_of,
    loss_tol,
    make_problem,
    prob_tol,
    run_installed_python,
    value_scale,
)

# Run once per forced ISA by .ci/run (pytest -m kernels).
pytestmark = pytest.mark.kernels

ref = pyce.reference
ISA_NAMES = ("baseline", "avx2", "avx512")
SUPPORTED = list(pyce.cpu_info()["supported"])
THREAD_COUNTS = (1, 2, 3, 4)


@pytest.fixture
def restore_dispatch():
    """Put the kernel table and the thread count back as they were."""
    isa = pyce.cpu_info()["isa"]
    threads = pyce.get_num_threads()
    yield
    _core.set_capability(isa)
    pyce.set_num_threads(threads)
    assert pyce.cpu_info()["isa"] == isa


# ------------------------------------------------------------------ cpu_info


def test_cpu_info():
    info = pyce.cpu_info()
    assert {"isa", "supported", "openmp", "threads", "forced"} <= set(info)
    assert info["isa"] in ISA_NAMES
    assert info["isa"] in info["supported"]
    assert "baseline" in info["supported"]
    assert set(info["supported"]) <= set(ISA_NAMES)
    assert isinstance(info["openmp"], bool)
    assert isinstance(info["threads"], int) and info["threads"] >= 1
    assert info["threads"] == pyce.get_num_threads()
    forced = os.environ.get("PYCE_CPU_CAPABILITY")
    if forced:
        assert info["forced"] == forced
        assert info["isa"] == forced
    info["supported"].append("mutated")  # a copy: the module's state is not changed
    assert "mutated" not in pyce.cpu_info()["supported"]


def test_set_capability_switches_and_returns_previous(restore_dispatch):
    start = pyce.cpu_info()["isa"]
    previous = start
    for isa in SUPPORTED + [start]:
        assert _core.set_capability(isa) == previous
        assert pyce.cpu_info()["isa"] == isa
        previous = isa


@pytest.mark.parametrize("name", ["sse2", "AVX2", "", "native", "avx512f"])
def test_set_capability_rejects_unknown_names(restore_dispatch, name):
    before = pyce.cpu_info()["isa"]
    with pytest.raises(ValueError):
        _core.set_capability(name)
    assert pyce.cpu_info()["isa"] == before


def test_set_capability_rejects_unsupported_levels(restore_dispatch):
    before = pyce.cpu_info()["isa"]
    for isa in ISA_NAMES:
        if isa not in SUPPORTED:
            with pytest.raises(ValueError):
                _core.set_capability(isa)
    # A supported name is accepted.
    _core.set_capability("baseline")
    assert pyce.cpu_info()["isa"] == "baseline"
    _core.set_capability(before)


# ------------------------------------------------------------------ ISAs


def _isa_problems(dtype):
    rng = np.random.default_rng(12)
    problems = []
    for shape, opts in [
        ((7, 3), {}),
        ((4, 17), {"weight": True, "ignore": True, "smoothing": 0.1}),
        ((3, 1000), {"soft": True, "weight": True, "smoothing": 0.2}),
        ((2, 3, 4097), {"ignore": True}),
        ((2, 256000), {"weight": True, "smoothing": 0.05}),
        ((300, 33), {"ignore": "class0"}),
        ((2, 19, 3, 2), {"axis": 1, "soft": True}),
    ]:
        logits, target, kw = make_problem(rng, shape, dtype=dtype, **opts)
        problems.append((logits, target, kw))
    x = (rng.standard_normal((9, 45)) * 3).astype(dtype)
    x[0, 3] = np.nan
    x[1, 44] = np.inf
    x[2, 40] = -np.inf
    x[3] = -np.inf
    x[4] += 88
    x[5] = x[5] * 1e4
    problems.append((x, np.array([0, 1, 40, 2, 3, 4, 5, -100, 6]), {"axis": -1}))
    return problems


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", SUPPORTED)
def test_each_isa_matches_reference(restore_dispatch, isa, dtype):
    _core.set_capability(isa)
    assert pyce.cpu_info()["isa"] == isa
    rng = np.random.default_rng(3)
    for logits, target, kw in _isa_problems(dtype):
        for reduction in REDUCTIONS:
            g = rng.standard_normal(loss_shape_of(logits, kw["axis"])) if reduction == "none" else 1.0
            with np.errstate(all="ignore"):
                check_cross_entropy(pyce, ref, logits, target, reduction, g, **kw)
        ax = kw["axis"]
        scale = value_scale(logits)
        with np.errstate(all="ignore"):
            assert_close(
                pyce.logsumexp(logits, axis=ax), ref.logsumexp(logits, axis=ax), **loss_tol(dtype, scale)
            )
            assert_close(
                pyce.softmax(logits, axis=ax), ref.softmax(logits, axis=ax), **prob_tol(dtype, scale)
            )
            assert_close(
                pyce.log_softmax(logits, axis=ax), ref.log_softmax(logits, axis=ax), **loss_tol(dtype, scale)
            )


def _all_outputs(problems, grad_outputs, with_kinds=False):
    """Every public function's output on every problem, as a flat list.

    With ``with_kinds``, items are ``(value, kind, dtype, scale)`` where kind is
    'loss' (losses, log-sum-exps, log-probabilities) or 'prob' (probabilities,
    gradients), for choosing a tolerance.
    """
    out = []
    for (logits, target, kw), g in zip(problems, grad_outputs):
        ax = kw["axis"]
        items = []
        with np.errstate(all="ignore"):
            for reduction in REDUCTIONS:
                items.append((pyce.cross_entropy(logits, target, reduction=reduction, **kw), "loss"))
                loss, grad = pyce.cross_entropy_with_grad(logits, target, reduction=reduction, **kw)
                items += [(loss, "loss"), (grad, "prob")]
            items.append((pyce.cross_entropy_backward(logits, target, g, reduction="none", **kw), "prob"))
            items.append((pyce.logsumexp(logits, axis=ax), "loss"))
            items.append((pyce.softmax(logits, axis=ax), "prob"))
            items.append((pyce.log_softmax(logits, axis=ax), "loss"))
        scale = value_scale(logits)
        for value, kind in items:
            out.append((value, kind, logits.dtype, scale) if with_kinds else value)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_isas_agree_with_each_other(restore_dispatch, dtype):
    """Different ISAs may round differently, but each is within the reference tolerance,
    so any two are within twice that of each other."""
    problems = _isa_problems(dtype)
    rng = np.random.default_rng(0)
    gs = [rng.standard_normal(loss_shape_of(p[0], p[2]["axis"])) for p in problems]
    results = {}
    for isa in SUPPORTED:
        _core.set_capability(isa)
        results[isa] = _all_outputs(problems, gs, with_kinds=True)
    first = SUPPORTED[0]
    for isa in SUPPORTED[1:]:
        assert len(results[isa]) == len(results[first])
        for i, ((a, kind, dt, scale), (b, *_)) in enumerate(zip(results[first], results[isa])):
            tol = (loss_tol if kind == "loss" else prob_tol)(dt, scale)
            assert np.asarray(a).dtype == np.asarray(b).dtype
            assert_close(
                b, a, rtol=2 * tol["rtol"], atol=2 * tol["atol"], err_msg=f"{isa} vs {first}, output {i}"
            )


# ------------------------------------------------------------------ threads


# The default (or PYCE_CPU_CAPABILITY-forced) ISA runs every shape in both dtypes; CI
# runs this file once per forced ISA. In-process, the other ISAs run the few-rows
# (split-vocabulary) shapes in float32 too.
THREAD_SHAPES = {
    "2x256000": (2, 256000),  # few rows, huge vocabulary: rows split across threads
    "8x100003": (8, 100003),
    "2048x1000": (2048, 1000),  # many rows
    "5x33": (5, 33),  # too small to thread
}


def _thread_params():
    default = pyce.cpu_info()["isa"]
    for name, shape in THREAD_SHAPES.items():
        for dtype in DTYPES:
            yield pytest.param(shape, None, dtype, id=f"{name}-default-{np.dtype(dtype).name}")
        if shape[1] > 100000:
            for isa in SUPPORTED:
                if isa != default:
                    yield pytest.param(shape, isa, np.float32, id=f"{name}-{isa}-float32")


def _thread_problems(shape, dtype):
    rng = np.random.default_rng(zlib.crc32(repr(shape).encode()))
    hard, target, kw = make_problem(rng, shape, dtype=dtype, weight=True, ignore=True, smoothing=0.1)
    hard[0, shape[1] // 2] = np.nan  # a nan row, to compare nan positions
    if shape[0] > 2:
        hard[1, -1] = -np.inf
    soft, soft_target, soft_kw = make_problem(rng, shape, dtype=dtype, soft=True)
    return [(hard, target, kw), (soft, soft_target, soft_kw)]


@pytest.mark.parametrize("shape,isa,dtype", list(_thread_params()))
def test_thread_count_gives_bitwise_identical_results(restore_dispatch, shape, isa, dtype):
    if isa is not None:
        _core.set_capability(isa)
    problems = _thread_problems(shape, dtype)
    rng = np.random.default_rng(1)
    gs = [rng.standard_normal(shape[0]) for _ in problems]
    results = {}
    for n in THREAD_COUNTS:
        pyce.set_num_threads(n)
        if pyce.cpu_info()["openmp"]:
            assert pyce.get_num_threads() == n
        results[n] = _all_outputs(problems, gs)
    for n in THREAD_COUNTS[1:]:
        assert len(results[n]) == len(results[1])
        for i, (a, b) in enumerate(zip(results[1], results[n])):
            assert bitwise_equal(a, b), f"output {i} differs between 1 and {n} threads"
    # And the (shared) result is right.
    logits, target, kw = problems[0]
    with np.errstate(all="ignore"):
        assert_close(
            results[1][0], ref.cross_entropy(logits, target, **kw), **loss_tol(dtype, value_scale(logits))
        )


def test_thread_count_inplace_bitwise(restore_dispatch):
    rng = np.random.default_rng(5)
    logits, target, kw = make_problem(
        rng, (8, 100003), dtype=np.float32, weight=True, smoothing=0.1, ignore=True
    )
    out = {}
    for n in THREAD_COUNTS:
        pyce.set_num_threads(n)
        buf = logits.copy()
        loss, grad = pyce.cross_entropy_with_grad(buf, target, inplace=True, **kw)
        out[n] = (loss, buf)
    for n in THREAD_COUNTS[1:]:
        assert bitwise_equal(out[n][0], out[1][0]) and bitwise_equal(out[n][1], out[1][1])


# ------------------------------------------------------------------ set_num_threads


def test_set_num_threads_validation(restore_dispatch):
    for bad in (0, -1, -100):
        with pytest.raises(ValueError, match=str(bad)):
            pyce.set_num_threads(bad)
    for bad in (1.5, "2", None, 2.0):
        with pytest.raises(TypeError):
            pyce.set_num_threads(bad)
    pyce.set_num_threads(np.int64(2))
    assert isinstance(pyce.get_num_threads(), int)
    if pyce.cpu_info()["openmp"]:
        assert pyce.get_num_threads() == 2
        assert pyce.cpu_info()["threads"] == 2
        pyce.set_num_threads(3)
        assert pyce.get_num_threads() == 3
    pyce.set_num_threads(1)
    assert pyce.get_num_threads() == 1


def test_many_threads_on_tiny_problems(restore_dispatch):
    """More threads than rows, classes or cores: still correct."""
    pyce.set_num_threads(16)
    for shape in [(1, 1), (1, 3), (3, 2), (2, 40), (17, 5)]:
        logits, target, kw = make_problem(np.random.default_rng(0), shape, weight=True)
        for reduction in REDUCTIONS:
            check_cross_entropy(pyce, ref, logits, target, reduction, **kw)


# ------------------------------------------------------------------ Python threads


def _concurrent_tasks():
    rng = np.random.default_rng(99)
    tasks = []
    shapes = [(64, 1000), (2, 256000), (7, 3), (3, 4097), (128, 33), (4, 5, 17), (1, 1), (16, 32000)]
    for i in range(32):
        shape = shapes[i % len(shapes)]
        dtype = DTYPES[i % 2]
        opts = [{}, {"weight": True, "ignore": True}, {"smoothing": 0.1}, {"soft": True}][i % 4]
        logits, target, kw = make_problem(rng, shape, dtype=dtype, **opts)
        tasks.append((logits, target, kw, REDUCTIONS[i % 3]))
    return tasks


def _run_task(task):
    logits, target, kw, reduction = task
    loss, grad = pyce.cross_entropy_with_grad(logits, target, reduction=reduction, **kw)
    return (
        loss,
        grad,
        pyce.cross_entropy(logits, target, reduction=reduction, **kw),
        pyce.softmax(logits),
        pyce.logsumexp(logits),
    )


@pytest.mark.parametrize("threads", [1, 2])
def test_concurrent_python_threads(restore_dispatch, threads):
    pyce.set_num_threads(threads)
    tasks = _concurrent_tasks()
    sequential = [_run_task(t) for t in tasks]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(2):
            concurrent = list(pool.map(_run_task, tasks))
            for i, (a, b) in enumerate(zip(sequential, concurrent)):
                for x, y in zip(a, b):
                    assert bitwise_equal(x, y), f"task {i} differs when run concurrently"
    # The sequential results are themselves right.
    for (logits, target, kw, reduction), (loss, grad, *_) in zip(tasks, sequential):
        dtype = logits.dtype
        ref_loss, ref_grad = ref.cross_entropy_with_grad(logits, target, reduction=reduction, **kw)
        assert_close(loss, ref_loss, **loss_tol(dtype, value_scale(logits)))
        assert_close(grad, ref_grad, **prob_tol(dtype, value_scale(logits)))


def test_concurrent_calls_with_errors_and_inplace(restore_dispatch):
    """Errors raised in some threads do not disturb the others."""
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((256, 1000)).astype(np.float32)
    good = rng.integers(0, 1000, size=256)
    bad = good.copy()
    bad[100] = 1000
    expected = pyce.cross_entropy_with_grad(logits, good)

    def work(i):
        if i % 3 == 0:
            with pytest.raises(IndexError):
                pyce.cross_entropy(logits, bad)
            return None
        buf = logits.copy()
        return pyce.cross_entropy_with_grad(buf, good, inplace=bool(i % 2))

    with ThreadPoolExecutor(max_workers=8) as pool:
        for result in pool.map(work, range(24)):
            if result is not None:
                assert bitwise_equal(result[0], expected[0])
                assert bitwise_equal(result[1], expected[1])


def test_kernels_release_the_gil(restore_dispatch):
    """While one thread is inside a long kernel call, Python code runs in another."""
    pyce.set_num_threads(1)
    logits = np.random.default_rng(0).standard_normal((48, 256000))
    target = np.zeros(48, dtype=np.int64)
    windows = []
    done = threading.Event()

    def worker():
        for _ in range(4):
            start = time.perf_counter()
            pyce.cross_entropy_with_grad(logits, target)
            windows.append((start, time.perf_counter()))
        done.set()

    stamps = []
    t = threading.Thread(target=worker)
    t.start()
    while not done.is_set():
        stamps.append(time.perf_counter())
    t.join()
    stamps = np.array(stamps)
    inside = 0
    for start, end in windows:
        quarter = (end - start) / 4
        if np.any((stamps > start + quarter) & (stamps < end - quarter)):
            inside += 1
    assert inside >= len(windows) // 2, (
        f"the main thread ran during only {inside} of {len(windows)} kernel calls: "
        "is the GIL held inside the kernel?"
    )


# ------------------------------------------------------------------ environment


@pytest.mark.parametrize("isa", SUPPORTED)
def test_environment_forces_the_isa(isa):
    got = run_installed_python(
        "import pyce; i = pyce.cpu_info(); print(i['isa'], i['forced'])", PYCE_CPU_CAPABILITY=isa
    )
    assert got == f"{isa} {isa}"


def test_environment_sets_the_thread_count():
    got = run_installed_python(
        "import pyce; print(pyce.get_num_threads(), pyce.cpu_info()['openmp'])", PYCE_NUM_THREADS="3"
    )
    threads, openmp = got.split()
    if openmp == "True":
        assert threads == "3"
    else:
        assert threads == "1"


def test_no_environment_picks_the_best_supported_isa():
    got = run_installed_python(
        "import pyce; i = pyce.cpu_info(); "
        "print(i['isa'], i['forced'], "
        "max(i['supported'], key=['baseline', 'avx2', 'avx512'].index))"
    )
    isa, forced, best = got.split()
    assert forced == "None"
    assert isa == best


def test_import_leaves_the_openmp_environment_as_it_found_it():
    # pyce sets a short spin count for its own runtime while it loads, and
    # nothing afterwards: a runtime loaded later (PyTorch's) sees the user's
    # environment. A policy the user chose is left alone.
    code = "import os, pyce; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
    assert run_installed_python(code).split() == ["None", "None"]
    assert run_installed_python(code, OMP_WAIT_POLICY="passive").split()[1] == "passive"
    assert run_installed_python(code, GOMP_SPINCOUNT="5").split()[0] == "5"
