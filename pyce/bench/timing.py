"""The one best-of-N timer of ``pyce bench`` (and its paired form against a floor)."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Optional


@dataclasses.dataclass
class Timing:
    """Best per-call time of ``runs`` runs, each the mean of ``calls`` calls."""

    best: float
    samples: list
    calls: int

    def to_json(self) -> dict:
        return {
            "best_s": self.best,
            "samples_s": self.samples,
            "calls_per_run": self.calls,
            "runs": len(self.samples),
        }


def time_call(
    fn: Callable[[], object],
    *,
    repeat: int = 5,
    setup: Optional[Callable] = None,
    warmup: int = 1,
    min_time: float = 0.02,
    max_calls: int = 2000,
    budget: float = 30.0,
) -> Timing:
    """Best-of-``repeat`` per-call time of ``fn()`` in seconds, after ``warmup`` calls.

    ``setup()`` (untimed) runs before every call, e.g. to restore an input an
    in-place call overwrote. A run times ``calls`` calls one by one and takes
    their mean, with ``calls`` chosen from the warm-up so that a run lasts at
    least ``min_time``. Very slow calls get fewer runs so that the whole
    measurement stays within about ``budget`` seconds (at least one run).
    """
    clock = time.perf_counter
    first = 0.0
    for _ in range(max(1, warmup)):
        if setup is not None:
            setup()
        t0 = clock()
        fn()
        first = clock() - t0
    first = max(first, 1e-7)
    calls = int(min(max_calls, max(1, math.ceil(min_time / first))))
    runs = max(1, min(repeat, int(budget / (first * calls))))
    samples = []
    for _ in range(runs):
        total = 0.0
        for _ in range(calls):
            if setup is not None:
                setup()
            t0 = clock()
            fn()
            total += clock() - t0
        samples.append(total / calls)
    return Timing(min(samples), samples, calls)


def time_against_floor(
    fn: Callable[[], object],
    floor_fn: Callable[[], object],
    *,
    setup: Optional[Callable] = None,
    rounds: int = 5,
    min_time: float = 0.02,
) -> tuple:
    """``(op Timing, floor Timing)``: ``fn`` and its floor probe timed alternately.

    On a shared machine the memory bandwidth drifts as other tenants come and
    go: a floor measured once per shape and an op timed a minute later can
    disagree by tens of percent. Timing each op next to the probe that bounds
    it, round after round, keeps their ratio honest.
    """
    op_samples: list = []
    floor_samples: list = []
    op: Optional[Timing] = None
    floor: Optional[Timing] = None
    for _ in range(max(1, rounds)):
        floor = time_call(floor_fn, repeat=1, min_time=min_time)
        op = time_call(fn, setup=setup, repeat=1, min_time=min_time)
        floor_samples += floor.samples
        op_samples += op.samples
    assert op is not None and floor is not None  # rounds >= 1
    return (
        Timing(min(op_samples), op_samples, op.calls),
        Timing(min(floor_samples), floor_samples, floor.calls),
    )
