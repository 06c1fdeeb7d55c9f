"""The plugin's OTLP exporter sends the very bytes OpenTelemetry's own OTLPSpanExporter sends
for the same spans (both captured on a loopback receiver)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from oi_helpers import OTLPReceiver, memory_manager, plugin_of, run_pipeline
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from callbacks_openinference.encoding import encode_spans
from callbacks_openinference.otlp import FastOTLPSpanExporter


def _pipeline_spans() -> Sequence[ReadableSpan]:
    cm = memory_manager()
    try:
        run_pipeline(cm)
        assert cm.flush(timeout=5.0)
        exporter = plugin_of(cm).memory_exporter
        assert exporter is not None
        return exporter.get_finished_spans()
    finally:
        cm.shutdown(timeout=5.0)


def _odd_spans() -> Sequence[ReadableSpan]:
    """Spans from OpenTelemetry's tracer with values of every kind, including some that its
    encoder drops with a logged error (an int beyond int64, a lone surrogate)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "odd", "n": 3}, "s://r"))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("odd-scope", "1.2", schema_url="s://x", attributes={"a": True})
    other = provider.get_tracer("other-scope")
    remote = SpanContext(
        0xABC,
        0xDEF,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("k", "v")]),
    )
    with tracer.start_as_current_span(
        "outer",
        kind=SpanKind.SERVER,
        context=otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(remote)),
        links=[Link(remote, {"why": "because"})],
    ) as outer:
        outer.set_attributes(
            {
                "text": "héllo 中文 \U0001f600",
                "empty": "",
                "": "empty key",
                "negative": -5,
                "zero": 0,
                "big": 2**63 - 1,
                "flag": False,
                "ratio": float("nan"),
                "tiny": -0.0,
                "raw": b"\x00\xff",
                "floats": (0.5, -1.25, 1e300),
                "ints": (1, -2, 3),
                "strings": ("a", "", "ü"),
                "bools": (True, False),
                "nothing": (),
            }
        )
        outer.add_event("note", {"n": 1}, timestamp=123)
        with other.start_as_current_span("inner", kind=SpanKind.CLIENT) as inner:
            inner.set_status(Status(StatusCode.ERROR, "broke: ü"))
            inner.record_exception(ValueError("bad value"))
    with tracer.start_as_current_span("too big") as span:
        span.set_attribute("huge", 2**70)
    with tracer.start_as_current_span("surrogate") as span:
        span.set_attribute("lone", "\ud800")
    return memory.get_finished_spans()


def _sent(exporter_class: type[OTLPSpanExporter], spans: Sequence[ReadableSpan]) -> bytes:
    receiver = OTLPReceiver()
    try:
        exporter = exporter_class(endpoint=receiver.url)
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        exporter.shutdown()
        (body,) = receiver.bodies
        return body
    finally:
        receiver.close()


def test_pipeline_spans_are_sent_as_opentelemetry_sends_them() -> None:
    spans = _pipeline_spans()
    assert encode_spans(spans) is not None  # encoded here, not handed back to OpenTelemetry
    assert _sent(FastOTLPSpanExporter, spans) == _sent(OTLPSpanExporter, spans)


@pytest.mark.parametrize("which", ["all", "each"])
def test_odd_values_are_sent_as_opentelemetry_sends_them(which: str) -> None:
    spans = _odd_spans()
    batches = [spans] if which == "all" else [[span] for span in spans]
    for batch in batches:
        assert _sent(FastOTLPSpanExporter, batch) == _sent(OTLPSpanExporter, batch)
