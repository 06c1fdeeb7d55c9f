"""Build a W&B trace tree (``wandb.sdk.data_types.trace_tree``) from one trace's events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from callbacks import EventType, payloads
from callbacks.collect import EventPair, describe_error
from callbacks.events import ROOT, EventAbandoned
from callbacks.kinds import SpanKind, span_kind
from callbacks.tokencount import llm_token_count

from .results import PayloadMode, split_payloads

if TYPE_CHECKING:
    from wandb.sdk.data_types.trace_tree import Span

    from callbacks import Trace

__all__ = ["WANDB_KINDS", "build_tree", "children_of", "event_span", "trace_attributes"]

_NS_PER_MS = 1_000_000

WANDB_KINDS: dict[SpanKind, str] = {
    SpanKind.LLM: "LLM",
    SpanKind.EMBEDDING: "LLM",
    SpanKind.RETRIEVER: "TOOL",
    SpanKind.RERANKER: "TOOL",
    SpanKind.TOOL: "TOOL",
    SpanKind.AGENT: "AGENT",
    SpanKind.CHAIN: "CHAIN",
}
"""Span kind -> W&B ``SpanKind``. W&B's trace tree knows only LLM, CHAIN, AGENT and TOOL, so an
embedding is shown as the model call it is (LLM), retrieval and reranking as lookups the chain
makes (TOOL); the precise kind stays in the span's ``span_kind`` attribute."""


def children_of(
    trace_map: Mapping[str, list[str]], pairs: Mapping[str, EventPair]
) -> dict[str, list[str]]:
    """Parent id -> child ids: the trace's ``trace_map``, plus any collected event it misses,
    placed under its ``parent_id`` (or under :data:`ROOT` when that parent is unknown)."""
    children = {parent: list(kids) for parent, kids in trace_map.items()}
    placed = {kid for kids in children.values() for kid in kids}
    for event_id, pair in pairs.items():
        if event_id in placed:
            continue
        parent = pair.any.parent_id
        if parent != ROOT and parent not in pairs and parent not in children:
            parent = ROOT
        children.setdefault(parent, []).append(event_id)
    return children


def trace_attributes(trace: Trace) -> dict[str, Any]:
    """Attributes recorded on the root span: trace id and name, plus the app's attributes."""
    attributes: dict[str, Any] = {"trace_id": trace.id, "trace_name": trace.name}
    for key, value in (trace.attributes or {}).items():
        if value is not None:
            attributes[key] = payloads.to_jsonable(value)
    return attributes


def event_span(event_id: str, pair: EventPair, mode: PayloadMode) -> Span:
    """One span for one event: kind, times, inputs and outputs, status, and token attributes."""
    from wandb.sdk.data_types.trace_tree import Span as WBSpan
    from wandb.sdk.data_types.trace_tree import SpanKind, StatusCode

    start, end = pair.start, pair.end
    event = pair.any
    kind = span_kind(event.type)
    attributes: dict[str, Any] = {"event_type": str(event.type), "span_kind": kind.value}
    if start is not None:
        start_ms = start.wall_time_ns // _NS_PER_MS
    else:
        start_ms = event.start_wall_time_ns // _NS_PER_MS
        attributes["start_seen"] = False
    end_ms = end.wall_time_ns // _NS_PER_MS if end is not None else None
    if end is not None and end.duration_ns is not None:
        attributes["duration_ms"] = end.duration_ns / 1e6
    merged = {**(start.payload if start else {}), **(end.payload if end else {})}
    _token_attributes(attributes, event.type, merged, end)

    error = pair.error
    failed = end is None or error is not None
    if end is not None and isinstance(end.exception, EventAbandoned):
        attributes["abandoned"] = True
    inputs, outputs = split_payloads(
        start.payload if start else None, end.payload if end else None, mode
    )
    span = WBSpan(
        span_id=event_id,
        name=str(event.type),
        span_kind=SpanKind(WANDB_KINDS[kind]),
        start_time_ms=start_ms,
        end_time_ms=end_ms,
        status_code=StatusCode.ERROR if failed else StatusCode.SUCCESS,
        status_message=(describe_error(error) if error is not None else "no end event")
        if failed
        else None,
        attributes=attributes,
    )
    span.add_named_result(inputs, outputs)
    return span


def _token_attributes(
    attributes: dict[str, Any],
    event_type: EventType | str,
    payload: Mapping[str, Any],
    end: Any,
) -> None:
    if event_type == EventType.LLM:
        model = payloads.model_of(payload)
        if model:
            attributes["model"] = model
        count = llm_token_count(end) if end is not None else None
        if count is not None:
            attributes.update(
                prompt_tokens=count.prompt,
                completion_tokens=count.completion,
                total_tokens=count.total,
                token_source=count.source,
                token_detail=count.detail,
            )
        return
    usage = payloads.usage_of(payload)
    if usage is not None:
        attributes.update(
            prompt_tokens=usage.prompt,
            completion_tokens=usage.completion,
            total_tokens=usage.total,
            token_source="provider",
            token_detail=usage.source,
        )


def build_tree(trace: Trace, pairs: Mapping[str, EventPair], mode: PayloadMode) -> Span:
    """The root span of a trace. With exactly one outermost event, that event's span is the
    root (as in LlamaIndex); otherwise a CHAIN span named after the trace holds them."""
    from wandb.sdk.data_types.trace_tree import Span as WBSpan
    from wandb.sdk.data_types.trace_tree import SpanKind, StatusCode

    children = children_of(trace.trace_map, pairs)
    seen: set[str] = set()

    def build(event_id: str) -> Span | None:
        pair = pairs.get(event_id)
        if pair is None or event_id in seen:
            return None
        seen.add(event_id)
        span = event_span(event_id, pair, mode)
        for child_id in children.get(event_id, ()):
            child = build(child_id)
            if child is not None:
                span.add_child_span(child)
        return span

    top = [span for span in (build(i) for i in children.get(ROOT, ())) if span is not None]
    attributes = trace_attributes(trace)
    if len(top) == 1:
        root = top[0]
        root.attributes = {**attributes, **(root.attributes or {})}
        return root
    failed = any(span.status_code == StatusCode.ERROR for span in top)
    root = WBSpan(
        span_id=trace.id,
        name=trace.name or "trace",
        span_kind=SpanKind.CHAIN,
        start_time_ms=trace.start_wall_time_ns // _NS_PER_MS,
        end_time_ms=trace.end_wall_time_ns // _NS_PER_MS if trace.end_wall_time_ns else None,
        status_code=StatusCode.ERROR if failed else StatusCode.SUCCESS,
        attributes=attributes,
        child_spans=top or None,
    )
    return root
