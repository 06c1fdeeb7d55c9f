"""A bounded per-trace buffer for plugins that need a whole trace at once (exporters, viewers).

A plugin feeds it the events and trace hooks it receives; when a trace ends it gets the trace
back with every event, start and end paired. Memory is bounded by ``max_traces`` open traces and
``max_events`` events per trace; what the bounds cost is counted, never lost silently::

    class Exporter:
        def __init__(self) -> None:
            self.buffer = TraceCollector(on_evict=self.export)

        @hookimpl
        def on_event_start(self, event): self.buffer.add(event)

        @hookimpl
        def on_event_end(self, event): self.buffer.add(event)

        @hookimpl
        def on_trace_end(self, trace): self.export(self.buffer.end_trace(trace))

A collector is not thread-safe: a background plugin's hooks all run on its one worker thread;
a plugin read from other threads guards it with its own lock.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .events import ROOT, Event, EventPayload, EventType

if TYPE_CHECKING:
    from .trace import Trace

__all__ = ["CollectedTrace", "EventPair", "TraceCollector", "describe_error"]

logger = logging.getLogger(__name__)

_RECENTLY_ENDED = 1024


def describe_error(error: BaseException) -> str:
    """``"<Type>: <message>"`` (just the type when the message is empty)."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


class EventPair:
    """The start and the end of one event; either may be missing (a start whose end never came,
    or an end whose start was dropped)."""

    __slots__ = ("end", "start")

    def __init__(self, start: Event | None = None, end: Event | None = None) -> None:
        self.start = start
        self.end = end

    @property
    def any(self) -> Event:
        """The end if seen, else the start."""
        event = self.end if self.end is not None else self.start
        assert event is not None
        return event

    @property
    def error(self) -> BaseException | None:
        """Why the event failed: the exception that ended it, else, for an ``exception`` event,
        the exception its payload reports (LlamaIndex reports a handled exception that way; a
        text there becomes an ``Exception`` with that message)."""
        end = self.end
        if self.any.type is EventType.EXCEPTION:
            for event in (self.start, end):
                reported = event.payload.get(EventPayload.EXCEPTION) if event else None
                if isinstance(reported, BaseException):
                    return reported
                if reported is not None:
                    return Exception(str(reported))
        if end is not None and end.exception is not None:
            return end.exception
        if self.any.type is EventType.EXCEPTION:
            return Exception("exception event")
        return None

    @property
    def parent_id(self) -> str:
        """The parent event's id (:data:`callbacks.ROOT` for a top-level event)."""
        return self.any.parent_id

    def __iter__(self) -> Iterator[Event | None]:
        yield self.start
        yield self.end

    def __repr__(self) -> str:
        return f"EventPair(start={self.start!r}, end={self.end!r})"


class CollectedTrace:
    """One trace's events, as handed out when the trace ends or is evicted."""

    __slots__ = ("dropped_events", "ended", "id", "pairs", "trace")

    def __init__(self, trace_id: str) -> None:
        self.id = trace_id
        self.trace: Trace | None = None
        """The host's trace, once ``on_trace_start`` or ``on_trace_end`` was seen."""
        self.pairs: dict[str, EventPair] = {}
        """Event id -> its start and end, in order of first arrival."""
        self.dropped_events = 0
        """Events of this trace not kept because it held ``max_events`` already."""
        self.ended = False
        """True when handed out by :meth:`TraceCollector.end_trace`; False for an evicted trace
        or one still open at :meth:`TraceCollector.drain`."""

    @property
    def name(self) -> str:
        """The trace's name (``"trace"`` when the trace object was never seen)."""
        return str(getattr(self.trace, "name", None) or "trace")

    def children(self) -> dict[str, list[str]]:
        """Parent id -> child ids in arrival order; an event whose parent is not held sits under
        :data:`callbacks.ROOT`."""
        out: dict[str, list[str]] = {ROOT: []}
        pairs = self.pairs
        for event_id, pair in pairs.items():
            parent = pair.parent_id
            if parent not in pairs or parent == event_id:
                parent = ROOT
            out.setdefault(parent, []).append(event_id)
        return out

    def __len__(self) -> int:
        return len(self.pairs)


