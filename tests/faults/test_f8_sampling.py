"""Fault 8: with sampling on, ``unmatched_ends`` counts only real mismatches."""

from __future__ import annotations

from callbacks import CallbackManager, EventType
from callbacks.testing import RecordingPlugin

TRACES = 2000
REAL_MISMATCHES = 37


def test_sampled_out_ends_are_not_counted_as_unmatched() -> None:
    recorder = RecordingPlugin()
    cm = CallbackManager(plugins=[recorder], config={"sample_rate": 0.1})
    try:
        for i in range(TRACES):
            cm.start_trace(f"request-{i}")
            query = cm.on_event_start(EventType.QUERY)
            for _ in range(2):
                llm = cm.on_event_start(EventType.LLM)
                cm.on_event_end(EventType.LLM, event_id=llm)
            cm.on_event_end(EventType.QUERY, event_id=query)
            cm.end_trace()
        # events outside any trace: each opens an implicit trace, sampled too
        for _ in range(TRACES):
            event_id = cm.on_event_start(EventType.EMBEDDING)
            cm.on_event_end(EventType.EMBEDDING, event_id=event_id)
        for i in range(REAL_MISMATCHES):
            cm.on_event_end(EventType.LLM, event_id=f"never-started-{i}")
    finally:
        cm.shutdown(timeout=5.0)
    host = cm.host_stats()
    recorded = len(recorder.traces)
    assert host["traces"] == 2 * TRACES
    assert host["sampled_out"] + recorded == 2 * TRACES
    assert 0.05 * 2 * TRACES < recorded < 0.2 * 2 * TRACES  # sampling happened
    assert host["unmatched_ends"] == REAL_MISMATCHES, host
    assert host["pending"] == 0, host
