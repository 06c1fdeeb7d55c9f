"""A timeit-style runner: a statement is compiled into a tight loop, timed in batches after a
warm-up, and also timed one pair at a time for the tail (p99).

The statement runs with the case's names as its globals, exactly as ``timeit`` does, so no extra
function call per event pair hides in the figures. Batches record both wall time and the calling
thread's CPU time; background work (a plugin's worker, an exporter thread) is drained between
batches, outside the timed region, and that drain is timed separately.
"""

from __future__ import annotations

import itertools
import math
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median
from typing import Any, TypeVar

__all__ = ["Fixture", "Measurement", "Plan", "measure", "percentile"]

T = TypeVar("T")

_TEMPLATE = """
def batch(_n):
    _w0 = _wall()
    _c0 = _cpu()
    for _ in _repeat(None, _n):
{stmt}
    _w1 = _wall()
    _c1 = _cpu()
    return _w1 - _w0, _c1 - _c0


def shots(_n, _out):
    _append = _out.append
    for _ in _repeat(None, _n):
        _t0 = _wall()
{stmt}
        _append(_wall() - _t0)
"""


def _direct(fn: Callable[[], T]) -> T:
    return fn()


@dataclass
class Fixture:
    """What a case needs at run time: the names its statement uses and how to drive it."""

    namespace: dict[str, Any]
    """Globals of the compiled statement."""
    within: Callable[[Callable[[], Any]], Any] = _direct
    """Runs a batch inside the open trace (or parent span) the statement nests in."""
    flush: Callable[[], object] | None = None
    """Drains background work; called after each batch, outside the timed region."""
    close: Callable[[], object] | None = None
    """Releases everything the case set up."""
    max_batch: int | None = None
    """Largest batch that cannot overflow a bounded queue between two flushes."""
    dropped: Callable[[], int] | None = None
    """Events dropped so far (must stay 0 for the figures to mean anything)."""


@dataclass(frozen=True)
class Plan:
    """How long and how often to time one case."""

    batch_s: float = 0.01
    """Target duration of one timed batch (the batch size is calibrated to it)."""
    repeats: int = 25
    min_repeats: int = 5
    warmup_s: float = 0.1
    shots: int = 5000
    """Event pairs timed one by one, for the p99."""
    max_case_s: float = 6.0
    """Stop repeating (after ``min_repeats``) once a case has used this much time."""
    fixed_batch: int | None = None
    """Skip calibration and use this batch size (the quick smoke run)."""


@dataclass
class Measurement:
    """The figures for one case, in nanoseconds per event pair unless named otherwise."""

    median_ns: float
    p99_ns: float
    cpu_median_ns: float
    min_ns: float
    batch_size: int
    batches: int
    shots: int
    flush_ms: float
    """Median time to drain the background work of one batch, in milliseconds."""
    flush_ns_per_pair: float
    dropped: int
    per_batch_ns: list[float] = field(default_factory=list, repr=False)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0-100) of ``values``."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _compile(stmt: str, namespace: dict[str, Any]) -> tuple[Callable[..., Any], Callable[..., Any]]:
    source = _TEMPLATE.format(stmt=textwrap.indent(textwrap.dedent(stmt).strip(), " " * 8))
    namespace.update(_wall=time.perf_counter_ns, _cpu=time.thread_time_ns, _repeat=itertools.repeat)
    exec(compile(source, "<benchmark>", "exec"), namespace)
    return namespace.pop("batch"), namespace.pop("shots")


def _clock_overhead_ns(namespace: dict[str, Any], count: int) -> float:
    _, empty_shots = _compile("pass", dict(namespace))
    out: list[int] = []
    empty_shots(max(count, 200), out)
    return float(median(out))


def measure(stmt: str, fixture: Fixture, plan: Plan) -> Measurement:
    """Time ``stmt`` (one event pair) as the case's ``fixture`` says, following ``plan``."""
    batch, shots = _compile(stmt, fixture.namespace)
    cap = fixture.max_batch or 1 << 30
    flush_ns: list[int] = []

    def timed(n: int) -> tuple[int, int]:
        wall_cpu = fixture.within(lambda: batch(n))
        if fixture.flush is not None:
            t0 = time.perf_counter_ns()
            fixture.flush()
            flush_ns.append(time.perf_counter_ns() - t0)
        return wall_cpu  # type: ignore[no-any-return]

    started = time.perf_counter()
    target_ns = plan.batch_s * 1e9
    if plan.fixed_batch is not None:
        n = min(plan.fixed_batch, cap)
        timed(n)
    else:
        n = 1
        while True:
            wall, _ = timed(n)
            if wall >= target_ns or n >= cap:
                break
            n = min(cap, max(n * 2, int(n * target_ns / max(wall, 1) * 1.05)))
        warm_until = time.perf_counter() + plan.warmup_s
        while time.perf_counter() < warm_until:
            timed(n)
    flush_ns.clear()

    walls: list[float] = []
    cpus: list[float] = []
    for i in range(plan.repeats):
        wall, cpu = timed(n)
        walls.append(wall / n)
        cpus.append(cpu / n)
        if i + 1 >= plan.min_repeats and time.perf_counter() - started > plan.max_case_s:
            break
    flush_total = list(flush_ns)

    overhead = _clock_overhead_ns(fixture.namespace, plan.shots)
    samples: list[int] = []
    while len(samples) < plan.shots:
        chunk = min(cap, plan.shots - len(samples))
        fixture.within(lambda c=chunk: shots(c, samples))
        if fixture.flush is not None:
            fixture.flush()
    tail = [max(0.0, s - overhead) for s in samples]

    flush_median = float(median(flush_total)) if flush_total else 0.0
    return Measurement(
        median_ns=float(median(walls)),
        p99_ns=percentile(tail, 99),
        cpu_median_ns=float(median(cpus)),
        min_ns=min(walls),
        batch_size=n,
        batches=len(walls),
        shots=len(samples),
        flush_ms=flush_median / 1e6,
        flush_ns_per_pair=flush_median / n,
        dropped=fixture.dropped() if fixture.dropped is not None else 0,
    )
