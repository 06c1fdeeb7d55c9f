"""The ``[openinference]`` settings section (``CALLBACKS_OPENINFERENCE__<KEY>`` in the env)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["DEFAULT_ENDPOINT", "OpenInferenceSettings", "TRACE_CONFIG_FIELDS"]

DEFAULT_ENDPOINT = "http://localhost:6006/v1/traces"
"""Phoenix's OTLP/HTTP traces endpoint, used when neither the settings nor OTEL_* name one."""

TRACE_CONFIG_FIELDS: tuple[str, ...] = (
    "hide_llm_invocation_parameters",
    "hide_llm_tools",
    "hide_inputs",
    "hide_outputs",
    "hide_input_messages",
    "hide_output_messages",
    "hide_input_images",
    "hide_input_text",
    "hide_output_text",
    "hide_embedding_vectors",
    "hide_embeddings_vectors",
    "hide_embeddings_text",
    "hide_prompts",
    "hide_choices",
    "hide_retrieval_documents",
    "base64_image_max_length",
)
"""Settings passed through to OpenInference's ``TraceConfig`` when set (``None`` lets TraceConfig
read its ``OPENINFERENCE_*`` environment variable, then its default)."""


def _default_endpoint() -> str:
    # Same precedence as the OTLP exporter itself, but with Phoenix as the final fallback.
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return traces
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if base:
        return base.rstrip("/") + "/v1/traces"
    return DEFAULT_ENDPOINT


def _default_service_name() -> str:
    return os.environ.get("OTEL_SERVICE_NAME") or "callbacks"


class OpenInferenceSettings(BaseModel):
    """Where and how spans are exported, and what OpenInference masking applies."""

    model_config = ConfigDict(extra="forbid")

    exporter: Literal["otlp", "console", "memory", "none"] = "otlp"
    """``otlp`` (HTTP/protobuf to ``endpoint``), ``console`` (stdout), ``memory`` (kept in
    ``plugin.memory_exporter``, for tests) or ``none`` (spans are built, then discarded)."""
    endpoint: str = Field(
        default_factory=_default_endpoint,
        json_schema_extra={
            "env": ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        },
    )
    """OTLP/HTTP traces URL. Defaults to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, then
    OTEL_EXPORTER_OTLP_ENDPOINT + ``/v1/traces``, then Phoenix's local endpoint."""
    service_name: str = Field(
        default_factory=_default_service_name, json_schema_extra={"env": ["OTEL_SERVICE_NAME"]}
    )
    """``service.name`` resource attribute; defaults to OTEL_SERVICE_NAME, then ``callbacks``."""
    project_name: str | None = None
    """Phoenix project (``openinference.project.name`` resource attribute), if set."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Extra HTTP headers for the OTLP exporter (e.g. ``authorization``); never printed."""
    use_global_provider: bool = False
    """Export through the application's global TracerProvider instead of a private one."""

    max_queue_size: int = Field(default=2048, gt=0)
    schedule_delay_millis: float = Field(default=5000.0, gt=0)
    max_export_batch_size: int = Field(default=512, gt=0)
    export_timeout_millis: float = Field(default=10000.0, gt=0)
    """Bound on one export request, retries included."""
    max_span_attributes: int = Field(default=4096, gt=0)
    """Attribute cap per span; OpenTelemetry's default of 128 truncates documents and messages."""
    max_attribute_length: int | None = Field(default=100_000, gt=0)
    """Longest string attribute value, in characters (OpenTelemetry truncates longer ones), so
    one huge prompt cannot make a request too large to export; ``None`` for no limit."""
    max_request_bytes: int = Field(default=8_000_000, ge=0)
    """Attribute text per export request (estimated); a batch is split to stay under it, and a
    span larger than it goes alone. ``0`` turns splitting off."""
    max_open_traces: int = Field(default=1000, gt=0)
    """Traces held open at once; beyond it the oldest is exported as it stands."""
    max_events_per_trace: int = Field(default=10000, gt=0)
    """Events kept per open trace; beyond it events are dropped and counted."""

    hide_llm_invocation_parameters: bool | None = None
    hide_llm_tools: bool | None = None
    hide_inputs: bool | None = None
    hide_outputs: bool | None = None
    hide_input_messages: bool | None = None
    hide_output_messages: bool | None = None
    hide_input_images: bool | None = None
    hide_input_text: bool | None = None
    hide_output_text: bool | None = None
    hide_embedding_vectors: bool | None = None
    hide_embeddings_vectors: bool | None = None
    hide_embeddings_text: bool | None = None
    hide_prompts: bool | None = None
    hide_choices: bool | None = None
    hide_retrieval_documents: bool | None = None
    base64_image_max_length: int | None = None

    def trace_config_kwargs(self) -> dict[str, bool | int]:
        """The masking options set here, as keyword arguments for OpenInference's TraceConfig."""
        out: dict[str, bool | int] = {}
        for name in TRACE_CONFIG_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out
