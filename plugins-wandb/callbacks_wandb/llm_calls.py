"""One record per LLM call: the metrics logged with ``wandb.log`` and the row of the calls table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from callbacks import Event, payloads

from .results import PayloadMode, clip

__all__ = ["COLUMNS", "LlmCall", "llm_call", "status_of"]

COLUMNS: tuple[str, ...] = (
    "trace_id",
    "event_id",
    "model",
    "prompt",
    "completion",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "latency_ms",
    "status",
)
"""Columns of the ``llm_calls`` table, in order."""


class LlmCall(NamedTuple):
    """What one LLM call cost and said. Token counts are ``None`` when the provider sent none."""

    trace_id: str
    event_id: str
    model: str | None
    prompt: str | None
    completion: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    latency_ms: float | None
    status: str
    """``"ok"``, or the exception as ``"<Type>: <message>"``."""

    def metrics(self) -> dict[str, float | int]:
        """The ``llm/*`` metrics of this call for ``wandb.log``; missing values are left out."""
        values = {
            "llm/latency_ms": self.latency_ms,
            "llm/prompt_tokens": self.prompt_tokens,
            "llm/completion_tokens": self.completion_tokens,
            "llm/total_tokens": self.total_tokens,
        }
        return {key: value for key, value in values.items() if value is not None}

    def row(self) -> list[Any]:
        """The table row, in :data:`COLUMNS` order."""
        return list(self)


def status_of(event: Event | None) -> str:
    """``"ok"`` for a successful end, else the exception as ``"<Type>: <message>"``."""
    if event is None:
        return "no end event"
    if event.exception is None:
        return "ok"
    return f"{type(event.exception).__name__}: {event.exception}"


def llm_call(start: Event | None, end: Event, mode: PayloadMode) -> LlmCall:
    """The record of an LLM call from its end event and, when it was seen, its start event."""
    merged: Mapping[str, Any] = {**(start.payload if start else {}), **end.payload}
    usage = payloads.usage_of(merged)
    return LlmCall(
        trace_id=end.trace_id,
        event_id=end.id,
        model=payloads.model_of(merged),
        prompt=clip(payloads.prompt_of(merged), mode),
        completion=clip(payloads.completion_of(end.payload), mode),
        prompt_tokens=usage.prompt if usage else None,
        completion_tokens=usage.completion if usage else None,
        total_tokens=usage.total if usage else None,
        latency_ms=end.duration_ns / 1e6 if end.duration_ns is not None else None,
        status=status_of(end),
    )
