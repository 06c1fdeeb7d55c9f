"""Scopes that start and end events and traces, and the start/end (LlamaIndex-style) API.

Every way of emitting an event (``cm.event``, ``traced``, ``on_event_start/end``) drives one
:class:`EventScope`, and every scope drives the :class:`~._dispatch.Dispatcher`. The context
variable that marks the current parent is set only while the event's own code runs.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from typing import Any, Literal

from ._dispatch import Dispatcher, new_event_id
from ._trace import Trace, TraceState
from .events import ROOT, Event, EventType

__all__ = [
    "NOOP_SCOPE",
    "EventScope",
    "TraceScope",
    "end_pending_event",
    "end_trace",
    "start_pending_event",
    "start_trace",
]

logger = logging.getLogger(__name__)


class _NoopScope:
    """Returned when nobody listens: entering and leaving it does nothing."""

    __slots__ = ()
    id = None
    trace_id = None

    def __enter__(self) -> _NoopScope:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        return False

    async def __aenter__(self) -> _NoopScope:
        return self

    async def __aexit__(self, *exc: object) -> Literal[False]:
        return False

    def on_end(self, payload: Mapping[Any, Any] | None = None) -> None:
        """Ignored."""


NOOP_SCOPE = _NoopScope()


class EventScope:
    """One event: a context manager (sync or async) that starts the event on entry and ends it
    on exit, with the exception attached if the block raised. Call :meth:`on_end` inside the
    block to set the end payload."""

    __slots__ = (
        "_dispatcher",
        "_end",
        "_event_id",
        "_implicit",
        "_parent_id",
        "_payload",
        "_start",
        "_state",
        "_token",
        "_type",
    )

    def __init__(
        self,
        dispatcher: Dispatcher,
        event_type: EventType,
        payload: Mapping[Any, Any] | None,
        event_id: str | None = None,
        parent_id: str | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._type = event_type
        self._payload = payload
        self._event_id = event_id
        self._parent_id = parent_id
        self._end: Mapping[Any, Any] | None = None
        self._start: Event | None = None
        self._state: TraceState | None = None
        self._implicit = False
        self._token: contextvars.Token[Any] | None = None

    @property
    def id(self) -> str | None:
        """The event id, once started (``None`` if nobody listens or the trace is sampled out)."""
        start = self._start
        return start[0] if start is not None else None

    @property
    def trace_id(self) -> str | None:
        """The id of the trace this event belongs to, once started."""
        return self._state.id if self._state is not None else None

    @property
    def running(self) -> bool:
        """True between the start and the end (also when its trace is sampled out)."""
        return self._state is not None

    def on_end(self, payload: Mapping[Any, Any] | None = None) -> None:
        """Set (or add to) the payload of the end event."""
        if payload:
            self._end = {**self._end, **payload} if self._end else payload

    def __enter__(self) -> EventScope:
        try:
            self._start, self._state, self._token, self._implicit = self._dispatcher.start(
                self._type, self._payload, self._event_id, self._parent_id
            )
        except Exception:
            if self._dispatcher.strict:
                raise
            logger.exception("callbacks: starting a %s event failed", self._type.value)
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> Literal[False]:
        token = self._token
        if token is not None:
            self._token = None
            self._dispatcher.reset_frame(token)
        if self._state is not None:
            self.finish(self._end, exc)
        return False

    async def __aenter__(self) -> EventScope:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: object, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)

    def start_detached(self) -> tuple[TraceState, str] | None:
        """Start the event but leave the caller's context as it was; return the frame to set
        while the event's own code runs (for streams, whose consumer must not nest under it)."""
        self.__enter__()
        token = self._token
        if token is not None:
            self._token = None
            self._dispatcher.reset_frame(token)
        state = self._state
        if state is None:
            return None
        start = self._start
        return (state, start[0] if start is not None else ROOT)

    def finish(self, payload: Mapping[Any, Any] | None, exception: BaseException | None) -> None:
        """End the event (once; later calls, and ends after its trace closed, are ignored)
        without touching the context; an implicit trace ends with it."""
        dispatcher = self._dispatcher
        state = self._state
        if state is None:
            return
        try:
            start = self._start
            if start is not None:
                dispatcher.end(start, state, payload, exception)
            if self._implicit:
                self._implicit = False
                dispatcher.close_trace(state)
        except Exception:
            if dispatcher.strict:
                raise
            logger.exception("callbacks: ending a %s event failed", self._type.value)


class TraceScope:
    """One trace as a context manager (sync or async); it yields the :class:`Trace`. Inside an
    active (explicit) trace it joins that trace instead of starting another."""

    __slots__ = ("_dispatcher", "_name", "_state", "_token", "_trace_id")

    def __init__(self, dispatcher: Dispatcher, name: str, trace_id: str | None) -> None:
        self._dispatcher = dispatcher
        self._name = name
        self._trace_id = trace_id
        self._state: TraceState | None = None
        self._token: contextvars.Token[Any] | None = None

    def __enter__(self) -> Trace:
        dispatcher = self._dispatcher
        frame = dispatcher.current()
        if frame is not None and not frame[0].implicit:
            return frame[0].trace
        state = dispatcher.open_trace(self._name, implicit=False, trace_id=self._trace_id)
        self._state = state
        self._token = dispatcher.frame.set((state, ROOT))
        return state.trace

    def __exit__(self, *exc: object) -> Literal[False]:
        token, state = self._token, self._state
        if token is None or state is None:
            return False
        self._token = None
        self._dispatcher.reset_frame(token)
        try:
            self._dispatcher.close_trace(state)
        except Exception:
            logger.exception("callbacks: ending trace %r failed", self._name)
        return False

    async def __aenter__(self) -> Trace:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> Literal[False]:
        return self.__exit__(*exc)


# -- the start/end API (LlamaIndex style) --------------------------------------------------------


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
    state = scope._state
    if state is None or (scope._start is None and not scope._implicit):
        return event_id  # nobody listens, or sampled out
    scope._token = None  # the event stays the parent in this context until its end
    dispatcher.remember(event_id, scope, previous, scope._start, state)
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
    if frame is not None and not frame[0].implicit:
        frame[0].nesting += 1
        return frame[0].trace
    state = dispatcher.open_trace(name or "trace", implicit=False, trace_id=trace_id)
    state.previous = dispatcher.frame.get()
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
