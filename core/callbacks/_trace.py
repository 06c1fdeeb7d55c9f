"""A trace as plugins see it (:class:`Trace`, data only) and the host's bookkeeping of a running
trace (:class:`TraceState`)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from ._context import current_attributes
from .events import ROOT, Event, EventType, wall_time_ns

__all__ = ["Trace", "TraceState"]


def _new_trace_id() -> str:
    return f"{random.getrandbits(128):032x}"


class Trace:
    """One trace: a query, an agent run, or any unit of work with nested events.

    A trace owns its own ``trace_map``, counts and durations, so concurrent traces never share
    state. The object is live while the trace runs and final once ``on_trace_end`` is called.
    Its attributes are read-only: the host records into it, plugins only read.
    """

    __slots__ = (
        "__weakref__",
        "_attributes",
        "_durations",
        "_end_time_ns",
        "_id",
        "_implicit",
        "_map",
        "_name",
        "_open",
        "_sampled",
        "_start_time_ns",
    )

    def __init__(
        self,
        name: str,
        start_time_ns: int,
        *,
        trace_id: str | None = None,
        implicit: bool = False,
        sampled: bool = True,
    ) -> None:
        self._id = trace_id or _new_trace_id()
        self._name = name
        self._start_time_ns = start_time_ns
        self._end_time_ns: int | None = None
        self._attributes: Mapping[str, Any] = current_attributes()
        self._implicit = implicit
        self._sampled = sampled
        self._map: dict[str, list[str]] = {}
        self._open: dict[str, Event] = {}
        self._durations: dict[EventType, list[int]] = {}

    @property
    def id(self) -> str:
        """32 hex characters (or the id given to ``as_trace`` / ``start_trace``)."""
        return self._id

    @property
    def name(self) -> str:
        """The name given to ``as_trace`` / ``start_trace``, or the type of the event that opened
        the trace implicitly."""
        return self._name

    @property
    def start_time_ns(self) -> int:
        """``time.monotonic_ns()`` at the start."""
        return self._start_time_ns

    @property
    def end_time_ns(self) -> int | None:
        """``time.monotonic_ns()`` at the end; ``None`` while the trace runs."""
        return self._end_time_ns

    @property
    def attributes(self) -> Mapping[str, Any]:
        """Set with :func:`callbacks.using_attributes` around the trace's start."""
        return self._attributes

    @property
    def implicit(self) -> bool:
        """True when an event outside any trace opened this one (it ends with that event)."""
        return self._implicit

    @property
    def sampled(self) -> bool:
        """False when sampling (``sample_rate``) left this trace out: no plugin sees it."""
        return self._sampled

    @property
    def ended(self) -> bool:
        """True once the trace has ended."""
        return self._end_time_ns is not None

    @property
    def trace_map(self) -> dict[str, list[str]]:
        """``{parent_id: [child ids]}`` from ``"root"``, as LlamaIndex's ``trace_map`` (a copy)."""
        return {parent: list(children) for parent, children in list(self._map.items())}

    @property
    def root_event_ids(self) -> list[str]:
        """Ids of the outermost events, in start order."""
        return list(self._map.get(ROOT, ()))

    @property
    def open_event_ids(self) -> list[str]:
        """Ids of events started but not yet ended."""
        return list(self._open)

    @property
    def counts(self) -> dict[EventType, int]:
        """How many events of each type this trace started."""
        counts = {t: len(d) for t, d in list(self._durations.items())}
        for start in list(self._open.values()):
            counts[start.type] = counts.get(start.type, 0) + 1
        return counts

    @property
    def durations_ns(self) -> dict[EventType, list[int]]:
        """The duration of every ended event, per type, in nanoseconds."""
        return {t: list(d) for t, d in list(self._durations.items())}

    @property
    def total_durations_ns(self) -> dict[EventType, int]:
        """Total time spent in each event type (nested events count in their own type too)."""
        return {t: sum(d) for t, d in list(self._durations.items())}

    @property
    def event_count(self) -> int:
        """Events started in this trace."""
        return sum(self.counts.values())

    @property
    def duration_ns(self) -> int | None:
        """Nanoseconds from start to end; ``None`` while the trace runs."""
        end = self._end_time_ns
        return None if end is None else end - self._start_time_ns

    @property
    def start_wall_time_ns(self) -> int:
        """Wall-clock start (ns since the epoch)."""
        return wall_time_ns(self._start_time_ns)

    @property
    def end_wall_time_ns(self) -> int | None:
        """Wall-clock end (ns since the epoch), once ended."""
        end = self._end_time_ns
        return None if end is None else wall_time_ns(end)

    def __repr__(self) -> str:
        state = "ended" if self.ended else "running"
        return f"<Trace {self._name!r} {self._id[:8]} {state} events={self.event_count}>"


class TraceState:
    """The host's side of one running trace: what the event path reads and writes per event.

    ``map``, ``open`` and ``durations`` are the very dicts the :class:`Trace` reads from, so
    recording is a single dict or list operation (consistent across threads without a lock).
    ``nesting`` and ``previous`` serve ``start_trace``/``end_trace``.
    """

    __slots__ = (
        "closing_since",
        "durations",
        "ended",
        "id",
        "implicit",
        "map",
        "nesting",
        "open",
        "owner",
        "previous",
        "sampled",
        "started",
        "trace",
    )

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.id = trace._id
        self.sampled = trace._sampled
        self.implicit = trace._implicit
        self.map = trace._map
        self.open = trace._open
        self.durations = trace._durations
        self.ended = False
        self.nesting = 0
        self.previous: Any = None
        self.owner: Any = None
        """Who opened it with ``start_trace`` (see ``_owner``); ``None`` otherwise."""
        self.started = 0
        """Events started in it (past ``MAX_EVENTS_PER_TRACE`` the trace is retired)."""
        self.closing_since: int | None = None
        """When the trace was asked to end while events were still open (it waits for them)."""

    def close(self, now_ns: int) -> bool:
        """Mark the trace ended at ``now_ns``; False if it had already ended."""
        if self.ended:
            return False
        self.ended = True
        self.trace._end_time_ns = now_ns
        return True
