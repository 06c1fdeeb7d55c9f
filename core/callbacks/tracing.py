"""Scopes that start and end events and traces, and the ``traced`` decorator.

The context variable that marks the current parent is set only while the event's own code runs:
for a generator, around each step, so the consumer's events never nest under the stream.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from .events import EMPTY_PAYLOAD, ROOT, Event, EventPayload, EventPhase, EventType

if TYPE_CHECKING:
    from .manager import CallbackManager
    from .trace import Trace

__all__ = ["NOOP_SCOPE", "EventScope", "TraceScope", "new_event_id", "traced_function"]

logger = logging.getLogger(__name__)

_START = EventPhase.START
_END = EventPhase.END
_new_tuple = tuple.__new__
_proxy = MappingProxyType
_monotonic_ns = time.monotonic_ns
_get_ident = threading.get_ident
_get_running_loop = asyncio._get_running_loop
_current_task = asyncio.current_task

_P = EventPayload
DEFAULT_INPUT_KEY: dict[EventType, str] = {
    EventType.CHUNKING: _P.DOCUMENTS,
    EventType.NODE_PARSING: _P.DOCUMENTS,
    EventType.EMBEDDING: _P.CHUNKS,
    EventType.LLM: _P.PROMPT,
    EventType.QUERY: _P.QUERY_STR,
    EventType.RETRIEVE: _P.QUERY_STR,
    EventType.SYNTHESIZE: _P.QUERY_STR,
    EventType.TREE: _P.CHUNKS,
    EventType.SUB_QUESTION: _P.QUERY_STR,
    EventType.TEMPLATING: _P.TEMPLATE,
    EventType.FUNCTION_CALL: _P.FUNCTION_CALL,
    EventType.RERANKING: _P.QUERY_STR,
    EventType.AGENT_STEP: _P.QUERY_STR,
}
"""Where :meth:`CallbackManager.traced` puts a function's first argument, per event type."""

DEFAULT_OUTPUT_KEY: dict[EventType, str] = {
    EventType.CHUNKING: _P.CHUNKS,
    EventType.NODE_PARSING: _P.NODES,
    EventType.EMBEDDING: _P.EMBEDDINGS,
    EventType.LLM: _P.COMPLETION,
    EventType.QUERY: _P.RESPONSE,
    EventType.RETRIEVE: _P.NODES,
    EventType.SYNTHESIZE: _P.RESPONSE,
    EventType.TREE: _P.RESPONSE,
    EventType.SUB_QUESTION: _P.RESPONSE,
    EventType.TEMPLATING: _P.PROMPT,
    EventType.FUNCTION_CALL: _P.FUNCTION_OUTPUT,
    EventType.RERANKING: _P.NODES,
    EventType.AGENT_STEP: _P.RESPONSE,
}
"""Where :meth:`CallbackManager.traced` puts a function's result, per event type."""


def _restore(var: contextvars.ContextVar[Any], token: contextvars.Token[Any]) -> None:
    """Undo ``var.set`` from another context (e.g. another task), where ``reset`` refuses."""
    old = token.old_value
    var.set(None if old is contextvars.Token.MISSING else old)


def _reset(var: contextvars.ContextVar[Any], token: contextvars.Token[Any]) -> None:
    try:
        var.reset(token)
    except ValueError:
        _restore(var, token)


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


def _task_name() -> str | None:
    loop = _get_running_loop()
    if loop is None:
        return None
    task = _current_task(loop)
    return task.get_name() if task is not None else None


