"""Fault 5: memory stays bounded whatever the application does wrong, stale traces are closed as
abandoned (and counted), and a fresh request on a reused thread or task gets its own trace.

Each misuse runs 1,000,000 times in a child process (a fresh heap), with a listening plugin that
keeps per-trace state until ``on_trace_end``, as real sinks do; the child reports its resident
set growth and the host's counters."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from callbacks import CallbackManager, EventType
from callbacks.testing import RecordingPlugin

from ._child import run_script, write_script

MISUSES = 1_000_000
MAX_GROWTH_MB = 20
MAX_COST_IN_PAIRS = 5.0
"""A misuse may cost at most this many well-formed event pairs (measured in the same process, so
a loaded machine does not matter); a cost that grows with the number of misuses fails."""

CHILD = """
import contextvars, json, os, sys, time
from callbacks import CallbackManager, EventType, hookimpl

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

class SinkLike:
    '''Keeps each trace's state until on_trace_end, as the sinks' per-trace buffers do.'''
    callbacks_name = "sinklike"
    callbacks_delivery = "inline"
    def __init__(self):
        self.open = {}
        self.ended = 0
    @hookimpl
    def on_trace_start(self, trace):
        self.open[trace.id] = 0
    @hookimpl
    def on_event_start(self, event):
        if event.trace_id in self.open:
            self.open[event.trace_id] += 1
    @hookimpl
    def on_trace_end(self, trace):
        self.open.pop(trace.id, None)
        self.ended += 1

misuse, n = sys.argv[1], int(sys.argv[2])
sink = SinkLike()
cm = CallbackManager(plugins=[sink])
LLM = EventType.LLM

def event_start_never_ended():
    for _ in range(n):
        cm.on_event_start(LLM)

def start_trace_never_ended():
    # every request in a fresh context (a new thread or task each time), never ending its trace
    run = contextvars.Context().run
    for _ in range(n):
        contextvars.Context().run(cm.start_trace, "request")

def events_in_one_endless_trace():
    cm.start_trace("endless")
    for _ in range(n):
        with cm.event(LLM):
            pass

def ends_without_start():
    for i in range(n):
        cm.on_event_end(LLM, event_id=f"unknown-{i}")

def event_scopes_never_exited():
    for _ in range(n):
        contextvars.Context().run(cm.event(LLM).__enter__)

def well_formed_pairs(pairs):
    with cm.as_trace("baseline"):
        for _ in range(pairs):
            with cm.event(LLM):
                pass

# the cost of a correct event pair here and now (the machine may be loaded), for comparison
started = time.process_time()
well_formed_pairs(100_000)
pair_us = (time.process_time() - started) / 100_000 * 1e6

