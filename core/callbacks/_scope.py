"""Scopes: the context managers that start and end events and traces.

Every way of emitting an event (``cm.event``, ``traced``, ``on_event_start/end``) drives one
:class:`EventScope`, and every scope works on the :class:`~._dispatch.Dispatcher`'s state.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, Literal

from ._dispatch import MAX_EVENTS_PER_TRACE, MAX_OPEN_EVENTS_PER_TRACE, Dispatcher, task_name
from ._owner import owner_alive
from ._trace import Trace, TraceState
from .events import EMPTY_PAYLOAD, ROOT, Event, EventPhase, EventType

__all__ = ["NOOP_SCOPE", "EventScope", "TraceScope", "new_event_id"]

logger = logging.getLogger(__name__)

_START = EventPhase.START
_new_tuple = tuple.__new__
_proxy = MappingProxyType
_monotonic_ns = time.monotonic_ns
_get_ident = threading.get_ident
_get_running_loop = asyncio._get_running_loop


def _id_stream() -> Iterator[str]:
    # A random per-process prefix keeps ids unique across processes; the chain runs in C, so
    # taking the next id is one call and atomic under the GIL.
    return map(f"{random.getrandbits(48):012x}-".__add__, map(str, itertools.count(1)))


_ids = _id_stream()


def _reseed_ids() -> None:
    global _ids
    _ids = _id_stream()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_ids)


def new_event_id() -> str:
    """A new event id, unique in this process (and, by its random prefix, across processes)."""
    return next(_ids)


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
        state = self._state
        return state.id if state is not None else None

    @property
    def trace_state(self) -> TraceState | None:
        """The host's state of the trace this event belongs to, once started."""
        return self._state

    @property
    def running(self) -> bool:
        """True once started (also when its trace is sampled out)."""
        return self._state is not None

    def on_end(self, payload: Mapping[Any, Any] | None = None) -> None:
        """Set (or add to) the payload of the end event."""
        if payload:
            self._end = {**self._end, **payload} if self._end else payload

    def __enter__(self) -> EventScope:
        # The start is built here, in one piece: on the hot path every extra call shows.
        dispatcher = self._dispatcher
        try:
            routes = dispatcher.routes[self._type]
            if routes is None:
                return self
            var = dispatcher.frame
            frame = var.get()
            if frame is None or frame[0].ended:
                state = dispatcher.open_trace(self._type.value, implicit=True)
                parent = ROOT
                self._implicit = True
            else:
                state, parent = frame
                if (
                    state.started >= MAX_EVENTS_PER_TRACE
                    or len(state.open) >= MAX_OPEN_EVENTS_PER_TRACE
                ):
                    dispatcher.retire(state)
                    state = dispatcher.open_trace(self._type.value, implicit=True)
                    parent = ROOT
                    self._implicit = True
            self._state = state
            if not state.sampled:
                self._start = None
                self._token = var.set((state, ROOT)) if self._implicit else None
                return self
            if self._parent_id is not None:
                parent = self._parent_id
            event_id = self._event_id or next(_ids)
            payload = self._payload
            start: Event = _new_tuple(
                Event,
                (
                    event_id,
                    self._type,
                    _START,
                    state.id,
                    parent,
                    _monotonic_ns(),
                    (
                        dispatcher.policy.payload(self._type, _START, payload)
                        if dispatcher.masking
                        else _proxy(dict(payload))
                    )
                    if payload
                    else EMPTY_PAYLOAD,
                    None,
                    None,
                    _get_ident(),
                    task_name() if _get_running_loop() is not None else None,
                    None,
                ),
            )
            self._start = start
            children = state.map.get(parent)
            if children is None:
                state.map[parent] = [event_id]
            else:
                children.append(event_id)
            state.open[event_id] = start
            state.started += 1
            self._token = var.set((state, event_id))
            inline, background = routes[0]
            for call, calls in inline:
                call(calls, start)
            for enqueue in background:
                enqueue(start)
        except Exception:
            if dispatcher.strict:
                raise
            logger.exception("callbacks: starting a %s event failed", self._type.value)
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> Literal[False]:
        dispatcher = self._dispatcher
        token = self._token
        if token is not None:
            self._token = None
            try:
                dispatcher.frame.reset(token)
            except ValueError:  # entered in another context (e.g. another task)
                dispatcher.reset_frame(token)
        state = self._state
        if state is None:
            return False
        try:
            start = self._start
            if start is not None:
                dispatcher.end(start, state, self._end, exc)
            if self._implicit:
                self._implicit = False
                dispatcher.close_trace(state)
            elif state.closing_since is not None:
                dispatcher.event_ended(state)
        except Exception:
            if dispatcher.strict:
                raise
            logger.exception("callbacks: ending a %s event failed", self._type.value)
        return False

    async def __aenter__(self) -> EventScope:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: object, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)

    def keep_open(self) -> tuple[Event | None, TraceState] | None:
        """After entering: leave the event as the parent in this context until it ends (the
        start/end API). Returns ``(start, trace)``, or ``None`` when nothing is to be ended
        (nobody listens, or a sampled-out event inside a trace)."""
        state = self._state
        if state is None or (self._start is None and not self._implicit):
            return None
        self._token = None
        return self._start, state

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
        """End the event with ``payload`` (once; later calls, and ends after its trace closed,
        are ignored); an implicit trace ends with it. For events whose context change was
        already undone (streams, the start/end API)."""
        self._end = payload
        self.__exit__(None, exception, None)


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
            if owner_alive(frame[0].owner):
                return frame[0].trace
            dispatcher.retire(frame[0])  # left open by a request that is gone
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
