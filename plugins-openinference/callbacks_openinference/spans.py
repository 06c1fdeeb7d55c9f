"""Build the OpenTelemetry spans of one finished trace from its recorded events.

Spans are created after the fact with the events' own wall-clock times, so the span tree shows
when things happened, not when the background worker got to them. The trace is the root span;
each event is a child of its parent event's span (or of the root).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from openinference.semconv.trace import OpenInferenceSpanKindValues, SpanAttributes
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace

from callbacks.collect import EventPair, describe_error
from callbacks.events import ROOT, Event, EventType

from .attributes import (
    Attributes,
    event_attributes,
    span_kind,
    template_attributes,
    trace_attributes,
)

if TYPE_CHECKING:
    from .masking import Masker

__all__ = ["EmitResult", "EventPair", "TraceInfo", "emit_trace"]

logger = logging.getLogger(__name__)


class TraceInfo(NamedTuple):
    """What the root span needs to know about a trace."""

    id: str
    name: str
    start_wall_time_ns: int | None
    end_wall_time_ns: int | None
    attributes: Mapping[str, Any]


_INPUT_KEYS = (SpanAttributes.INPUT_VALUE, SpanAttributes.INPUT_MIME_TYPE)
_OUTPUT_KEYS = (SpanAttributes.OUTPUT_VALUE, SpanAttributes.OUTPUT_MIME_TYPE)


def _times(pair: EventPair, fallback_end: int) -> tuple[int, int]:
    start, end = pair.start, pair.end
    if start is not None:
        start_ns = start.start_wall_time_ns
    elif end is not None:
        start_ns = end.start_wall_time_ns
    else:
        start_ns = fallback_end
    end_ns = end.wall_time_ns if end is not None else max(fallback_end, start_ns)
    return start_ns, max(end_ns, start_ns)


def _set_status(span: otel_trace.Span, error: BaseException | None, at_ns: int) -> None:
    if error is None:
        span.set_status(otel_trace.Status(otel_trace.StatusCode.OK))
        return
    span.record_exception(error, timestamp=at_ns, escaped=True)
    span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, describe_error(error)))


def _order(events: Mapping[str, EventPair]) -> dict[str, list[str]]:
    """Children of each event id (``ROOT`` for top-level and orphaned events), by start time."""
    children: dict[str, list[str]] = {ROOT: []}
    for event_id, pair in events.items():
        parent = pair.parent_id
        if parent not in events or parent == event_id:
            parent = ROOT
        children.setdefault(parent, []).append(event_id)
    for ids in children.values():
        ids.sort(key=lambda i: _times(events[i], 0)[0])
    return children


def _attributes_of(
    record: Event,
    pair: EventPair,
    templates: dict[str, Attributes],
    masker: Masker,
    common: Attributes,
) -> dict[str, Any]:
    start = pair.start.payload if pair.start is not None else None
    end = pair.end.payload if pair.end is not None else None
    raw = event_attributes(record.type, start, end, pair.end)
    if record.type is EventType.TEMPLATING:
        templates[record.parent_id] = template_attributes(start, end)
    elif record.type is EventType.LLM and SpanAttributes.LLM_PROMPT_TEMPLATE not in raw:
        # LlamaIndex formats the prompt in a templating event just before the LLM call.
        raw.update(templates.pop(record.parent_id, {}))
    return masker.apply({**raw, **common})


class EmitResult:
    """What :func:`emit_trace` did: spans created, events whose attributes could not be read."""

    __slots__ = ("attribute_errors", "spans")

    def __init__(self) -> None:
        self.spans = 0
        self.attribute_errors = 0


def emit_trace(
    tracer: otel_trace.Tracer,
    masker: Masker,
    info: TraceInfo,
    events: Mapping[str, EventPair],
    use_trace_id: Callable[[str], None] | None = None,
) -> EmitResult:
    """Create and end the spans of one trace: the root span, then one span per event.
    ``use_trace_id`` makes the next root span take the trace's own id."""
    common: Attributes = trace_attributes(info.attributes)
    starts = [_times(p, 0)[0] for p in events.values()]
    ends = [_times(p, 0)[1] for p in events.values()]
    root_start = info.start_wall_time_ns or min(starts, default=0)
    root_end = info.end_wall_time_ns or max(ends, default=root_start)
    root_start = min([root_start, *starts])
    root_end = max([root_end, root_start, *ends])
    children = _order(events)
    recorded: dict[str, dict[str, Any]] = {}

    if use_trace_id is not None:
        use_trace_id(info.id)
    result = EmitResult()
    top_error: BaseException | None = None
    # A trace whose outermost event is alone is that event's span (as in OpenInference's own
    # instrumentors); otherwise a CHAIN span named after the trace holds the top-level events.
    root: otel_trace.Span | None = None
    # Never parent to whatever span is current on this thread.
    root_context: Any = otel_context.Context()
    if len(children[ROOT]) != 1:
        root = tracer.start_span(info.name, context=root_context, start_time=root_start)
        root_context = otel_trace.set_span_in_context(root)
        result.spans = 1
    stack: list[tuple[str, Any]] = [(i, root_context) for i in reversed(children[ROOT])]
    templates: dict[str, Attributes] = {}
    while stack:
        event_id, parent_context = stack.pop()
        pair = events[event_id]
        record: Event = pair.any
        start_ns, end_ns = _times(pair, root_end)
        try:
            attributes = _attributes_of(record, pair, templates, masker, common)
        except Exception:
            # One odd payload must not cost the whole trace: keep the span, log and count.
            logger.exception(
                "callbacks-openinference: attributes of a %s event failed", record.type
            )
            result.attribute_errors += 1
            attributes = masker.apply(
                {**common, SpanAttributes.OPENINFERENCE_SPAN_KIND: span_kind(record.type)}
            )
        span = tracer.start_span(
            record.type.value, context=parent_context, start_time=start_ns, attributes=attributes
        )
        error = pair.error
        _set_status(span, error, end_ns)
        span.end(end_time=end_ns)
        result.spans += 1
        recorded[event_id] = attributes
        if record.parent_id not in events and error is not None:
            top_error = error
        child_context = otel_trace.set_span_in_context(span)
        stack.extend((i, child_context) for i in reversed(children.get(event_id, ())))

    if root is not None:
        root.set_attributes(_root_attributes(children[ROOT], recorded, masker, common))
        # The failing event's span carries the exception; the root says the trace failed.
        root.set_status(
            otel_trace.Status(otel_trace.StatusCode.OK)
            if top_error is None
            else otel_trace.Status(otel_trace.StatusCode.ERROR, describe_error(top_error))
        )
        root.end(end_time=root_end)
    return result


def _root_attributes(
    top_level: Sequence[str],
    recorded: Mapping[str, Mapping[str, Any]],
    masker: Masker,
    common: Attributes,
) -> dict[str, Any]:
    """The root's kind, plus the input of the first top-level event and the output of the last,
    so the trace list in Phoenix shows what went in and came out."""
    kind = {SpanAttributes.OPENINFERENCE_SPAN_KIND: OpenInferenceSpanKindValues.CHAIN.value}
    out: dict[str, Any] = masker.apply({**kind, **common})
    for event_id in top_level:
        attributes = recorded[event_id]
        if SpanAttributes.INPUT_VALUE in attributes:
            out.update({k: attributes[k] for k in _INPUT_KEYS if k in attributes})
            break
    for event_id in reversed(top_level):
        attributes = recorded[event_id]
        if SpanAttributes.OUTPUT_VALUE in attributes:
            out.update({k: attributes[k] for k in _OUTPUT_KEYS if k in attributes})
            break
    return out
