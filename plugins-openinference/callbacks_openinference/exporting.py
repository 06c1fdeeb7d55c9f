"""Where spans go: the tracer provider, the exporter, and flush/shutdown bounded by a timeout.

OpenTelemetry's own ``force_flush`` and ``shutdown`` ignore their timeouts while an export is in
flight (a collector that never answers holds them for the exporter's full timeout and retries),
so both run on a helper thread that the caller waits for at most ``timeout`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from .settings import OpenInferenceSettings
    from .writers import SpanWriter

__all__ = ["CountingExporter", "SpanSink"]

logger = logging.getLogger(__name__)

_TRACER_NAME = "callbacks_openinference"


class CountingExporter(SpanExporter):
    """Wraps an exporter: counts what it exported and what failed, keeps one oversized span
    from taking its batch with it, and fails fast while the destination is unreachable.

    * A batch is split so that each request carries at most ``max_request_bytes`` of attribute
      text (estimated from the attributes, without encoding them): a span over the limit goes
      alone, and only it fails.
    * ``endpoint`` (an ``http(s)://host:port/...`` URL) is probed with a TCP connection of at most
      ``probe_timeout`` s before the first export and after any failure; while it refuses, batches
      fail at once (counted), with no retries, no waiting, and one warning per outage.
    """

    def __init__(
        self,
        inner: SpanExporter,
        *,
        endpoint: str | None = None,
        max_request_bytes: int = 0,
        probe_timeout: float = 0.5,
    ) -> None:
        self.inner = inner
        self.exported = 0
        """Spans the exporter accepted."""
        self.failed = 0
        """Spans in batches that failed (error response, timeout, refused connection...)."""
        self.failed_batches = 0
        self.last_error: str | None = None
        self.max_request_bytes = max_request_bytes
        self.probe_timeout = probe_timeout
        self._address = _address_of(endpoint) if endpoint else None
        self._healthy = False
        self._warned = False
        self._lock = threading.Lock()
        self._shut_down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export through the wrapped exporter, request by request, and count the outcome."""
        result = SpanExportResult.SUCCESS
        for part in _split(spans, self.max_request_bytes):
            if self._export(part) is not SpanExportResult.SUCCESS:
                result = SpanExportResult.FAILURE
        return result

    def _export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        unreachable = self._unreachable()
        if unreachable is not None:
            self._count(spans, SpanExportResult.FAILURE, unreachable)
            return SpanExportResult.FAILURE
        error: str | None = None
        try:
            result = self.inner.export(spans)
        except Exception as exc:
            logger.debug("OpenInference span export raised", exc_info=True)
            result = SpanExportResult.FAILURE
            error = f"{type(exc).__name__}: {exc}"
        if result is not SpanExportResult.SUCCESS:
            error = error or f"export of {len(spans)} spans failed"
        self._count(spans, result, error)
        return result

    def _unreachable(self) -> str | None:
        if self._address is None or self._healthy:
            return None
        import socket

        try:
            socket.create_connection(self._address, timeout=self.probe_timeout).close()
        except OSError as exc:
            return f"{self._address[0]}:{self._address[1]} unreachable ({exc})"
        self._healthy = True
        return None

    def _count(self, spans: Sequence[ReadableSpan], result: SpanExportResult, error: str | None):
        with self._lock:
            if result is SpanExportResult.SUCCESS:
                self.exported += len(spans)
                self._warned = False
                return
            self.failed += len(spans)
            self.failed_batches += 1
            self.last_error = error
            self._healthy = False  # probe again before the next request
            warn = not self._warned
            self._warned = True
        if warn:
            logger.warning(
                "OpenInference: %d span(s) could not be exported: %s; further failures are "
                "counted in stats() (export_errors) until an export succeeds",
                len(spans),
                error,
            )

    def shutdown(self) -> None:
        """Shut the wrapped exporter down (once): aborts its retries."""
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the wrapped exporter."""
        return self.inner.force_flush(timeout_millis)


def _address_of(endpoint: str) -> tuple[str, int] | None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(endpoint)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


def _span_bytes(span: ReadableSpan) -> int:
    size = 256
    for key, value in (span.attributes or {}).items():
        size += len(key) + (len(value) if isinstance(value, str) else 16)
    for event in span.events:
        for value in (event.attributes or {}).values():
            size += len(value) if isinstance(value, str) else 16
    return size


def _split(spans: Sequence[ReadableSpan], limit: int) -> list[Sequence[ReadableSpan]]:
    """``spans`` cut into runs of at most ``limit`` estimated bytes (no limit when ``<= 0``)."""
    if limit <= 0 or len(spans) <= 1:
        return [spans]
    parts: list[Sequence[ReadableSpan]] = []
    current: list[ReadableSpan] = []
    size = 0
    for span in spans:
        span_size = _span_bytes(span)
        if current and size + span_size > limit:
            parts.append(current)
            current, size = [], 0
        current.append(span)
        size += span_size
    if current:
        parts.append(current)
    return parts


class _TraceIdGenerator(RandomIdGenerator):
    """Random ids, except that a root span can be told to take the callbacks trace's own id, so
    the ids in logs and in the tracing UI match."""

    def __init__(self) -> None:
        self._next = threading.local()

    def use(self, trace_id: str) -> None:
        try:
            value = int(trace_id, 16)
        except (TypeError, ValueError):
            return
        if 0 < value < 2**128:
            self._next.value = value

    def generate_trace_id(self) -> int:
        value = getattr(self._next, "value", None)
        if value is not None:
            self._next.value = None
            return int(value)
        return super().generate_trace_id()


def _run_bounded(
    target: Callable[[], Any], timeout: float, name: str
) -> tuple[threading.Thread, bool]:
    """Run ``target`` on a daemon thread; wait at most ``timeout`` s. Returns (thread, finished)."""
    thread = threading.Thread(target=_logged(target, name), name=name, daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    return thread, not thread.is_alive()


def _logged(target: Callable[[], Any], name: str) -> Callable[[], None]:
    def run() -> None:
        try:
            target()
        except Exception:
            logger.exception("%s failed", name)

    return run


class SpanSink:
    """The tracer spans are created with, and the provider/exporter behind it."""

    def __init__(self, settings: OpenInferenceSettings) -> None:
        self.settings = settings
        self.memory_exporter: InMemorySpanExporter | None = None
        self.exporter: CountingExporter | None = None
        self.provider: Any = None
        self.owns_provider = not settings.use_global_provider
        self.spans_created = 0
        self.processor: Any = None
        self._lost_at_flush = 0
        self._id_generator: _TraceIdGenerator | None = None
        self._flush_thread: threading.Thread | None = None
        self._shut_down = False
        self._span_processors: Any = None
        self._span_limits: SpanLimits | None = None
        if settings.use_global_provider:
            self.provider = otel_trace.get_tracer_provider()
        else:
            self.provider = self._own_provider()
        version = _version()
        self.tracer: otel_trace.Tracer = self.provider.get_tracer(_TRACER_NAME, version)
        self.writer: SpanWriter = self._writer(version)
        """How spans are made: built directly as finished spans on the plugin's own provider
        with the default sampler; through ``self.tracer`` otherwise."""

    def _writer(self, version: str) -> SpanWriter:
        from opentelemetry.sdk.trace import Tracer
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON, DEFAULT_ON
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        from .writers import DirectSpanWriter, SdkSpanWriter

        provider = self.provider
        if (
            self._id_generator is None
            or self._span_limits is None
            or not isinstance(self.tracer, Tracer)  # OTEL_SDK_DISABLED gives a no-op tracer
            or provider.sampler not in (DEFAULT_ON, ALWAYS_ON)  # OTEL_TRACES_SAMPLER samples
        ):
            return SdkSpanWriter(self.tracer, self.use_trace_id)
        return DirectSpanWriter(
            self._span_processors,
            self.tracer,
            InstrumentationScope(_TRACER_NAME, version),
            self._id_generator,
            self._span_limits,
        )

    def _own_provider(self) -> TracerProvider:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor, TracerProvider

        settings = self.settings
        resource_attributes: dict[str, str] = {"service.name": settings.service_name}
        if settings.project_name:
            resource_attributes["openinference.project.name"] = settings.project_name
        self._id_generator = _TraceIdGenerator()
        self._span_limits = SpanLimits(
            max_span_attributes=settings.max_span_attributes,
            max_span_attribute_length=settings.max_attribute_length,
        )
        # Held here too: the direct writer hands finished spans to the provider's processors.
        self._span_processors = SynchronousMultiSpanProcessor()
        provider = TracerProvider(
            resource=Resource.create(resource_attributes),
            active_span_processor=self._span_processors,
            id_generator=self._id_generator,
            span_limits=self._span_limits,
        )
        processor = self._processor()
        if processor is not None:
            provider.add_span_processor(processor)
        return provider

    def _processor(self) -> Any:
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        settings = self.settings
        if settings.exporter == "none":
            return None
        if settings.exporter == "memory":
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

            self.memory_exporter = InMemorySpanExporter()
            self.exporter = CountingExporter(self.memory_exporter)
            return SimpleSpanProcessor(self.exporter)
        from .batching import BlockingBatchProcessor

        inner: SpanExporter
        endpoint: str | None = None
        if settings.exporter == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            inner = ConsoleSpanExporter()
        else:
            from .otlp import FastOTLPSpanExporter

            endpoint = settings.endpoint
            inner = FastOTLPSpanExporter(
                endpoint=endpoint,
                headers={k: v.get_secret_value() for k, v in settings.headers.items()},
                timeout=settings.export_timeout_millis / 1000,
            )
        self.exporter = CountingExporter(
            inner, endpoint=endpoint, max_request_bytes=settings.max_request_bytes
        )
        self.processor = BlockingBatchProcessor(
            self.exporter,
            max_queue_size=settings.max_queue_size,
            max_batch_size=settings.max_export_batch_size,
            schedule_delay=settings.schedule_delay_millis / 1000,
            block_timeout=settings.export_timeout_millis / 1000,
        )
        return self.processor

    def use_trace_id(self, trace_id: str) -> None:
        """Make the next root span take this (32 hex digit) trace id, on a private provider."""
        if self._id_generator is not None:
            self._id_generator.use(trace_id)

    @property
    def dropped(self) -> int:
        """Spans dropped before export (the export queue stayed full)."""
        return self.processor.dropped if self.processor is not None else 0

    @property
    def lost(self) -> int:
        """Spans that will never reach the destination: dropped or failed to export."""
        failed = self.exporter.failed if self.exporter is not None else 0
        return failed + self.dropped

    def flush(self, timeout: float) -> bool:
        """Export what is buffered; wait at most ``timeout`` s. True if everything went out and
        no span was lost since the previous flush."""
        lost_before, self._lost_at_flush = self._lost_at_flush, self.lost
        if self._lost_at_flush != lost_before:
            return self._flush(timeout) and False
        return self._flush(timeout)

    def _flush(self, timeout: float) -> bool:
        force_flush = getattr(self.provider, "force_flush", None)
        if self._shut_down or force_flush is None:
            return True
        if self._flush_thread is not None and self._flush_thread.is_alive():
            # A flush stuck on a dead collector is still running: wait on it, do not pile up more.
            self._flush_thread.join(max(timeout, 0.0))
            if self._flush_thread.is_alive():
                return False
        lost_before = self.lost
        millis = int(timeout * 1000)
        self._flush_thread, finished = _run_bounded(
            lambda: force_flush(millis), timeout, "callbacks-openinference-flush"
        )
        if not finished:
            logger.warning("OpenInference span flush did not finish within %.1f s", timeout)
            return False
        self._lost_at_flush = self.lost
        return self.lost == lost_before

    def shutdown(self, timeout: float) -> bool:
        """Flush and release the exporter, bounded by ``timeout`` s. A global provider is the
        application's: it is flushed, never shut down. True if it finished in time."""
        if self._shut_down:
            return True
        if not self.owns_provider:
            finished = self.flush(timeout)
            self._shut_down = True
            return finished
        self._shut_down = True
        deadline = time.monotonic() + max(timeout, 0.0)
        if self._flush_thread is not None and self._flush_thread.is_alive():
            self._flush_thread.join(max(deadline - time.monotonic(), 0.0))
        _, finished = _run_bounded(
            self.provider.shutdown, deadline - time.monotonic(), "callbacks-openinference-shutdown"
        )
        if not finished:
            logger.warning(
                "OpenInference exporter did not shut down within %.1f s; %d spans not exported",
                timeout,
                self.unexported,
            )
            if self.exporter is not None:
                self.exporter.shutdown()  # stop its retries; an in-flight request ends on its own
        return finished

    @property
    def unexported(self) -> int:
        """Spans created but neither exported nor failed: still queued, or dropped by a full
        queue or a shutdown that timed out (the latter once shut down)."""
        if self.exporter is None:
            return 0
        exporter = self.exporter
        return max(self.spans_created - exporter.exported - exporter.failed - self.dropped, 0)

    def stats(self) -> dict[str, Any]:
        """Counts for the host's ``stats()``: spans created, exported, failed, unexported."""
        exporter = self.exporter
        return {
            "exporter": self.settings.exporter if self.owns_provider else "global",
            "spans_created": self.spans_created,
            "spans_exported": exporter.exported if exporter is not None else None,
            "export_errors": exporter.failed if exporter is not None else 0,
            "failed_batches": exporter.failed_batches if exporter is not None else 0,
            "spans_dropped": self.dropped,
            "spans_lost": self.lost,
            "spans_unexported": self.unexported,
            "last_export_error": exporter.last_error if exporter is not None else None,
        }


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("callbacks-openinference")
    except Exception:
        return "0"
