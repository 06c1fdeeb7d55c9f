"""Streams observed in place: the application keeps the SDK's own stream object; its event ends
once, when the stream is exhausted, closed, fails or is garbage-collected."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Iterator
from typing import Any

from ...events import EventPayload
from ._events import Call, StreamAccumulator
from ._support import error_payload, failed

_P = EventPayload


class _StreamState:
    """What one observed stream has seen; ends its event once (exhausted, closed, failed or
    abandoned). Holds no reference to the stream, so the stream can be garbage-collected."""

    __slots__ = ("_accumulator", "_call", "_finalizer")

    def __init__(self, call: Call, accumulator: StreamAccumulator) -> None:
        self._call = call
        self._accumulator = accumulator
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def add(self, item: Any) -> None:
        try:
            accumulator = self._accumulator
            if accumulator.first_token_ns is None:
                accumulator.add(item)
                if accumulator.first_token_ns is not None:
                    accumulator.first_token_ns -= self._call.started_ns
            else:
                accumulator.add(item)
        except Exception:
            failed("reading a stream chunk")

    def finish(self, how: str, error: BaseException | None = None) -> None:
        finalizer = self._finalizer
        if finalizer is not None:
            self._finalizer = None
            finalizer.detach()
        try:
            payload = self._accumulator.payload()
            payload[_P.STREAM_END.value] = how
            first = self._accumulator.first_token_ns
            if first is not None:
                payload[_P.TIME_TO_FIRST_TOKEN.value] = first
            if self._accumulator.request_id:
                payload[_P.REQUEST_ID.value] = self._accumulator.request_id
            if error is not None:
                payload.update(error_payload(error))
        except Exception:
            failed("assembling a streamed reply")
            payload = {_P.STREAM_END.value: how}
        try:
            self._call.end(payload, error)
        except Exception:
            failed("ending a streamed SDK call's event")


def _observed(inner: Iterator[Any], state: _StreamState) -> Iterator[Any]:
    try:
        for item in inner:
            state.add(item)
            yield item
    except GeneratorExit:
        state.finish("abandoned")
        raise
    except BaseException as error:
        state.finish("failed", error)
        raise
    state.finish("exhausted")


async def _observed_async(inner: Any, state: _StreamState) -> Any:
    try:
        async for item in inner:
            state.add(item)
            yield item
    except GeneratorExit:
        state.finish("abandoned")
        raise
    except BaseException as error:
        state.finish("failed", error)
        raise
    state.finish("exhausted")


def observe_stream(stream: Any, call: Call, accumulator: StreamAccumulator) -> Any:
    """Observe ``stream`` (the SDK's own ``Stream``, ``AsyncStream`` or ``MessageStream``) in place
    and return it: the application keeps the very object the SDK made, with its iterator and
    context-manager protocols. Every SDK stream pulls its items from ``self._iterator`` and
    releases the connection in ``close()``; both are replaced on the instance only."""
    state = _StreamState(call, accumulator)
    inner = getattr(stream, "_iterator", None)
    close = getattr(stream, "close", None)
    if inner is None or close is None:
        state.finish("unobserved")
        return stream
    is_async = hasattr(inner, "__anext__")
    stream._iterator = _observed_async(inner, state) if is_async else _observed(inner, state)
    if inspect.iscoroutinefunction(close):

        async def aclose(*args: Any, **kwargs: Any) -> Any:
            try:
                return await close(*args, **kwargs)
            finally:
                state.finish("closed")

        stream.close = aclose
    else:

        def sync_close(*args: Any, **kwargs: Any) -> Any:
            try:
                return close(*args, **kwargs)
            finally:
                state.finish("closed")

        stream.close = sync_close
    state._finalizer = weakref.finalize(stream, state.finish, "abandoned")
    return stream
