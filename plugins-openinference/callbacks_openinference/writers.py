"""Two ways to turn a span's recorded data into a finished OpenTelemetry span.

:class:`SdkSpanWriter` goes through a tracer (``start_span``, ``set_status``, ``end``): any
provider works, the application's global one included. :class:`DirectSpanWriter` builds the
SDK's public :class:`~opentelemetry.sdk.trace.ReadableSpan` itself, with the same ids, parents,
flags, limits, status and ``exception`` event the tracer would give it, and hands it to the
provider's span processors; it is used with the plugin's own provider and default sampler, where
it skips the per-span work that has no effect on a span that is built after the fact (sampling,
context objects, locks, a mutable ``Span``, attribute cleaning of values already clean).
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanLimits,
    SpanProcessor,
    Tracer,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv.attributes.exception_attributes import (  # as the SDK's Span
    EXCEPTION_ESCAPED,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

__all__ = ["DirectSpanWriter", "SdkSpanWriter", "SpanWriter", "status_of"]

_OK = Status(StatusCode.OK)
_INTERNAL = SpanKind.INTERNAL


def status_of(description: str | None) -> Status:
    """``OK`` when ``description`` is None, else ``ERROR`` with that description."""
    return _OK if description is None else Status(StatusCode.ERROR, description)


class SpanWriter(Protocol):
    """Starts and ends the spans of one trace at a time (on one thread)."""

    def begin_trace(self, trace_id: str) -> None:
        """The next root span takes this (32 hex digit) trace id, if it is a valid one."""

    def start(
        self, name: str, parent: Any, start_ns: int, attributes: Mapping[str, Any] | None
    ) -> Any:
        """A span under ``parent`` (a handle from ``start``, or None for a root); returns its
        handle."""

    def end(
        self,
        span: Any,
        end_ns: int,
        status: Status,
        error: BaseException | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        """End the span: add ``attributes``, record ``error`` as an ``exception`` event at
        ``end_ns``, set ``status``."""


class SdkSpanWriter:
    """Spans made by a tracer, one ``start_span``/``end`` each."""

    def __init__(self, tracer: otel_trace.Tracer, use_trace_id: Any = None) -> None:
        self.tracer = tracer
        self._use_trace_id = use_trace_id

    def begin_trace(self, trace_id: str) -> None:
        """Ask the provider's id generator (when it is the plugin's) for this trace id."""
        if self._use_trace_id is not None:
            self._use_trace_id(trace_id)

    def start(
        self, name: str, parent: Any, start_ns: int, attributes: Mapping[str, Any] | None
    ) -> otel_trace.Span:
        """``tracer.start_span`` under ``parent``, never under this thread's current span."""
        context = (
            otel_trace.set_span_in_context(parent) if parent is not None else otel_context.Context()
        )
        return self.tracer.start_span(
            name, context=context, start_time=start_ns, attributes=attributes
        )

    def end(
        self,
        span: otel_trace.Span,
        end_ns: int,
        status: Status,
        error: BaseException | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        """Set attributes, exception event and status, then ``span.end``."""
        if attributes:
            span.set_attributes(attributes)
        if error is not None:
            span.record_exception(error, timestamp=end_ns, escaped=True)
        span.set_status(status)
        span.end(end_time=end_ns)


class _Open:
    __slots__ = ("attributes", "context", "name", "parent", "start_ns")

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        start_ns: int,
        attributes: Mapping[str, Any] | None,
    ) -> None:
        self.name = name
        self.context = context
        self.parent = parent
        self.start_ns = start_ns
        self.attributes = attributes


