"""The `callbacks demo` main job becomes OpenInference spans: one per event, nested as emitted."""

from __future__ import annotations

import io
from pathlib import Path

from openinference.semconv.trace import SpanAttributes

from callbacks import ROOT, CallbackManager, EventType
from callbacks.testing import RecordingPlugin
from callbacks_demo import run_demo
from callbacks_openinference import OpenInferencePlugin

KINDS = {
    EventType.LLM: "LLM",
    EventType.EMBEDDING: "EMBEDDING",
    EventType.RETRIEVE: "RETRIEVER",
    EventType.RERANKING: "RERANKER",
    EventType.FUNCTION_CALL: "TOOL",
    EventType.AGENT_STEP: "AGENT",
}


def test_demo_events_become_spans_with_kinds_parents_and_times(tmp_path: Path) -> None:
    plugin, ends = OpenInferencePlugin(), RecordingPlugin()
    cm = CallbackManager(plugins=[plugin, ends], config={"openinference": {"exporter": "memory"}})
    report = run_demo(questions=2, out_dir=tmp_path, manager=cm, stream=io.StringIO())
    assert cm.flush(10)
    spans = plugin.memory_exporter.get_finished_spans()
    cm.shutdown()

    by_event = {e.id: e for e in ends.ends()}
    assert {e.type for e in ends.ends()} == set(EventType)
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == len(report.trace_ids)
    # A trace whose one top-level event is its root span has no extra span; others get one.
    top_level = [e for e in by_event.values() if e.parent_id == ROOT]
    per_trace = {t: sum(1 for e in top_level if e.trace_id == t) for t in report.trace_ids}
    synthetic = sum(1 for n in per_trace.values() if n != 1)
    assert synthetic >= 1  # the demo has both shapes
    assert len(spans) == len(by_event) + synthetic

    span_of_event: dict[str, object] = {}
    for span in spans:
        kind = span.attributes[SpanAttributes.OPENINFERENCE_SPAN_KIND]
        matches = [
            e
            for e in by_event.values()
            if e.start_wall_time_ns == span.start_time and e.wall_time_ns == span.end_time
        ]
        if span.parent is None and not matches:
            continue  # a trace span holding several top-level events
        assert matches, f"span {span.name} has no event with its start and end times"
        event = matches[0]
        assert kind == KINDS.get(event.type, "CHAIN")
        span_of_event[event.id] = span
    assert set(span_of_event) == set(by_event)
    for event_id, span in span_of_event.items():
        parent = by_event[event_id].parent_id
        if parent == ROOT and span.parent is None:
            assert per_trace[by_event[event_id].trace_id] == 1
        elif parent == ROOT:
            assert span.parent.span_id in {r.context.span_id for r in roots}
        else:
            assert span.parent.span_id == span_of_event[parent].context.span_id
    failed = [s for s in spans if s.status.status_code.name == "ERROR"]
    errors = [e for e in ends.ends() if e.exception is not None or e.type is EventType.EXCEPTION]
    assert errors and len(failed) == len(errors)
