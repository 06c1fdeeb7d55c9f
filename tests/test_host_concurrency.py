"""Traces stay separate and exact across asyncio tasks and threads."""

from __future__ import annotations

import asyncio
import threading

from callbacks import ROOT, CallbackManager, ContextThreadPoolExecutor, EventType, wrap

EXPECTED_SHAPE = [
    (EventType.QUERY, ROOT),
    (EventType.RETRIEVE, EventType.QUERY),
    (EventType.EMBEDDING, EventType.RETRIEVE),
    (EventType.SYNTHESIZE, EventType.QUERY),
    (EventType.LLM, EventType.SYNTHESIZE),
]


def _shape(trace, events) -> list[tuple[EventType, object]]:
    """(type, parent type) of each event of ``trace``, in start order, checked against its map."""
    starts = [e for e in events if e.is_start and e.trace_id == trace.id]
    by_id = {e.id: e for e in starts}
    for parent, children in trace.trace_map.items():
        for child in children:
            assert by_id[child].parent_id == parent
    assert sum(len(c) for c in trace.trace_map.values()) == len(starts)
    return [
        (e.type, by_id[e.parent_id].type if e.parent_id in by_id else e.parent_id) for e in starts
    ]


async def _async_query(cm: CallbackManager, i: int):
    with cm.as_trace(f"query-{i}") as trace:
        with cm.event(EventType.QUERY):
            with cm.event(EventType.RETRIEVE):
                await asyncio.sleep(0)
                with cm.event(EventType.EMBEDDING):
                    await asyncio.sleep(0)
            with cm.event(EventType.SYNTHESIZE):
                await asyncio.sleep(0)
                with cm.event(EventType.LLM):
                    await asyncio.sleep(0)
    return trace


def test_300_concurrent_asyncio_queries_give_300_exact_traces(make_manager, recorder) -> None:
    cm = make_manager(recorder)

    async def main():
        return await asyncio.gather(*(_async_query(cm, i) for i in range(300)))

    traces = asyncio.run(main())
    assert len({t.id for t in traces}) == 300
    assert len(recorder.traces) == 300
    for trace in traces:
        assert _shape(trace, recorder.events) == EXPECTED_SHAPE
        assert trace.counts == {t: 1 for t, _ in EXPECTED_SHAPE}
    assert all(e.task_name for e in recorder.events)
    ends = recorder.ends()
    assert len(ends) == 1500
    assert all(e.start is not None and e.start.is_start and e.start.id == e.id for e in ends)


def _threaded_query(cm: CallbackManager, run_in_thread) -> object:
    """QUERY in this thread; RETRIEVE>EMBEDDING and SYNTHESIZE>LLM in other threads."""

    def retrieve() -> None:
        with cm.event(EventType.RETRIEVE):
            with cm.event(EventType.EMBEDDING):
                pass

    def synthesize() -> None:
        with cm.event(EventType.SYNTHESIZE):
            with cm.event(EventType.LLM):
                pass

    with cm.as_trace("threaded") as trace:
        with cm.event(EventType.QUERY):
            run_in_thread(retrieve)
            run_in_thread(synthesize)
    return trace


def test_eight_threads_with_wrap_give_exact_traces(make_manager, recorder) -> None:
    cm = make_manager(recorder)
    traces: list[object] = []
    lock = threading.Lock()

    def run_in_thread(fn) -> None:
        t = threading.Thread(target=wrap(fn))
        t.start()
        t.join()

    def worker() -> None:
        for _ in range(25):
            trace = _threaded_query(cm, run_in_thread)
            with lock:
                traces.append(trace)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({t.id for t in traces}) == 200
    for trace in traces:
        assert _shape(trace, recorder.events) == EXPECTED_SHAPE


def test_context_thread_pool_executor_carries_the_trace(make_manager, recorder) -> None:
    cm = make_manager(recorder)
    with ContextThreadPoolExecutor(max_workers=8) as pool:
        traces = [_threaded_query(cm, lambda fn: pool.submit(fn).result()) for _ in range(50)]
    for trace in traces:
        assert _shape(trace, recorder.events) == EXPECTED_SHAPE


def test_plain_thread_without_helper_starts_a_trace_of_its_own(make_manager, recorder) -> None:
    cm = make_manager(recorder)

    def orphan() -> None:
        with cm.event(EventType.RETRIEVE):
            pass

    with cm.as_trace("outer") as outer:
        with cm.event(EventType.QUERY):
            t = threading.Thread(target=orphan)
            t.start()
            t.join()
    retrieve = next(e for e in recorder.events if e.type is EventType.RETRIEVE)
    assert retrieve.trace_id != outer.id
    assert retrieve.parent_id == ROOT
    implicit = next(t for t in recorder.traces if t.id == retrieve.trace_id)
    assert implicit.name == "retrieve" and implicit.trace_map == {ROOT: [retrieve.id]}
    assert outer.counts == {EventType.QUERY: 1}
