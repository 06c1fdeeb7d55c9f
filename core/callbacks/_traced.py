"""The ``traced`` decorator: each call of a function (sync, async, generator or async
generator) is one event. A stream's event ends when the stream is exhausted or closed, and the
parent marker is set only around each step, so the consumer's events never nest under it."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

from ._dispatch import Dispatcher
from ._scope import EventScope
from .events import EventPayload, EventType

__all__ = ["DEFAULT_INPUT_KEY", "DEFAULT_OUTPUT_KEY", "traced_function"]

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
    get_dispatcher: Callable[[], Dispatcher],
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
            dispatcher = get_dispatcher()
            agen = fn(*args, **kwargs)
            if dispatcher.routes[event_type] is None:
                async for item in agen:
                    yield item
                return
            scope = EventScope(dispatcher, event_type, start_payload(args, kwargs))
            frame = scope.start_detached()
            var = dispatcher.frame
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
                            dispatcher.reset_frame(token)
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
                if scope.running:
                    scope.finish(end_payload(_collected(items)), error)

        return agen_wrapper

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            dispatcher = get_dispatcher()
            gen = fn(*args, **kwargs)
            if dispatcher.routes[event_type] is None:
                return (yield from gen)
            scope = EventScope(dispatcher, event_type, start_payload(args, kwargs))
            frame = scope.start_detached()
            var = dispatcher.frame
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
                            dispatcher.reset_frame(token)
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
                if scope.running:
                    scope.finish(end_payload(_collected(items)), error)
            return result

        return gen_wrapper

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            dispatcher = get_dispatcher()
            if dispatcher.routes[event_type] is None:
                return await fn(*args, **kwargs)
            with EventScope(dispatcher, event_type, start_payload(args, kwargs)) as scope:
                result = await fn(*args, **kwargs)
                scope.on_end(end_payload(result))
                return result

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        dispatcher = get_dispatcher()
        if dispatcher.routes[event_type] is None:
            return fn(*args, **kwargs)
        with EventScope(dispatcher, event_type, start_payload(args, kwargs)) as scope:
            result = fn(*args, **kwargs)
            scope.on_end(end_payload(result))
            return result

    return wrapper
