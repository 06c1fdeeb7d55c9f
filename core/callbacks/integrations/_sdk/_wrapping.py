"""Replacements for SDK resource methods: each call reported as one event, sync or async,
streamed or not, with every instrumentation step isolated from the application."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..._manager import CallbackManager
from ...events import EventType
from ._events import Call, StreamAccumulator
from ._streams import observe_stream
from ._support import error_payload, failed, strict


@dataclass(frozen=True)
class CallSpec:
    """How one resource method is reported."""

    event_type: EventType
    start_payload: Callable[[dict[str, Any]], dict[str, Any]]
    """From the call's keyword arguments (it may replace a one-shot iterable with a list)."""
    end_payload: Callable[[Any], dict[str, Any]]
    """From the method's result (not a stream)."""
    accumulator: Callable[[dict[str, Any]], StreamAccumulator] | None = None
    """For a streamed result: a new accumulator, given the call's keyword arguments."""
    is_stream: Callable[[dict[str, Any], Any], bool] = lambda kwargs, result: False
    request_id: Callable[[Any], str | None] = lambda result: None
    """The request id of a streamed result (read from its HTTP response headers)."""


def _begin(
    resolve: Callable[[], CallbackManager | None], spec: CallSpec, kwargs: dict[str, Any]
) -> Call | None:
    manager = None
    try:
        manager = resolve()
        if manager is None:
            return None
        return Call.start(manager, spec.event_type, spec.start_payload(kwargs))
    except Exception:
        if strict(manager):
            raise
        failed(f"starting a {spec.event_type.value} event")
        return None


def _finish_error(call: Call | None, error: BaseException) -> None:
    if call is None:
        return
    try:
        call.end(error_payload(error), error)
    except Exception:
        if strict(call._manager):
            raise
        failed("ending a failed SDK call's event")


def _finish(call: Call | None, spec: CallSpec, kwargs: dict[str, Any], result: Any) -> Any:
    """End the event for ``result``, or hand a stream over to be observed; returns ``result``."""
    if call is None:
        return result
    try:
        if spec.accumulator is not None and spec.is_stream(kwargs, result):
            accumulator = spec.accumulator(kwargs)
            accumulator.request_id = spec.request_id(result)
            return observe_stream(result, call, accumulator)
        payload = spec.end_payload(result)
    except Exception:
        if strict(call._manager):
            raise
        failed("reading an SDK response")
        payload = {}
    try:
        call.end(payload)
    except Exception:
        if strict(call._manager):
            raise
        failed("ending an SDK call's event")
    return result


def wrap_method(
    original: Callable[..., Any],
    spec: CallSpec,
    resolve: Callable[[], CallbackManager | None],
) -> Callable[..., Any]:
    """A replacement for a resource method (sync or ``async def``) that reports each call."""
    # The SDKs decorate their async methods (``required_args``), so look through wrappers.
    if inspect.iscoroutinefunction(original) or inspect.iscoroutinefunction(
        inspect.unwrap(original)
    ):

        @functools.wraps(original)
        async def async_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            call = _begin(resolve, spec, kwargs)
            try:
                result = await original(self, *args, **kwargs)
            except BaseException as error:
                _finish_error(call, error)
                raise
            return _finish(call, spec, kwargs, result)

        return async_wrapper

    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        call = _begin(resolve, spec, kwargs)
        try:
            result = original(self, *args, **kwargs)
        except BaseException as error:
            _finish_error(call, error)
            raise
        return _finish(call, spec, kwargs, result)

    return wrapper


class StreamManagerProxy:
    """Stands in for a lazy stream manager (Anthropic's ``messages.stream(...)``): the request,
    and so the event, starts when the ``with`` / ``async with`` block is entered, and the stream
    it yields is observed in place. Everything else is the manager's own."""

    def __init__(
        self,
        inner: Any,
        resolve: Callable[[], CallbackManager | None],
        spec: CallSpec,
        kwargs: dict[str, Any],
    ) -> None:
        self._cb_inner = inner
        self._cb_resolve = resolve
        self._cb_spec = spec
        self._cb_kwargs = kwargs
        self._cb_call: Call | None = None

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() sees the SDK's manager class
        return type(self._cb_inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cb_inner, name)

    def _observe(self, stream: Any) -> Any:
        return _finish(self._cb_call, self._cb_spec, self._cb_kwargs, stream)

    def __enter__(self) -> Any:
        self._cb_call = _begin(self._cb_resolve, self._cb_spec, self._cb_kwargs)
        try:
            stream = self._cb_inner.__enter__()
        except BaseException as error:
            _finish_error(self._cb_call, error)
            raise
        return self._observe(stream)

    def __exit__(self, *exc: Any) -> Any:
        return self._cb_inner.__exit__(*exc)

    async def __aenter__(self) -> Any:
        self._cb_call = _begin(self._cb_resolve, self._cb_spec, self._cb_kwargs)
        try:
            stream = await self._cb_inner.__aenter__()
        except BaseException as error:
            _finish_error(self._cb_call, error)
            raise
        return self._observe(stream)

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._cb_inner.__aexit__(*exc)


def wrap_stream_manager(
    original: Callable[..., Any],
    spec: CallSpec,
    resolve: Callable[[], CallbackManager | None],
) -> Callable[..., Any]:
    """A replacement for a method returning a lazy stream manager."""

    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        manager = original(self, *args, **kwargs)
        try:
            return StreamManagerProxy(manager, resolve, spec, kwargs)
        except Exception:
            failed("wrapping a stream manager")
            return manager

    return wrapper
