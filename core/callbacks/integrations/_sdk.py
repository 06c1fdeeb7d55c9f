"""What the OpenAI and Anthropic instrumentations share: patching resource methods (and undoing
it exactly), one event per request, streams observed in place, and the duplicate guard.

Nothing here imports an SDK. Each SDK module describes its calls with a :class:`CallSpec` and
this module does the wrapping, so isolation (an instrumentation bug never reaches the
application) is written once.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..events import Event, EventPayload, EventType
from ..hookspecs import hookimpl
from ..manager import CallbackManager

logger = logging.getLogger(__name__)

_P = EventPayload
_SENTINEL_TYPES = frozenset({"NotGiven", "Omit"})
_TRANSPORT_KWARGS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})


# -- failure isolation ---------------------------------------------------------------------------

_failures = 0
_failures_lock = threading.Lock()


def instrumentation_failures() -> int:
    """How many times extracting or reporting a call failed (each was logged, rate-limited)."""
    return _failures


def _failed(what: str) -> None:
    """Count and log (the first ten, then every thousandth) a failure of the instrumentation."""
    global _failures
    with _failures_lock:
        _failures += 1
        n = _failures
    if n <= 10 or n % 1000 == 0:
        logger.warning(
            "callbacks: %s failed (failure %d); the SDK call is unaffected", what, n, exc_info=True
        )


def _strict(manager: CallbackManager | None) -> bool:
    settings = getattr(manager, "settings", None)
    return bool(getattr(settings, "strict", False))


def given(value: Any) -> bool:
    """False for the SDKs' ``NOT_GIVEN`` / ``omit`` sentinels (and ``None``)."""
    return value is not None and type(value).__name__ not in _SENTINEL_TYPES


def parameters(kwargs: Mapping[str, Any], skip: frozenset[str]) -> dict[str, Any]:
    """Invocation parameters: the request's keyword arguments minus inputs and transport options."""
    return {
        k: v for k, v in kwargs.items() if k not in skip and k not in _TRANSPORT_KWARGS and given(v)
    }


def plain(obj: Any) -> Any:
    """A plain dict of an SDK model (only the fields the provider sent), else ``obj`` itself."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json", exclude_unset=True)
        except Exception:
            return dump()
    return obj


def get(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` or ``obj.name``: SDK objects and the dicts a stream is assembled into."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


# -- the duplicate guard -------------------------------------------------------------------------


class _FrameworkGuard:
    """Knows which LLM and embedding events are open, so an SDK request made directly inside one
    (a LlamaIndex or LangChain model call already reported by its bridge) is not reported twice."""

    callbacks_delivery = "inline"

    def __init__(self) -> None:
        self.open: dict[str, EventType] = {}

    @hookimpl
    def on_llm_start(self, event: Event) -> None:
        """Remember an open LLM event."""
        self.open[event.id] = EventType.LLM

    @hookimpl
    def on_llm_end(self, event: Event) -> None:
        """Forget it."""
        self.open.pop(event.id, None)

    @hookimpl
    def on_embedding_start(self, event: Event) -> None:
        """Remember an open embedding event."""
        self.open[event.id] = EventType.EMBEDDING

    @hookimpl
    def on_embedding_end(self, event: Event) -> None:
        """Forget it."""
        self.open.pop(event.id, None)


GUARD_NAME = "callbacks-sdk-guard"
_guards: weakref.WeakKeyDictionary[CallbackManager, _FrameworkGuard] = weakref.WeakKeyDictionary()
_guards_lock = threading.Lock()


def guard_for(manager: CallbackManager) -> _FrameworkGuard | None:
    """The guard registered on ``manager`` (registered now if missing)."""
    guard = _guards.get(manager)
    if guard is not None:
        return guard
    with _guards_lock:
        guard = _guards.get(manager)
        if guard is None:
            guard = _FrameworkGuard()
            try:
                manager.register(guard, name=GUARD_NAME)
            except Exception:
                _failed("registering the SDK duplicate guard")
                return None
            _guards[manager] = guard
    return guard


def _suppressed(manager: CallbackManager, event_type: EventType) -> bool:
    # The guard is registered on every manager a request reports to (a new process-wide manager
    # after reset_manager() gets one at its first request).
    guard = guard_for(manager)
    current = manager.current_event_id()
    return current is not None and guard is not None and guard.open.get(current) is event_type


# -- one request, one event ----------------------------------------------------------------------


class Call:
    """One SDK request reported as one event. The event starts in a copy of the caller's context
    (so it nests under the caller's current event, but the caller's context is never changed,
    which matters for streams that outlive the call) and ends once, from any thread."""

    __slots__ = ("_manager", "_type", "_id", "_lock", "_ended", "started_ns")

    def __init__(self, manager: CallbackManager, event_type: EventType, event_id: str) -> None:
        self._manager = manager
        self._type = event_type
        self._id = event_id
        self._lock = threading.Lock()
        self._ended = False
        self.started_ns = time.monotonic_ns()

    @classmethod
    def start(
        cls, manager: CallbackManager, event_type: EventType, payload: Mapping[str, Any]
    ) -> Call | None:
        """Start the event; ``None`` when a framework already reports this request."""
        if _suppressed(manager, event_type):
            return None
        trace = manager.current_trace()
        if trace is not None and not trace.sampled:
            return None  # nothing would be recorded; its end would count as unmatched
        context = contextvars.copy_context()
        event_id = context.run(manager.on_event_start, event_type, payload)
        return cls(manager, event_type, event_id)

    def end(
        self, payload: Mapping[str, Any] | None, exception: BaseException | None = None
    ) -> None:
        """End the event (the first call wins)."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self._manager.on_event_end(self._type, payload, event_id=self._id, exception=exception)


