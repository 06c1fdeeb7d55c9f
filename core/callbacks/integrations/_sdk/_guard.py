"""The duplicate guard: an SDK request made directly inside an LLM (embedding) event that a
framework bridge already reported is not reported again."""

from __future__ import annotations

import threading
import weakref

from ..._manager import CallbackManager
from ...events import Event, EventType
from ...hookspecs import hookimpl
from ._support import failed


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
                failed("registering the SDK duplicate guard")
                return None
            _guards[manager] = guard
    return guard


def suppressed(manager: CallbackManager, event_type: EventType) -> bool:
    # The guard is registered on every manager a request reports to (a new process-wide manager
    # after reset_manager() gets one at its first request).
    guard = guard_for(manager)
    current = manager.current_event_id()
    return current is not None and guard is not None and guard.open.get(current) is event_type
