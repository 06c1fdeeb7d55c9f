"""Build a W&B trace tree from one trace's events, as the plain data W&B stores.

W&B's ``Span`` dataclasses (``wandb.sdk.data_types.trace_tree``) end up as JSON: ``WBTraceTree``
runs ``dataclasses.asdict`` and wandb's value-by-value conversion over the whole tree on every
``log``. The spans here are that JSON's dicts already, with the same keys in the same order and
only JSON values, so :mod:`callbacks_wandb.trace_tree` serializes them in one ``json.dumps``.
"""

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
    from callbacks import Trace

__all__ = [
    "WANDB_KINDS",
    "SpanDict",
    "build_tree",
    "children_of",
    "event_span",
    "trace_attributes",
]

_NS_PER_MS = 1_000_000
_SUCCESS, _ERROR = "SUCCESS", "ERROR"

SpanDict = dict[str, Any]
"""One span as W&B stores it: the keys of W&B's ``Span`` dataclass, in its field order
(``span_id``, ``name``, ``start_time_ms``, ``end_time_ms``, ``status_code``, ``status_message``,
``attributes``, ``results``, ``child_spans``, ``span_kind``), with JSON values; the kinds and
status codes are the names of W&B's ``SpanKind`` and ``StatusCode``."""

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


def event_span(event_id: str, pair: EventPair, mode: PayloadMode) -> SpanDict:
    """One span for one event: kind, times, inputs and outputs, status, and token attributes."""
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
    start_payload = start.payload if start is not None else None
    end_payload = end.payload if end is not None else None
    merged = {**(start_payload or {}), **(end_payload or {})}
    _token_attributes(attributes, event.type, merged, end)

    error = pair.error
    failed = end is None or error is not None
    if end is not None and isinstance(end.exception, EventAbandoned):
        attributes["abandoned"] = True
    inputs, outputs = split_payloads(start_payload, end_payload, mode)
    return {
        "span_id": event_id,
        "name": str(event.type),
        "start_time_ms": start_ms,
        "end_time_ms": end_ms,
        "status_code": _ERROR if failed else _SUCCESS,
        "status_message": (describe_error(error) if error is not None else "no end event")
        if failed
        else None,
        "attributes": attributes,
        "results": [{"inputs": inputs, "outputs": outputs}],
        "child_spans": None,
        "span_kind": WANDB_KINDS[kind],
    }


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


def build_tree(trace: Trace, pairs: Mapping[str, EventPair], mode: PayloadMode) -> SpanDict:
    """The root span of a trace. With exactly one outermost event, that event's span is the
    root (as in LlamaIndex); otherwise a CHAIN span named after the trace holds them."""
    children = children_of(trace.trace_map, pairs)
    seen: set[str] = set()

    def build(event_id: str) -> SpanDict | None:
        pair = pairs.get(event_id)
        if pair is None or event_id in seen:
            return None
        seen.add(event_id)
        span = event_span(event_id, pair, mode)
        kids = [c for c in (build(i) for i in children.get(event_id, ())) if c is not None]
        if kids:
            span["child_spans"] = kids
        return span

    top = [span for span in (build(i) for i in children.get(ROOT, ())) if span is not None]
    attributes = trace_attributes(trace)
    if len(top) == 1:
        root = top[0]
        root["attributes"] = {**attributes, **root["attributes"]}
        return root
    failed = any(span["status_code"] == _ERROR for span in top)
    return {
        "span_id": trace.id,
        "name": trace.name or "trace",
        "start_time_ms": trace.start_wall_time_ns // _NS_PER_MS,
        "end_time_ms": trace.end_wall_time_ns // _NS_PER_MS if trace.end_wall_time_ns else None,
        "status_code": _ERROR if failed else _SUCCESS,
        "status_message": None,
        "attributes": attributes,
        "results": None,
        "child_spans": top or None,
        "span_kind": WANDB_KINDS[SpanKind.CHAIN],
    }
