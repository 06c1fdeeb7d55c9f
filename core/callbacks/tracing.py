"""Scopes that start and end events and traces, and the ``traced`` decorator.

The context variable that marks the current parent is set only while the event's own code runs:
for a generator, around each step, so the consumer's events never nest under the stream.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from .events import ROOT, EventPayload, EventType

if TYPE_CHECKING:
    from .manager import CallbackManager, _Live
    from .trace import Trace

__all__ = ["NOOP_SCOPE", "EventScope", "TraceScope", "traced_function"]

logger = logging.getLogger(__name__)

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


def _frame_of(live: _Live | None) -> tuple[Trace, str] | None:
    if live is None:
        return None
    start, trace, _ = live
    return (trace, start[0] if start is not None else ROOT)


def _reset(var: contextvars.ContextVar[Any], token: contextvars.Token[Any]) -> None:
    try:
        var.reset(token)
    except ValueError:
        # Exited in another context (e.g. another task): restore the value seen at entry.
        old = token.old_value
        var.set(None if old is contextvars.Token.MISSING else old)


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
    """One event as a context manager (sync or async). Use :meth:`on_end` to set the end payload."""

    __slots__ = (
        "_end",
        "_event_id",
        "_live",
        "_manager",
        "_parent_id",
        "_payload",
        "_token",
        "_type",
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
        self._end: Mapping[str, Any] | None = None
        self._live: _Live | None = None
        self._token: contextvars.Token[Any] | None = None

    @property
    def id(self) -> str | None:
        """The event id, once started (``None`` if the trace is sampled out)."""
        live = self._live
        return live[0][0] if live is not None and live[0] is not None else None

    @property
    def trace_id(self) -> str | None:
        """The id of the trace this event belongs to, once started."""
        return self._live[1].id if self._live is not None else None

    def on_end(self, payload: Mapping[Any, Any] | None = None) -> None:
        """Set (or add to) the payload of the end event."""
        if payload:
            self._end = {**self._end, **payload} if self._end else payload

    def __enter__(self) -> EventScope:
        manager = self._manager
        try:
            live = manager._begin(self._type, self._payload, self._event_id, self._parent_id)
        except Exception:
            if manager.settings.strict:
                raise
            logger.exception("callbacks: starting a %s event failed", self._type.value)
            return self
        if live is not None:
            self._live = live
            start = live[0]
            self._token = manager._frame.set((live[1], start[0] if start is not None else ROOT))
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> Literal[False]:
        if self._token is not None:
            _reset(self._manager._frame, self._token)
            self._token = None
        live = self._live
        if live is not None:
            try:
                self._manager._finish(live, self._end, exc)
            except Exception:
                if self._manager.settings.strict:
                    raise
                logger.exception("callbacks: ending a %s event failed", self._type.value)
        return False

    async def __aenter__(self) -> EventScope:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: object, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)


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
            live = manager._begin(event_type, start_payload(args, kwargs), None, None)
            frame = _frame_of(live)
            var = manager._frame
            items: list[Any] = []
            error: BaseException | None = None
            try:
                to_send: Any = None
                to_throw: BaseException | None = None
                while True:
                    token = var.set(frame)
                    try:
                        if to_throw is not None:
                            thrown, to_throw = to_throw, None
                            item = await agen.athrow(thrown)
                        else:
                            item = await agen.asend(to_send)
                    except StopAsyncIteration:
                        break
                    finally:
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
                if live is not None:
                    manager._finish(live, end_payload(_collected(items)), error)

        return agen_wrapper

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            manager = get_manager()
            gen = fn(*args, **kwargs)
            if manager._routes[event_type] is None:
                return (yield from gen)
            live = manager._begin(event_type, start_payload(args, kwargs), None, None)
            frame = _frame_of(live)
            var = manager._frame
            items: list[Any] = []
            error: BaseException | None = None
            result: Any = None
            try:
                to_send: Any = None
                to_throw: BaseException | None = None
                while True:
                    token = var.set(frame)
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
                if live is not None:
                    manager._finish(live, end_payload(_collected(items)), error)
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
