"""A trace ends when its last open event ends: late ends (streams, other threads) are delivered in
their trace, and only stale traces abandon events. Failures mark each event they propagate
through."""

from __future__ import annotations

import threading

import pytest

from callbacks import CallbackManager, EventAbandoned, EventType
from callbacks.testing import RecordingPlugin


@pytest.fixture
def recorder() -> RecordingPlugin:
    return RecordingPlugin()


def test_an_end_arriving_after_the_trace_block_is_delivered_in_that_trace(recorder) -> None:
    cm = CallbackManager(plugins=[recorder])
    with cm.as_trace("chat") as trace:
        llm = cm.on_event_start(EventType.LLM, {"prompt": "hi"})
    # The trace block is over, the stream is not: the trace waits.
    assert recorder.traces == []
    assert not trace.ended
    done = threading.Event()

    def consumer() -> None:
        cm.on_event_end(EventType.LLM, {"completion": "hello"}, event_id=llm)
        done.set()

    thread = threading.Thread(target=consumer)
    thread.start()
    thread.join()
    assert done.is_set()
    (end,) = recorder.ends()
    assert end.id == llm and end.trace_id == trace.id and end.exception is None
    assert recorder.traces == [trace] and trace.ended
    assert trace.end_time_ns >= end.time_ns
    assert trace.open_event_ids == []
    stats = cm.host_stats()
    assert (stats["abandoned"], stats["unmatched_ends"], stats["pending"]) == (0, 0, 0)
    cm.shutdown()


def test_an_implicit_trace_waits_for_an_overlapping_root_event(recorder) -> None:
    cm = CallbackManager(plugins=[recorder])
    first = cm.on_event_start(EventType.EMBEDDING)
    second = cm.on_event_start(EventType.EMBEDDING, parent_id="root")
    cm.on_event_end(EventType.EMBEDDING, event_id=first)
    assert recorder.traces == []
    cm.on_event_end(EventType.EMBEDDING, event_id=second)
    (trace,) = recorder.traces
    assert trace.trace_map == {"root": [first, second]}
    assert [e.id for e in recorder.ends()] == [first, second]
    assert all(e.exception is None for e in recorder.ends())
    assert cm.host_stats()["abandoned"] == 0
    cm.shutdown()


def test_waiting_traces_go_stale_by_the_host_rules_and_at_shutdown(recorder) -> None:
    from callbacks import _dispatch

    bound = _dispatch.MAX_OPEN_TRACES
    cm = CallbackManager(plugins=[recorder])
    traces = []
    for _ in range(bound + 1):
        with cm.as_trace("leak") as trace:
            cm.on_event_start(EventType.LLM)
        traces.append(trace)
    # Waiting traces are open traces: one over the host's bound, the oldest was retired.
    assert recorder.traces == [traces[0]]
    assert cm.host_stats()["abandoned"] == 1
    assert cm.host_stats()["abandoned_traces"] == 1
    assert cm.host_stats()["pending"] == bound
    (abandoned,) = recorder.ends()
    assert isinstance(abandoned.exception, EventAbandoned)
    assert abandoned.trace_id == traces[0].id
    cm.shutdown()
    assert len(recorder.traces) == bound + 1
    assert cm.host_stats()["abandoned"] == bound + 1
    assert cm.host_stats()["pending"] == 0


def test_a_failure_marks_each_event_it_propagates_through(recorder) -> None:
    cm = CallbackManager(plugins=[recorder])
    error = ValueError("boom")
    with pytest.raises(ValueError):
        with cm.as_trace("q"):
            with cm.event(EventType.QUERY):
                with cm.event(EventType.SYNTHESIZE):
                    with cm.event(EventType.LLM):
                        raise error
    assert [(e.type, e.exception) for e in recorder.ends()] == [
        (EventType.LLM, error),
        (EventType.SYNTHESIZE, error),
        (EventType.QUERY, error),
    ]


def test_an_exception_handled_inside_the_trace_marks_only_the_events_it_left(recorder) -> None:
    cm = CallbackManager(plugins=[recorder])
    with cm.as_trace("q"):
        with cm.event(EventType.QUERY):
            with cm.event(EventType.SYNTHESIZE):
                try:
                    with cm.event(EventType.FUNCTION_CALL):
                        raise KeyError("tool failed")
                except KeyError:
                    pass  # the application recovers: the call failed, its callers did not
    failed = {e.type: e.failed for e in recorder.ends()}
    assert failed == {
        EventType.FUNCTION_CALL: True,
        EventType.SYNTHESIZE: False,
        EventType.QUERY: False,
    }


def test_trace_wait_zero_abandons_open_events_when_the_trace_block_ends(recorder) -> None:
    cm = CallbackManager(plugins=[recorder], config={"trace_wait": 0})
    with cm.as_trace("q") as trace:
        llm = cm.on_event_start(EventType.LLM)
    assert recorder.traces == [trace]
    (end,) = recorder.ends()
    assert end.id == llm and isinstance(end.exception, EventAbandoned)
    # The late end is not delivered twice; it is counted as unmatched.
    cm.on_event_end(EventType.LLM, event_id=llm)
    assert len(recorder.ends()) == 1
    assert (cm.host_stats()["abandoned"], cm.host_stats()["unmatched_ends"]) == (1, 1)
    cm.shutdown()
