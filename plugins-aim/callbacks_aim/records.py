"""Turn finished events into the texts and metrics to track, without touching Aim.

Sequence names and contexts (what a reader passes to ``run.get_text_sequence(name, context)``
or ``run.get_metric(name, context)``):

========================  ======  ======================================================
name                      kind    context
========================  ======  ======================================================
``prompt``, ``response``  text    ``{event_type, trace_id, event_id, model}`` (LLM)
``chunk``                 text    ``{event_type, trace_id, event_id}`` (chunking)
``query``, ``retrieved``  text    ``{event_type, trace_id, event_id}`` (retrieve)
``retrieval_score``       metric  ``{event_type, trace_id, event_id}``, same step as its text
``error``                 text    ``{event_type, trace_id, event_id}`` (any failed event)
``latency_ms``            metric  ``{event_type}``
``prompt_tokens``,        metric  ``{event_type, model}`` (LLM, when usage is reported)
``completion_tokens``,
``total_tokens``
``trace_latency_ms``      metric  ``{trace_name}``
========================  ======  ======================================================

Text steps increase per name across the run (a prompt and its response share one step);
metric steps increase per sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from callbacks import Event, EventPayload, EventType, payloads

__all__ = ["UNKNOWN_MODEL", "MetricRecord", "Steps", "TextRecord", "event_records", "trace_records"]

UNKNOWN_MODEL = "unknown"
"""The ``model`` context value when the payload does not name the model."""

Context = Mapping[str, str]


class TextRecord(NamedTuple):
    """One ``aim.Text`` to track."""

    name: str
    text: str
    step: int
    context: Context


class MetricRecord(NamedTuple):
    """One number to track."""

    name: str
    value: float
    step: int
    context: Context


Record = TextRecord | MetricRecord


class Steps:
    """Step counters: one per text name, one per metric sequence (name and context)."""

    def __init__(self) -> None:
        self._next: dict[Any, int] = {}

    def next(self, key: Any) -> int:
        """The next step for ``key`` (0 first)."""
        step = self._next.get(key, 0)
        self._next[key] = step + 1
        return step

    def metric(self, name: str, value: float, context: Context) -> MetricRecord:
        """A metric record at the next step of its sequence."""
        return MetricRecord(name, value, self.next((name, *sorted(context.items()))), context)


def event_records(end: Event, steps: Steps) -> Iterator[Record]:
    """The records for one finished event, from its start's and its own payload (LLM prompts
    and retrieval queries arrive with the start, answers with the end)."""
    payload = end.full_payload
    event_type = str(end.type)
    ids = {"event_type": event_type, "trace_id": str(end.trace_id), "event_id": str(end.id)}
    if end.type is EventType.LLM:
        yield from _llm_records(payload, ids, steps)
    elif end.type is EventType.CHUNKING:
        for node in payloads.nodes_of(payload.get(EventPayload.CHUNKS)):
            yield TextRecord("chunk", node.text, steps.next("chunk"), ids)
    elif end.type is EventType.RETRIEVE:
        yield from _retrieve_records(payload, ids, steps)
    if end.exception is not None:
        yield TextRecord("error", _describe(end.exception), steps.next("error"), ids)
    if end.duration_ns is not None:
        yield steps.metric("latency_ms", end.duration_ns / 1e6, {"event_type": event_type})


def trace_records(name: str, duration_ns: int | None, steps: Steps) -> Iterator[Record]:
    """The records for one finished trace: its latency."""
    if duration_ns is not None:
        yield steps.metric("trace_latency_ms", duration_ns / 1e6, {"trace_name": str(name)})


def _llm_records(payload: Mapping[str, Any], ids: Context, steps: Steps) -> Iterator[Record]:
    model = payloads.model_of(payload) or UNKNOWN_MODEL
    context = {**ids, "model": model}
    prompt = payloads.prompt_of(payload)
    response = payloads.completion_of(payload)
    if prompt is not None or response is not None:
        # One step for the pair, so the UI lines a prompt up with its response.
        step = steps.next("llm")
        if prompt is not None:
            yield TextRecord("prompt", prompt, step, context)
        if response is not None:
            yield TextRecord("response", response, step, context)
    usage = payloads.usage_of(payload)
    if usage is not None:
        token_context = {"event_type": ids["event_type"], "model": model}
        yield steps.metric("prompt_tokens", usage.prompt, token_context)
        yield steps.metric("completion_tokens", usage.completion, token_context)
        yield steps.metric("total_tokens", usage.total, token_context)


def _retrieve_records(payload: Mapping[str, Any], ids: Context, steps: Steps) -> Iterator[Record]:
    query = payload.get(EventPayload.QUERY_STR)
    if query is not None:
        yield TextRecord("query", payloads.text_of(query), steps.next("query"), ids)
    scores = payload.get(EventPayload.SCORES)
    if isinstance(scores, (str, bytes, Mapping)) or not isinstance(scores, Iterable):
        scores = None
    for node in payloads.nodes_of(payload.get(EventPayload.NODES), scores=scores):
        step = steps.next("retrieved")
        yield TextRecord("retrieved", node.text, step, ids)
        if node.score is not None:
            yield MetricRecord("retrieval_score", node.score, step, ids)


def _describe(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
