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
    assert len(spans) == len(by_event) + len(roots)

    span_of_event: dict[str, object] = {}
    for span in spans:
        if span.parent is None:
            continue
        kind = span.attributes[SpanAttributes.OPENINFERENCE_SPAN_KIND]
        matches = [
            e
            for e in by_event.values()
            if e.start_wall_time_ns == span.start_time and e.wall_time_ns == span.end_time
        ]
        assert matches, f"span {span.name} has no event with its start and end times"
        event = matches[0]
        assert kind == KINDS.get(event.type, "CHAIN")
        span_of_event[event.id] = span
    assert set(span_of_event) == set(by_event)
    for event_id, span in span_of_event.items():
        parent = by_event[event_id].parent_id
        if parent == ROOT:
            assert span.parent.span_id in {r.context.span_id for r in roots}
        else:
            assert span.parent.span_id == span_of_event[parent].context.span_id
    failed = [s for s in spans if s.status.status_code.name == "ERROR"]
    errors = [e for e in ends.ends() if e.exception is not None or e.type is EventType.EXCEPTION]
    assert errors and len(failed) == len(errors)
