"""One record per LLM call: the row of the ``llm_calls`` table and its token figures."""

from __future__ import annotations

from typing import Any, NamedTuple

from callbacks import payloads
from callbacks.collect import EventPair, describe_error
from callbacks.tokencount import llm_token_count

from .results import PayloadMode, clip

__all__ = ["COLUMNS", "LlmCall", "llm_call", "plain_cell"]

COLUMNS: tuple[str, ...] = (
    "trace_id",
    "event_id",
    "model",
    "prompt",
    "completion",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "token_source",
    "latency_ms",
    "status",
)
"""Columns of the ``llm_calls`` table, in order."""


class LlmCall(NamedTuple):
    """What one LLM call cost and said. Token counts are ``None`` only when neither the provider
    reported them nor an offline tiktoken encoding could estimate them."""

    trace_id: str
    event_id: str
    model: str | None
    prompt: str | None
    completion: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    token_source: str | None
    """``"provider"`` (reported in the payload) or ``"estimate"`` (tiktoken)."""
    latency_ms: float | None
    status: str
    """``"ok"``, ``"no end event"``, or the exception as ``"<Type>: <message>"``."""

    def row(self) -> list[Any]:
        """The table row, in :data:`COLUMNS` order."""
        return list(self)


def llm_call(pair: EventPair, mode: PayloadMode) -> LlmCall:
    """The record of an LLM call from its start and end events (either may be missing)."""
    end, event = pair.end, pair.any
    merged = {**(pair.start.payload if pair.start else {}), **(end.payload if end else {})}
    count = llm_token_count(end) if end is not None else None
    error = pair.error
    status = "no end event" if end is None else "ok" if error is None else describe_error(error)
    return LlmCall(
        trace_id=event.trace_id,
        event_id=event.id,
        model=payloads.model_of(merged),
        prompt=clip(payloads.prompt_of(merged), mode),
        completion=clip(payloads.completion_of(end.payload), mode) if end is not None else None,
        prompt_tokens=count.prompt if count else None,
        completion_tokens=count.completion if count else None,
        total_tokens=count.total if count else None,
        token_source=count.source if count else None,
        latency_ms=end.duration_ns / 1e6 if end is not None and end.duration_ns else None,
        status=status,
    )


_PLAIN = (str, int, float, bool)


def plain_cell(value: Any) -> tuple[Any, bool]:
    """A value ``wandb.Table`` accepts, and whether it had to be converted: ``None`` and exact
    ``str``/``int``/``float``/``bool`` pass; subclasses (``numpy.str_``, ``numpy.float64``...)
    become the plain type; anything else becomes its ``str()``."""
    if value is None or type(value) in _PLAIN:
        return value, False
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            try:
                return kind(value), True
            except Exception:
                break
    try:
        return str(value), True
    except Exception:
        return f"<unprintable {type(value).__name__}>", True
