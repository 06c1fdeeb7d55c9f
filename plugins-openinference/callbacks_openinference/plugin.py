"""The plugin: collect each trace's events, then turn the finished trace into spans."""

from __future__ import annotations

import logging
import os
import weakref
from typing import TYPE_CHECKING, Any

from callbacks import hookimpl
from callbacks.collect import CollectedTrace, TraceCollector

from .settings import OpenInferenceSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from callbacks.events import Event

    from .exporting import SpanSink
    from .masking import Masker

__all__ = ["OpenInferencePlugin"]

logger = logging.getLogger(__name__)


def _clear_open(ref: weakref.ref[OpenInferencePlugin]) -> None:
    plugin = ref()
    if plugin is not None:
        plugin._collector.clear()


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
        self.attribute_errors = 0
        """Events whose payload could not be turned into attributes (their span has none)."""
        self.last_flush_ok: bool | None = None
        """What the last ``callbacks_flush`` returned: False when the export did not finish in
        time or spans were lost since the flush before (also in ``stats()``)."""
        self._collector = self._new_collector()
        if hasattr(os, "register_at_fork"):
            # The parent exports its own open traces; a forked child must not export them again.
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _clear_open(ref))

    def _new_collector(self) -> TraceCollector:
        settings = self.settings
        max_traces = settings.max_open_traces if settings is not None else 1000
        max_events = settings.max_events_per_trace if settings is not None else 10_000
        return TraceCollector(
            max_traces, max_events, on_evict=self._export, name="callbacks-openinference"
        )

    @property
    def events_dropped(self) -> int:
        """Events not turned into spans: over ``max_events_per_trace``, or after their trace."""
        return self._collector.dropped_events + self._collector.late_events

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
        self._collector = self._new_collector()

    def _ready(self) -> SpanSink:
        if self.sink is None:
            self._configure(OpenInferenceSettings())
        assert self.sink is not None
        return self.sink

    @hookimpl
    def callbacks_flush(self, timeout: float) -> bool:
        """Export the spans of finished traces, waiting at most ``timeout`` seconds. Returns
        False if the export did not finish or some span was lost since the previous flush."""
        if self.sink is None:
            return True
        self.last_flush_ok = self.sink.flush(timeout)
        return self.last_flush_ok

    @hookimpl
    def callbacks_shutdown(self, timeout: float) -> bool:
        """Export what is left (unfinished traces as they stand), then shut the exporter down
        within ``timeout`` seconds; warn about every span lost."""
        if self.sink is None:
            return True
        for collected in self._collector.drain():
            self._export(collected)
        finished = self.sink.shutdown(timeout)
        lost = self.sink.lost + self.sink.unexported
        if lost or self.events_dropped:
            logger.warning(
                "OpenInference: %d span(s) lost (%d failed to export, %d dropped from a full "
                "queue, %d not exported at shutdown) and %d event(s) not turned into spans",
                lost + self.events_dropped,
                self.sink.exporter.failed if self.sink.exporter is not None else 0,
                self.sink.dropped,
                self.sink.unexported,
                self.events_dropped,
            )
        return finished and not lost

    # -- events ------------------------------------------------------------------------------

    @hookimpl
    def on_trace_start(self, trace: Any) -> None:
        """Remember the trace, to name the root span even if its end never arrives."""
        self._ready()
        self._collector.start_trace(trace)

    @hookimpl
    def on_event_start(self, event: Event) -> None:
        """Keep the event's start record until its trace ends."""
        self._ready()
        self._collector.add(event)

    @hookimpl
    def on_event_end(self, event: Event) -> None:
        """Keep the event's end record until its trace ends."""
        self._ready()
        self._collector.add(event)

    @hookimpl
    def on_trace_end(self, trace: Any) -> None:
        """Build and export the spans of the finished trace."""
        self._ready()
        self._export(self._collector.end_trace(trace))

    def _export(self, collected: CollectedTrace) -> None:
        from .spans import TraceInfo, emit_trace

        sink = self._ready()
        assert self.masker is not None
        trace = collected.trace
        if trace is None and not collected.pairs:
            return
        if not collected.ended and collected.pairs:
            logger.debug("OpenInference: exporting unfinished trace %s as it stands", collected.id)
        info = TraceInfo(
            id=collected.id,
            name=collected.name,
            start_wall_time_ns=getattr(trace, "start_wall_time_ns", None),
            end_wall_time_ns=getattr(trace, "end_wall_time_ns", None),
            attributes=getattr(trace, "attributes", None) or {},
        )
        result = emit_trace(sink.writer, self.masker, info, collected.pairs)
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
        """Export counters: spans created, exported, failed, dropped, lost and not (yet)
        exported, and the trace buffer's counters."""
        out = self.sink.stats() if self.sink is not None else {}
        out["events_dropped"] = self.events_dropped
        out["attribute_errors"] = self.attribute_errors
        out["last_flush_ok"] = self.last_flush_ok
        out.update(self._collector.stats())
        return out
