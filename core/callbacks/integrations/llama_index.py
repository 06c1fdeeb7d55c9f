"""Send what LlamaIndex reports into ``callbacks``.

One line routes everything LlamaIndex reports, through both of its reporting systems, to the
installed ``callbacks`` plugins::

    import callbacks.integrations.llama_index as cb_llama
    cb_llama.install()   # a CallbacksHandler on Settings.callback_manager, and its span and
                         # event handlers on LlamaIndex's root instrumentation dispatcher

or attach a handler to one LlamaIndex ``CallbackManager`` (legacy callbacks only)::

    llama_cm.add_handler(CallbacksHandler(manager))

Legacy event types map one to one (``CBEventType`` values are :class:`callbacks.EventType`
values) and payloads are passed on as LlamaIndex built them (``NodeWithScore``, ``ChatMessage``,
``ChatResponse``...), keyed by the plain ``EventPayload`` strings; read them with
:mod:`callbacks.payloads`. LlamaIndex traces become host traces, whose per-context state keeps
concurrent ``aquery`` calls apart. A LlamaIndex ``root`` parent is never a LlamaIndex event on
the host side (LlamaIndex never makes LLM, embedding or chunking events parents), and a failure
is attached to the failed event and to each event it propagated through, instead of LlamaIndex's
extra start-only ``exception`` event. What only the instrumentation API reports (agents,
workflows, tools, rerankers...) comes from :mod:`callbacks.integrations.llama_index_spans`.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

try:
    from llama_index.core import Settings
    from llama_index.core.callbacks.base_handler import BaseCallbackHandler
    from llama_index.core.callbacks.schema import BASE_TRACE_EVENT, CBEventType
    from llama_index.core.callbacks.schema import EventPayload as LlamaEventPayload
    from llama_index.core.instrumentation import get_dispatcher
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "callbacks.integrations.llama_index needs llama-index-core; "
        "install it with: pip install 'callbacks-core[llama-index]'"
    ) from error

from .._manager import CallbackManager
from .._process import get_manager, peek_manager
from ..events import ROOT, EventType
from .llama_index_spans import RerankEvents, SpanBridge, snapshot_reply

__all__ = ["CallbacksHandler", "install", "uninstall"]

logger = logging.getLogger(__name__)

_TYPES: dict[Any, EventType] = {
    t: EventType(t.value) for t in CBEventType if t.value in EventType._value2member_map_
}
_EXCEPTION_KEY = LlamaEventPayload.EXCEPTION.value
# LlamaIndex never makes these parents (its LEAF_EVENTS), so neither does the host.
LEAF_TYPES = frozenset({EventType.LLM, EventType.EMBEDDING, EventType.CHUNKING})
_MAX_REMEMBERED = 10_000


class LegacyEvents:
    """What the legacy-callback bridge knows about the host events it started: each one's host
    parent (so a LlamaIndex ``root`` parent never becomes one of them) and the exceptions that
    failed one (so the events they propagate through are marked too). Bounded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parent: OrderedDict[str, str | None] = OrderedDict()
        self._leaf: set[str] = set()
        # Per exception: the events it failed or propagated through so far.
        self._failures: weakref.WeakKeyDictionary[BaseException, set[str]] = (
            weakref.WeakKeyDictionary()
        )

    def started(self, event_id: str, host_type: EventType, parent: str | None) -> None:
        """Remember an event the legacy bridge started, with the host parent it was given."""
        with self._lock:
            self._parent[event_id] = parent
            if host_type in LEAF_TYPES:
                self._leaf.add(event_id)
            while len(self._parent) > _MAX_REMEMBERED:
                old, _ = self._parent.popitem(last=False)
                self._leaf.discard(old)

    def anchor(self, manager: CallbackManager, *, leaves_only: bool = False) -> str | None:
        """The host parent for an event that LlamaIndex places at its root: the innermost current
        host event that the legacy bridge did not start (with ``leaves_only``, that is not a
        legacy leaf), ``ROOT`` when there is none in an active trace, else ``None``."""
        current = manager.current_event_id()
        with self._lock:
            while current is not None and current != ROOT and current in self._parent:
                if leaves_only and current not in self._leaf:
                    break
                current = self._parent[current]
        if current is None or current == ROOT:
            return ROOT if manager.current_trace() is not None else None
        return current

    def failed(self, error: BaseException, event_id: str | None) -> None:
        """Remember that ``error`` failed ``event_id`` (or was reported inside it)."""
        try:
            with self._lock:
                events = self._failures.setdefault(error, set())
                if event_id:
                    events.add(event_id)
        except TypeError:  # an exception type without weak references
            pass

    def propagating(self, event_id: str | None) -> BaseException | None:
        """The exception being handled on this thread, if it failed a child of ``event_id`` (or
        ``event_id`` itself): the event ends because that exception propagates through it. An
        event that merely ends inside an ``except`` block (the application's fallback) is not
        one of them."""
        error = sys.exc_info()[1]
        if error is None or not event_id:
            return None
        try:
            with self._lock:
                events = self._failures.get(error)
                if events is None:
                    return None
                parent = self._parent
                if event_id in events or any(parent.get(e) == event_id for e in events):
                    events.add(event_id)
                    return error
        except TypeError:
            pass
        return None


