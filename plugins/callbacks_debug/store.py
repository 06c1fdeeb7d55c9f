"""A bounded store of recent traces and their events, and timing statistics over it."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from callbacks import Event, EventType
from callbacks.collect import CollectedTrace, TraceCollector

if TYPE_CHECKING:
    from callbacks import Trace

__all__ = ["EventStore", "EventTimeInfo", "TraceLog", "time_info"]


@dataclass
class TraceLog:
    """One trace as the debug plugin saw it: the host's trace object and its events."""

    id: str
    name: str
    trace: Trace | None = None
    """The host's :class:`callbacks.Trace` (final once :attr:`ended`)."""
    events: list[Event] = field(default_factory=list)
    """Start and end events, in the order they arrived."""
    dropped_events: int = 0
    """Events not kept because the trace exceeded ``max_events_per_trace``."""
    ended: bool = False

    def pairs(self) -> dict[str, list[Event]]:
        """``{event id: [start, end]}`` (just ``[start]`` while the event runs), in start order."""
        by_id: dict[str, list[Event]] = {}
        for event in self.events:
            by_id.setdefault(event.id, []).append(event)
        return by_id


@dataclass(frozen=True)
class EventTimeInfo:
    """Timing of one event type, in seconds; all zero when there were no events."""

    count: int
    total: float
    mean: float
    p50: float
    p95: float

    @property
    def total_count(self) -> int:
        """LlamaIndex's ``EventStats.total_count``."""
        return self.count

    @property
    def total_secs(self) -> float:
        """LlamaIndex's ``EventStats.total_secs``."""
        return self.total

    @property
    def average_secs(self) -> float:
        """LlamaIndex's ``EventStats.average_secs``."""
        return self.mean


def time_info(durations_ns: Iterable[int]) -> EventTimeInfo:
    """Count, total, mean and nearest-rank 50th/95th percentiles of durations, in seconds."""
    values = sorted(durations_ns)
    if not values:
        return EventTimeInfo(0, 0.0, 0.0, 0.0, 0.0)
    n = len(values)

    def rank(p: float) -> float:
        # Rounding first keeps float noise (0.95 * 60 = 57.000...01) from moving up a rank.
        index = max(0, min(n - 1, math.ceil(round(p * n, 9)) - 1))
        return values[index] / 1e9

    total = sum(values) / 1e9
    return EventTimeInfo(n, total, total / n, rank(0.50), rank(0.95))


class EventStore:
    """Keeps the last ``max_traces`` traces and at most ``max_events_per_trace`` events each.

    Open traces live in the host's bounded :class:`callbacks.collect.TraceCollector`; ended ones
    are kept, newest last, until ``max_traces`` traces are held in all.
    """

    def __init__(self, max_traces: int, max_events_per_trace: int) -> None:
        self.max_traces = max_traces
        self.max_events_per_trace = max_events_per_trace
        self._open = TraceCollector(max_traces, max_events_per_trace, name="callbacks-debug")
        self._ended: OrderedDict[str, TraceLog] = OrderedDict()

    def start_trace(self, trace: Trace) -> None:
        """Open the log of a trace."""
        self._open.start_trace(trace)

    def end_trace(self, trace: Trace) -> TraceLog:
        """Mark a trace ended and return its log."""
        log = _log(self._open.end_trace(trace), ended=True)
        self._ended[log.id] = log
        while self._ended and len(self._ended) + len(self._open) > self.max_traces:
            self._ended.popitem(last=False)
        return log

    def add(self, event: Event) -> None:
        """Keep an event, unless its trace already holds ``max_events_per_trace``."""
        self._open.add(event)

    def clear(self) -> None:
        """Forget everything."""
        self._open.clear()
        self._ended.clear()

    def logs(self) -> list[TraceLog]:
        """Every kept trace log: the ended ones oldest first, then the open ones."""
        return [*self._ended.values(), *(_log(c, ended=False) for c in self._open.open_traces())]

    def events(self, event_type: EventType | None = None) -> list[Event]:
        """Kept events (of one type, if given) in time order."""
        found = [
            e
            for log in self.logs()
            for e in log.events
            if event_type is None or e.type is event_type
        ]
        found.sort(key=lambda e: e.time_ns)
        return found

    def pairs(self, event_type: EventType | None = None) -> list[tuple[Event, Event]]:
        """(start, end) of every finished kept event, in start order."""
        found: list[tuple[Event, Event]] = []
        for log in self.logs():
            for events in log.pairs().values():
                if len(events) == 2 and (event_type is None or events[0].type is event_type):
                    found.append((events[0], events[1]))
        found.sort(key=lambda pair: pair[0].time_ns)
        return found

    def durations_ns(self, event_type: EventType) -> list[int]:
        """Durations of the kept end events of one type."""
        return [
            e.duration_ns
            for log in self.logs()
            for e in log.events
            if e.type is event_type and e.duration_ns is not None
        ]


def _log(collected: CollectedTrace, ended: bool) -> TraceLog:
    events = [e for pair in collected.pairs.values() for e in pair if e is not None]
    name = collected.trace.name if collected.trace is not None else ""
    return TraceLog(collected.id, name, collected.trace, events, collected.dropped_events, ended)
