"""How the cost of an event pair scales: with nesting depth, with the number of plugins, with two
threads emitting at once; sustained throughput into a background plugin; memory over many events."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from statistics import median
from typing import Any

import callbacks
from callbacks import CallbackManager, EventType

from .cases_callbacks import END_PAYLOAD, EVENT_PAIR, START_PAYLOAD, manager_fixture
from .plugins import NoopBackground, NoopInline
from .timing import Fixture, Measurement, Plan, measure

__all__ = [
    "DEPTHS",
    "FAN_OUTS",
    "MemoryResult",
    "ThreadsResult",
    "ThroughputResult",
    "by_depth",
    "by_fan_out",
    "memory_growth",
    "throughput",
    "two_threads",
]

DEPTHS = (1, 2, 4, 8, 16, 32, 64)
FAN_OUTS = (1, 4, 16)
_LLM = EventType.LLM
_TIMEOUT_S = 120.0


def _manager(*plugins: object) -> CallbackManager:
    cm = CallbackManager(load_entrypoints=False)
    for plugin in plugins:
        cm.register(plugin, name="noop")
    return cm


def _emit(cm: CallbackManager, pairs: int) -> None:
    event, llm, start, end = cm.event, _LLM, START_PAYLOAD, END_PAYLOAD
    for _ in range(pairs):
        with event(llm, payload=start) as scope:
            scope.on_end(payload=end)


def _measured(fixture: Fixture, plan: Plan) -> Measurement:
    try:
        return measure(EVENT_PAIR, fixture, plan)
    finally:
        if fixture.close is not None:
            fixture.close()


def by_depth(plan: Plan, depths: tuple[int, ...] = DEPTHS) -> dict[int, Measurement]:
    """ns per pair with one inline no-op plugin when the pair is the ``depth``-th nested event."""
    results: dict[int, Measurement] = {}
    for depth in depths:
        cm = _manager(NoopInline())
        fixture = manager_fixture(cm)

        def within(fn: Callable[[], Any], cm: CallbackManager = cm, depth: int = depth) -> Any:
            with cm.as_trace("depth"), ExitStack() as stack:
                for _ in range(depth - 1):
                    stack.enter_context(cm.event(EventType.QUERY))
                return fn()

        fixture.within = within
        results[depth] = _measured(fixture, plan)
    return results


def by_fan_out(plan: Plan, fan_outs: tuple[int, ...] = FAN_OUTS) -> dict[int, Measurement]:
    """ns per pair with ``n`` inline no-op plugins registered."""
    return {
        n: _measured(manager_fixture(_manager(*(NoopInline() for _ in range(n)))), plan)
        for n in fan_outs
    }


@dataclass
class ThreadsResult:
    """Two threads emitting into one trace at once (``callbacks.wrap`` carries the trace)."""

    mode: str
    pairs_per_thread: int
    aggregate_ns: float
    """Wall time of the whole run divided by all pairs of both threads (median of the runs)."""
    per_thread_ns: float
    """Each thread's own elapsed time divided by its pairs (median over threads and runs)."""
    events_ok: bool
    """Every pair of both threads reached the trace and the plugin."""
    dropped: int


def two_threads(mode: str, pairs_per_thread: int, runs: int) -> ThreadsResult:
    """Run ``runs`` rounds of two threads emitting ``pairs_per_thread`` pairs each."""
    plugin = NoopInline() if mode == "inline" else NoopBackground()
    cm = _manager(plugin)
    aggregate: list[float] = []
    per_thread: list[float] = []
    ok = True
    try:
        _run_threads(cm, min(pairs_per_thread, 500))
        cm.flush(timeout=_TIMEOUT_S)
        for _ in range(runs):
            before = cm.stats()["noop"]["delivered"]
            wall, elapsed, trace = _run_threads(cm, pairs_per_thread)
            cm.flush(timeout=_TIMEOUT_S)
            delivered = cm.stats()["noop"]["delivered"] - before
            ok = ok and trace.counts.get(_LLM) == 2 * pairs_per_thread
            ok = ok and delivered == 4 * pairs_per_thread
            aggregate.append(wall / (2 * pairs_per_thread))
            per_thread.extend(e / pairs_per_thread for e in elapsed)
        dropped = cm.stats()["noop"]["dropped"]
    finally:
        cm.shutdown(timeout=_TIMEOUT_S)
    return ThreadsResult(mode, pairs_per_thread, median(aggregate), median(per_thread), ok, dropped)


