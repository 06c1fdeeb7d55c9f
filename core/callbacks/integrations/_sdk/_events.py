"""One SDK request reported as one event, and the accumulator a streamed reply is assembled in."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..._manager import CallbackManager
from ...events import EventType
from . import _guard


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
        if _guard.suppressed(manager, event_type):
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


class StreamAccumulator:
    """Assembles a streamed reply from its chunks. SDK modules subclass it."""

    first_token_ns: int | None = None
    request_id: str | None = None

    def add(self, item: Any) -> None:
        """Take one chunk or event."""

    def payload(self) -> dict[str, Any]:
        """The end payload from what arrived so far."""
        return {}