def _start_detached(scope: EventScope) -> tuple[Trace, str] | None:
    """Start ``scope`` and leave the caller's context as it was; return the frame to set while
    the event's own code runs (for streams)."""
    scope.__enter__()
    token = scope._token
    if token is not None:
        scope._token = None
        _reset(scope._manager._frame, token)
    return scope.frame


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
    block to set the end payload. The manager's other entry points (``on_event_start``,
    ``traced``) drive the same object, so there is one implementation of an event's life."""

    __slots__ = (
        "_manager",
        "_type",
        "_payload",
        "_event_id",
        "_parent_id",
        "_end",
        "_start",
        "_trace",
        "_implicit",
        "_token",
    )

    def __init__(
        self,
        manager: CallbackManager,
        event_type: EventType,
        payload: Mapping[Any, Any] | None,
        event_id: str | None,
        parent_id: str | None,
    ) -> None:
        self._manager = manager
        self._type = event_type
        self._payload = payload
        self._event_id = event_id
        self._parent_id = parent_id
        self._end: Mapping[Any, Any] | None = None
        self._start: Event | None = None
        self._trace: Trace | None = None
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
        return self._trace.id if self._trace is not None else None

    @property
    def frame(self) -> tuple[Trace, str] | None:
        """The context value that makes later events children of this one."""
        if self._trace is None:
            return None
        start = self._start
        return (self._trace, start[0] if start is not None else ROOT)

    def on_end(self, payload: Mapping[Any, Any] | None = None) -> None:
        """Set (or add to) the payload of the end event."""
        if payload:
            self._end = {**self._end, **payload} if self._end else payload

    def __enter__(self) -> EventScope:
        manager = self._manager
        try:
            routes = manager._routes[self._type]
            if routes is None:
                return self
            var = manager._frame
            frame = var.get()
            if frame is None or frame[0].end_time_ns is not None:
                trace = manager._open_trace(self._type.value, implicit=True)
                parent = ROOT
                self._implicit = True
            else:
                trace, parent = frame
            self._trace = trace
            if not trace.sampled:
                if self._implicit:
                    self._token = var.set((trace, ROOT))
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
                    trace.id,
                    parent,
                    _monotonic_ns(),
                    (manager._freeze(payload) if manager._masking else _proxy(dict(payload)))
                    if payload
                    else EMPTY_PAYLOAD,
                    None,
                    None,
                    _get_ident(),
                    _task_name() if _get_running_loop() is not None else None,
                    None,
                ),
            )
            self._start = start
            children = trace._map.get(parent)
            if children is None:
                trace._map[parent] = [event_id]
            else:
                children.append(event_id)
            trace._open[event_id] = start
            self._token = var.set((trace, event_id))
            # Delivery is written out here and in finish() rather than shared: on the hot path a
            # helper call costs more than the loop itself.
            inline, background = routes[0]
            for channel, calls in inline:
                for hook, fn in calls:
                    try:
                        fn(start)
                    except Exception as error:
                        channel.record_error(hook, error)
                next(channel._delivered)
            for channel in background:
                channel.enqueue(start)
        except Exception:
            if manager.settings.strict:
                raise
            logger.exception("callbacks: starting a %s event failed", self._type.value)
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> Literal[False]:
        token = self._token
        if token is not None:
            self._token = None
            try:
                self._manager._frame.reset(token)
            except ValueError:
                _restore(self._manager._frame, token)
        if self._trace is not None:
            self.finish(self._end, exc)
        return False

    async def __aenter__(self) -> EventScope:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: object, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)

    def finish(self, payload: Mapping[Any, Any] | None, exception: BaseException | None) -> None:
        """End the event (once; later calls and ends after its trace closed are ignored) without
        touching the context."""
        manager = self._manager
        start = self._start
        trace = self._trace
        assert trace is not None
        try:
            if start is not None and trace._open.pop(start[0], None) is not None:
                now = _monotonic_ns()
                duration = now - start[5]
                thread = _get_ident()
                end: Event = _new_tuple(
                    Event,
                    (
                        start[0],
                        start[1],
                        _END,
                        start[3],
                        start[4],
                        now,
                        (
                            _proxy(dict(payload))
                            if not manager._masking
                            else manager._freeze(payload)
                        )
                        if payload
                        else EMPTY_PAYLOAD,
                        duration,
                        exception,
                        thread,
                        start[10] if thread == start[9] else _task_name(),
                        start,
                    ),
                )
                durations = trace._durations.get(start[1])
                if durations is None:
                    trace._durations[start[1]] = [duration]
                else:
                    durations.append(duration)
                routes = manager._routes[start[1]]
                if routes is not None:
                    inline, background = routes[1]
                    for channel, calls in inline:
                        for hook, fn in calls:
                            try:
                                fn(end)
                            except Exception as error:
                                channel.record_error(hook, error)
                        next(channel._delivered)
                    for channel in background:
                        channel.enqueue(end)
            if self._implicit:
                self._implicit = False
                manager._close_trace(trace)
        except Exception:
            if manager.settings.strict:
                raise
            logger.exception("callbacks: ending a %s event failed", self._type.value)


class TraceScope:
    """One trace as a context manager (sync or async); it yields the :class:`Trace`."""

    __slots__ = ("_manager", "_name", "_token", "_trace", "_trace_id")

    def __init__(self, manager: CallbackManager, name: str, trace_id: str | None) -> None:
        self._manager = manager
        self._name = name
        self._trace_id = trace_id
        self._trace: Trace | None = None
        self._token: contextvars.Token[Any] | None = None

    def __enter__(self) -> Trace:
        manager = self._manager
        frame = manager._frame.get()
        if frame is not None and frame[0].end_time_ns is None and not frame[0].implicit:
            self._trace = frame[0]
            return frame[0]
        trace = manager._open_trace(self._name, implicit=False, trace_id=self._trace_id)
        self._trace = trace
        self._token = manager._frame.set((trace, ROOT))
        return trace

    def __exit__(self, *exc: object) -> Literal[False]:
        if self._token is None:
            return False
        _reset(self._manager._frame, self._token)
        self._token = None
        assert self._trace is not None
        try:
            self._manager._close_trace(self._trace)
        except Exception:
            logger.exception("callbacks: ending trace %r failed", self._name)
        return False

    async def __aenter__(self) -> Trace:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> Literal[False]:
        return self.__exit__(*exc)