def _run_threads(cm: CallbackManager, pairs: int) -> tuple[int, list[int], Any]:
    barrier = threading.Barrier(3)
    elapsed = [0, 0]

    def worker(slot: int) -> None:
        barrier.wait()
        t0 = time.perf_counter_ns()
        _emit(cm, pairs)
        elapsed[slot] = time.perf_counter_ns() - t0

    with cm.as_trace("two-threads") as trace:
        threads = [threading.Thread(target=callbacks.wrap(worker), args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        barrier.wait()
        t0 = time.perf_counter_ns()
        for thread in threads:
            thread.join()
        wall = time.perf_counter_ns() - t0
    return wall, elapsed, trace


@dataclass
class ThroughputResult:
    """Event pairs pushed as fast as possible into one background no-op plugin."""

    pairs: int
    queue_size: int
    emit_pairs_per_s: float
    """Rate at which the caller emitted."""
    pairs_per_s: float
    """End to end: all pairs emitted and handled by the plugin (flush included)."""
    delivered: int
    dropped: int
    full_collections: int
    """Full (generation 2) garbage collections during the run."""
    pairs_per_s_gc_frozen: float = 0.0
    """The same run after ``gc.freeze()``: what the rate would be without full collections
    traversing the process's existing heap."""

    @property
    def events_per_s(self) -> float:
        """End-to-end rate counting the start and the end of a pair as two events."""
        return 2 * self.pairs_per_s


def throughput(pairs: int, trace_size: int = 100) -> ThroughputResult:
    """Emit ``pairs`` pairs (in traces of ``trace_size``) into a background no-op plugin with the
    default queue size, then flush; then again with the existing heap frozen out of the GC."""
    result = _throughput_once(pairs, trace_size)
    gc.collect()
    gc.freeze()
    try:
        result.pairs_per_s_gc_frozen = _throughput_once(pairs, trace_size).pairs_per_s
    finally:
        gc.unfreeze()
    return result


def _full_collections() -> int:
    return int(gc.get_stats()[2]["collections"])


def _throughput_once(pairs: int, trace_size: int) -> ThroughputResult:
    cm = _manager(NoopBackground())
    try:
        with cm.as_trace("warm-up"):
            _emit(cm, 2000)
        cm.flush(timeout=_TIMEOUT_S)
        before = cm.stats()["noop"]
        collections = _full_collections()
        traces, rest = divmod(pairs, trace_size)
        t0 = time.perf_counter_ns()
        for size in [trace_size] * traces + ([rest] if rest else []):
            with cm.as_trace("throughput"):
                _emit(cm, size)
        emitted = time.perf_counter_ns()
        if not cm.flush(timeout=_TIMEOUT_S):
            raise RuntimeError("throughput: flush timed out")
        done = time.perf_counter_ns()
        collections = _full_collections() - collections
        after = cm.stats()["noop"]
    finally:
        cm.shutdown(timeout=_TIMEOUT_S)
    return ThroughputResult(
        pairs=pairs,
        queue_size=cm.settings.queue_size,
        emit_pairs_per_s=pairs / ((emitted - t0) / 1e9),
        pairs_per_s=pairs / ((done - t0) / 1e9),
        delivered=after["delivered"] - before["delivered"],
        dropped=after["dropped"] - before["dropped"],
        full_collections=collections,
    )


@dataclass
class MemoryResult:
    """Resident memory across many event pairs (one inline and one background no-op plugin)."""

    pairs: int
    trace_size: int
    rss_before_mb: float
    rss_after_mb: float
    rss_peak_mb: float
    dropped: int

    @property
    def growth_mb(self) -> float:
        """RSS after (flushed, collected) minus RSS before."""
        return self.rss_after_mb - self.rss_before_mb


def rss_mb() -> float:
    """This process's resident set size in MiB."""
    try:
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**20
    except ImportError:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_growth(pairs: int, trace_size: int = 1000, samples: int = 10) -> MemoryResult:
    """RSS before and after emitting ``pairs`` pairs in traces of ``trace_size``."""
    cm = CallbackManager(load_entrypoints=False)
    cm.register(NoopInline(), name="inline")
    cm.register(NoopBackground(), name="background")
    try:
        for _ in range(20):
            with cm.as_trace("warm-up"):
                _emit(cm, trace_size)
        cm.flush(timeout=_TIMEOUT_S)
        gc.collect()
        before = peak = rss_mb()
        traces = max(1, pairs // trace_size)
        every = max(1, traces // samples)
        for i in range(traces):
            with cm.as_trace("memory"):
                _emit(cm, trace_size)
            if i % every == 0:
                peak = max(peak, rss_mb())
        cm.flush(timeout=_TIMEOUT_S)
        gc.collect()
        after = rss_mb()
        dropped = sum(s["dropped"] for s in cm.stats().values())
    finally:
        cm.shutdown(timeout=_TIMEOUT_S)
    return MemoryResult(traces * trace_size, trace_size, before, after, max(peak, after), dropped)