work = globals()[misuse]
# warm up the same path so that one-time allocations do not count as growth
n_real, n = n, 1000
work()
n = n_real
before = rss_mb()
started, cpu_started = time.perf_counter(), time.process_time()
work()
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
after = rss_mb()
print(json.dumps({
    "growth_mb": round(after - before, 1),
    "seconds": round(elapsed, 2),
    "cost_in_pairs": round(cpu / n * 1e6 / pair_us, 2),
    "host": cm.host_stats(),
    "sink_open_traces": len(sink.open),
}))
os._exit(0)
"""


@pytest.mark.parametrize(
    "misuse",
    [
        "event_start_never_ended",
        "start_trace_never_ended",
        "events_in_one_endless_trace",
        "ends_without_start",
        "event_scopes_never_exited",
    ],
)
def test_a_million_misuses_keep_memory_bounded(misuse: str, tmp_path: Path) -> None:
    script = write_script(tmp_path, CHILD)
    result = run_script(script, misuse, str(MISUSES), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(misuse, report)
    assert report["growth_mb"] < MAX_GROWTH_MB, report
    assert report["cost_in_pairs"] < MAX_COST_IN_PAIRS, report
    assert report["host"]["pending"] <= 100_000, report
    assert report["sink_open_traces"] <= 10_000, report
    if misuse in ("start_trace_never_ended", "events_in_one_endless_trace"):
        # traces left open were closed as abandoned, and counted
        assert report["host"]["abandoned_traces"] > 0, report


def _request(cm: CallbackManager, i: int) -> None:
    cm.start_trace(f"request-{i}")
    with cm.event(EventType.QUERY, {"query_str": str(i)}):
        if i == 0:
            raise RuntimeError("request 0 fails before end_trace")
    cm.end_trace()


def test_a_fresh_request_on_a_reused_thread_gets_its_own_trace() -> None:
    recorder = RecordingPlugin()
    cm = CallbackManager(plugins=[recorder])
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:  # one pooled thread, reused
            futures = [pool.submit(_request, cm, i) for i in range(100)]
        errors = [f.exception() for f in futures]
    finally:
        cm.shutdown(timeout=5.0)
    assert isinstance(errors[0], RuntimeError) and errors[1:] == [None] * 99
    names = [t.name for t in recorder.traces]
    # the 99 later requests each got on_trace_end for their own trace
    assert [n for n in names if n != "request-0"] == [f"request-{i}" for i in range(1, 100)]
    by_trace = {e.trace_id for e in recorder.starts(EventType.QUERY)}
    assert len(by_trace) == 100
    assert cm.host_stats()["abandoned_traces"] >= 1


def test_a_fresh_request_on_a_reused_task_gets_its_own_trace() -> None:
    recorder = RecordingPlugin()
    cm = CallbackManager(plugins=[recorder])

    async def handle(i: int) -> None:
        cm.start_trace(f"request-{i}")
        with cm.event(EventType.QUERY):
            await asyncio.sleep(0)
            if i == 0:
                raise RuntimeError("request 0 fails before end_trace")
        cm.end_trace()

    async def worker(queue: asyncio.Queue[int]) -> None:  # one long-lived task serves all
        while True:
            i = await queue.get()
            try:
                await handle(i)
            except RuntimeError:
                pass
            finally:
                queue.task_done()

    async def main() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        task = asyncio.create_task(worker(queue))
        for i in range(100):
            queue.put_nowait(i)
        await queue.join()
        task.cancel()

    try:
        asyncio.run(main())
    finally:
        cm.shutdown(timeout=5.0)
    names = [t.name for t in recorder.traces]
    assert [n for n in names if n != "request-0"] == [f"request-{i}" for i in range(1, 100)]


def test_nested_start_trace_still_joins_the_running_trace() -> None:
    """The staleness rule must not split a legitimately nested trace (LlamaIndex nests
    start_trace calls), across a context-propagating thread either."""
    recorder = RecordingPlugin()
    cm = CallbackManager(plugins=[recorder])
    done = threading.Event()

    def inner() -> None:
        cm.start_trace("inner")
        with cm.event(EventType.RETRIEVE):
            pass
        cm.end_trace()
        done.set()

    from callbacks import ContextThreadPoolExecutor

    try:
        outer = cm.start_trace("outer")
        with cm.event(EventType.QUERY):
            inner()
            with ContextThreadPoolExecutor(1) as pool:
                pool.submit(inner).result()
        cm.end_trace()
    finally:
        cm.shutdown(timeout=5.0)
    assert [t.name for t in recorder.traces] == ["outer"]
    assert {e.trace_id for e in recorder.events} == {outer.id}
    assert cm.host_stats()["abandoned_traces"] == 0


def test_a_trace_open_too_long_is_retired_when_another_opens(monkeypatch) -> None:
    """The age rule (an hour by default; zero here, so any open trace is too old)."""
    import contextvars

    from callbacks import _dispatch

    monkeypatch.setattr(_dispatch, "_MAX_TRACE_AGE_NS", 0)
    recorder = RecordingPlugin()
    cm = CallbackManager(plugins=[recorder])
    try:
        forgotten = contextvars.Context().run(cm.start_trace, "forgotten")
        assert recorder.traces == []
        with cm.as_trace("next"):
            pass
    finally:
        cm.shutdown(timeout=5.0)
    assert [t.name for t in recorder.traces] == ["forgotten", "next"]
    assert forgotten.ended
    assert cm.host_stats()["abandoned_traces"] == 1
