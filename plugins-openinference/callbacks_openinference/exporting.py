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
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from .settings import OpenInferenceSettings

__all__ = ["CountingExporter", "SpanSink"]

logger = logging.getLogger(__name__)

_TRACER_NAME = "callbacks_openinference"


class CountingExporter(SpanExporter):
    """Wraps an exporter and counts what it exported and what it failed to export."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.exported = 0
        """Spans the exporter accepted."""
        self.failed = 0
        """Spans in batches that failed (error response, timeout, refused connection...)."""
        self.failed_batches = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._shut_down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export through the wrapped exporter and count the outcome."""
        try:
            result = self.inner.export(spans)
        except Exception as exc:
            logger.exception("OpenInference span export raised")
            result = SpanExportResult.FAILURE
            self.last_error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            if result is SpanExportResult.SUCCESS:
                self.exported += len(spans)
            else:
                self.failed += len(spans)
                self.failed_batches += 1
                if self.last_error is None:
                    self.last_error = f"export of {len(spans)} spans failed"
        return result

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
        self._id_generator: _TraceIdGenerator | None = None
        self._flush_thread: threading.Thread | None = None
        self._shut_down = False
        if settings.use_global_provider:
            self.provider = otel_trace.get_tracer_provider()
        else:
            self.provider = self._own_provider()
        self.tracer: otel_trace.Tracer = self.provider.get_tracer(_TRACER_NAME, _version())

    def _own_provider(self) -> TracerProvider:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanLimits, TracerProvider

        settings = self.settings
        resource_attributes: dict[str, str] = {"service.name": settings.service_name}
        if settings.project_name:
            resource_attributes["openinference.project.name"] = settings.project_name
        self._id_generator = _TraceIdGenerator()
        provider = TracerProvider(
            resource=Resource.create(resource_attributes),
            id_generator=self._id_generator,
            span_limits=SpanLimits(max_span_attributes=settings.max_span_attributes),
        )
        processor = self._processor()
        if processor is not None:
            provider.add_span_processor(processor)
        return provider

    def _processor(self) -> Any:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        settings = self.settings
        if settings.exporter == "none":
            return None
        if settings.exporter == "memory":
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

            self.memory_exporter = InMemorySpanExporter()
            self.exporter = CountingExporter(self.memory_exporter)
            return SimpleSpanProcessor(self.exporter)
        inner: SpanExporter
        if settings.exporter == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            inner = ConsoleSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            inner = OTLPSpanExporter(
                endpoint=settings.endpoint,
                headers={k: v.get_secret_value() for k, v in settings.headers.items()},
                timeout=settings.export_timeout_millis / 1000,
            )
        self.exporter = CountingExporter(inner)
        return BatchSpanProcessor(
            self.exporter,
            max_queue_size=settings.max_queue_size,
            schedule_delay_millis=settings.schedule_delay_millis,
            max_export_batch_size=settings.max_export_batch_size,
            export_timeout_millis=settings.export_timeout_millis,
        )

    def use_trace_id(self, trace_id: str) -> None:
        """Make the next root span take this (32 hex digit) trace id, on a private provider."""
        if self._id_generator is not None:
            self._id_generator.use(trace_id)

    def flush(self, timeout: float) -> bool:
        """Export what is buffered; wait at most ``timeout`` s. True if everything went out."""
        force_flush = getattr(self.provider, "force_flush", None)
        if self._shut_down or force_flush is None:
            return True
        if self._flush_thread is not None and self._flush_thread.is_alive():
            # A flush stuck on a dead collector is still running: wait on it, do not pile up more.
            self._flush_thread.join(max(timeout, 0.0))
            if self._flush_thread.is_alive():
                return False
        failed_before = self.exporter.failed if self.exporter is not None else 0
        millis = int(timeout * 1000)
        self._flush_thread, finished = _run_bounded(
            lambda: force_flush(millis), timeout, "callbacks-openinference-flush"
        )
        if not finished:
            logger.warning("OpenInference span flush did not finish within %.1f s", timeout)
            return False
        return self.exporter is None or self.exporter.failed == failed_before

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
        return max(self.spans_created - self.exporter.exported - self.exporter.failed, 0)

    def stats(self) -> dict[str, Any]:
        """Counts for the host's ``stats()``: spans created, exported, failed, unexported."""
        exporter = self.exporter
        return {
            "exporter": self.settings.exporter if self.owns_provider else "global",
            "spans_created": self.spans_created,
            "spans_exported": exporter.exported if exporter is not None else None,
            "export_errors": exporter.failed if exporter is not None else 0,
            "failed_batches": exporter.failed_batches if exporter is not None else 0,
            "spans_unexported": self.unexported,
            "last_export_error": exporter.last_error if exporter is not None else None,
        }


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("callbacks-openinference")
    except Exception:
        return "0"
