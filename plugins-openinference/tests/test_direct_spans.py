"""Spans built directly as finished ``ReadableSpan`` objects encode to the same OTLP as the
spans OpenTelemetry's tracer makes from the same events (OpenTelemetry's own encoder decides)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from oi_helpers import Recorder, run_pipeline
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from callbacks import CallbackManager
from callbacks.collect import EventPair
from callbacks_openinference.exporting import SpanSink
from callbacks_openinference.masking import Masker
from callbacks_openinference.settings import OpenInferenceSettings
from callbacks_openinference.spans import TraceInfo, emit_trace
from callbacks_openinference.writers import DirectSpanWriter, SdkSpanWriter


def _recorded_trace() -> tuple[TraceInfo, dict[str, EventPair]]:
    recorder = Recorder()
    cm = CallbackManager(plugins=[recorder], config={"trace_wait": 0})
    run_pipeline(cm)
    cm.shutdown(timeout=5.0)
    pairs: dict[str, EventPair] = {}
    for event_id, start in recorder.starts.items():
        pairs[event_id] = EventPair(start, recorder.ends.get(event_id))
    for event_id, end in recorder.ends.items():
        pairs.setdefault(event_id, EventPair(None, end))
    trace = recorder.traces[0]
    info = TraceInfo(
        trace.id, trace.name, trace.start_wall_time_ns, trace.end_wall_time_ns, trace.attributes
    )
    return info, pairs


def _encoded(sink: SpanSink, info: TraceInfo, pairs: dict[str, EventPair]) -> bytes:
    random.seed(20261125)  # the same span ids both ways
    emit_trace(sink.writer, Masker(sink.settings), info, pairs)
    assert sink.memory_exporter is not None
    request = encode_spans(sink.memory_exporter.get_finished_spans())
    # The resource differs by its random service.instance.id; compare scope and spans.
    (resource_spans,) = request.resource_spans
    return b"".join(s.SerializeToString() for s in resource_spans.scope_spans)


# Limits just under the pipeline's value lengths and attribute counts, so that some span sits on
# each edge (one character or one attribute over).
_LIMITS = [
    {},
    *({"max_attribute_length": n} for n in (4, 7, 8, 9, 11)),
    *({"max_span_attributes": n, "max_attribute_length": None} for n in range(1, 7)),
]


@pytest.mark.parametrize("limits", _LIMITS, ids=[str(limits) for limits in _LIMITS])
def test_direct_spans_encode_as_the_tracers_spans(limits: dict[str, Any]) -> None:
    info, pairs = _recorded_trace()
    settings = OpenInferenceSettings(exporter="memory", **limits)
    direct, traced = SpanSink(settings), SpanSink(settings)
    try:
        assert isinstance(direct.writer, DirectSpanWriter)
        traced.writer = SdkSpanWriter(traced.tracer, traced.use_trace_id)
        expected = _encoded(traced, info, pairs)
        assert _encoded(direct, info, pairs) == expected
        spans = direct.memory_exporter.get_finished_spans() if direct.memory_exporter else ()
        assert any(s.events for s in spans)  # the failed events' exception events compared too
        if "max_span_attributes" in limits:
            assert any(s.dropped_attributes for s in spans)
    finally:
        direct.shutdown(timeout=5.0)
        traced.shutdown(timeout=5.0)