class DirectSpanWriter:
    """Finished :class:`ReadableSpan` objects handed straight to ``processor.on_end``.

    What the tracer path would do, reproduced: span ids from ``id_generator`` in the same order,
    the trace id of :meth:`begin_trace` for a root (else a generated one), trace flags
    ``SAMPLED`` (+ ``RANDOM_TRACE_ID`` when the generator says so), ``limits`` applied to
    attributes (values already valid and short enough are kept as they are; anything else goes
    through the SDK's own :class:`BoundedAttributes`), the ``exception`` event of
    ``record_exception(escaped=True)``. Span processors get ``on_end`` only (never ``on_start``:
    the span is already finished when it is built). The resource is ``tracer``'s, and
    ``scope`` is the one ``tracer`` was made for.
    """

    def __init__(
        self,
        processor: SpanProcessor | None,
        tracer: Tracer,
        scope: InstrumentationScope,
        id_generator: IdGenerator,
        limits: SpanLimits,
    ) -> None:
        self.processor = processor
        self.tracer = tracer
        self.scope = scope
        self.id_generator = id_generator
        self.limits = limits
        self._max_attributes = limits.max_span_attributes
        self._max_length = limits.max_span_attribute_length
        random = id_generator.is_trace_id_random()
        self._flags = TraceFlags(TraceFlags.SAMPLED | (TraceFlags.RANDOM_TRACE_ID * random))
        self._next_trace_id: int | None = None

    def begin_trace(self, trace_id: str) -> None:
        """The next root span takes this trace id (ignored unless 32 hex digits, not zero)."""
        try:
            value = int(trace_id, 16)
        except (TypeError, ValueError):
            return
        if 0 < value < 2**128:
            self._next_trace_id = value

    def start(
        self, name: str, parent: _Open | None, start_ns: int, attributes: Mapping[str, Any] | None
    ) -> _Open:
        """Allocate the span's ids; nothing is emitted until :meth:`end`."""
        generator = self.id_generator
        if parent is None:
            trace_id = self._next_trace_id
            self._next_trace_id = None
            if trace_id is None:
                trace_id = generator.generate_trace_id()
            flags = self._flags
            parent_context = None
        else:
            parent_context = parent.context
            trace_id = parent_context.trace_id
            flags = parent_context.trace_flags
        context = SpanContext(trace_id, generator.generate_span_id(), False, flags)
        return _Open(name, context, parent_context, start_ns, attributes)

    def end(
        self,
        span: _Open,
        end_ns: int,
        status: Status,
        error: BaseException | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        """Build the finished span and hand it to the processor."""
        merged = span.attributes
        if attributes:
            merged = {**merged, **attributes} if merged else attributes
        events: Any = () if error is None else self._exception_events(error, end_ns)
        readable = ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=self.tracer.resource,  # the provider updates it in a forked child
            attributes=self._bounded(merged),
            events=events,
            links=(),
            kind=_INTERNAL,
            instrumentation_info=self.tracer.instrumentation_info,
            status=status,
            start_time=span.start_ns,
            end_time=end_ns,
            instrumentation_scope=self.scope,
        )
        if self.processor is not None:
            self.processor.on_end(readable)

    def _bounded(self, attributes: Mapping[str, Any] | None) -> Mapping[str, Any]:
        if not attributes:
            return _EMPTY
        if (
            (self._max_attributes is None or len(attributes) <= self._max_attributes)
            and "" not in attributes  # an empty key is dropped (keys are str by construction)
            and _all_clean(attributes, self._max_length)
        ):
            return attributes
        return BoundedAttributes(
            self._max_attributes, attributes, immutable=True, max_value_len=self._max_length
        )

    def _exception_events(self, error: BaseException, at_ns: int) -> BoundedList:
        # Span.record_exception(error, timestamp=at_ns, escaped=True), then Span.add_event.
        module = type(error).__module__
        qualname = type(error).__qualname__
        limits = self.limits
        attributes = BoundedAttributes(
            limits.max_event_attributes,
            {
                EXCEPTION_TYPE: (
                    f"{module}.{qualname}" if module and module != "builtins" else qualname
                ),
                EXCEPTION_MESSAGE: str(error),
                EXCEPTION_STACKTRACE: "".join(traceback.format_exception(error)),
                EXCEPTION_ESCAPED: "True",
            },
            immutable=True,
            max_value_len=limits.max_attribute_length,
        )
        events: BoundedList = BoundedList(limits.max_events)
        events.append(Event("exception", attributes, at_ns))
        return events


_EMPTY: Mapping[str, Any] = BoundedAttributes(0)
_SCALARS = frozenset((bool, int, float))


def _all_clean(attributes: Mapping[str, Any], max_length: int | None) -> bool:
    """True if ``BoundedAttributes`` would keep every value as it is: strings no longer than
    ``max_length``, bools, ints, floats, and tuples of those."""
    limit = max_length if max_length is not None else -1
    for value in attributes.values():
        kind = type(value)
        if kind is str:
            if limit >= 0 and len(value) > limit:
                return False
        elif kind is tuple:
            kinds = set(map(type, value))
            if str in kinds:
                if len(kinds) > 1 or (limit >= 0 and value and max(map(len, value)) > limit):
                    return False
            elif not kinds <= _SCALARS:
                return False
        elif kind not in _SCALARS:
            return False
    return True
