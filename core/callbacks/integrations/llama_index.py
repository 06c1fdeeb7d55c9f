"""Send LlamaIndex's callback events into ``callbacks``.

One line routes everything LlamaIndex reports through its callback system to the installed
``callbacks`` plugins::

    import callbacks.integrations.llama_index as cb_llama
    cb_llama.install()            # adds a CallbacksHandler to Settings.callback_manager

or attach a handler to one LlamaIndex ``CallbackManager``::

    llama_cm.add_handler(CallbacksHandler(manager))

Event types map one to one (``CBEventType`` values are :class:`callbacks.EventType` values) and
payloads are passed on as LlamaIndex built them (``NodeWithScore``, ``ChatMessage``,
``ChatResponse``...), keyed by the plain ``EventPayload`` strings; read them with
:mod:`callbacks.payloads`. LlamaIndex traces become host traces, whose per-context state keeps
concurrent ``aquery`` calls apart.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from typing import Any

try:
    from llama_index.core import Settings
    from llama_index.core.callbacks.base_handler import BaseCallbackHandler
    from llama_index.core.callbacks.schema import BASE_TRACE_EVENT, CBEventType
    from llama_index.core.callbacks.schema import EventPayload as LlamaEventPayload
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "callbacks.integrations.llama_index needs llama-index-core; "
        "install it with: pip install 'callbacks[llama-index]'"
    ) from error

from .._manager import CallbackManager
from .._process import get_manager, peek_manager
from .._trace import Trace
from ..events import ROOT, EventType

__all__ = ["CallbacksHandler", "install", "uninstall"]

logger = logging.getLogger(__name__)

_TYPES: dict[Any, EventType] = {
    t: EventType(t.value) for t in CBEventType if t.value in EventType._value2member_map_
}
_EXCEPTION_KEY = LlamaEventPayload.EXCEPTION.value


def _plain_keys(payload: Mapping[Any, Any] | None) -> dict[str, Any] | None:
    """The payload keyed by plain strings (LlamaIndex keys it by its own ``EventPayload``)."""
    if not payload:
        return None
    return {getattr(key, "value", key): value for key, value in payload.items()}


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
        # The host trace this handler opened in the current context (with the one before it),
        # so LlamaIndex's top-level events are placed at that trace's root.
        self._opened: contextvars.ContextVar[tuple[Trace, Any] | None] = contextvars.ContextVar(
            f"callbacks_llama_index_trace_{id(self):x}", default=None
        )

    @property
    def manager(self) -> CallbackManager:
        """The :class:`callbacks.CallbackManager` events go to."""
        return self._manager if self._manager is not None else get_manager()

    def _parent_for(self, manager: CallbackManager, parent_id: str | None) -> str | None:
        # LlamaIndex's own parent keeps the host trace map equal to LlamaIndex's (including its
        # leaf events, which never become parents). Its "root" means "no LlamaIndex parent": at
        # the root of a trace this handler opened, but under the caller's current host event when
        # the LlamaIndex call runs inside a trace or event the application opened itself.
        if parent_id and parent_id != BASE_TRACE_EVENT:
            return parent_id
        opened = self._opened.get()
        if opened is not None and opened[0] is manager.current_trace():
            return ROOT
        return None

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
            manager = self.manager
            plain = _plain_keys(payload)
            event_id = manager.on_event_start(
                host_type,
                plain,
                event_id=event_id or None,
                parent_id=self._parent_for(manager, parent_id),
            )
            if host_type is EventType.EXCEPTION:
                # LlamaIndex only ever starts exception events; end it so it is not abandoned.
                manager.on_event_end(
                    host_type, None, event_id=event_id, exception=_exception_in(plain)
                )
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
        """Forward the end of a LlamaIndex event (a failed one carries its exception)."""
        host_type = _TYPES.get(event_type)
        if host_type is None or host_type is EventType.EXCEPTION:
            return
        try:
            plain = _plain_keys(payload)
            self.manager.on_event_end(
                host_type, plain, event_id=event_id or None, exception=_exception_in(plain)
            )
        except Exception:
            logger.exception("callbacks: forwarding a LlamaIndex %s end failed", event_type)

    def start_trace(self, trace_id: str | None = None) -> None:
        """Start a host trace named after LlamaIndex's trace id (``"query"``, ``"chat"``...)."""
        try:
            manager = self.manager
            before = manager.current_trace()
            trace = manager.start_trace(trace_id or "llama-index")
            if trace is not before:
                self._opened.set((trace, self._opened.get()))
        except Exception:
            logger.exception("callbacks: starting a trace for LlamaIndex failed")

    def end_trace(
        self,
        trace_id: str | None = None,
        trace_map: dict[str, list[str]] | None = None,
    ) -> None:
        """End the host trace. LlamaIndex's ``trace_map`` is ignored: it is shared by all
        concurrent traces of a LlamaIndex ``CallbackManager``; the host keeps one per trace."""
        try:
            manager = self.manager
            trace = manager.end_trace(trace_id)
            opened = self._opened.get()
            if opened is not None and opened[0] is trace and trace is not None and trace.ended:
                self._opened.set(opened[1])
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
    """Send LlamaIndex's events to ``manager`` by adding a :class:`CallbacksHandler` to
    ``Settings.callback_manager``; returns the handler. Idempotent: a second call for the same
    manager returns the handler already installed.

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
    return handler


def uninstall(manager: CallbackManager | None = None) -> bool:
    """Remove the handler :func:`install` added for ``manager``; True if there was one."""
    llama_cm = Settings.callback_manager
    handler = _installed(llama_cm.handlers, manager)
    if handler is None:
        return False
    llama_cm.remove_handler(handler)
    return True