_PLAIN_KEYS: dict[Any, str] = {key: key.value for key in LlamaEventPayload}


def _plain_keys(payload: Mapping[Any, Any] | None) -> dict[str, Any] | None:
    """The payload keyed by plain strings (LlamaIndex keys it by its own ``EventPayload``)."""
    if not payload:
        return None
    # A lookup, not ``key.value``: an enum's value is a descriptor, slow on every event.
    plain = _PLAIN_KEYS.get
    return {plain(key, key): value for key, value in payload.items()}


_RESPONSE_KEY = LlamaEventPayload.RESPONSE.value
_COMPLETION_KEY = LlamaEventPayload.COMPLETION.value


def _snapshot_reply(payload: dict[str, Any] | None) -> dict[str, Any] | None:
    """The LLM end payload with the reply as it was when the call ended."""
    if payload:
        for key in (_RESPONSE_KEY, _COMPLETION_KEY):
            if payload.get(key) is not None:
                payload[key] = snapshot_reply(payload[key])
    return payload


def _exception_in(payload: Mapping[str, Any] | None) -> BaseException | None:
    value = payload.get(_EXCEPTION_KEY) if payload else None
    return value if isinstance(value, BaseException) else None


class CallbacksHandler(BaseCallbackHandler):
    """A LlamaIndex callback handler that forwards every event and trace to a
    :class:`callbacks.CallbackManager`.

    ``manager=None`` follows the process-wide manager (:func:`callbacks.get_manager`), resolved
    at each event so it survives :func:`callbacks.reset_manager`. Events listed in
    ``event_starts_to_ignore`` / ``event_ends_to_ignore`` are not forwarded (LlamaIndex filters
    them before calling the handler).
    """

    def __init__(
        self,
        manager: CallbackManager | None = None,
        event_starts_to_ignore: list[CBEventType] | None = None,
        event_ends_to_ignore: list[CBEventType] | None = None,
    ) -> None:
        super().__init__(event_starts_to_ignore or [], event_ends_to_ignore or [])
        self._manager = manager
        self.legacy = LegacyEvents()
        self.spans = SpanBridge(
            lambda: self.manager,
            self.legacy,
            manager,
            lambda llama_cm: (
                llama_cm is not None
                and _installed(list(getattr(llama_cm, "handlers", [])), manager) is not None
            ),
        )
        """The instrumentation-API side (agents, workflows, tools...), installed by
        :func:`install` on LlamaIndex's root dispatcher."""
        self.span_events = RerankEvents(self.spans)
        # Per context, for each LlamaIndex trace started here: did it open (or nest in) a host
        # trace through start_trace (True), or join an implicit one (False)?
        self._traces: contextvars.ContextVar[tuple[bool, ...]] = contextvars.ContextVar(
            f"callbacks_llama_index_traces_{id(self):x}", default=()
        )

    @property
    def manager(self) -> CallbackManager:
        """The :class:`callbacks.CallbackManager` events go to."""
        return self._manager if self._manager is not None else get_manager()

    def _parent_for(self, manager: CallbackManager, parent_id: str | None) -> str | None:
        # LlamaIndex's own parent keeps the host trace map equal to LlamaIndex's. Its "root"
        # means "no LlamaIndex parent": the innermost host event that is not a LlamaIndex one
        # (the application's, or an agent/tool step from the instrumentation bridge), else the
        # trace root. It never means the still-open LLM next to it.
        if parent_id and parent_id != BASE_TRACE_EVENT:
            return parent_id
        return self.legacy.anchor(manager)

    def on_event_start(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        parent_id: str = "",
        **kwargs: Any,
    ) -> str:
        """Forward the start of a LlamaIndex event; returns its id."""
        host_type = _TYPES.get(event_type)
        if host_type is None:
            return event_id
        try:
            plain = _plain_keys(payload)
            if host_type is EventType.EXCEPTION:
                # LlamaIndex's start-only report of a failure: the failed event carries it (and
                # each event it propagates through, see on_event_end), so no event of its own.
                error = _exception_in(plain)
                if error is not None:
                    parent = parent_id if parent_id and parent_id != BASE_TRACE_EVENT else None
                    self.legacy.failed(error, parent)
                return event_id
            manager = self.manager
            parent = self._parent_for(manager, parent_id)
            event_id = manager.on_event_start(
                host_type, plain, event_id=event_id or None, parent_id=parent
            )
            self.legacy.started(event_id, host_type, parent)
        except Exception:
            logger.exception("callbacks: forwarding a LlamaIndex %s start failed", event_type)
        return event_id

    def on_event_end(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        **kwargs: Any,
    ) -> None:
        """Forward the end of a LlamaIndex event. A failed one carries its exception, and so does
        an enclosing event ending while that exception propagates (LlamaIndex ends those without
        it)."""
        host_type = _TYPES.get(event_type)
        if host_type is None or host_type is EventType.EXCEPTION:
            return
        try:
            plain = _plain_keys(payload)
            if host_type is EventType.LLM:
                plain = _snapshot_reply(plain)
            error = _exception_in(plain)
            if error is not None:
                self.legacy.failed(error, event_id)
            else:
                error = self.legacy.propagating(event_id)
            self.manager.on_event_end(host_type, plain, event_id=event_id or None, exception=error)
        except Exception:
            logger.exception("callbacks: forwarding a LlamaIndex %s end failed", event_type)

    def start_trace(self, trace_id: str | None = None) -> None:
        """Start a host trace named after LlamaIndex's trace id (``"query"``, ``"chat"``...), or
        join the one running in this context (an agent run, the application's own trace)."""
        try:
            manager = self.manager
            current = manager.current_trace()
            # The host's start_trace opens a trace, or nests in the application's; an implicit
            # trace (an agent run's, a root-level event's) is joined without it.
            opens = current is None or not current.implicit
            if opens:
                manager.start_trace(trace_id or "llama-index")
            self._traces.set((*self._traces.get(), opens))
        except Exception:
            logger.exception("callbacks: starting a trace for LlamaIndex failed")

    def end_trace(
        self,
        trace_id: str | None = None,
        trace_map: dict[str, list[str]] | None = None,
    ) -> None:
        """End the host trace (it closes once its last event ends: a stream still being read
        keeps it open). LlamaIndex's ``trace_map`` is ignored: it is shared by all concurrent
        traces of a LlamaIndex ``CallbackManager``; the host keeps one per trace."""
        try:
            stack = self._traces.get()
            if not stack:
                return
            self._traces.set(stack[:-1])
            if stack[-1]:
                self.manager.end_trace(trace_id)
        except Exception:
            logger.exception("callbacks: ending a trace for LlamaIndex failed")


