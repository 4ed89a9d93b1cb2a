"""pyce.torch.distributed with real processes: torch.multiprocessing spawn, gloo on 127.0.0.1.

One process group per rank count (2, 3 and 4) runs every case (tests/_distributed_cases.py);
each rank compares with the single-process result it computes itself, and the
tests here check what every rank measured. Bounded: the process group times out
after 30 s, and the ranks are killed if they are not done in SPAWN_TIMEOUT.
"""

import os
import pickle
import socket
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

import _distributed_cases as cases  # noqa: E402

SPAWN_TIMEOUT = 240
WORLDS = [2, 3, 4]
PARTS = ["logits_cases", "bfloat16_case", "linear_cases", "evaluate_cases", "error_cases"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(world, parts, tmp_path):
    import torch.multiprocessing as mp

    ctx = mp.start_processes(
        cases.run,
        args=(world, _free_port(), str(tmp_path), parts),
        nprocs=world,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + SPAWN_TIMEOUT
    try:
        # join returns False while some ranks still run (after any rank exits).
        while not ctx.join(max(1.0, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                pytest.fail(f"the {world} ranks did not finish within {SPAWN_TIMEOUT} s")
    except mp.ProcessExitedException as exc:
        pytest.fail(f"a rank died: {exc}")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    results = []
    for r in range(world):
        with open(os.path.join(tmp_path, f"rank{r}.pkl"), "rb") as f:
            results.append(pickle.load(f))
    for r, res in enumerate(results):
        assert "crash" not in res, f"rank {r} crashed:\n{res['crash']}"
    return results


@pytest.fixture(scope="module", params=WORLDS, ids=[f"{w}ranks" for w in WORLDS])
def ranks(request, tmp_path_factory):
    """Every rank's measurements, from one process group of that many ranks."""
    return _spawn(request.param, PARTS, tmp_path_factory.mktemp(f"world{request.param}"))


def _tolerance(dtype):
    return (1e-10, 1e-12) if "float64" in dtype else (2e-6, 2e-6)


def test_logits_form_matches_one_process(ranks):
    checked = 0
    for r, res in enumerate(ranks):
        for key, m in res.items():
            if key[0] != "logits":
                continue
            _, split, dtype, name, reduction = key
            loss_tol, grad_tol = _tolerance(dtype)
            where = f"rank {r}, split {split}, {dtype}, {name}, {reduction}"
            assert m["loss"] <= loss_tol, f"{where}: loss off by {m['loss']:.2e}"
            assert m["grad"] <= grad_tol, f"{where}: gradient off by {m['grad']:.2e}"
            assert m["dtype"] == dtype and m["grad_dtype"] == dtype, where
            assert m["shape"] == ((23,) if reduction == "none" else ()), where
            checked += 1
    assert checked == len(ranks) * 2 * len(cases.OPTION_SETS) * len(cases.REDUCTIONS)


def test_every_rank_gets_the_same_loss(ranks):
    # The merge runs in rank order on the same gathered rows: the same bits everywhere.
    first = ranks[0]
    for res in ranks[1:]:
        for key, m in res.items():
            if key[0] == "logits":
                assert m["loss"] == first[key]["loss"], key


def test_bfloat16(ranks):
    for r, res in enumerate(ranks):
        m = res[("bf16",)]
        assert m["dtype"] == "torch.bfloat16"
        # Both compute in float32 and round the loss and gradient to bfloat16.
        assert m["loss"] <= 2**-8, (r, m)
        assert m["grad"] <= 2**-7, (r, m)
        m = res[("bf16-linear",)]
        assert m["dtype"] == "torch.bfloat16"
        for what in ("loss", "grad_input", "grad_weight"):
            assert m[what] <= 2**-7, (r, what, m)


def test_linear_form_matches_one_process(ranks):
    for r, res in enumerate(ranks):
        found = [k for k in res if k[0] == "linear"]
        assert len(found) == 12
        for key in found:
            m = res[key]
            loss_tol, _ = _tolerance(key[1])
            grad_tol = 1e-11 if "float64" in key[1] else 5e-6
            for what, err in m.items():
                if what.endswith("_over_bound"):  # filter_eps: within the documented bound
                    assert err <= 1.0, (r, key, what, err)
                else:
                    assert err <= (loss_tol if what == "loss" else grad_tol), (r, key, what, err)


def _same_result(a, b, tol):
    assert a.n_tokens == b.n_tokens
    assert a.accuracy == b.accuracy
    for field in ("loss", "perplexity", "entropy", "ece"):
        x, y = getattr(a, field), getattr(b, field)
        assert abs(x - y) <= tol * max(1.0, abs(y)), (field, x, y)


def test_evaluation_across_ranks(ranks):
    for res in ranks:
        for key in (("vocab_evaluate", "torch.float64"), ("data_evaluate", "torch.float64")):
            _same_result(res[key]["split"], res[key]["single"], 1e-12)
        for key in (("vocab_evaluate", "torch.float32"), ("data_evaluate", "torch.float32")):
            _same_result(res[key]["split"], res[key]["single"], 1e-6)


ERRORS = {
    "rows": ("ValueError", "number of rows"),
    "local-shape": ("ValueError", "target must have shape"),
    "dtype": ("ValueError", "dtype"),
    "overlap": ("ValueError", "tile [0, V)"),
    "option": ("ValueError", "label_smoothing"),
    "target-differs": ("ValueError", "targets"),
    "target-range": ("IndexError", "out of range"),
    "weight-shape": ("ValueError", "weight must be this rank's slice"),
    "linear-hidden": ("ValueError", "linear_weight_shard"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_a_bad_call_on_one_rank_raises_on_every_rank(ranks, case):
    kind, words = ERRORS[case]
    for r, res in enumerate(ranks):
        got = res[("error", case)]
        assert got is not None, f"rank {r} did not raise for {case}"
        assert got[0] == kind and words in got[1], (r, got)
    assert all(np.isfinite(res[("error", "after")]) for res in ranks)
