"""The events of the end-to-end app's queries, recorded once and replayed at any rate.

:func:`record_queries` runs the real LlamaIndex app of :mod:`benchmarks.e2e_app` with a small
inline recording plugin on a manager of its own, and keeps what the host emitted for each query:
the trace, then every event start and end in order with its type, its parent and its payload
(the objects LlamaIndex built: nodes, prompts, ``CompletionResponse``...). :func:`replay`
emits one recorded query into another manager through the public start/end API, with fresh
ids, so the sinks get the same types, nesting and payloads as from the app, as fast as the
caller likes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from callbacks import ROOT, CallbackManager, Event, EventType, Trace, hookimpl

__all__ = ["RecordedQuery", "Step", "record_queries", "replay"]


@dataclass(frozen=True)
class Step:
    """One event start or end of a recorded query. ``key`` and ``parent`` number the query's
    events (``parent`` is ``None`` at the trace's root)."""

    starts: bool
    type: EventType
    payload: Mapping[str, Any]
    key: int
    parent: int | None


@dataclass(frozen=True)
class RecordedQuery:
    """One query as the host emitted it: a trace and its event starts and ends, in order."""

    trace_name: str
    steps: tuple[Step, ...]

    @property
    def records(self) -> int:
        """Event starts and ends, plus the trace's start and end."""
        return len(self.steps) + 2


class _Recorder:
    """Keeps every trace start and end and every event start and end, in call order."""

    callbacks_name = "capacity-recorder"
    callbacks_delivery = "inline"

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []

    @hookimpl
    def on_trace_start(self, trace: Trace) -> None:
        self.items.append(("trace_start", trace))

    @hookimpl
    def on_trace_end(self, trace: Trace) -> None:
        self.items.append(("trace_end", trace))

    @hookimpl
    def on_event_start(self, event: Event) -> None:
        self.items.append(("event", event))

    @hookimpl
    def on_event_end(self, event: Event) -> None:
        self.items.append(("event", event))


def _queries(items: Sequence[tuple[str, Any]]) -> list[RecordedQuery]:
    queries: list[RecordedQuery] = []
    keys: dict[str, int] = {}
    steps: list[Step] = []
    name = ""
    for kind, item in items:
        if kind == "trace_start":
            keys, steps, name = {}, [], item.name
        elif kind == "trace_end":
            queries.append(RecordedQuery(name, tuple(steps)))
        else:
            if item.is_start:
                keys[item.id] = len(keys)
            parent = keys.get(item.parent_id) if item.parent_id != ROOT else None
            steps.append(Step(item.is_start, item.type, dict(item.payload), keys[item.id], parent))
    return queries


def record_queries(count: int, warmup: int = 2) -> list[RecordedQuery]:
    """Run the end-to-end app's query engine for ``warmup`` then ``count`` of its questions,
    and return the events of the last ``count``. LlamaIndex's global ``Settings`` are left
    with an empty callback manager."""
    from llama_index.core import Settings
    from llama_index.core.callbacks import CallbackManager as LlamaCallbackManager

    import callbacks.integrations.llama_index as callbacks_llama_index

    from .e2e_app import QUESTIONS, build_engine

    recorder = _Recorder()
    manager = CallbackManager([recorder], config={"plugins": []})
    Settings.callback_manager = LlamaCallbackManager([])
    callbacks_llama_index.install(manager)
    try:
        engine = build_engine(Settings.callback_manager)
        for question in QUESTIONS[:warmup]:
            engine.query(question)
        recorder.items.clear()
        for question in QUESTIONS[warmup : warmup + count]:
            engine.query(question)
    finally:
        callbacks_llama_index.uninstall(manager)
        Settings.callback_manager = LlamaCallbackManager([])
        manager.shutdown()
    return _queries(recorder.items)


def replay(manager: CallbackManager, query: RecordedQuery) -> None:
    """Emit ``query`` into ``manager``: its trace, and each event start and end with its
    recorded type, parent and payload (fresh ids)."""
    ids: dict[int, str] = {}
    manager.start_trace(query.trace_name)
    for step in query.steps:
        if step.starts:
            parent = ids[step.parent] if step.parent is not None else ROOT
            ids[step.key] = manager.on_event_start(step.type, step.payload, parent_id=parent)
        else:
            manager.on_event_end(step.type, step.payload, event_id=ids[step.key])
    manager.end_trace()
