"""Turn finished events into the texts and metrics to track, without touching Aim.

Sequences are a bounded set: a sequence's context names only what has few values (the event
type, the model, where token counts came from), never a trace or event id, so a long-running app
adds steps to the same sequences instead of creating new ones. Which trace and event a text
came from is tracked as text too, in a ``<name>_event`` sequence of the same context and step.

Sequence names and contexts (what a reader passes to ``run.get_text_sequence(name, context)``
or ``run.get_metric(name, context)``):

========================  ======  ======================================================
name                      kind    context
========================  ======  ======================================================
``prompt``, ``response``  text    ``{event_type: "llm", model}``; one step per call
``chunk``                 text    ``{event_type: "chunking"}``
``query``, ``retrieved``  text    ``{event_type: "retrieve"}``
``retrieval_score``       metric  ``{event_type: "retrieve"}``, same step as its text
``error``                 text    ``{event_type}`` (any failed event)
``<name>_event``          text    ``"trace_id=<id> event_id=<id>"`` in the context of text
                                  sequence ``<name>`` (prompt, chunk, query, retrieved,
                                  error), at the step of the event's first text there
``latency_ms``            metric  ``{event_type}``
``prompt_tokens``,        metric  ``{event_type: "llm", model, token_source}`` for every LLM
``completion_tokens``,            call; ``token_source`` is ``provider`` (reported) or
``total_tokens``                  ``estimate`` (counted with tiktoken)
``trace_latency_ms``      metric  ``{trace_name}``
========================  ======  ======================================================

Steps increase per sequence name (a prompt and its response share one step).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from callbacks import Event, EventPayload, EventType, payloads
from callbacks.collect import EventPair, describe_error
from callbacks.tokencount import llm_token_count

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
    """Step counters: one per text name (and ``event`` sequence), one per metric sequence."""

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
    context = {"event_type": event_type}
    ids = f"trace_id={end.trace_id} event_id={end.id}"
    if end.type is EventType.LLM:
        yield from _llm_records(end, payload, context, ids, steps)
    elif end.type is EventType.CHUNKING:
        chunks = payloads.nodes_of(payload.get(EventPayload.CHUNKS))
        for i, node in enumerate(chunks):
            step = steps.next("chunk")
            if i == 0:
                yield _ids_record(step, context, ids, "chunk")
            yield TextRecord("chunk", node.text, step, context)
    elif end.type is EventType.RETRIEVE:
        yield from _retrieve_records(payload, context, ids, steps)
    error = EventPair(end.start, end).error
    if error is not None:
        step = steps.next("error")
        yield _ids_record(step, context, ids, "error")
        yield TextRecord("error", describe_error(error), step, context)
    if end.duration_ns is not None:
        yield steps.metric("latency_ms", end.duration_ns / 1e6, context)


def trace_records(name: str, duration_ns: int | None, steps: Steps) -> Iterator[Record]:
    """The records for one finished trace: its latency."""
    if duration_ns is not None:
        yield steps.metric("trace_latency_ms", duration_ns / 1e6, {"trace_name": str(name)})


def _ids_record(step: int, context: Context, ids: str, of: str) -> TextRecord:
    return TextRecord(f"{of}_event", ids, step, context)


def _llm_records(
    end: Event, payload: Mapping[str, Any], base: Context, ids: str, steps: Steps
) -> Iterator[Record]:
    model = payloads.model_of(payload) or UNKNOWN_MODEL
    context = {**base, "model": model}
    prompt = payloads.prompt_of(payload)
    response = payloads.completion_of(payload)
    if prompt is not None or response is not None:
        # One step for the pair, so the UI lines a prompt up with its response.
        step = steps.next("llm")
        yield _ids_record(step, context, ids, "prompt")
        if prompt is not None:
            yield TextRecord("prompt", prompt, step, context)
        if response is not None:
            yield TextRecord("response", response, step, context)
    count = llm_token_count(end)
    if count is not None:
        token_context = {**context, "token_source": count.source}
        yield steps.metric("prompt_tokens", count.prompt, token_context)
        yield steps.metric("completion_tokens", count.completion, token_context)
        yield steps.metric("total_tokens", count.total, token_context)


def _retrieve_records(
    payload: Mapping[str, Any], context: Context, ids: str, steps: Steps
) -> Iterator[Record]:
    query = payload.get(EventPayload.QUERY_STR)
    if query is not None:
        step = steps.next("query")
        yield _ids_record(step, context, ids, "query")
        yield TextRecord("query", payloads.text_of(query), step, context)
    scores = payload.get(EventPayload.SCORES)
    if isinstance(scores, (str, bytes, Mapping)) or not isinstance(scores, Iterable):
        scores = None
    for i, node in enumerate(payloads.nodes_of(payload.get(EventPayload.NODES), scores=scores)):
        step = steps.next("retrieved")
        if i == 0:
            yield _ids_record(step, context, ids, "retrieved")
        yield TextRecord("retrieved", node.text, step, context)
        if node.score is not None:
            yield MetricRecord("retrieval_score", node.score, step, context)
