"""The host's helpers for sinks: the bounded per-trace buffer, the span-kind table and token
counts marked with their source."""

from __future__ import annotations

import contextvars
import logging
from types import SimpleNamespace

import pytest

from callbacks import ROOT, CallbackManager, Event, EventPayload, EventType, hookimpl
from callbacks.collect import CollectedTrace, TraceCollector
from callbacks.encodings import load_encoding
from callbacks.kinds import SpanKind, span_kind
from callbacks.tokencount import ESTIMATE, PROVIDER, llm_token_count

P = EventPayload


class Buffered:
    """A background plugin that hands finished traces out of a TraceCollector."""

    callbacks_name = "buffered"

    def __init__(self, **bounds: int) -> None:
        self.finished: list[CollectedTrace] = []
        self.evicted: list[CollectedTrace] = []
        self.buffer = TraceCollector(**bounds, on_evict=self.evicted.append, name="buffered")

    @hookimpl
    def on_trace_start(self, trace):
        self.buffer.start_trace(trace)

    @hookimpl
    def on_event_start(self, event: Event) -> None:
        self.buffer.add(event)

    @hookimpl
    def on_event_end(self, event: Event) -> None:
        self.buffer.add(event)

    @hookimpl
    def on_trace_end(self, trace):
        self.finished.append(self.buffer.end_trace(trace))


def _nested(cm: CallbackManager, name: str) -> None:
    with cm.as_trace(name), cm.event(EventType.QUERY, {P.QUERY_STR: "q"}) as query:
        with cm.event(EventType.RETRIEVE) as retrieve:
            retrieve.on_end({P.NODES: ["n"]})
        with pytest.raises(ValueError), cm.event(EventType.LLM, {P.PROMPT: "p"}):
            raise ValueError("bad answer")
        query.on_end({P.RESPONSE: "r"})


def test_finished_trace_holds_every_event_paired_as_the_host_mapped_it(make_manager) -> None:
    plugin = Buffered()
    cm = make_manager(plugin)
    _nested(cm, "one")
    _nested(cm, "two")
    assert cm.flush(timeout=10)
    assert [t.name for t in plugin.finished] == ["one", "two"]
    for collected in plugin.finished:
        trace = collected.trace
        assert collected.ended and len(collected) == trace.event_count == 3
        children = collected.children()
        assert {k: v for k, v in children.items() if v} == {
            k: v for k, v in trace.trace_map.items() if v
        }
        assert all(p.start is not None and p.end is not None for p in collected.pairs.values())
        (llm,) = [p for p in collected.pairs.values() if p.any.type is EventType.LLM]
        assert repr(llm.error) == "ValueError('bad answer')"
        (query_id,) = children[ROOT]
        assert collected.pairs[query_id].error is None
    assert len(plugin.buffer) == 0 and plugin.buffer.lost_events == 0


def test_open_traces_are_bounded_and_evictions_are_handed_on_and_counted(make_manager) -> None:
    plugin = Buffered(max_traces=10)
    cm = make_manager(plugin)

    def open_one(i: int) -> None:  # a trace whose end never comes, in a context of its own
        cm.start_trace(f"never-ended-{i}")
        cm.on_event_start(EventType.LLM, {P.PROMPT: f"p{i}"})

    for i in range(100):
        contextvars.copy_context().run(open_one, i)
    assert cm.flush(timeout=10)
    assert len(plugin.buffer) <= 10
    assert plugin.buffer.evicted_traces == len(plugin.evicted) >= 90
    assert plugin.buffer.evicted_events == sum(len(t) for t in plugin.evicted)
    assert not any(t.ended for t in plugin.evicted)


def test_events_over_the_per_trace_bound_are_dropped_and_counted_once(
    make_manager, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = Buffered(max_events=5)
    cm = make_manager(plugin)
    with caplog.at_level(logging.WARNING), cm.as_trace("big"):
        for _ in range(12):
            with cm.event(EventType.EMBEDDING):
                pass
    assert cm.flush(timeout=10)
    (collected,) = plugin.finished
    assert len(collected) == 5 and collected.dropped_events == 7
    assert plugin.buffer.stats()["dropped_events"] == 7
    assert caplog.text.count("further events are dropped") == 1


def test_a_late_event_of_an_ended_trace_is_counted_not_held() -> None:
    buffer = TraceCollector()
    trace = SimpleNamespace(id="t1", name="late")
    event = Event("e1", EventType.LLM, "start", "t1", ROOT, 0, {})  # type: ignore[arg-type]
    buffer.end_trace(trace)  # type: ignore[arg-type]
    assert buffer.add(event) is None
    assert (buffer.late_events, len(buffer)) == (1, 0)


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TraceCollector(max_traces=0)


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [
        # OpenInference's mapping of LlamaIndex's event types (DESIGN.md).
        (EventType.LLM, "LLM"),
        (EventType.EMBEDDING, "EMBEDDING"),
        (EventType.RETRIEVE, "RETRIEVER"),
        (EventType.RERANKING, "RERANKER"),
        (EventType.FUNCTION_CALL, "TOOL"),
        (EventType.AGENT_STEP, "AGENT"),
        (EventType.CHAIN, "CHAIN"),
        (EventType.QUERY, "CHAIN"),
        (EventType.TEMPLATING, "CHAIN"),
        ("not-a-type", "CHAIN"),
    ],
)
def test_span_kind_table(event_type: EventType | str, kind: str) -> None:
    assert span_kind(event_type) == SpanKind(kind) == kind


def test_every_span_kind_is_an_openinference_kind() -> None:
    from openinference.semconv.trace import OpenInferenceSpanKindValues

    known = {k.value for k in OpenInferenceSpanKindValues}
    assert {k.value for k in SpanKind} <= known


def _llm_end(make_manager, start: dict, end: dict) -> Event:
    from callbacks.testing import RecordingPlugin

    recorder = RecordingPlugin()
    cm = make_manager(recorder)
    with cm.event(EventType.LLM, start) as event:
        event.on_end(end)
    assert cm.flush(timeout=10)
    (ended,) = recorder.ends(EventType.LLM)
    return ended


def test_token_count_is_the_providers_when_reported(make_manager) -> None:
    usage = SimpleNamespace(input_tokens=12, output_tokens=5)  # Anthropic's shape
    end = _llm_end(make_manager, {P.PROMPT: "hi"}, {P.COMPLETION: "yo", P.USAGE: usage})
    count = llm_token_count(end)
    assert count is not None
    assert tuple(count) == (12, 5, 17, PROVIDER, "anthropic")


def test_token_count_is_a_tiktoken_estimate_when_none_was_reported(make_manager) -> None:
    # The OpenAI cookbook's "How to count tokens with tiktoken" example: 129 prompt tokens for
    # these messages with gpt-4 (cl100k_base), per-message overhead included.
    from test_tokens import COOKBOOK_MESSAGES

    end = _llm_end(
        make_manager,
        {P.MESSAGES: COOKBOOK_MESSAGES, P.MODEL_NAME: "gpt-4"},
        {P.RESPONSE: "Let's talk later."},
    )
    count = llm_token_count(end)
    assert count is not None
    completion = len(load_encoding("cl100k_base").encode("Let's talk later."))
    assert tuple(count) == (129, completion, 129 + completion, ESTIMATE, "cl100k_base")
    assert llm_token_count(end) is count  # the second sink gets the cached figures