def _input_getter(fn: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
    """Reads the first argument that is not ``self``/``cls``."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    skip = 1 if params and params[0].name in ("self", "cls") else 0
    if len(params) <= skip or params[skip].kind in (params[skip].VAR_KEYWORD,):
        return lambda args, kwargs: None
    name = params[skip].name

    def get(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if len(args) > skip:
            return args[skip]
        return kwargs.get(name)

    return get


def _collected(items: list[Any]) -> Any:
    if items and all(isinstance(i, str) for i in items):
        return "".join(items)
    return items


def traced_function(
    get_manager: Callable[[], CallbackManager],
    fn: Callable[..., Any],
    event_type: EventType,
    payload: Callable[..., Mapping[str, Any]] | None,
    output_key: str | None,
) -> Callable[..., Any]:
    """Wrap ``fn`` so each call is one event; see :meth:`CallbackManager.traced`."""
    out_key = output_key or DEFAULT_OUTPUT_KEY.get(event_type)
    in_key = DEFAULT_INPUT_KEY.get(event_type)
    first_input = _input_getter(fn)

    def start_payload(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Mapping[str, Any] | None:
        if payload is not None:
            try:
                return payload(*args, **kwargs)
            except Exception:
                logger.exception("callbacks: the payload function of %s raised", fn.__qualname__)
                return None
        value = first_input(args, kwargs)
        return {in_key: value} if in_key is not None and value is not None else None

    def end_payload(result: Any) -> Mapping[str, Any] | None:
        return {out_key: result} if out_key is not None and result is not None else None

    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
            manager = get_manager()
            agen = fn(*args, **kwargs)
            if manager._routes[event_type] is None:
                async for item in agen:
                    yield item
                return
            scope = EventScope(manager, event_type, start_payload(args, kwargs), None, None)
            frame = _start_detached(scope)
            var = manager._frame
            items: list[Any] = []
            error: BaseException | None = None
            try:
                to_send: Any = None
                to_throw: BaseException | None = None
                while True:
                    token = var.set(frame) if frame is not None else None
                    try:
                        if to_throw is not None:
                            thrown, to_throw = to_throw, None
                            item = await agen.athrow(thrown)
                        else:
                            item = await agen.asend(to_send)
                    except StopAsyncIteration:
                        break
                    finally:
                        if token is not None:
                            _reset(var, token)
                    items.append(item)
                    try:
                        to_send = yield item
                    except GeneratorExit:
                        await agen.aclose()
                        raise
                    except BaseException as thrown_in:
                        to_throw = thrown_in
            except GeneratorExit:
                raise
            except BaseException as exc:
                error = exc
                raise
            finally:
                if scope._trace is not None:
                    scope.finish(end_payload(_collected(items)), error)

        return agen_wrapper

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            manager = get_manager()
            gen = fn(*args, **kwargs)
            if manager._routes[event_type] is None:
                return (yield from gen)
            scope = EventScope(manager, event_type, start_payload(args, kwargs), None, None)
            frame = _start_detached(scope)
            var = manager._frame
            items: list[Any] = []
            error: BaseException | None = None
            result: Any = None
            try:
                to_send: Any = None
                to_throw: BaseException | None = None
                while True:
                    token = var.set(frame) if frame is not None else None
                    try:
                        if to_throw is not None:
                            thrown, to_throw = to_throw, None
                            item = gen.throw(thrown)
                        else:
                            item = gen.send(to_send)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    finally:
                        if token is not None:
                            _reset(var, token)
                    items.append(item)
                    try:
                        to_send = yield item
                    except GeneratorExit:
                        gen.close()
                        raise
                    except BaseException as thrown_in:
                        to_throw = thrown_in
            except GeneratorExit:
                raise
            except BaseException as exc:
                error = exc
                raise
            finally:
                if scope._trace is not None:
                    scope.finish(end_payload(_collected(items)), error)
            return result

        return gen_wrapper

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            manager = get_manager()
            if manager._routes[event_type] is None:
                return await fn(*args, **kwargs)
            with manager.event(event_type, start_payload(args, kwargs)) as scope:
                result = await fn(*args, **kwargs)
                scope.on_end(end_payload(result))
                return result

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        manager = get_manager()
        if manager._routes[event_type] is None:
            return fn(*args, **kwargs)
        with manager.event(event_type, start_payload(args, kwargs)) as scope:
            result = fn(*args, **kwargs)
            scope.on_end(end_payload(result))
            return result

    return wrapper
