"""Span kinds: the project's OpenInference-style kind of each event type, and the W&B kind.

W&B's trace tree knows only LLM, CHAIN, AGENT and TOOL, so the finer kinds are folded:
EMBEDDING is a model call (LLM); RETRIEVER and RERANKER are lookups the chain makes (TOOL).
The precise kind is kept in the span's ``span_kind`` attribute, so nothing is lost.
"""

from __future__ import annotations

from callbacks import EventType

__all__ = ["SPAN_KINDS", "WANDB_KINDS", "span_kind", "wandb_kind"]

SPAN_KINDS: dict[EventType, str] = {
    EventType.LLM: "LLM",
    EventType.EMBEDDING: "EMBEDDING",
    EventType.RETRIEVE: "RETRIEVER",
    EventType.RERANKING: "RERANKER",
    EventType.FUNCTION_CALL: "TOOL",
    EventType.AGENT_STEP: "AGENT",
}
"""Event types whose kind is not CHAIN (the kind of every other type)."""

WANDB_KINDS: dict[str, str] = {
    "LLM": "LLM",
    "EMBEDDING": "LLM",
    "RETRIEVER": "TOOL",
    "RERANKER": "TOOL",
    "TOOL": "TOOL",
    "AGENT": "AGENT",
    "CHAIN": "CHAIN",
}
"""Project kind -> W&B ``SpanKind`` value."""


def span_kind(event_type: EventType | str) -> str:
    """The project's span kind of an event type: CHAIN for unlisted and unknown types."""
    try:
        return SPAN_KINDS.get(EventType(event_type), "CHAIN")
    except ValueError:
        return "CHAIN"


def wandb_kind(event_type: EventType | str) -> str:
    """The W&B ``SpanKind`` value (LLM, CHAIN, AGENT or TOOL) of an event type."""
    return WANDB_KINDS[span_kind(event_type)]
