"""Real OTLP/HTTP export to a loopback receiver, and an endpoint that never answers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from oi_helpers import OTLPReceiver, plugin_of, run_pipeline
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from callbacks import CallbackManager
from callbacks_openinference import OpenInferencePlugin


def _otlp_manager(endpoint: str, **config: object) -> CallbackManager:
    return CallbackManager(
        plugins=[OpenInferencePlugin()],
        config={
            "openinference": {"exporter": "otlp", "endpoint": endpoint, **config},
            "trace_wait": 0,  # the pipeline's never-ended event is abandoned at its trace end
        },
    )


def _attr(span: object, key: str) -> object:
    for kv in span.attributes:  # type: ignore[attr-defined]
        if kv.key == key:
            value = kv.value
            kind = value.WhichOneof("value")
            if kind == "array_value":
                return tuple(getattr(v, v.WhichOneof("value")) for v in value.array_value.values)
            return getattr(value, kind)
    raise KeyError(key)


def test_spans_reach_an_otlp_http_collector_as_protobuf(receiver: OTLPReceiver) -> None:
    cm = _otlp_manager(
        receiver.url,
        headers={"authorization": "Bearer s3cret"},
        service_name="svc-test",
        project_name="proj-test",
        schedule_delay_millis=60_000,  # only the flush sends
    )
    try:
        trace_id = run_pipeline(cm)
        assert cm.flush(timeout=10.0)
        assert receiver.wait_for_spans(18, timeout=10.0)
    finally:
        cm.shutdown(timeout=5.0)

    path, headers, request = receiver.requests[0]
    assert path == "/v1/traces"
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["authorization"] == "Bearer s3cret"
    resource = {
        kv.key: kv.value.string_value for kv in request.resource_spans[0].resource.attributes
    }
    assert resource["service.name"] == "svc-test"
    assert resource["openinference.project.name"] == "proj-test"

    spans = receiver.spans()
    assert len(spans) == 18
    assert {s.trace_id.hex() for s in spans} == {trace_id}
    by_id = {s.span_id: s for s in spans}
    (root,) = [s for s in spans if not s.parent_span_id]
    assert root.name == "rag-query"
    assert all(s.parent_span_id in by_id for s in spans if s is not root)
    assert all(
        root.start_time_unix_nano <= s.start_time_unix_nano <= s.end_time_unix_nano for s in spans
    )

    (llm,) = [s for s in spans if s.name == "llm"]
    assert by_id[llm.parent_span_id].name == "synthesize"
    assert _attr(llm, "openinference.span.kind") == "LLM"
    assert _attr(llm, "llm.token_count.total") == 16
    assert _attr(llm, "llm.output_messages.0.message.content") == "One is a doc."
    assert llm.status.code == Status.STATUS_CODE_OK
    (embedding,) = [s for s in spans if s.name == "embedding"]
    assert _attr(embedding, "embedding.embeddings.0.embedding.vector") == (0.25, -0.5, 1.0)
    failed = [
        s for s in spans if s.name == "chunking" and s.status.code == Status.STATUS_CODE_ERROR
    ]
    assert len(failed) == 1 and [e.name for e in failed[0].events] == ["exception"]

    stats = plugin_of(cm).callbacks_stats()
    assert (stats["spans_exported"], stats["export_errors"], stats["spans_unexported"]) == (
        18,
        0,
        0,
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A port that accepts TCP connections into its backlog but never reads or answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1/traces"
    sock.close()


def test_refused_export_is_counted_as_export_errors() -> None:
    cm = _otlp_manager(f"http://127.0.0.1:{_closed_port()}/v1/traces", export_timeout_millis=500)
    try:
        run_pipeline(cm)
        run_pipeline(cm)
        cm.flush(timeout=10.0)
        plugin = plugin_of(cm)
        stats = plugin.callbacks_stats()
        assert stats["spans_created"] == 36
        assert plugin.export_errors == 36
        assert stats["spans_exported"] == 0
        assert stats["failed_batches"] >= 1
        assert stats["last_export_error"]
    finally:
        cm.shutdown(timeout=2.0)


def test_silent_endpoint_never_blocks_the_caller_and_shutdown_is_bounded(
    silent_endpoint: str,
) -> None:
    export_timeout = 5.0
    cm = _otlp_manager(
        silent_endpoint, export_timeout_millis=export_timeout * 1000, max_export_batch_size=18
    )
    plugin = plugin_of(cm)
    started = time.monotonic()
    for _ in range(20):
        run_pipeline(cm)
    emitting = time.monotonic() - started
    assert emitting < 1.0  # one export alone would hang for export_timeout

    started = time.monotonic()
    cm.flush(timeout=0.5)
    assert time.monotonic() - started < 1.5
    started = time.monotonic()
    cm.shutdown(timeout=0.5)
    assert time.monotonic() - started < 1.5

    stats = plugin.callbacks_stats()
    assert stats["spans_created"] == 20 * 18
    assert stats["spans_exported"] == 0
    # Nothing went out: every span is accounted for as failed or not exported.
    assert stats["export_errors"] + stats["spans_unexported"] == 20 * 18
    assert stats["spans_unexported"] > 0
