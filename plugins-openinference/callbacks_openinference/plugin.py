"""The plugin: collect each trace's events, then turn the finished trace into spans."""

from __future__ import annotations

import logging
import os
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from callbacks import hookimpl

from .settings import OpenInferenceSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from callbacks.events import Event

    from .exporting import SpanSink
    from .masking import Masker
    from .spans import EventPair

__all__ = ["OpenInferencePlugin"]

logger = logging.getLogger(__name__)

_MAX_OPEN_TRACES = 1000
"""Open traces kept at once; if a trace's end never arrives (its end was dropped by a full queue),
the oldest is exported as it stands rather than kept forever."""


class _OpenTrace:
    __slots__ = ("dropped", "events", "trace")

    def __init__(self) -> None:
        self.trace: Any = None
        self.events: dict[str, EventPair] = {}
        self.dropped: set[str] = set()


def _clear_open(ref: weakref.ref[OpenInferencePlugin]) -> None:
    plugin = ref()
    if plugin is not None:
        plugin._open.clear()


class OpenInferencePlugin:
    """Exports every trace as OpenTelemetry spans following the OpenInference conventions.

    Runs on its own background worker: the application thread only enqueues events. Spans are
    built when a trace ends, with the events' own start and end times.
    """

    callbacks_name = "openinference"
    callbacks_delivery = "process"

    def __init__(self) -> None:
        self.settings: OpenInferenceSettings | None = None
        self.sink: SpanSink | None = None
        self.masker: Masker | None = None
        self.events_dropped = 0
        """Events not turned into spans because a trace exceeded ``max_events_per_trace``."""
        self.attribute_errors = 0
        """Events whose payload could not be turned into attributes (their span has none)."""
        self._open: OrderedDict[str, _OpenTrace] = OrderedDict()
        if hasattr(os, "register_at_fork"):
            # The parent exports its own open traces; a forked child must not export them again.
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _clear_open(ref))

    # -- lifecycle ---------------------------------------------------------------------------

    @hookimpl
    def callbacks_settings(self) -> type[OpenInferenceSettings]:
        """The ``[openinference]`` settings model."""
        return OpenInferenceSettings

    @hookimpl
    def callbacks_configure(self, settings: OpenInferenceSettings | None, manager: Any) -> None:
        """Create the tracer provider and exporter from the validated settings."""
        self._configure(settings if settings is not None else OpenInferenceSettings())

    def _configure(self, settings: OpenInferenceSettings) -> None:
        from .exporting import SpanSink
        from .masking import Masker

        if self.sink is not None:
            self.sink.shutdown(timeout=1.0)
        self.settings = settings
        self.masker = Masker(settings)
        self.sink = SpanSink(settings)

    def _ready(self) -> SpanSink:
        if self.sink is None:
            self._configure(OpenInferenceSettings())
        assert self.sink is not None
        return self.sink

    @hookimpl
    def callbacks_flush(self, timeout: float) -> None:
        """Export the spans of finished traces, waiting at most ``timeout`` seconds."""
        if self.sink is not None:
            self.sink.flush(timeout)

    @hookimpl
    def callbacks_shutdown(self, timeout: float) -> None:
        """Export what is left (unfinished traces as they stand), then shut the exporter down
        within ``timeout`` seconds."""
        if self.sink is None:
            return
        while self._open:
            trace_id, _ = next(iter(self._open.items()))
            self._emit(trace_id, None)
        self.sink.shutdown(timeout)

    # -- events ------------------------------------------------------------------------------

    @hookimpl
    def on_trace_start(self, trace: Any) -> None:
        """Remember the trace, to name the root span even if its end never arrives."""
        self._trace(trace.id).trace = trace

    @hookimpl
    def on_event_start(self, event: Event) -> None:
        """Keep the event's start record until its trace ends."""
        self._record(event, 0)

    @hookimpl
    def on_event_end(self, event: Event) -> None:
        """Keep the event's end record until its trace ends."""
        self._record(event, 1)

    @hookimpl
    def on_trace_end(self, trace: Any) -> None:
        """Build and export the spans of the finished trace."""
        self._emit(trace.id, trace)

    def _trace(self, trace_id: str) -> _OpenTrace:
        open_trace = self._open.get(trace_id)
        if open_trace is None:
            self._ready()
            if len(self._open) >= _MAX_OPEN_TRACES:
                oldest = next(iter(self._open))
                logger.warning(
                    "OpenInference: trace %s never ended; exporting it as it stands", oldest
                )
                self._emit(oldest, None)
            open_trace = self._open[trace_id] = _OpenTrace()
        return open_trace

    def _record(self, event: Event, slot: int) -> None:
        open_trace = self._trace(event.trace_id)
        events = open_trace.events
        pair = events.get(event.id)
        if pair is None:
            assert self.settings is not None
            if len(events) >= self.settings.max_events_per_trace:
                if event.id not in open_trace.dropped:
                    open_trace.dropped.add(event.id)
                    self.events_dropped += 1
                return
            pair = events[event.id] = [None, None]
        pair[slot] = event

    def _emit(self, trace_id: str, trace: Any) -> None:
        from .spans import TraceInfo, emit_trace

        open_trace = self._open.pop(trace_id, None)
        sink = self._ready()
        assert self.masker is not None
        trace = (
            trace if trace is not None else (open_trace.trace if open_trace is not None else None)
        )
        events = open_trace.events if open_trace is not None else {}
        if trace is None and not events:
            return
        info = TraceInfo(
            id=trace_id,
            name=str(getattr(trace, "name", None) or "trace"),
            start_wall_time_ns=getattr(trace, "start_wall_time_ns", None),
            end_wall_time_ns=getattr(trace, "end_wall_time_ns", None),
            attributes=getattr(trace, "attributes", None) or {},
        )
        result = emit_trace(sink.tracer, self.masker, info, events, sink.use_trace_id)
        sink.spans_created += result.spans
        self.attribute_errors += result.attribute_errors

    # -- results -----------------------------------------------------------------------------

    @property
    def memory_exporter(self) -> InMemorySpanExporter | None:
        """The in-memory exporter holding finished spans when ``exporter = "memory"``."""
        return self.sink.memory_exporter if self.sink is not None else None

    @property
    def export_errors(self) -> int:
        """Spans whose export failed (error response, timeout, unreachable endpoint)."""
        return self.sink.stats()["export_errors"] if self.sink is not None else 0

    def callbacks_stats(self) -> dict[str, Any]:
        """Export counters: spans created, exported, failed and not (yet) exported, and
        events dropped over ``max_events_per_trace``."""
        out = self.sink.stats() if self.sink is not None else {}
        out["events_dropped"] = self.events_dropped
        out["attribute_errors"] = self.attribute_errors
        out["open_traces"] = len(self._open)
        return out
