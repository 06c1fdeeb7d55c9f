"""Span structure and OpenInference attributes of every event type (in-memory exporter)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from oi_helpers import SCHEMA, VECTOR, Recorder, memory_manager, plugin_of, run_pipeline
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from callbacks import EventAbandoned, EventPayload, EventType


class Run(NamedTuple):
    trace_id: str
    spans: list[ReadableSpan]
    recorder: Recorder
    by_event: dict[str, ReadableSpan]
    root: ReadableSpan
    stats: dict[str, Any]


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    recorder = Recorder()
    cm = memory_manager(recorder)
    trace_id = run_pipeline(cm)
    assert cm.flush(timeout=5.0)
    plugin = plugin_of(cm)
    assert plugin.memory_exporter is not None
    spans = list(plugin.memory_exporter.get_finished_spans())
    stats = plugin.callbacks_stats()
    by_times = {(s.name, s.start_time, s.end_time): s for s in spans}
    by_event = {}
    for event_id, end in recorder.ends.items():
        key = (end.type.value, end.start_wall_time_ns, end.wall_time_ns)
        if key in by_times:
            by_event[event_id] = by_times[key]
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 1
    yield Run(trace_id, spans, recorder, by_event, roots[0], stats)
    cm.shutdown(timeout=5.0)


def _span(run: Run, event_type: EventType, index: int = 0) -> ReadableSpan:
    matches = sorted(
        (s for s in run.spans if s.name == event_type.value), key=lambda s: s.start_time
    )
    return matches[index]


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_every_event_becomes_one_span_plus_the_trace_root(run: Run) -> None:
    assert len(run.recorder.ends) == 17
    assert len(run.spans) == 18
    assert {s.name for s in run.spans} == {t.value for t in EventType} | {"rag-query"}
    assert run.stats["spans_created"] == 18
    assert run.stats["spans_exported"] == 18
    assert run.stats["export_errors"] == 0


def test_span_times_are_the_events_own_recorded_times(run: Run) -> None:
    assert set(run.by_event) == set(run.recorder.ends)
    trace = run.recorder.traces[0]
    assert run.root.start_time == trace.start_wall_time_ns
    assert run.root.end_time == trace.end_wall_time_ns
    for span in run.spans:
        assert run.root.start_time <= span.start_time <= span.end_time <= run.root.end_time


def test_span_parents_follow_the_event_nesting(run: Run) -> None:
    for event_id, span in run.by_event.items():
        parent_id = run.recorder.ends[event_id].parent_id
        expected = run.root if parent_id == "root" else run.by_event[parent_id]
        assert span.parent is not None
        assert span.parent.span_id == expected.context.span_id
    llm = _span(run, EventType.LLM)
    synthesize = _span(run, EventType.SYNTHESIZE)
    assert llm.parent is not None and llm.parent.span_id == synthesize.context.span_id


def test_trace_id_is_the_callbacks_trace_id(run: Run) -> None:
    assert {format(s.context.trace_id, "032x") for s in run.spans} == {run.trace_id}


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [
        (EventType.LLM, "LLM"),
        (EventType.EMBEDDING, "EMBEDDING"),
        (EventType.RETRIEVE, "RETRIEVER"),
        (EventType.RERANKING, "RERANKER"),
        (EventType.FUNCTION_CALL, "TOOL"),
        (EventType.AGENT_STEP, "AGENT"),
        (EventType.QUERY, "CHAIN"),
        (EventType.SYNTHESIZE, "CHAIN"),
        (EventType.TEMPLATING, "CHAIN"),
        (EventType.CHUNKING, "CHAIN"),
        (EventType.NODE_PARSING, "CHAIN"),
        (EventType.TREE, "CHAIN"),
        (EventType.SUB_QUESTION, "CHAIN"),
        (EventType.EXCEPTION, "CHAIN"),
    ],
)
def test_span_kind_follows_openinference_mapping(
    run: Run, event_type: EventType, kind: str
) -> None:
    assert _attrs(_span(run, event_type))["openinference.span.kind"] == kind


def test_root_span_is_a_chain_named_after_the_trace_with_its_input_and_output(run: Run) -> None:
    attrs = _attrs(run.root)
    assert run.root.name == "rag-query"
    assert attrs["openinference.span.kind"] == "CHAIN"
    assert attrs["input.value"] == json.dumps(["Doc one. Doc two."])
    assert attrs["input.mime_type"] == "application/json"
    assert attrs["output.value"] == "1 + 2 = 3"  # the last top-level event with an output
    assert run.root.status.status_code is StatusCode.ERROR  # a top-level event failed


def test_trace_attributes_are_on_every_span(run: Run) -> None:
    for span in run.spans:
        attrs = _attrs(span)
        assert attrs["session.id"] == "s-1"
        assert attrs["user.id"] == "u-1"
        assert json.loads(attrs["metadata"]) == {"team": "qa"}
        assert attrs["tag.tags"] == ("t1", "t2")


def test_llm_span_attributes(run: Run) -> None:
    attrs = _attrs(_span(run, EventType.LLM))
    assert attrs["llm.model_name"] == "stub-llm"
    assert json.loads(attrs["llm.invocation_parameters"]) == {
        "temperature": 0.1,
        "max_tokens": 64,
        "model": "stub-llm",
    }
    assert attrs["llm.input_messages.0.message.role"] == "system"
    assert attrs["llm.input_messages.0.message.content"] == "Be brief."
    assert attrs["llm.input_messages.1.message.role"] == "user"
    assert attrs["llm.input_messages.1.message.content"] == "Context: Doc one.\nQ: What is one?"
    assert attrs["llm.output_messages.0.message.role"] == "assistant"
    assert attrs["llm.output_messages.0.message.content"] == "One is a doc."
    assert (
        attrs["llm.token_count.prompt"],
        attrs["llm.token_count.completion"],
        attrs["llm.token_count.total"],
    ) == (12, 4, 16)
    assert attrs["output.value"] == "One is a doc."
    assert attrs["output.mime_type"] == "text/plain"
    assert attrs["input.mime_type"] == "application/json"
    # The prompt template comes from the templating event formatted just before the call.
    assert attrs["llm.prompt_template.template"] == "Context: {context}\nQ: {query}"
    assert json.loads(attrs["llm.prompt_template.variables"]) == {
        "context": "Doc one.",
        "query": "What is one?",
    }


def test_templating_span_attributes(run: Run) -> None:
    attrs = _attrs(_span(run, EventType.TEMPLATING))
    assert attrs["llm.prompt_template.template"] == "Context: {context}\nQ: {query}"
    assert json.loads(attrs["llm.prompt_template.variables"]) == {
        "context": "Doc one.",
        "query": "What is one?",
    }


def test_retriever_span_attributes(run: Run) -> None:
    attrs = _attrs(_span(run, EventType.RETRIEVE))
    assert attrs["input.value"] == "What is one?"
    assert attrs["retrieval.documents.0.document.id"] == "n1"
    assert attrs["retrieval.documents.0.document.content"] == "Doc one."
    assert attrs["retrieval.documents.0.document.score"] == 0.9
    assert json.loads(attrs["retrieval.documents.0.document.metadata"]) == {"file": "a.txt"}
    assert attrs["retrieval.documents.1.document.id"] == "n2"
    assert attrs["retrieval.documents.1.document.score"] == 0.4
    assert "retrieval.documents.2.document.id" not in attrs


def test_embedding_span_attributes(run: Run) -> None:
    attrs = _attrs(_span(run, EventType.EMBEDDING))
    assert attrs["embedding.model_name"] == "stub-embed"
    assert attrs["embedding.embeddings.0.embedding.text"] == "What is one?"
    assert attrs["embedding.embeddings.0.embedding.vector"] == tuple(VECTOR)


def test_reranker_span_attributes(run: Run) -> None:
    attrs = _attrs(_span(run, EventType.RERANKING))
    assert attrs["reranker.query"] == "What is one?"
    assert attrs["reranker.model_name"] == "stub-rerank"
    assert attrs["reranker.top_k"] == 1
    assert attrs["reranker.input_documents.0.document.id"] == "n1"
    assert attrs["reranker.input_documents.1.document.content"] == "Doc two."
    assert attrs["reranker.output_documents.0.document.score"] == 0.99
    assert "reranker.output_documents.1.document.id" not in attrs


def test_tool_span_attributes(run: Run) -> None:
    attrs = _attrs(_span(run, EventType.FUNCTION_CALL))
    assert attrs["tool.name"] == "add"
    assert attrs["tool.description"] == "Add two integers."
    assert json.loads(attrs["tool.parameters"]) == SCHEMA
    assert json.loads(attrs["input.value"]) == {"a": 1, "b": 2}
    assert attrs["input.mime_type"] == "application/json"
    assert attrs["output.value"] == "3"


def test_agent_span_attributes(run: Run) -> None:
    attrs = _attrs(_span(run, EventType.AGENT_STEP))
    assert attrs["input.value"] == "Add 1 and 2"
    assert attrs["output.value"] == "1 + 2 = 3"


def test_chain_span_inputs_and_outputs(run: Run) -> None:
    query = _attrs(_span(run, EventType.QUERY))
    assert (query["input.value"], query["output.value"]) == ("What is one?", "One is a doc.")
    synthesize = _attrs(_span(run, EventType.SYNTHESIZE))
    assert (synthesize["input.value"], synthesize["output.value"]) == (
        "What is one?",
        "One is a doc.",
    )
    sub_question = _attrs(_span(run, EventType.SUB_QUESTION))
    assert (sub_question["input.value"], sub_question["output.value"]) == ("Which doc?", "Doc one.")
    node_parsing = _attrs(_span(run, EventType.NODE_PARSING))
    assert json.loads(node_parsing["input.value"]) == ["Doc one. Doc two."]
    assert json.loads(node_parsing["output.value"]) == ["Doc one.", "Doc two."]
    chunking = _attrs(_span(run, EventType.CHUNKING))
    assert json.loads(chunking["output.value"]) == ["Doc one.", "Doc two."]
    tree = _attrs(_span(run, EventType.TREE))
    assert tree["output.value"] == "One is a doc."


def test_successful_spans_have_status_ok(run: Run) -> None:
    for event_type in (EventType.LLM, EventType.QUERY, EventType.RETRIEVE, EventType.FUNCTION_CALL):
        assert _span(run, event_type).status.status_code is StatusCode.OK


def test_failed_event_span_has_error_status_and_exception_event(run: Run) -> None:
    failed = _span(run, EventType.CHUNKING, 1)
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ValueError: chunker broke"
    (exception,) = [e for e in failed.events if e.name == "exception"]
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "ValueError"
    assert exception.attributes["exception.message"] == "chunker broke"
    assert exception.timestamp == failed.end_time


def test_exception_event_span_records_the_reported_exception(run: Run) -> None:
    span = _span(run, EventType.EXCEPTION)
    assert span.status.status_code is StatusCode.ERROR
    (exception,) = [e for e in span.events if e.name == "exception"]
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "KeyError"


def test_abandoned_event_span_is_an_error_ending_with_the_trace(run: Run) -> None:
    abandoned = _span(run, EventType.TREE, 1)
    assert abandoned.status.status_code is StatusCode.ERROR
    (exception,) = [e for e in abandoned.events if e.name == "exception"]
    assert exception.attributes is not None
    assert (
        exception.attributes["exception.type"]
        == f"{EventAbandoned.__module__}.{EventAbandoned.__name__}"
    )
    assert abandoned.end_time is not None and run.root.end_time is not None
    assert abandoned.end_time <= run.root.end_time


def test_unreadable_payload_keeps_the_span_and_is_counted() -> None:
    cm = memory_manager()
    try:
        with cm.as_trace("odd"):
            with cm.event(EventType.EMBEDDING, {EventPayload.CHUNKS: ["x"]}) as ev:
                ev.on_end({EventPayload.EMBEDDINGS: [[object()]]})  # not a float vector
        assert cm.flush(timeout=5.0)
        plugin = plugin_of(cm)
        assert plugin.memory_exporter is not None
        spans = {s.name: s for s in plugin.memory_exporter.get_finished_spans()}
        assert set(spans) == {"embedding"}
        assert dict(spans["embedding"].attributes or {})["openinference.span.kind"] == "EMBEDDING"
        assert plugin.callbacks_stats()["attribute_errors"] == 1
    finally:
        cm.shutdown(timeout=2.0)
