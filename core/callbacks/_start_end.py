"""The start/end API (LlamaIndex style): ``on_event_start``/``on_event_end`` with a pending
table of events awaiting their end, and ``start_trace``/``end_trace`` with a nesting count."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._dispatch import Dispatcher
from ._owner import owner_alive, trace_owner
from ._scope import EventScope, new_event_id
from ._trace import Trace
from .events import ROOT, EventType

__all__ = ["end_pending_event", "end_trace", "start_pending_event", "start_trace"]


def start_pending_event(
    dispatcher: Dispatcher,
    event_type: EventType,
    payload: Mapping[Any, Any] | None,
    event_id: str | None,
    parent_id: str | None,
) -> str:
    """Start an event that stays the parent in this context until :func:`end_pending_event`."""
    event_id = event_id or new_event_id()
    if dispatcher.routes[event_type] is None:
        return event_id
    previous = dispatcher.frame.get()
    scope = EventScope(dispatcher, event_type, payload, event_id, parent_id)
    scope.__enter__()
    kept = scope.keep_open()
    if kept is not None:
        dispatcher.remember(event_id, scope, previous, *kept)
    elif scope.trace_state is not None:
        # Sampled out: its end is expected, so it must not count as an unmatched end.
        dispatcher.remember(event_id, scope, previous, None, scope.trace_state)
    return event_id


def end_pending_event(
    dispatcher: Dispatcher,
    event_type: EventType,
    payload: Mapping[Any, Any] | None,
    event_id: str | None,
    exception: BaseException | None,
) -> None:
    """End an event of :func:`start_pending_event`; an unknown id is counted and ignored."""
    entry = dispatcher.pending.pop(event_id, None) if event_id is not None else None
    if entry is None:
        if dispatcher.routes[event_type] is not None:
            next(dispatcher.counts["unmatched_ends"])
        return
    scope, previous, _, _ = entry
    frame = dispatcher.frame.get()
    if frame is not None and frame[1] == event_id:
        dispatcher.frame.set(previous)
    scope.finish(payload, exception)


def start_trace(dispatcher: Dispatcher, name: str | None, trace_id: str | None) -> Trace:
    """Start a trace in this context; nested calls are counted and only the outermost starts
    one."""
    frame = dispatcher.current()
    previous = dispatcher.frame.get()
    if frame is not None and not frame[0].implicit:
        joined = frame[0]
        if owner_alive(joined.owner):
            joined.nesting += 1
            return joined.trace
        # The request that opened it is gone without end_trace (a pooled thread, a reused
        # task): a fresh request gets its own trace.
        previous = joined.previous
        dispatcher.retire(joined)
    state = dispatcher.open_trace(name or "trace", implicit=False, trace_id=trace_id)
    state.owner = trace_owner()
    state.previous = previous
    state.nesting = 1
    dispatcher.frame.set((state, ROOT))
    return state.trace


def end_trace(dispatcher: Dispatcher) -> Trace | None:
    """End the trace :func:`start_trace` started in this context (the outermost call ends it)."""
    frame = dispatcher.current()
    if frame is None:
        return None
    state = frame[0]
    state.nesting -= 1
    if state.nesting > 0:
        return state.trace
    dispatcher.frame.set(state.previous)
    dispatcher.close_trace(state)
    return state.trace
