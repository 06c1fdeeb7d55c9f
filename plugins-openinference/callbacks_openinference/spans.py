"""Build the OpenTelemetry spans of one finished trace from its recorded events.

Spans are created after the fact with the events' own wall-clock times, so the span tree shows
when things happened, not when the background worker got to them. The trace is the root span;
each event is a child of its parent event's span (or of the root).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from openinference.semconv.trace import OpenInferenceSpanKindValues, SpanAttributes

from callbacks.collect import EventPair, describe_error
from callbacks.events import ROOT, Event, EventType

from .attributes import (
    Attributes,
    event_attributes,
    span_kind,
    trace_attributes,
)
from .writers import status_of

if TYPE_CHECKING:
    from .masking import Masker
    from .writers import SpanWriter

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
_TEMPLATE_KEYS = (SpanAttributes.LLM_PROMPT_TEMPLATE, SpanAttributes.LLM_PROMPT_TEMPLATE_VARIABLES)
_OUTPUT_KEYS = (SpanAttributes.OUTPUT_VALUE, SpanAttributes.OUTPUT_MIME_TYPE)


def _times(pair: EventPair) -> tuple[int, int]:
    """(start, end) wall-clock ns; an event whose end never came ends when it started (the
    caller moves that end to the trace's end)."""
    start, end = pair.start, pair.end
    start_ns = (start if start is not None else pair.any).start_wall_time_ns
    end_ns = end.wall_time_ns if end is not None else start_ns
    return start_ns, max(end_ns, start_ns)


def _order(
    events: Mapping[str, EventPair], times: Mapping[str, tuple[int, int]]
) -> dict[str, list[str]]:
    """Children of each event id (``ROOT`` for top-level and orphaned events), by start time."""
    children: dict[str, list[str]] = {ROOT: []}
    for event_id, pair in events.items():
        parent = pair.parent_id
        if parent not in events or parent == event_id:
            parent = ROOT
        children.setdefault(parent, []).append(event_id)
    for ids in children.values():
        ids.sort(key=lambda i: times[i][0])
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
        # event_attributes ends with the event's template_attributes: take them from there.
        templates[record.parent_id] = {k: raw[k] for k in _TEMPLATE_KEYS if k in raw}
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
    writer: SpanWriter,
    masker: Masker,
    info: TraceInfo,
    events: Mapping[str, EventPair],
) -> EmitResult:
    """Create and end the spans of one trace: the root span, then one span per event. The root
    span takes the trace's own id (when the writer can give it)."""
    common: Attributes = trace_attributes(info.attributes)
    times = {event_id: _times(pair) for event_id, pair in events.items()}
    starts = [start for start, _ in times.values()]
    ends = [end for _, end in times.values()]
    root_start = info.start_wall_time_ns or min(starts, default=0)
    root_end = info.end_wall_time_ns or max(ends, default=root_start)
    root_start = min([root_start, *starts])
    root_end = max([root_end, root_start, *ends])
    children = _order(events, times)
    recorded: dict[str, dict[str, Any]] = {}

    writer.begin_trace(info.id)
    result = EmitResult()
    top_error: BaseException | None = None
    # A trace whose outermost event is alone is that event's span (as in OpenInference's own
    # instrumentors); otherwise a CHAIN span named after the trace holds the top-level events.
    root: Any = None
    if len(children[ROOT]) != 1:
        root = writer.start(info.name, None, root_start, None)
        result.spans = 1
    stack: list[tuple[str, Any]] = [(i, root) for i in reversed(children[ROOT])]
    templates: dict[str, Attributes] = {}
    while stack:
        event_id, parent = stack.pop()
        pair = events[event_id]
        record: Event = pair.any
        start_ns, end_ns = times[event_id]
        if pair.end is None:
            end_ns = max(root_end, start_ns)
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
        span = writer.start(record.type.value, parent, start_ns, attributes)
        error = pair.error
        writer.end(span, end_ns, status_of(None if error is None else describe_error(error)), error)
        result.spans += 1
        recorded[event_id] = attributes
        if record.parent_id not in events and error is not None:
            top_error = error
        stack.extend((i, span) for i in reversed(children.get(event_id, ())))

    if root is not None:
        # The failing event's span carries the exception; the root says the trace failed.
        writer.end(
            root,
            root_end,
            status_of(None if top_error is None else describe_error(top_error)),
            attributes=_root_attributes(children[ROOT], recorded, masker, common),
        )
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
