"""The span kind of each event type, for sinks that draw spans (OpenInference, W&B...).

The table is OpenInference's mapping of LlamaIndex's event types: LLM, EMBEDDING, RETRIEVER,
RERANKER, TOOL for a function call, AGENT for an agent step, and CHAIN for everything else
(queries, synthesis, templating, chunking, :attr:`EventType.CHAIN` itself...).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType

from .events import EventType

__all__ = ["SPAN_KINDS", "SpanKind", "span_kind"]


class SpanKind(str, Enum):
    """OpenInference's span kinds (the values of ``openinference.span.kind``)."""

    LLM = "LLM"
    EMBEDDING = "EMBEDDING"
    RETRIEVER = "RETRIEVER"
    RERANKER = "RERANKER"
    TOOL = "TOOL"
    AGENT = "AGENT"
    CHAIN = "CHAIN"

    def __str__(self) -> str:
        return self.value


SPAN_KINDS: Mapping[EventType, SpanKind] = MappingProxyType(
    {
        EventType.LLM: SpanKind.LLM,
        EventType.EMBEDDING: SpanKind.EMBEDDING,
        EventType.RETRIEVE: SpanKind.RETRIEVER,
        EventType.RERANKING: SpanKind.RERANKER,
        EventType.FUNCTION_CALL: SpanKind.TOOL,
        EventType.AGENT_STEP: SpanKind.AGENT,
    }
)
"""Event types whose kind is not :attr:`SpanKind.CHAIN`."""


def span_kind(event_type: EventType | str) -> SpanKind:
    """The span kind of an event type; CHAIN for every type not in :data:`SPAN_KINDS`, including
    unknown ones."""
    try:
        return SPAN_KINDS.get(EventType(event_type), SpanKind.CHAIN)
    except ValueError:
        return SpanKind.CHAIN