def _same_target(a: CallbackManager | None, b: CallbackManager | None) -> bool:
    # None stands for the process-wide manager, so it matches that manager given explicitly.
    if a is b:
        return True
    explicit = a if b is None else b if a is None else None
    return explicit is not None and explicit is peek_manager()


def _installed(handlers: list[Any], manager: CallbackManager | None) -> CallbacksHandler | None:
    for handler in handlers:
        if isinstance(handler, CallbacksHandler) and _same_target(handler._manager, manager):
            return handler
    return None


def install(manager: CallbackManager | None = None) -> CallbacksHandler:
    """Send LlamaIndex's events to ``manager``; returns the handler. Idempotent: a second call for
    the same manager returns the handler already installed.

    Both LlamaIndex reporting systems are bridged: a :class:`CallbacksHandler` is added to
    ``Settings.callback_manager`` (queries, retrieval, synthesis, embeddings, every LLM call), and
    its span and event handlers to LlamaIndex's root instrumentation dispatcher (workflow and agent
    runs, their steps, tool calls, rerankers, output parsers, ingestion pipelines). Work both
    systems report reaches the host once.

    ``manager=None`` means the process-wide :func:`callbacks.get_manager` (loaded now; a bad
    configuration is logged, not raised, unless ``CALLBACKS_STRICT=1``). Components built before
    the call see the handler too, since they share ``Settings.callback_manager``'s handler list.
    """
    if manager is None:
        get_manager()
    llama_cm = Settings.callback_manager
    handler = _installed(llama_cm.handlers, manager)
    if handler is None:
        handler = CallbacksHandler(manager)
        llama_cm.add_handler(handler)
    dispatcher = get_dispatcher()
    if handler.spans not in dispatcher.span_handlers:
        dispatcher.add_span_handler(handler.spans)
    if handler.span_events not in dispatcher.event_handlers:
        dispatcher.add_event_handler(handler.span_events)
    return handler


def uninstall(manager: CallbackManager | None = None) -> bool:
    """Remove what :func:`install` added for ``manager`` (also its instrumentation handlers
    when the callback handler was already removed from ``Settings.callback_manager``); True if
    there was something."""
    llama_cm = Settings.callback_manager
    handler = _installed(llama_cm.handlers, manager)
    if handler is not None:
        llama_cm.remove_handler(handler)
    dispatcher = get_dispatcher()
    spans = [
        h
        for h in dispatcher.span_handlers
        if isinstance(h, SpanBridge) and _same_target(h.target, manager)
    ]
    dispatcher.span_handlers = [h for h in dispatcher.span_handlers if h not in spans]
    dispatcher.event_handlers = [
        h
        for h in dispatcher.event_handlers
        if not (isinstance(h, RerankEvents) and h.spans in spans)
    ]
    return handler is not None or bool(spans)
