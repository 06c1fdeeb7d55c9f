"""Events held per trace until the trace ends, with a bound on memory."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from callbacks import Event

__all__ = ["EventPair", "TraceCollector"]

logger = logging.getLogger(__name__)


@dataclass
class EventPair:
    """The start and end of one event; either may be missing (an end without a start, or a
    start whose end never came)."""

    start: Event | None = None
    end: Event | None = None

    @property
    def any(self) -> Event:
        """The end if seen, else the start."""
        event = self.end or self.start
        assert event is not None
        return event


class TraceCollector:
    """Collects event pairs per trace id in arrival order.

    At most ``max_traces`` open traces and ``max_events`` events per trace are kept; past that the
    oldest trace, or the extra events, are dropped and counted in :attr:`dropped`.
    """

    def __init__(self, max_traces: int = 1000, max_events: int = 10_000) -> None:
        self.max_traces = max_traces
        self.max_events = max_events
        self.dropped = 0
        """Events discarded because a bound was hit."""
        self._traces: OrderedDict[str, dict[str, EventPair]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._traces)

    def add(self, event: Event) -> EventPair | None:
        """Record a start or an end; returns its pair, or ``None`` when it was dropped."""
        pairs = self._traces.get(event.trace_id)
        if pairs is None:
            if len(self._traces) >= self.max_traces:
                _, evicted = self._traces.popitem(last=False)
                self._drop(len(evicted), "open traces")
            pairs = self._traces[event.trace_id] = {}
        pair = pairs.get(event.id)
        if pair is None:
            if len(pairs) >= self.max_events:
                self._drop(1, "events in one trace")
                return None
            pair = pairs[event.id] = EventPair()
        if event.is_start:
            pair.start = event
        else:
            pair.end = event
        return pair

    def get(self, trace_id: str, event_id: str) -> EventPair | None:
        """The pair of an event of an open trace, if held."""
        return self._traces.get(trace_id, {}).get(event_id)

    def pop(self, trace_id: str) -> dict[str, EventPair]:
        """Remove and return a trace's pairs (empty if none were seen)."""
        return self._traces.pop(trace_id, {})

    def _drop(self, count: int, what: str) -> None:
        if not self.dropped:
            logger.warning(
                "callbacks-wandb: too many %s held (limits: %d traces, %d events each); "
                "dropping the oldest. Are traces being ended?",
                what,
                self.max_traces,
                self.max_events,
            )
        self.dropped += count
