"""Helpers for testing plugins and instrumented code (like pytest's own testing helpers)."""

from __future__ import annotations

import threading

from ._trace import Trace
from .events import Event, EventType
from .hookspecs import hookimpl

__all__ = ["RecordingPlugin"]


class RecordingPlugin:
    """A plugin that keeps every event and every ended trace it receives, in order.

    Inline by default, so what was emitted is there as soon as the call returns; pass
    ``delivery="background"`` to exercise the background path (then ``manager.flush()`` first).
    """

    callbacks_name = "recorder"

    def __init__(self, delivery: str = "inline") -> None:
        self.callbacks_delivery = delivery
        self.lock = threading.Lock()
        self.events: list[Event] = []
        self.traces: list[Trace] = []

    @hookimpl
    def on_event_start(self, event: Event) -> None:
        """Keep the start."""
        with self.lock:
            self.events.append(event)

    @hookimpl
    def on_event_end(self, event: Event) -> None:
        """Keep the end."""
        with self.lock:
            self.events.append(event)

    @hookimpl
    def on_trace_end(self, trace: Trace) -> None:
        """Keep the ended trace."""
        with self.lock:
            self.traces.append(trace)

    def starts(
        self, event_type: EventType | None = None, trace: Trace | None = None
    ) -> list[Event]:
        """Start events, optionally of one type and one trace."""
        return self._select(True, event_type, trace)

    def ends(self, event_type: EventType | None = None, trace: Trace | None = None) -> list[Event]:
        """End events, optionally of one type and one trace."""
        return self._select(False, event_type, trace)

    def clear(self) -> None:
        """Forget everything recorded so far."""
        with self.lock:
            self.events.clear()
            self.traces.clear()

    def _select(
        self, starts: bool, event_type: EventType | None, trace: Trace | None
    ) -> list[Event]:
        with self.lock:
            events = list(self.events)
        return [
            e
            for e in events
            if e.is_start is starts
            and (event_type is None or e.type is event_type)
            and (trace is None or e.trace_id == trace.id)
        ]