# -- describing and wrapping calls ---------------------------------------------------------------


class StreamAccumulator:
    """Assembles a streamed reply from its chunks. SDK modules subclass it."""

    first_token_ns: int | None = None
    request_id: str | None = None

    def add(self, item: Any) -> None:
        """Take one chunk or event."""

    def payload(self) -> dict[str, Any]:
        """The end payload from what arrived so far."""
        return {}


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


def error_payload(error: BaseException) -> dict[str, Any]:
    """The request id an SDK error carries, if any."""
    request_id = getattr(error, "request_id", None)
    return {_P.REQUEST_ID.value: request_id} if request_id else {}


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
        if _strict(manager):
            raise
        _failed(f"starting a {spec.event_type.value} event")
        return None


def _finish_error(call: Call | None, error: BaseException) -> None:
    if call is None:
        return
    try:
        call.end(error_payload(error), error)
    except Exception:
        if _strict(call._manager):
            raise
        _failed("ending a failed SDK call's event")


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
        if _strict(call._manager):
            raise
        _failed("reading an SDK response")
        payload = {}
    try:
        call.end(payload)
    except Exception:
        if _strict(call._manager):
            raise
        _failed("ending an SDK call's event")
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


# -- streams -------------------------------------------------------------------------------------


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
            _failed("reading a stream chunk")

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
            _failed("assembling a streamed reply")
            payload = {_P.STREAM_END.value: how}
        try:
            self._call.end(payload, error)
        except Exception:
            _failed("ending a streamed SDK call's event")


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
            _failed("wrapping a stream manager")
            return manager

    return wrapper


# -- patching ------------------------------------------------------------------------------------


class Instrumentor:
    """Patches a set of resource methods for one SDK and restores them exactly.

    ``targets`` returns ``(class, method name, spec, kind)`` tuples, where ``kind`` is
    ``"method"`` or ``"stream_manager"``; it imports the SDK, on :meth:`instrument` only.
    """

    def __init__(self, sdk: str, targets: Callable[[], list[tuple[Any, str, CallSpec, str]]]):
        self.sdk = sdk
        self._targets = targets
        self._lock = threading.Lock()
        self._originals: list[tuple[Any, str, Any]] = []
        self._manager: CallbackManager | None = None

    @property
    def instrumented(self) -> bool:
        """True between :meth:`instrument` and :meth:`uninstrument`."""
        return bool(self._originals)

    def _resolve(self) -> CallbackManager | None:
        manager = self._manager
        if manager is not None:
            return manager
        from ..process import get_manager

        return get_manager()

    def instrument(
        self, manager: CallbackManager | None = None, *, guard_on: CallbackManager | None = None
    ) -> None:
        """Patch the SDK so every request reports to ``manager`` (``None``: the process-wide
        manager, resolved at each request). Idempotent; a second call only changes the manager."""
        with self._lock:
            self._manager = manager
            target = manager or guard_on
            if target is None:
                from ..process import get_manager

                target = get_manager()
            guard_for(target)
            if self._originals:
                return
            resolve = self._resolve
            for owner, attribute, spec, kind in self._targets():
                original = owner.__dict__[attribute]
                factory = wrap_stream_manager if kind == "stream_manager" else wrap_method
                wrapper = factory(original, spec, resolve)
                wrapper.__callbacks_original__ = original  # type: ignore[attr-defined]
                setattr(owner, attribute, wrapper)
                self._originals.append((owner, attribute, original))

    def uninstrument(self) -> None:
        """Put back the SDK's own methods (the very same function objects)."""
        with self._lock:
            while self._originals:
                owner, attribute, original = self._originals.pop()
                setattr(owner, attribute, original)
            self._manager = None


SDKS = ("openai", "anthropic")
"""SDKs the ``instrument`` setting accepts."""


def instrument_configured(manager: CallbackManager) -> None:
    """Apply the ``instrument`` setting of a newly built process-wide ``manager``: instrument each
    SDK named there, following the process-wide manager. A name that is not a known SDK, or an
    SDK that is not installed, is a :class:`ConfigError` naming it (``manager`` is then shut
    down)."""
    import importlib
    import importlib.util

    from ..errors import ConfigError

    names = list(manager.settings.instrument)
    origin = manager.config.host_origins.get("instrument")
    where = origin.describe() if origin is not None else "the instrument setting"
    try:
        for name in names:
            if name not in SDKS:
                raise ConfigError(
                    f"{where} names {name!r}, which is not an SDK callbacks can instrument; "
                    f"expected some of: {', '.join(SDKS)}"
                )
            if importlib.util.find_spec(name) is None:
                raise ConfigError(
                    f"{where} asks to instrument {name!r}, but the {name} SDK is not installed; "
                    f"install it (pip install 'callbacks-core[{name}]') or remove it from the list"
                )
            module = importlib.import_module(f"{__package__}.{name}")
            module._instrumentor.instrument(None, guard_on=manager)
    except BaseException:
        manager.shutdown()
        raise
