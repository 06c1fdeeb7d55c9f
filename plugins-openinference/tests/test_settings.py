"""Settings: defaults from the OTEL_* environment, validation, secrets, and the global provider."""

from __future__ import annotations

import importlib.metadata

import pytest
from oi_helpers import plugin_of
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from callbacks import CallbackManager, ConfigError, EventPayload, EventType
from callbacks_openinference import OpenInferencePlugin, OpenInferenceSettings
from callbacks_openinference.settings import DEFAULT_ENDPOINT


@pytest.fixture(autouse=True)
def _no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_SERVICE_NAME",
    ):
        monkeypatch.delenv(name, raising=False)


def test_endpoint_defaults_to_phoenix() -> None:
    assert OpenInferenceSettings().endpoint == DEFAULT_ENDPOINT == "http://localhost:6006/v1/traces"


def test_endpoint_honours_otel_traces_endpoint_then_base_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert OpenInferenceSettings().endpoint == "http://collector:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/custom")
    assert OpenInferenceSettings().endpoint == "http://traces:4318/custom"
    assert (
        OpenInferenceSettings(endpoint="http://explicit/v1/traces").endpoint
        == "http://explicit/v1/traces"
    )


def test_service_name_honours_otel_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OpenInferenceSettings().service_name == "callbacks"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "rag-app")
    assert OpenInferenceSettings().service_name == "rag-app"


def test_settings_come_from_callbacks_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBACKS_OPENINFERENCE__EXPORTER", "memory")
    monkeypatch.setenv("CALLBACKS_OPENINFERENCE__MAX_EVENTS_PER_TRACE", "7")
    cm = CallbackManager(plugins=[OpenInferencePlugin()])
    try:
        settings = plugin_of(cm).settings
        assert settings is not None
        assert (settings.exporter, settings.max_events_per_trace) == ("memory", 7)
        assert plugin_of(cm).memory_exporter is not None
    finally:
        cm.shutdown(timeout=2.0)


def test_unknown_key_and_bad_value_are_rejected_with_the_key_named() -> None:
    with pytest.raises(ConfigError, match="exporterr"):
        CallbackManager(
            plugins=[OpenInferencePlugin()], config={"openinference": {"exporterr": "otlp"}}
        )
    with pytest.raises(ConfigError, match="exporter"):
        CallbackManager(
            plugins=[OpenInferencePlugin()], config={"openinference": {"exporter": "jaeger"}}
        )


def test_headers_are_secret() -> None:
    settings = OpenInferenceSettings(headers={"authorization": "Bearer s3cret"})
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings.model_dump())
    assert settings.headers["authorization"].get_secret_value() == "Bearer s3cret"


def test_entry_point_names_the_plugin_class() -> None:
    (entry,) = [
        ep
        for ep in importlib.metadata.entry_points(group="callbacks")
        if ep.name == "openinference"
    ]
    assert entry.load() is OpenInferencePlugin


def test_events_over_the_per_trace_cap_are_dropped_and_counted() -> None:
    cm = CallbackManager(
        plugins=[OpenInferencePlugin()],
        config={"openinference": {"exporter": "memory", "max_events_per_trace": 3}},
    )
    try:
        with cm.as_trace("capped"):
            for _ in range(5):
                with cm.event(EventType.LLM, {EventPayload.PROMPT: "hi"}):
                    pass
        assert cm.flush(timeout=5.0)
        plugin = plugin_of(cm)
        assert plugin.memory_exporter is not None
        assert len(plugin.memory_exporter.get_finished_spans()) == 1 + 3
        assert plugin.callbacks_stats()["events_dropped"] == 2
    finally:
        cm.shutdown(timeout=2.0)


def test_global_provider_is_used_and_not_shut_down() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel_trace.set_tracer_provider(provider)
    if otel_trace.get_tracer_provider() is not provider:
        pytest.skip("another global TracerProvider was already set in this process")
    cm = CallbackManager(
        plugins=[OpenInferencePlugin()], config={"openinference": {"use_global_provider": True}}
    )
    with cm.as_trace("global"):
        with cm.event(EventType.RETRIEVE, {EventPayload.QUERY_STR: "q"}):
            pass
    cm.shutdown(timeout=2.0)
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == ["retrieve"]  # the trace's one event is its root span
    with provider.get_tracer("app").start_as_current_span("after"):
        pass
    assert len(exporter.get_finished_spans()) == 2  # the app's provider still works