class TraceCollector:
    """Holds the events of open traces until each ends, within fixed bounds.

    * ``max_traces``: open traces held at once; beyond it the oldest is evicted (handed to
      ``on_evict`` if given, so an exporter can still send it as it stands) and counted.
    * ``max_events``: events held per trace; beyond it new events of that trace are dropped and
      counted (on the trace and in :attr:`dropped_events`).

    An event arriving after its trace ended (within the last 1024 ended traces) is not held: it
    is counted in :attr:`late_events`.
    """

    def __init__(
        self,
        max_traces: int = 1000,
        max_events: int = 10_000,
        *,
        on_evict: Callable[[CollectedTrace], Any] | None = None,
        name: str = "plugin",
    ) -> None:
        if max_traces < 1 or max_events < 1:
            raise ValueError("max_traces and max_events must be at least 1")
        self.max_traces = max_traces
        self.max_events = max_events
        self.on_evict = on_evict
        self.name = name
        """Who owns the collector, for log messages."""
        self.evicted_traces = 0
        """Open traces pushed out by ``max_traces``."""
        self.evicted_events = 0
        """Events held by the evicted traces."""
        self.dropped_events = 0
        """Events not held because their trace had ``max_events`` already."""
        self.late_events = 0
        """Events that arrived after their trace had ended."""
        self._open: OrderedDict[str, CollectedTrace] = OrderedDict()
        self._ended: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        """Open traces held."""
        return len(self._open)

    def __contains__(self, trace_id: object) -> bool:
        return trace_id in self._open

    def stats(self) -> dict[str, int]:
        """The counters, for a plugin's ``callbacks_stats``."""
        return {
            "open_traces": len(self._open),
            "evicted_traces": self.evicted_traces,
            "evicted_events": self.evicted_events,
            "dropped_events": self.dropped_events,
            "late_events": self.late_events,
        }

    @property
    def lost_events(self) -> int:
        """Events that will never be handed out with their trace: dropped, evicted without an
        ``on_evict`` callback, and late."""
        evicted = 0 if self.on_evict is not None else self.evicted_events
        return self.dropped_events + evicted + self.late_events

    def start_trace(self, trace: Trace) -> CollectedTrace:
        """Open (or find) the trace and remember the host's trace object."""
        collected = self._trace(trace.id)
        collected.trace = trace
        return collected

    def add(self, event: Event) -> EventPair | None:
        """Hold a start or end event; returns its pair, or ``None`` when it was not held."""
        collected = self._open.get(event.trace_id)
        if collected is None:
            if event.trace_id in self._ended:
                self.late_events += 1
                return None
            collected = self._trace(event.trace_id)
        pairs = collected.pairs
        pair = pairs.get(event.id)
        if pair is None:
            if len(pairs) >= self.max_events:
                # Count each event once: its start, or an end that brings no start with it.
                if event.is_start or event.start is None:
                    self._drop(collected)
                return None
            pair = pairs[event.id] = EventPair()
        if event.is_start:
            pair.start = event
        else:
            pair.end = event
        return pair

    def get(self, trace_id: str, event_id: str) -> EventPair | None:
        """The pair of an event of an open trace, if held."""
        collected = self._open.get(trace_id)
        return collected.pairs.get(event_id) if collected is not None else None

    def end_trace(self, trace: Trace | str) -> CollectedTrace:
        """Remove and return a trace with all its held events (none if nothing was seen)."""
        trace_id = trace if isinstance(trace, str) else trace.id
        collected = self._open.pop(trace_id, None)
        if collected is None:
            collected = CollectedTrace(trace_id)
        if not isinstance(trace, str):
            collected.trace = trace
        collected.ended = True
        self._ended[trace_id] = None
        if len(self._ended) > _RECENTLY_ENDED:
            self._ended.popitem(last=False)
        return collected

    def open_traces(self) -> list[CollectedTrace]:
        """The open traces, oldest first (still owned by the collector: read, do not keep)."""
        return list(self._open.values())

    def drain(self) -> list[CollectedTrace]:
        """Remove and return every open trace, oldest first (at shutdown: export as they stand)."""
        out = list(self._open.values())
        self._open.clear()
        return out

    def clear(self) -> None:
        """Forget every open trace (e.g. in a forked child, whose parent exports them)."""
        self._open.clear()
        self._ended.clear()

    def _trace(self, trace_id: str) -> CollectedTrace:
        collected = self._open.get(trace_id)
        if collected is None:
            if len(self._open) >= self.max_traces:
                self._evict()
            collected = self._open[trace_id] = CollectedTrace(trace_id)
        return collected

    def _evict(self) -> None:
        _, oldest = self._open.popitem(last=False)
        if not self.evicted_traces:
            logger.warning(
                "%s: more than %d traces open at once; the oldest is %s (are traces ended?)",
                self.name,
                self.max_traces,
                "handed on as it stands" if self.on_evict is not None else "dropped",
            )
        self.evicted_traces += 1
        self.evicted_events += len(oldest.pairs)
        if self.on_evict is not None:
            self.on_evict(oldest)

    def _drop(self, collected: CollectedTrace) -> None:
        if not self.dropped_events:
            logger.warning(
                "%s: trace %s has more than %d events; further events are dropped and counted",
                self.name,
                collected.id,
                self.max_events,
            )
        collected.dropped_events += 1
        self.dropped_events += 1
